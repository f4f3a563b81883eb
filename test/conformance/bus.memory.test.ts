import { MemoryBus } from '../../src/adapters/memory/bus.ts'
import { runBusConformance } from './bus.suite.ts'

runBusConformance('Bus conformance: MemoryBus', async () => ({ bus: new MemoryBus() }), {
  timeoutMs: 5_000,
  quietMs: 100,
})
