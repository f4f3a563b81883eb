import { MemoryBus, MemoryStore } from 'flowkit'
import { runRuntimeScenarios } from './runtime.suite.ts'

runRuntimeScenarios({
  name: 'memory',
  skip: false,
  timeoutMs: 15_000,
  async create() {
    const bus = new MemoryBus()
    const store = new MemoryStore()
    return {
      bus,
      store,
      async cleanup() {
        await bus.close()
        await store.close()
      },
    }
  },
})
