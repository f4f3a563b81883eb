/** Operator helpers for a MongoDB-protocol server (kept here: only this folder imports the driver). */
import { MongoClient, type MongoClientOptions } from 'mongodb'
import { mapMongoError } from './errors.ts'

export interface MongoServerInfo {
  /** The MongoDB version the server reports (FerretDB reports the one it emulates). */
  version: string
  /** True for FerretDB, whose single-document updates are not isolated. */
  ferretdb: boolean
  ferretdbVersion: string | null
}

async function withClient<T>(url: string, clientOptions: MongoClientOptions | undefined, op: string, fn: (c: MongoClient) => Promise<T>): Promise<T> {
  const client = new MongoClient(url, { appName: 'flowkit-admin', ...clientOptions, ignoreUndefined: true })
  try {
    await client.connect()
    return await fn(client)
  } catch (err) {
    throw mapMongoError(err, op)
  } finally {
    await client.close().catch(() => undefined)
  }
}

/** What the server is: `buildInfo` (FerretDB adds `ferretdbVersion` / `ferretdbFeatures`). */
export function mongoServerInfo(url: string, clientOptions?: MongoClientOptions): Promise<MongoServerInfo> {
  return withClient(url, clientOptions, 'buildInfo', async (client) => {
    const info = await client.db('admin').command({ buildInfo: 1 })
    const ferretdb = 'ferretdbVersion' in info || 'ferretdbFeatures' in info
    return {
      version: typeof info['version'] === 'string' ? info['version'] : 'unknown',
      ferretdb,
      ferretdbVersion: ferretdb ? String(info['ferretdbVersion'] ?? 'unknown') : null,
    }
  })
}

/** Drops a database (test runs use one database each). */
export function dropMongoDatabase(url: string, dbName: string, clientOptions?: MongoClientOptions): Promise<void> {
  return withClient(url, clientOptions, 'dropDatabase', async (client) => {
    await client.db(dbName).dropDatabase()
  })
}
