import { MemoryStore } from '../../src/adapters/memory/store.ts'
import { runStoreConformance } from './store.suite.ts'

runStoreConformance('memory', async () => ({ store: new MemoryStore() }))
