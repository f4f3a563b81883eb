/**
 * Input adapters: the worker pulls a node's input from upstream artifacts.
 *
 * - `pull.from_artifacts` streams the upstream nodes' partial artifacts as they appear (each
 *   consumer attempt claims each upstream batch once), until every upstream has its complete
 *   artifact and nothing is left to read. An upstream worker node that wrote no partial is an
 *   empty input; a coordinator function's output (its complete artifact) is one item.
 * - `pull.from_artifacts.rechunk:size` re-slices what it pulls into batches of `size` items:
 *   with `meta_list_key` the list under that key of each artifact's meta is sliced; otherwise each
 *   artifact's meta is one item. With several upstreams each is sliced on its own (a chunk never
 *   mixes them): chunk ids name the same items in every attempt.
 */
import type { Clock } from '../ports/clock.ts'
import type { ArtifactDoc, Store } from '../ports/store.ts'
import { assertNodeId } from '../ports/store-rules.ts'
import { INPUT_ADAPTERS, PULL_FROM_ARTIFACTS, PULL_RECHUNK } from '../protocol/input-adapters.ts'
import type { Batch } from './handler.ts'
import { unlessAborted } from '../util/abort.ts'
import { retryingStore } from './store-retry.ts'

export { INPUT_ADAPTERS, PULL_FROM_ARTIFACTS, PULL_RECHUNK }

export interface AdapterSpec {
  name: string
  fromNodes: string[]
  pollMs: number
  size?: number
  metaListKey?: string
}

export type AdapterCheck = { ok: true; spec: AdapterSpec } | { ok: false; reasonCode: 'bad_input_adapter' | 'bad_input_args'; error: string }

/** Validates an adapter name and its args (before any batch is read). */
export function checkAdapter(
  name: unknown,
  args: unknown,
  options: { strict: boolean; defaultPollMs: number },
): AdapterCheck {
  if (typeof name !== 'string' || !INPUT_ADAPTERS.has(name)) {
    return { ok: false, reasonCode: 'bad_input_adapter', error: `unknown input adapter ${JSON.stringify(name)}` }
  }
  const a = (args ?? {}) as Record<string, unknown>
  if (a === null || typeof a !== 'object' || Array.isArray(a)) {
    return { ok: false, reasonCode: 'bad_input_args', error: 'input_args must be an object' }
  }
  let fromNodes: string[]
  if (a['from_nodes'] !== undefined) {
    const f = a['from_nodes']
    if (!Array.isArray(f) || f.length === 0 || !f.every((x) => typeof x === 'string' && x.length > 0)) {
      return { ok: false, reasonCode: 'bad_input_args', error: 'from_nodes must be a non-empty list of node ids' }
    }
    // Each upstream once (a peer's START may name one twice: it would be waited for twice, for ever).
    fromNodes = [...new Set(f as string[])]
  } else if (a['from_node'] !== undefined) {
    if (typeof a['from_node'] !== 'string' || a['from_node'].length === 0) {
      return { ok: false, reasonCode: 'bad_input_args', error: 'from_node must be a node id' }
    }
    fromNodes = [a['from_node']]
  } else {
    return { ok: false, reasonCode: 'bad_input_args', error: `${name} needs from_nodes (or from_node)` }
  }
  // Upstream node ids build store keys: each must be a valid node id (the graph's rule).
  for (const from of fromNodes) {
    try {
      assertNodeId(from)
    } catch {
      return { ok: false, reasonCode: 'bad_input_args', error: `from_nodes: invalid node id ${JSON.stringify(from.slice(0, 200))}` }
    }
  }
  const poll = a['poll_ms']
  if (poll !== undefined && (typeof poll !== 'number' || !Number.isFinite(poll) || poll < 0)) {
    return { ok: false, reasonCode: 'bad_input_args', error: 'poll_ms must be a number >= 0' }
  }
  const spec: AdapterSpec = { name, fromNodes, pollMs: (poll as number | undefined) ?? options.defaultPollMs }
  if (name === PULL_RECHUNK) {
    const size = a['size']
    if (typeof size !== 'number' || !Number.isInteger(size) || size <= 0) {
      return { ok: false, reasonCode: 'bad_input_args', error: `rechunk size must be an integer > 0, got ${JSON.stringify(size)}` }
    }
    spec.size = size
    const key = a['meta_list_key']
    if (key !== undefined && key !== null) {
      if (typeof key !== 'string' || key.length === 0) {
        return { ok: false, reasonCode: 'bad_input_args', error: 'meta_list_key must be a non-empty string' }
      }
      spec.metaListKey = key
    } else if (options.strict) {
      return { ok: false, reasonCode: 'bad_input_args', error: 'rechunk without meta_list_key is refused by strictInputAdapters' }
    }
  }
  return { ok: true, spec }
}

/**
 * How far back an incremental read of a stream looks past the newest artifact seen: a partial
 * artifact may become visible after newer ones (a write retried, writes of one batch landing out
 * of order), stamped up to this long before them. Read this wide every STREAM_WIDE_EVERY_MS per
 * upstream; the reads in between start at the newest artifact seen (one attempt's partials are
 * written by one worker: its clock stamps them in order). Every read used to look back the full
 * minute: a stream shorter than that was listed whole at every poll (quadratic). A replaced
 * attempt (another worker, another clock) is read whole again, and an ended upstream once more.
 */
export const STREAM_SKEW_WINDOW_MS = 60_000
export const STREAM_WIDE_EVERY_MS = 5_000

export interface PullContext {
  store: Store
  clock: Clock
  taskId: string
  consumerNode: string
  epoch: number
  signal: AbortSignal
  maxBackoffMs: number
  /** Logs a warning of the consumer's run (an upstream meta without the list it reads). */
  warn?: (event: string, fields: Record<string, unknown>) => void
}

/**
 * A store call of the pull, retried through a short store outage as artifact writes are
 * (store-retry.ts); the run's cancel ends the wait. The first retried failure is logged.
 */
async function pullCall<T>(ctx: PullContext, call: string, fn: () => Promise<T>): Promise<{ value: T; retried: boolean }> {
  // A cancel ends the wait for a slow store (a listing on a loaded FerretDB takes seconds): the
  // handler sees it at once instead of after the call, past the worker's cancel grace.
  return retryingStore(() => unlessAborted(fn(), ctx.signal), {
    signal: ctx.signal,
    onRetry: (err) => ctx.warn?.('worker.pull_store_retry', { call, error: err.message, code: err.code }),
  })
}

/**
 * Claims of a call that was retried: a claim the store refuses may be the one the failed try
 * wrote (its reply lost), which would lose that batch for good; it is taken as this run's. (The
 * other way a claim of this attempt exists, an earlier run of the same attempt before a worker
 * restart, then reads that batch again: its BATCH_OK has the same dedup id, counted once.)
 */
function claimed(res: { value: boolean[]; retried: boolean }): boolean[] {
  return res.retried ? res.value.map(() => true) : res.value
}

/** Upstream artifacts as they appear, each claimed once for this consumer attempt. */
export async function* pullArtifacts(ctx: PullContext, spec: AdapterSpec): AsyncGenerator<ArtifactDoc> {
  for await (const x of pullStream(ctx, spec)) if (!('ended' in x)) yield x
}

/** An upstream whose stream is over: everything it wrote was yielded before this. */
interface UpstreamEnded {
  ended: string
}

/**
 * pullArtifacts, with a marker when an upstream's stream is over (its last artifact was yielded):
 * a rechunking reader then cuts that upstream's last, short chunk at once instead of when every
 * upstream ended.
 */
async function* pullStream(ctx: PullContext, spec: AdapterSpec): AsyncGenerator<ArtifactDoc | UpstreamEnded> {
  const done = new Set<string>()
  /** Upstreams whose end was seen (complete artifact, or ended without one): one full pass left. */
  const closing = new Set<string>()
  const ended = new Set<string>()
  /** Newest created_at seen per upstream: where the next incremental read starts. */
  const newest = new Map<string, number>()
  const seen = new Set<string>()
  /** Newest attempt seen per upstream: a replaced attempt's late partials are not read. */
  const attempt = new Map<string, number>()
  /** When each upstream was last read with the wide window (this worker's clock). */
  const wideAt = new Map<string, number>()
  let idle = 0
  while (done.size < spec.fromNodes.length) {
    let progressed = false
    for (const from of spec.fromNodes) {
      if (done.has(from)) continue
      // One listing per poll. While the upstream runs, only what is recent (a window wide enough for
      // clock skew between workers); once its end was seen, everything once more, so a partial that a
      // concurrent listing missed next to the complete marker is still read.
      const finalPass = closing.has(from)
      const last = newest.get(from)
      const now = ctx.clock.now()
      const wide = now - (wideAt.get(from) ?? Number.NEGATIVE_INFINITY) >= STREAM_WIDE_EVERY_MS
      if (wide) wideAt.set(from, now)
      const window = wide ? STREAM_SKEW_WINDOW_MS : 0
      const filter = { nodeId: from, ...(!finalPass && last !== undefined ? { createdAfter: Math.max(0, last - window) } : {}) }
      const { value: arts } = await pullCall(ctx, 'listArtifacts', () => ctx.store.listArtifacts(ctx.taskId, filter))
      let complete: ArtifactDoc | null = null
      let partialCount = 0
      const fresh: ArtifactDoc[] = []
      const before = attempt.get(from) ?? Number.NEGATIVE_INFINITY
      let top = before
      for (const art of arts) top = Math.max(top, art.attempt_epoch)
      attempt.set(from, top)
      // A newer attempt of the upstream may run on a worker whose clock is far from the previous
      // one's: its artifacts' times say nothing about the window read so far. Read it all again.
      const replaced = before !== Number.NEGATIVE_INFINITY && top > before
      for (const art of arts) {
        if (art.attempt_epoch < top) continue
        if (art.status === 'complete' && art.batch_uid === null) {
          if (complete === null || art.attempt_epoch > complete.attempt_epoch) complete = art
          continue
        }
        if (art.status !== 'partial' || art.batch_uid === null) continue
        partialCount++
        if (art.created_at > (newest.get(from) ?? Number.NEGATIVE_INFINITY)) newest.set(from, art.created_at)
        const uid = art.batch_uid
        const key = `${from}\u0000${uid}`
        if (seen.has(key)) continue
        seen.add(key)
        fresh.push(art)
      }
      // The new batches of this listing are claimed together (one round trip), then read in order.
      const claims = fresh.map((art) => ({ task_id: ctx.taskId, consumer_node: ctx.consumerNode, from_node: from, batch_uid: art.batch_uid as string, consumer_epoch: ctx.epoch }))
      const claimedAt = ctx.clock.now()
      const won = claims.length === 0 ? [] : claimed(await pullCall(ctx, 'claimStreamBatches', () => ctx.store.claimStreamBatches(claims, claimedAt)))
      if (replaced) newest.delete(from)
      for (let i = 0; i < fresh.length; i++) {
        if (!won[i]) continue
        progressed = true
        yield fresh[i] as ArtifactDoc
      }
      if (!finalPass) {
        if (complete !== null || ended.has(from)) {
          closing.add(from)
          progressed = true
        }
        continue
      }
      done.add(from)
      progressed = true
      // A worker's complete artifact only marks the end of its stream (its meta is the worker's own
      // summary, e.g. `{ batches: 0 }`): an upstream worker without partials is an empty input. A
      // coordinator function (no worker_id) has no partials at all: its complete artifact is its
      // output, so it is read as one item.
      if (complete !== null && partialCount === 0 && complete.worker_id === null && Object.keys(complete.meta).length > 0) {
        const claim = { task_id: ctx.taskId, consumer_node: ctx.consumerNode, from_node: from, batch_uid: '__complete__', consumer_epoch: ctx.epoch }
        const claimedAt = ctx.clock.now()
        const [won] = claimed(await pullCall(ctx, 'claimStreamBatch', async () => [await ctx.store.claimStreamBatch(claim, claimedAt)]))
        if (won === true) yield complete
      }
      yield { ended: from }
    }
    if (done.size >= spec.fromNodes.length) break
    if (progressed) {
      idle = 0
      continue
    }
    // Nothing new: an upstream that ended without a complete artifact (failed, cancelled, skipped)
    // will never write more; it is closed after one more full pass. One that finished wrote its
    // complete artifact, which the incremental reads may have missed (its writer's clock behind the
    // one whose artifacts were read so far, by more than the window): one full pass reads it.
    let ending = false
    for (const from of spec.fromNodes) {
      if (done.has(from) || closing.has(from) || ended.has(from)) continue
      const { value: view } = await pullCall(ctx, 'getRunView', () => ctx.store.getRunView(ctx.taskId, from))
      const st = view?.node?.status
      // A task or upstream node the store does not know (a forged or stray START, a wiped store)
      // will never write: the input ends rather than holding this run's slot for ever.
      if (view === null || view.node === null || st === 'failed' || st === 'cancelled' || st === 'skipped') {
        ended.add(from)
        ending = true
      } else if (st === 'finished') {
        closing.add(from)
        ending = true
      }
    }
    if (ending) continue
    idle++
    const wait = Math.min(ctx.maxBackoffMs, spec.pollMs * 2 ** Math.min(idle - 1, 3))
    await ctx.clock.sleep(Math.max(1, wait), ctx.signal)
  }
}

/** Batches produced by an adapter. */
export async function* adapterBatches(ctx: PullContext, spec: AdapterSpec): AsyncGenerator<Batch> {
  if (spec.name === PULL_FROM_ARTIFACTS) {
    for await (const art of pullStream(ctx, spec)) {
      if ('ended' in art) continue
      yield {
        batch_uid: `${art.node_id}:${art.batch_uid ?? 'complete'}`,
        payload: { from_node: art.node_id, batch_uid: art.batch_uid, meta: art.meta },
      }
    }
    return
  }
  // Each upstream is sliced on its own: its items come in its order whatever the interleaving of
  // the upstreams' batches, so a chunk id names the same items in every attempt (one shared
  // buffer filled in arrival order gave a retried consumer other items under the same ids, and its
  // streaming readers, which skip the ids they saw, lost some and read others twice).
  const size = spec.size as number
  const several = spec.fromNodes.length > 1
  const buffers = new Map<string, unknown[]>()
  const counts = new Map<string, number>()
  const unlisted = new Set<string>()
  const chunk = (from: string, items: unknown[]): Batch => {
    const index = counts.get(from) ?? 0
    counts.set(from, index + 1)
    return several
      ? { batch_uid: `${ctx.consumerNode}:${from}:chunk-${index}`, payload: { items, size: items.length, from_node: from } }
      : { batch_uid: `${ctx.consumerNode}:chunk-${index}`, payload: { items, size: items.length } }
  }
  for await (const art of pullStream(ctx, spec)) {
    if ('ended' in art) {
      // That upstream wrote all it will: its last, short chunk goes now (its items are final, so
      // the chunk is the same in every attempt), not when the slowest upstream ends.
      const rest = buffers.get(art.ended)
      if (rest !== undefined && rest.length > 0) yield chunk(art.ended, rest)
      buffers.delete(art.ended)
      continue
    }
    let items: unknown[]
    if (spec.metaListKey !== undefined) {
      const list = art.meta[spec.metaListKey]
      items = Array.isArray(list) ? list : []
      // Adds no item: said once per upstream (a misspelt key would otherwise read as empty batches).
      if (!Array.isArray(list) && !unlisted.has(art.node_id)) {
        unlisted.add(art.node_id)
        ctx.warn?.('worker.input_meta_list_missing', { from_node: art.node_id, batch_uid: art.batch_uid, meta_list_key: spec.metaListKey, found: list === undefined ? 'nothing' : list === null ? 'null' : typeof list })
      }
    } else items = [art.meta]
    let buffer = buffers.get(art.node_id) ?? []
    for (const item of items) {
      buffer.push(item)
      if (buffer.length === size) {
        yield chunk(art.node_id, buffer)
        buffer = []
      }
    }
    buffers.set(art.node_id, buffer)
  }
  for (const from of spec.fromNodes) {
    const rest = buffers.get(from)
    if (rest !== undefined && rest.length > 0) yield chunk(from, rest)
  }
}
