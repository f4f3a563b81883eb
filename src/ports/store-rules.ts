/**
 * Rules every Store adapter applies the same way (so the memory store fails and orders exactly
 * like the MongoDB one): node-id validation before a key reaches a document path, code-point
 * string order, the listing order of artifacts, which batch-metrics row counts.
 */
import { ErrorCode, FlowkitError } from '../errors.ts'
import { NODE_ID_PATTERN } from '../graph/types.ts'
import { type BatchMetricsRow, HANDED_BACK_HOLDER } from './store.ts'

/**
 * Largest artifact meta, as encoded for the store: the store's documents hold at most 16 MiB
 * (MongoDB), less room for the artifact's other fields. Checked before a write (a worker's
 * handler result, a coordinator function's), so the memory and MongoDB stores fail alike.
 */
export const MAX_ARTIFACT_META_BYTES = 16 * 1024 * 1024 - 16 * 1024

/**
 * The holder a worker process writes in an attempt's claim: `workerId#instance` (a restarted
 * process with the same worker id is another instance: worker/instance.ts).
 */
export function claimHolder(workerId: string, instanceId: string): string {
  return `${workerId}#${instanceId}`
}

/** A claim's holder split into worker id and instance (no `#`: a bare worker id, instance null); null for the hand-back fence. */
export function parseClaimHolder(holder: string): { workerId: string; instance: string | null } | null {
  if (holder === HANDED_BACK_HOLDER) return null
  const cut = holder.lastIndexOf('#')
  return cut > 0 ? { workerId: holder.slice(0, cut), instance: holder.slice(cut + 1) } : { workerId: holder, instance: null }
}

/** Instance ids of worker processes (`<start ms, base 36, 9 digits>-<random>`): src/worker/instance.ts. Digits of the start stamp: base-36 milliseconds fit 9 digits until the year 5188. */
export const STAMP_DIGITS = 9
const STAMPED = /^([0-9a-z]{9})-./

/** The start stamp of an instance id; null for one without (a bare UUID, an earlier flowkit's). */
export function instanceStamp(instanceId: string): number | null {
  const m = STAMPED.exec(instanceId)
  return m === null ? null : Number.parseInt(m[1] as string, 36)
}

/**
 * Whether worker state written by instance `mine` is stale next to the stored one of instance
 * `stored`: both stamped, the stored one started later (a paused process resumed after its
 * successor started, or two live processes given one worker id). Unstamped or equal: not known.
 */
export function supersededBy(stored: string | undefined, mine: string | undefined): boolean {
  if (stored === undefined || mine === undefined || stored === mine) return false
  const theirs = instanceStamp(stored)
  const own = instanceStamp(mine)
  return theirs !== null && own !== null && theirs > own
}

/**
 * Checks the keys a caller gives a store read (task ids, node ids, outbox and worker ids,
 * statuses): each must be a string, an optional one may also be absent or null. Anything else is
 * refused, so that an object such as `{ $ne: null }` (from untyped input) never reaches a MongoDB
 * filter, where it would select documents the caller did not name; the memory store refuses alike.
 */
export function assertStringKeys(verb: string, required: Readonly<Record<string, unknown>>, optional: Readonly<Record<string, unknown>> = {}): void {
  for (const [name, v] of Object.entries(required)) if (typeof v !== 'string') refuseKey(verb, name, v)
  for (const [name, v] of Object.entries(optional)) if (typeof v !== 'string' && v !== undefined && v !== null) refuseKey(verb, name, v)
}

/** `assertStringKeys` for a list of keys (task ids to read, statuses to match). */
export function assertStringList(verb: string, name: string, list: unknown): void {
  if (!Array.isArray(list)) refuseKey(verb, name, list)
  for (const v of list as unknown[]) if (typeof v !== 'string') refuseKey(verb, `${name}[]`, v)
}

function refuseKey(verb: string, name: string, v: unknown): never {
  const got = v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v
  throw new FlowkitError(ErrorCode.InvalidKey, `${verb}: ${name} must be a string, got ${got}`, { details: { field: name } })
}

export function assertNodeId(nodeId: unknown): asserts nodeId is string {
  if (typeof nodeId === 'string' && validNodeIds.has(nodeId)) return
  if (typeof nodeId !== 'string' || !NODE_ID_PATTERN.test(nodeId)) {
    throw new FlowkitError(ErrorCode.InvalidKey, `invalid node id ${JSON.stringify(nodeId)}`, {
      details: { node_id: String(nodeId) },
    })
  }
  if (validNodeIds.size >= 10_000) validNodeIds.clear()
  validNodeIds.add(nodeId)
}

/** Node ids found valid (checked for every node state a store is given; a process sees few ids). */
const validNodeIds = new Set<string>()

/** Orders strings by Unicode code point (= MongoDB's byte order of UTF-8), not UTF-16 units. */
export function compareCodePoints(a: string, b: string): number {
  if (a === b) return 0
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const ca = a.charCodeAt(i)
    const cb = b.charCodeAt(i)
    if (ca !== cb) return fixUnit(ca) - fixUnit(cb)
  }
  return a.length - b.length
}

function fixUnit(c: number): number {
  // Surrogates (D800–DFFF) encode code points above FFFF: move them above E000–FFFF.
  if (c < 0xd800) return c
  return c <= 0xdfff ? c + 0x2000 : c - 0x800
}

/** The complete artifact (batch uid null) after every partial; partials among themselves equal. */
export function completeLast(a: string | null, b: string | null): number {
  if (a === null) return b === null ? 0 : 1
  return b === null ? -1 : 0
}

/**
 * The mark of a document handed over to a store by its writer (see handOver): a private field
 * installed on the document (a base class constructor that returns the document lets a subclass's
 * field initializer add it there). Copies (spread, JSON, structuredClone) do not carry it, nothing
 * lists it, and adding it costs about a plain property store. (`Object.defineProperty` with a
 * non-enumerable symbol cost about 130 ns more per document, several times per node run; a
 * WeakSet of such documents costs more still: a store in memory keeps them all, and the collector
 * walks the set at every cycle.)
 */
class Returns {
  constructor(doc: object) {
    // biome-ignore lint/correctness/noConstructorReturn: the subclass's field goes on `doc`
    return doc
  }
}
class HandedOver extends Returns {
  #handedOver = true
  static mark(doc: object): void {
    if (!(#handedOver in doc)) new HandedOver(doc)
  }
  static has(v: object): boolean {
    return #handedOver in v
  }
}
/**
 * FLOWKIT_CHECK_HANDOVER=1 (the test suite sets it): what is handed over is also deep-frozen, so
 * code that changes a handed-over document in place throws where it does so.
 */
const FREEZE_HANDED_OVER = process.env['FLOWKIT_CHECK_HANDOVER'] === '1'

/**
 * Marks a document its writer gives to a store and never changes again (nor anything under it):
 * a store in the same process may keep it by reference (it still copies it on the way out), a bus
 * in memory may deliver it to consumers (BusRecord.decoded). The coordinator hands over its
 * journal entries (with their node states), snapshots, new tasks and batch metrics rows this way;
 * it makes new objects rather than changing these in place.
 */
export function handOver<T extends object>(doc: T): T {
  HandedOver.mark(doc)
  return FREEZE_HANDED_OVER ? deepFreeze(doc) : doc
}

/**
 * Whether a store may keep `v` by reference: only what its writer handed over. (Being frozen is
 * not enough: a caller's shallow Object.freeze leaves what is under it changeable.)
 */
export function isHandedOver(v: object): boolean {
  return HandedOver.has(v)
}

export function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === 'object' && !Object.isFrozen(v)) freezeTree(v)
  return v
}

/** Freezes `o` and every object under it not frozen yet (a frozen one's subtree already is). */
function freezeTree(o: object): void {
  Object.freeze(o)
  if (Array.isArray(o)) {
    for (let i = 0; i < o.length; i++) {
      const x: unknown = o[i]
      if (x !== null && typeof x === 'object' && !Object.isFrozen(x)) freezeTree(x)
    }
    return
  }
  for (const k of Object.keys(o)) {
    const x: unknown = (o as Record<string, unknown>)[k]
    if (x !== null && typeof x === 'object' && !Object.isFrozen(x)) freezeTree(x)
  }
}

/** Per (node, batch_uid), the row of the highest attempt epoch; ordered by node then batch uid. */
export function newestPerBatch(rows: Iterable<BatchMetricsRow>): BatchMetricsRow[] {
  const best = new Map<string, BatchMetricsRow>()
  for (const r of rows) {
    const k = `${r.node_id}\u0000${r.batch_uid}`
    const cur = best.get(k)
    if (cur === undefined || r.attempt_epoch > cur.attempt_epoch) best.set(k, r)
  }
  return [...best.values()].sort((a, b) => compareCodePoints(a.node_id, b.node_id) || compareCodePoints(a.batch_uid, b.batch_uid))
}

/**
 * Attaches a task's version (`v`) and sent mark (`sent_through`) to a document on its way out of
 * a store, as non-enumerable metadata: readable by the coordinator that resumes from them, not part
 * of the document's content (copies and comparisons leave them out).
 */
export function withVersion<T extends object>(doc: T, v: number, sentThrough: number | undefined, batches?: unknown, batchesInRows = false): T {
  Object.defineProperty(doc, 'v', { value: v, enumerable: false, writable: true, configurable: true })
  Object.defineProperty(doc, 'sent_through', { value: sentThrough ?? 0, enumerable: false, writable: true, configurable: true })
  Object.defineProperty(doc, 'batches', { value: batches ?? {}, enumerable: false, writable: true, configurable: true })
  if (batchesInRows) Object.defineProperty(doc, 'batches_in_rows', { value: true, enumerable: false, writable: true, configurable: true })
  return doc
}

/** A journal entry's unique key in a store: the task id and the zero-padded seq. */
export function journalKey(taskId: string, seq: number): string {
  return `${taskId}|${String(seq).padStart(10, '0')}`
}

/**
 * The artifacts of the attempt that counts, per node: the attempt of the node's complete artifact
 * when there is one, else its newest attempt. A replaced attempt's late partials (written after
 * its successor started) are left out, so readers never mix two attempts' outputs. Order is kept.
 */
export function countingAttempt<T extends { node_id: string; batch_uid: string | null; status: string; attempt_epoch: number }>(artifacts: readonly T[]): T[] {
  const counts = new Map<string, { complete: number; newest: number }>()
  for (const a of artifacts) {
    const c = counts.get(a.node_id) ?? { complete: -1, newest: -1 }
    if (a.status === 'complete' && a.batch_uid === null) c.complete = Math.max(c.complete, a.attempt_epoch)
    c.newest = Math.max(c.newest, a.attempt_epoch)
    counts.set(a.node_id, c)
  }
  return artifacts.filter((a) => {
    const c = counts.get(a.node_id) as { complete: number; newest: number }
    return a.attempt_epoch === (c.complete >= 0 ? c.complete : c.newest)
  })
}
