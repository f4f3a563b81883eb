/**
 * MongoDB adapters (`flowkit/mongo`). The `mongodb` driver is an optional peer dependency, loaded
 * here by a dynamic import so that without it, importing this entry fails with a FlowkitError
 * (MISSING_DEPENDENCY) that says what to install instead of the loader's "Cannot find package".
 */
import { importDependency } from '../../errors.ts'
import type * as AdminModule from './admin.ts'
import type * as StoreModule from './store.ts'

const [store, admin]: [typeof StoreModule, typeof AdminModule] = await importDependency('MongoStore', 'mongodb', () =>
  Promise.all([import('./store.ts'), import('./admin.ts')]),
)

/** The MongoDB store (see ./store.ts). */
export const MongoStore = store.MongoStore
export type MongoStore = StoreModule.MongoStore
export const MONGO_COLLECTIONS = store.MONGO_COLLECTIONS
export const dropMongoDatabase = admin.dropMongoDatabase
export const mongoServerInfo = admin.mongoServerInfo
export type { MongoServerInfo } from './admin.ts'
export type { MongoCollectionKey, MongoStoreOptions } from './store.ts'
