import { randomUUID } from 'node:crypto'
import { KafkaBus } from 'flowkit/kafka'
import { MongoStore, dropMongoDatabase } from 'flowkit/mongo'
import { kafkaBrokers, mongoUrl, realSkip } from '../helpers/real.ts'
import { runRuntimeScenarios } from './runtime.suite.ts'

runRuntimeScenarios({
  name: 'Kafka + MongoDB protocol',
  skip: realSkip('both'),
  timeoutMs: 60_000,
  async create() {
    const bus = new KafkaBus({ brokers: kafkaBrokers() ?? [], clientId: `flowkit-e2e-${randomUUID().slice(0, 8)}` })
    const dbName = `flowkit_e2e_${randomUUID().slice(0, 8)}`
    const store = new MongoStore({ url: mongoUrl() ?? '', dbName })
    await store.init()
    return {
      bus,
      store,
      async cleanup() {
        await bus.close()
        await store.close()
        await dropMongoDatabase(mongoUrl() ?? '', dbName)
      },
    }
  },
})
