import { randomUUID } from 'node:crypto'
import { MemoryBus } from 'flowkit'
import { MongoStore, dropMongoDatabase } from 'flowkit/mongo'
import { mongoUrl, realSkip } from '../helpers/real.ts'
import { runRuntimeScenarios } from './runtime.suite.ts'

// The engine on the real store alone (memory bus): isolates store behaviour from bus behaviour.
runRuntimeScenarios({
  name: 'memory bus + MongoDB protocol',
  skip: realSkip('mongo'),
  timeoutMs: 30_000,
  async create() {
    const url = mongoUrl() ?? ''
    const bus = new MemoryBus()
    const dbName = `flowkit_e2e_${randomUUID().slice(0, 8)}`
    const store = new MongoStore({ url, dbName })
    await store.init()
    return {
      bus,
      store,
      async cleanup() {
        await bus.close()
        await store.close()
        await dropMongoDatabase(url, dbName)
      },
    }
  },
})
