export { dropMongoDatabase, mongoServerInfo } from './admin.ts'
export type { MongoServerInfo } from './admin.ts'
export { MONGO_COLLECTIONS, MongoStore } from './store.ts'
export type { MongoCollectionKey, MongoStoreOptions } from './store.ts'
