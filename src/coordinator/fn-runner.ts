/**
 * Runs coordinator functions (`coordinator_fn` nodes) once the state that started them is
 * durable, one at a time per task (each sees the variables the previous one wrote). The result is
 * applied as ONE transition — complete artifact written first, then the node finished together
 * with its variables and stats patches in the same journal entry — so a crash re-runs the function
 * (the node is still running) instead of applying its effect twice. A retryable error (the store
 * is unavailable) is retried with backoff for `fnRetryBudgetMs`, then counts as a transient
 * failure of the attempt; any other error fails the node permanently.
 *
 * A function is awaited only while its attempt counts: once the attempt timed out (its retry is
 * dispatched), is cancelled, its task ended or the coordinator stops, the task's next function runs
 * and its `signal` is aborted, even if the call never returns (a hung call, a store request without
 * an answer). A cancelled function ends `cancelled` then, not at the cancel deadline.
 */
import { ErrorCode, FlowkitError, errorMessage, isFlowkitError } from '../errors.ts'
import { type Logger, errorForNode } from '../log.ts'
import type { Clock } from '../ports/clock.ts'
import type { Store } from '../ports/store.ts'
import type { VersionedTask } from '../model/journal.ts'
import { cutReasonCode } from '../protocol/messages.ts'
import type { Engine } from './engine.ts'
import { BUILTIN_FUNCTIONS, type CoordinatorFn, type CoordinatorFnResult } from './functions.ts'
import { checkFnResult } from './fn-result.ts'
import type { TaskRuntime } from './runtime.ts'
import { batchCountsOf, taskDocOf } from './runtime-doc.ts'

/** How often a running function's attempt is looked at (does it still count?). */
const WATCH_MS = 50

export class FnRunner {
  readonly #engine: Engine
  readonly #store: Store
  readonly #clock: Clock
  readonly #log: Logger
  readonly #functions: Record<string, CoordinatorFn>
  readonly #budgetMs: number
  #stopped = false

  constructor(engine: Engine, store: Store, clock: Clock, log: Logger, functions: Record<string, CoordinatorFn>, budgetMs = 60_000) {
    this.#engine = engine
    this.#store = store
    this.#clock = clock
    this.#log = log
    this.#functions = functions
    this.#budgetMs = budgetMs
  }

  stop(): void {
    this.#stopped = true
  }

  start(): void {
    this.#stopped = false
  }

  run(rt: TaskRuntime, ord: number): void {
    const epoch = rt.node(ord).attempt_epoch
    rt.fnChain = rt.fnChain.then(() => this.#watched(rt, ord, epoch)).catch((err: unknown) => {
      const error = errorForNode(errorMessage(err))
      this.#log.error('node.fn_crashed', { task_id: rt.id, node_id: rt.spec(ord).node_id, error })
      // Whatever failed here (a defect), the node does not stay running: it ends, as a cancelled
      // or a failed function does.
      try {
        if (!this.#current(rt, ord, epoch)) return
        if (rt.node(ord).status === 'cancelling') this.#engine.apply(rt, ord, { kind: 'fn_done', stats: {} })
        else this.#engine.apply(rt, ord, { kind: 'fn_failed', reasonCode: 'coordinator_fn_error', error, permanent: true })
      } catch (again: unknown) {
        this.#log.error('node.fn_crashed', { task_id: rt.id, node_id: rt.spec(ord).node_id, error: errorForNode(errorMessage(again)) })
      }
    })
  }

  #current(rt: TaskRuntime, ord: number, epoch: number): boolean {
    const n = rt.node(ord)
    return !this.#stopped && this.#engine.tasks.get(rt.id) === rt && n.attempt_epoch === epoch && (n.status === 'running' || n.status === 'cancelling')
  }

  /** #exec until its attempt no longer counts (a cancelled one ends cancelled then). */
  async #watched(rt: TaskRuntime, ord: number, epoch: number): Promise<void> {
    const abort = new AbortController()
    let timer: ReturnType<typeof setInterval> | undefined
    const left = new Promise<void>((resolve) => {
      timer = setInterval(() => {
        if (this.#current(rt, ord, epoch) && rt.node(ord).status !== 'cancelling') return
        if (this.#current(rt, ord, epoch)) {
          const spec = rt.spec(ord)
          this.#log.info('node.fn_abandoned', { task_id: rt.id, node_id: spec.node_id, attempt_epoch: epoch, fn: spec.io.fn ?? '' })
          this.#engine.apply(rt, ord, { kind: 'fn_done', stats: {} }, `fn_done ${spec.node_id}@${epoch}`)
        }
        abort.abort(new Error(`attempt ${epoch} of ${rt.spec(ord).node_id} no longer counts`))
        resolve()
      }, WATCH_MS)
      timer.unref?.()
    })
    try {
      await Promise.race([this.#exec(rt, ord, epoch, abort.signal), left])
    } finally {
      clearInterval(timer)
    }
  }

  async #exec(rt: TaskRuntime, ord: number, epoch: number, signal: AbortSignal): Promise<void> {
    const spec = rt.spec(ord)
    const name = spec.io.fn ?? ''
    const ids = { task_id: rt.id, node_id: spec.node_id, attempt_epoch: epoch }
    const firstFailure = { at: 0 }
    this.#log.info('node.dispatched', { ...ids, type: spec.type, fn: name })
    for (let attempt = 1; ; attempt++) {
      if (!this.#current(rt, ord, epoch)) return
      if (rt.node(ord).status === 'cancelling') {
        this.#engine.apply(rt, ord, { kind: 'fn_done', stats: {} })
        return
      }
      if (attempt === 1) {
        rt.fnStartedAt.set(ord, { epoch, at: this.#clock.now() })
        this.#engine.armNode(rt, ord)
      }
      try {
        const fn = this.#functions[name]
        if (fn === undefined) throw new FlowkitError(ErrorCode.UnknownCoordinatorFn, `unknown coordinator function ${name}`)
        const now = this.#clock.now()
        const returned: unknown = await fn({ task: functionView(rt), node: spec, args: spec.io.fn_args ?? {}, store: this.#store, now, log: this.#log.child(ids), signal })
        if (signal.aborted) return // left behind: its attempt no longer counts, it writes nothing
        // A registered function's result is checked (fn-result.ts); the built-ins' are built to the rules.
        const res = fn === BUILTIN_FUNCTIONS[name] ? (returned as CoordinatorFnResult) : checkFnResult(name, returned)
        await this.#store.upsertArtifact(
          { task_id: rt.id, node_id: spec.node_id, batch_uid: null, status: 'complete', meta: res.meta ?? {}, attempt_epoch: epoch, worker_id: null },
          this.#clock.now(),
        )
        if (!this.#current(rt, ord, epoch)) return
        if (rt.node(ord).status === 'cancelling') {
          // Cancelled while it ran: it ends cancelled, and its effects are not applied (a node
          // that says cancelled must not have changed the task's variables or other nodes' stats).
          this.#engine.apply(rt, ord, { kind: 'fn_done', stats: {} }, `fn_done ${spec.node_id}@${epoch}`)
          return
        }
        if (res.vars !== undefined) rt.change({ vars: res.vars })
        for (const [target, stats] of Object.entries(res.nodeStats ?? {})) {
          const t = rt.ord.get(target)
          if (t !== undefined) this.#engine.apply(rt, t, { kind: 'stats_patch', stats }, `stats ${target} by ${spec.node_id}`)
        }
        this.#engine.apply(rt, ord, { kind: 'fn_done', stats: res.stats ?? {} }, `fn_done ${spec.node_id}@${epoch}`)
        return
      } catch (err) {
        // Kept in the node's last_error: masked and bounded, as a worker's are.
        const error = errorForNode(errorMessage(err))
        if (isFlowkitError(err) && err.retryable) {
          const now = this.#clock.now()
          if (firstFailure.at === 0) firstFailure.at = now
          if (now - firstFailure.at < this.#budgetMs) {
            const delay = Math.min(2000, 50 * 2 ** (attempt - 1))
            this.#log.warn('node.fn_retry', { ...ids, fn: name, attempt, delay_ms: delay, error })
            await new Promise((r) => setTimeout(r, delay))
            continue
          }
          if (!this.#current(rt, ord, epoch)) return
          this.#log.error('node.fn_error', { ...ids, fn: name, error })
          this.#engine.apply(rt, ord, { kind: 'fn_failed', reasonCode: 'coordinator_fn_unavailable', error, permanent: false })
          return
        }
        if (!this.#current(rt, ord, epoch)) return
        const reason = fnFailureReason(err)
        this.#log.error('node.fn_error', { ...ids, fn: name, error })
        this.#engine.apply(rt, ord, { kind: 'fn_failed', reasonCode: reason, error, permanent: true })
        return
      }
    }
  }
}

/**
 * The reason code of a function's error: a flowkit error's code, a non-empty string `reasonCode`
 * of what it threw (a PermanentError's; clipped), else `coordinator_fn_error` — also for a thrown
 * `null` or `undefined`, which has no fields to read (reading one threw inside this handler and
 * left the node running for ever).
 */
export function fnFailureReason(err: unknown): string {
  if (err instanceof FlowkitError) return err.code.toLowerCase()
  const code = err !== null && typeof err === 'object' ? (err as { reasonCode?: unknown }).reasonCode : undefined
  return typeof code === 'string' && code !== '' ? cutReasonCode(code) : 'coordinator_fn_error'
}

/**
 * The task as a coordinator function reads it: a copy (the graph aside, which is frozen), so a
 * function that changes what it is given in place (its variables, a node's state, batch metrics)
 * changes nothing of the task: the runtime's state, the caches keyed by the variables' identity
 * (what a START measures and a worker copies) and the store's documents stay as they were. A
 * function changes the task by what it returns (`vars`, `stats`, `nodeStats`).
 *
 * `nodes` and `batches` are copied when first read: most functions read neither (vars.*,
 * merge.generic), and copying every node's state for each function made a chain of N functions
 * cost N² (1,000 took 3.4 s, 5,000 did not end).
 */
function functionView(rt: TaskRuntime): VersionedTask {
  // The node states as they are now (each state is replaced, never changed in place, by a
  // transition): the record keyed by node id is built only if read.
  const states = rt.nodes.slice()
  const specs = rt.specs
  const { graph, nodes: _none, ...rest } = taskDocOf(rt, 'none', false)
  const view = { ...(copyJson(rest) as Omit<VersionedTask, 'graph' | 'nodes'>), graph } as VersionedTask
  let copiedNodes: VersionedTask['nodes'] | undefined
  Object.defineProperty(view, 'nodes', {
    enumerable: true,
    configurable: true,
    get: () => (copiedNodes ??= copyJson(Object.fromEntries(specs.map((sp, i) => [sp.node_id, states[i]]))) as VersionedTask['nodes']),
    set: (v: VersionedTask['nodes']) => {
      copiedNodes = v
    },
  })
  let copiedBatches: unknown
  Object.defineProperty(view, 'batches', {
    enumerable: true,
    configurable: true,
    get: () => (copiedBatches ??= copyJson(batchCountsOf(rt))),
    set: (v: unknown) => {
      copiedBatches = v
    },
  })
  return view
}

function copyJson(v: unknown): unknown {
  return JSON.parse(JSON.stringify(v))
}
