import { MemoryBus } from '../../src/adapters/memory/bus.ts'
import { runAssignmentConformance } from './bus-assignment.suite.ts'
import { runBusConformance } from './bus.suite.ts'

runBusConformance('Bus conformance: MemoryBus', async () => ({ bus: new MemoryBus() }), {
  timeoutMs: 5_000,
  quietMs: 100,
})

// The memory bus ignores `assignor` (range assignor, rebalanced at once).
runAssignmentConformance('Bus conformance, group membership: MemoryBus', async () => ({ bus: new MemoryBus() }), {
  timeoutMs: 10_000,
})
