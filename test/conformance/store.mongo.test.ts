/**
 * Store conformance against a real MongoDB-protocol server (FLOWKIT_MONGO_URL): one fresh database
 * per run of this file, dropped at the end. FerretDB (detected through `buildInfo`) runs without
 * the compare-and-set race cases, since its single-document updates are not isolated; a real
 * MongoDB runs them all.
 */
import { randomBytes } from 'node:crypto'
import { after, describe, it } from 'node:test'
import { dropMongoDatabase, MongoStore, mongoServerInfo } from '../../src/adapters/mongo/index.ts'
import { mongoUrl, realSkip } from '../helpers/real.ts'
import { runStoreConformance } from './store.suite.ts'

const skip = realSkip('mongo')
const url = mongoUrl()

if (skip === false && url !== null) {
  const dbName = `flowkit_test_${randomBytes(6).toString('hex')}`
  const clientOptions = { serverSelectionTimeoutMS: 10_000 }
  const info = await mongoServerInfo(url, clientOptions)
  after(() => dropMongoDatabase(url, dbName, clientOptions))
  const server = info.ferretdb
    ? `FerretDB${info.ferretdbVersion && info.ferretdbVersion !== 'unknown' ? ` ${info.ferretdbVersion}` : ''} (reports MongoDB ${info.version})`
    : `MongoDB ${info.version}`
  runStoreConformance(
    `mongo, ${server}`,
    async () => ({ store: new MongoStore({ url, dbName, clientOptions }) }),
    { atomicConcurrency: !info.ferretdb },
  )
} else {
  describe('Store conformance: mongo', () => {
    it('runs against FLOWKIT_MONGO_URL', { skip }, () => {})
  })
}
