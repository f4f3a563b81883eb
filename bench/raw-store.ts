/**
 * Raw store ceiling, nothing of the engine in between.
 * - memory: MemoryStore's own public methods. The task document and the first update the
 *   coordinator makes on it are captured from one real chain run (so this follows the Store port
 *   whatever its current verbs), then replayed on fresh ids: inserts/s (createTask), reads/s
 *   (getTask), first-update/s (that captured update, once per task).
 * - real:   the `mongodb` driver on a scratch database: insertMany of 100 docs (docs/s),
 *   insertOne/s, updateOne by _id/s and findOne by _id/s on a collection of N docs (N reported:
 *   FerretDB on SQLite gets slower per update as the collection grows).
 */
import { randomUUID } from 'node:crypto'
import { MemoryStore } from 'flowkit'
import { isUpdateMethod } from './counting.ts'
import { noop, realEnv, withRuntime } from './runtime.ts'
import { emit, rate, round, type Result } from './stats.ts'

export interface RawStoreOptions {
  real: boolean
  logLevel: string
  ops: number
  collectionSize: number
}

async function timed(n: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  const t0 = performance.now()
  for (let i = 0; i < n; i++) await fn(i)
  return rate(n, performance.now() - t0)
}

/** A deep copy of `v` with every string equal to `from` replaced by `to`. */
function replaceId(v: unknown, from: string, to: string): unknown {
  if (v === from) return to
  if (Array.isArray(v)) return v.map((x) => replaceId(x, from, to))
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, replaceId(x, from, to)]))
  return v
}

interface Captured {
  doc: Record<string, unknown> & { id: string }
  update: { method: string; args: unknown[] } | null
}

async function capture(logLevel: string): Promise<Captured> {
  let doc: Captured['doc'] | null = null
  let update: Captured['update'] = null
  await withRuntime(
    {
      real: false,
      logLevel,
      concurrency: 1,
      handlers: { a: noop },
      spyCoordinatorStore: (method, args) => {
        if (method === 'createTask' && doc === null) doc = structuredClone(args[0]) as Captured['doc']
        else if (method === 'createTasks' && doc === null) doc = structuredClone((args[0] as unknown[])[0]) as Captured['doc']
        else if (doc !== null && update === null && isUpdateMethod(method) && JSON.stringify(args).includes(JSON.stringify(doc.id))) {
          update = { method, args: structuredClone(args) }
        }
      },
    },
    async ({ coordinator }) => {
      const id = await coordinator.createTask({ graph: { nodes: [{ node_id: 'n1', type: 'a' }] } })
      await coordinator.waitForTask(id, { timeoutMs: 30_000 })
    },
  )
  if (doc === null) throw new Error('raw store: the coordinator made no createTask call to capture')
  return { doc, update }
}

async function rawMemory(o: RawStoreOptions): Promise<Result> {
  const { doc, update } = await capture(o.logLevel)
  const store = new MemoryStore() as unknown as Record<string, (...a: unknown[]) => Promise<unknown>> & MemoryStore
  await store.init()
  const ids = Array.from({ length: o.ops }, () => randomUUID())
  const insertsPerS = await timed(o.ops, (i) => store.createTask({ ...structuredClone(doc), id: ids[i] } as never))
  const getsPerS = await timed(o.ops, (i) => store.getTask(ids[i] as string))
  let updatesPerS: number | null = null
  if (update !== null) {
    const fn = store[update.method] as (...a: unknown[]) => Promise<unknown>
    const oldId = doc.id
    updatesPerS = await timed(o.ops, (i) => fn.apply(store, replaceId(update.args, oldId, ids[i] as string) as unknown[]))
  }
  await store.close()
  return emit({
    bench: 'raw_store',
    runtime: 'memory',
    ops: o.ops,
    store_size: o.ops,
    create_task_per_s: insertsPerS,
    get_task_per_s: getsPerS,
    first_update_method: update?.method ?? null,
    first_update_per_s: updatesPerS,
  })
}

async function rawMongo(o: RawStoreOptions): Promise<Result> {
  const { url } = realEnv()
  const { MongoClient } = await import('mongodb')
  const client = new MongoClient(url)
  const dbName = `flowkit_bench_raw_${randomUUID().slice(0, 8)}`
  await client.connect()
  try {
    const db = client.db(dbName)
    const doc = (i: number): Record<string, unknown> => ({ _id: `d${i}` as never, n: i, status: 'queued', payload: { items: [1, 2, 3], note: 'x'.repeat(64) } })
    const many = db.collection('many')
    const rounds = Math.max(3, Math.round(o.ops / 100))
    const t0 = performance.now()
    for (let r = 0; r < rounds; r++) await many.insertMany(Array.from({ length: 100 }, (_, i) => doc(r * 100 + i)))
    const insertManyDocsPerS = rate(rounds * 100, performance.now() - t0)

    const one = db.collection('one')
    const insertOnePerS = await timed(o.ops, (i) => one.insertOne(doc(i)))

    const big = db.collection('big')
    for (let i = 0; i < o.collectionSize; i += 500) {
      await big.insertMany(Array.from({ length: Math.min(500, o.collectionSize - i) }, (_, k) => doc(i + k)))
    }
    const pick = (i: number): string => `d${(i * 7919) % o.collectionSize}`
    const updatePerS = await timed(o.ops, (i) => big.updateOne({ _id: pick(i) as never }, { $set: { status: 'running', n: i } }))
    const findPerS = await timed(o.ops, (i) => big.findOne({ _id: pick(i) as never }))
    return emit({
      bench: 'raw_store',
      runtime: 'mongodb-driver',
      ops: o.ops,
      insert_many_batch: 100,
      insert_many_docs_per_s: insertManyDocsPerS,
      insert_one_per_s: insertOnePerS,
      collection_size: o.collectionSize,
      update_one_by_id_per_s: updatePerS,
      find_one_by_id_per_s: findPerS,
      update_ms: round(1000 / updatePerS, 2),
      find_ms: round(1000 / findPerS, 2),
    })
  } finally {
    await client.db(dbName).dropDatabase().catch(() => undefined)
    await client.close()
  }
}

export function rawStore(o: RawStoreOptions): Promise<Result> {
  return o.real ? rawMongo(o) : rawMemory(o)
}
