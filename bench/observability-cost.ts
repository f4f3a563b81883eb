/**
 * The observability work of one node run, replayed in a tight loop (part of `--observability`):
 * what the coordinator and the worker do for a node of the chain bench — a task created and its
 * journal entries (dispatch, acceptance, a batch, the end), three status events received and
 * applied (the acceptance carrying the run's traceparent), the START received by the worker, its
 * run span opened, three status events built and the run closed, seven log records and two
 * store calls. The settings (and the same loop without observability) are timed in turns, in
 * short chunks, many rounds; a setting's cost is its fastest chunk less the fastest bare one, so
 * the load of a shared machine barely moves it (a disturbed chunk is never the fastest). Divided by
 * the chain bench's CPU per node run with observability off it gives the overhead independently of
 * the wall-time noise of the full runs.
 */
import { BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, type ReadableSpan, type SpanExporter, TraceIdRatioBasedSampler } from '@opentelemetry/sdk-trace-base'
import { type BusMessage, CoordinatorObservability, MemoryStore, type ObservabilityOptions, SystemClock, WorkerObservability, createLogger } from 'flowkit'
import { round } from './stats.ts'

const dropping: SpanExporter = {
  export(_spans: ReadableSpan[], done: (r: { code: 0 }) => void) {
    done({ code: 0 })
  },
  async shutdown() {},
}

export function provider(ratio: number | null): BasicTracerProvider {
  return new BasicTracerProvider({
    ...(ratio === null ? {} : { sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) }) }),
    spanProcessors: [new BatchSpanProcessor(dropping, { maxQueueSize: 65_536, maxExportBatchSize: 2048 })],
  })
}

function nodeState(status: string, accepted: number | null): never {
  return { node_id: 'n1', type: 'a', status, attempt_epoch: 1, lease: { worker_id: 'w1', lease_id: 'l1' }, stats: {}, last_error: null, failures: 0, next_retry_at_ms: null, dispatched_at_ms: 1, accepted_at_ms: accepted, last_event_at_ms: null, finished_at_ms: null, has_output: true, end_reason: null } as never
}

const KINDS = ['TASK_ACCEPTED', 'BATCH_OK', 'TASK_DONE'] as const
/** Status event values (the ids in them do not matter here). */
const ENVELOPES = KINDS.map((kind) =>
  JSON.stringify({ v: 1, msg_type: 'event', role: 'worker', corr_id: 'c', dedup_id: 'd'.repeat(40), task_id: 'task', node_id: 'n1', step_type: 'a', attempt_epoch: 1, ts_ms: 1, payload: { worker_id: 'w1', kind, batch_uid: 'b0', metrics: { count: 1 }, artifacts_ref: null } }),
)
const START = '{"v":1,"msg_type":"cmd","role":"coordinator","task_id":"task","node_id":"n1","attempt_epoch":1,"payload":{"cmd":"TASK_START"}}'

/** The loop of one node run under `observability` (`one`), and the same without it (`bare`). */
export async function nodeLoops(observability: ObservabilityOptions): Promise<{ one: () => Promise<void>; bare: () => Promise<void>; stop: () => Promise<void> }> {
  const clock = new SystemClock()
  const c = CoordinatorObservability.create({ observability }, clock) as CoordinatorObservability
  const w = WorkerObservability.create({ observability }, clock) as WorkerObservability
  const base = createLogger({ level: 'warn' })
  const clog = c.wrapLogger(base.child({ component: 'coordinator' }))
  const wlog = w.wrapLogger(base.child({ component: 'worker' }))
  const store = new MemoryStore()
  await store.init()
  const cstore = c.wrapStore(store)
  const wstore = w.wrapStore(store)
  // The intake parses the records and gives their kinds back (its own work, not observability's).
  const applied = async (kinds?: Array<string | undefined>): Promise<void> => {
    if (kinds !== undefined) KINDS.forEach((kind, i) => {
      kinds[i] = kind
    })
  }
  let seq = 0
  const one = async (): Promise<void> => {
    const id = `task${seq++}`
    const key = `${id}:n1`
    c.taskCreated(id, 1)
    clog.info('task.created', { task_id: id, nodes: 1 })
    c.journal({ task_id: id, seq: 1, at_ms: 2, writer: 'x', events: [], nodes: [nodeState('running', null)] })
    clog.info('node.dispatched', { task_id: id, node_id: 'n1', attempt_epoch: 1, type: 'a' })
    const startHeaders = c.commandHeaders({ key, task_id: id })
    const cmd: BusMessage = { topic: 'cmd', key, value: START, partition: 0, offset: 0, timestamp: clock.now(), ...(startHeaders === undefined ? {} : { headers: startHeaders }) }
    w.commands('a', [cmd])
    const run = w.startRun('a', { info: { taskId: id, nodeId: 'n1', stepType: 'a', attemptEpoch: 1, workerId: 'w1', leaseId: 'l1' }, startHeaders } as never)
    const msgs: BusMessage[] = []
    KINDS.forEach((kind, i) => {
      const headers = run.status({ kind, batch_uid: 'b0', metrics: { count: 1 } })
      msgs.push({ topic: 'status', key, value: ENVELOPES[i] as string, partition: 0, offset: 0, timestamp: clock.now(), ...(headers === undefined ? {} : { headers }) })
    })
    wlog.info('node.accepted', { task_id: id, node_id: 'n1', attempt_epoch: 1 })
    wlog.debug('node.batch_ok', { task_id: id, node_id: 'n1', attempt_epoch: 1, batch_uid: 'b0' })
    wlog.info('node.done', { task_id: id, node_id: 'n1', attempt_epoch: 1, batches: 1 })
    run.end()
    await c.statusBatch(msgs, applied)
    c.journal({ task_id: id, seq: 2, at_ms: 3, writer: 'x', events: [], nodes: [nodeState('running', 2)] })
    c.journal({ task_id: id, seq: 3, at_ms: 4, writer: 'x', events: [], nodes: [nodeState('running', 2)], batches: [['n1', 'b0', 1, { count: 1 }]] })
    c.journal({ task_id: id, seq: 4, at_ms: 5, writer: 'x', events: [], nodes: [nodeState('finished', 2)], task: { status: 'finished' } })
    clog.info('node.done', { task_id: id, node_id: 'n1', attempt_epoch: 1 })
    await cstore.getTask(id)
    await wstore.getTask(id)
  }
  // The same loop with the raw logger and store: what the node costs without observability.
  const bare = async (): Promise<void> => {
    const id = `task${seq++}`
    const key = `${id}:n1`
    const cmd: BusMessage = { topic: 'cmd', key, value: START, partition: 0, offset: 0, timestamp: clock.now() }
    const msgs: BusMessage[] = ENVELOPES.map((value) => ({ topic: 'status', key, value, partition: 0, offset: 0, timestamp: clock.now() }))
    if (cmd.value.length + msgs.length === 0) throw new Error('unreachable')
    base.info('task.created', { task_id: id, nodes: 1 })
    base.info('node.dispatched', { task_id: id, node_id: 'n1', attempt_epoch: 1, type: 'a' })
    base.info('node.accepted', { task_id: id, node_id: 'n1', attempt_epoch: 1 })
    base.debug('node.batch_ok', { task_id: id, node_id: 'n1', attempt_epoch: 1, batch_uid: 'b0' })
    base.info('node.done', { task_id: id, node_id: 'n1', attempt_epoch: 1, batches: 1 })
    base.info('node.done', { task_id: id, node_id: 'n1', attempt_epoch: 1 })
    await applied()
    await store.getTask(id)
    await store.getTask(id)
  }
  return { one, bare, stop: () => c.stop() }
}

/** µs per node run of one chunk of `n` runs of `fn`. */
async function chunk(fn: () => Promise<void>, n: number): Promise<number> {
  const t0 = performance.now()
  for (let i = 0; i < n; i++) await fn()
  return ((performance.now() - t0) * 1000) / n
}

/**
 * µs of observability work per node run of the default setting, 10 % sampling and every span
 * recorded: the fastest of `rounds` chunks of `n` runs of each, less the fastest bare chunk.
 */
export async function observabilityCostPerNode(n = 500, rounds = 60): Promise<Record<string, number>> {
  const sampled = provider(0.1)
  const full = provider(null)
  const settings = { default: await nodeLoops({}), sampled: await nodeLoops({ tracing: sampled }), full: await nodeLoops({ tracing: full }) }
  const bare = settings.default.bare
  const best = { bare: Number.POSITIVE_INFINITY, default: Number.POSITIVE_INFINITY, sampled: Number.POSITIVE_INFINITY, full: Number.POSITIVE_INFINITY }
  const loops: [keyof typeof best, () => Promise<void>][] = [
    ['bare', bare],
    ['default', settings.default.one],
    ['sampled', settings.sampled.one],
    ['full', settings.full.one],
  ]
  for (const [, fn] of loops) for (let i = 0; i < 3; i++) await chunk(fn, n) // warm-up
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < loops.length; i++) {
      const [name, fn] = loops[(i + r) % loops.length] as [keyof typeof best, () => Promise<void>]
      best[name] = Math.min(best[name], await chunk(fn, n))
    }
  }
  for (const l of Object.values(settings)) await l.stop()
  for (const p of [sampled, full]) await p.shutdown()
  const cost = (name: 'default' | 'sampled' | 'full'): number => round(Math.max(0, best[name] - best.bare), 2)
  return {
    default_obs_us_per_node_run: cost('default'),
    sampled_obs_us_per_node_run: cost('sampled'),
    full_obs_us_per_node_run: cost('full'),
    bare_us_per_node_run: round(best.bare, 2),
  }
}
