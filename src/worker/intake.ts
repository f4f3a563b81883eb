/**
 * Command intake: `cmd.{role}.v1` with bounded concurrency. A start takes a slot (the command
 * subscriptions pause while none is free), is dropped when already taken or no longer wanted, and
 * is handed to the run manager; a cancel reaches the run it names.
 */
import { spanContextFromHeaders } from '../observability/propagation.ts'
import { traceFieldsOf } from '../observability/logger.ts'
import { ErrorCode, FlowkitError, errorMessage } from '../errors.ts'
import type { BusMessage, Subscription } from '../ports/bus.ts'
import { parkPoison } from '../util/guard.ts'
import type { RunView } from '../ports/store.ts'
import { type CmdTaskStart, type Envelope, messageKey } from '../protocol/messages.ts'
import { envelopeOf, parseCommand } from '../protocol/parse.ts'
import { attemptKey, invalidIds, isObj, type WorkerCore } from './core.ts'
import { claimHolder } from '../ports/store-rules.ts'
import type { RunInfo } from './handler.ts'
import type { RunManager } from './runs.ts'
import { ClaimBatcher } from './claims.ts'
import { heldByOlderInstance } from './instance.ts'
import { Slots } from './slots.ts'
import { emitStatus } from './status.ts'
import { WORKER_RESTARTED_REASON, WORKER_STOPPING_REASON } from '../protocol/messages.ts'
import { RecentSet } from '../util/recent.ts'
import { isWellFormed } from '../util/text.ts'

export class CommandIntake {
  readonly #core: WorkerCore
  readonly #runs: RunManager
  readonly #slots: Slots
  /** Starts already taken (task:node:epoch), so a duplicated command is not run twice. */
  readonly #seen = new RecentSet<string>(10_000)
  /** Starts being checked and claimed (task:node:epoch), until they settle: a copy arriving meanwhile waits or is dropped. */
  readonly #starting = new Map<string, Promise<void>>()
  /** The command subscriptions, paused while no slot is free. */
  subs: Subscription[] = []
  /** Told the slots held by runs after each change (the load report to the coordinators). */
  onLoad: ((running: number) => void) | null = null

  constructor(core: WorkerCore, runs: RunManager) {
    this.#core = core
    this.#runs = runs
    this.#slots = new Slots(core.config.concurrency)
  }

  /** Fails the commands waiting for a slot (the worker is stopping: they go to another member). */
  rejectWaiters(err: unknown): void {
    this.#slots.rejectWaiters(err)
  }

  /** Gives a slot back and resumes fetching commands if one is free. */
  releaseSlot(): void {
    this.#slots.release()
    if (this.#slots.free > 0 && !this.#core.stopping) for (const s of this.subs) s.resume()
    this.onLoad?.(this.running)
  }

  /**
   * Slots held by runs now (launched, not ended). A START being checked holds one for a moment:
   * not counted, or a worker that only looks at STARTs it will not run would say it is full.
   */
  get running(): number {
    return this.#core.runs.size
  }

  /** Forgets a taken start, so that a resent command runs it again. */
  forget(seenKey: string): void {
    this.#seen.delete(seenKey)
  }

  /**
   * A batch of one partition's commands. The commands of one node (one key) are handled in
   * order, those of different nodes at once, so the claims of many starts share one store round
   * trip (ClaimBatcher) instead of queueing behind each other: with one command at a time a
   * partition took at most one start per round trip. The batch resolves (its offsets are
   * committed) once every command in it was handled; when one fails for a reason that passes, the
   * later commands of its node are not handled and the batch fails after the others settled (it
   * is delivered again: the starts already taken are recognised as duplicates).
   */
  async onCommands(role: string, ms: BusMessage[]): Promise<void> {
    if (ms.length === 1) return this.#guarded(role, ms[0] as BusMessage)
    const tails = new Map<string, Promise<void>>()
    const all: Promise<void>[] = []
    for (const m of ms) {
      const key = m.key ?? ''
      const before = tails.get(key)
      const p = before === undefined ? this.#guarded(role, m) : before.then(() => this.#guarded(role, m))
      tails.set(key, p)
      all.push(p)
    }
    let failure: unknown = null
    for (const p of all) {
      await p.catch((err: unknown) => {
        failure ??= err
      })
    }
    if (failure !== null) throw failure
  }

  /** One command; a failure that does not pass is logged and the command skipped (parked). */
  #guarded(role: string, m: BusMessage): Promise<void> {
    return parkPoison((x) => this.onCommand(role, x), this.#core.log)(m)
  }

  async onCommand(role: string, m: BusMessage): Promise<void> {
    const log = this.#core.log
    // The coordinator's own object when it is in this process (memory bus), else the text parsed.
    const parsed = envelopeOf(m)
    if (!parsed.ok) {
      log.warn('bus.message_malformed', { topic: m.topic, partition: m.partition, offset: m.offset, error: parsed.error })
      return
    }
    const env = parsed.value
    const bad = invalidIds(env)
    if (bad !== null) {
      // A forged or corrupt command: its ids would build store keys. Skipped (the offset is
      // committed), so it neither runs nor blocks the partition.
      log.warn('worker.command_invalid_ids', {
        topic: m.topic,
        partition: m.partition,
        offset: m.offset,
        task_id: env.task_id.slice(0, 200),
        node_id: env.node_id.slice(0, 200),
        error: bad,
      })
      await this.#refuseIds(role, env, bad)
      return
    }
    const cmd = parseCommand(env.payload)
    if (env.msg_type !== 'cmd' || env.role !== 'coordinator' || !cmd.ok) {
      log.warn('bus.message_malformed', {
        topic: m.topic,
        offset: m.offset,
        task_id: env.task_id,
        node_id: env.node_id,
        error: !cmd.ok ? cmd.error : env.msg_type !== 'cmd' ? `unexpected msg_type ${env.msg_type}` : `a command from role ${JSON.stringify(env.role)}, not the coordinator`,
      })
      return
    }
    if (env.step_type !== role) {
      log.warn('worker.wrong_role', { task_id: env.task_id, node_id: env.node_id, step_type: env.step_type, role })
      return
    }
    switch (cmd.value.cmd) {
      case 'TASK_START':
        await this.#onStart(role, env, m.decoded === undefined ? cmd.value : ownInputs(cmd.value), m.headers)
        return
      case 'TASK_CANCEL': {
        const run = this.#core.runs.get(messageKey(env.task_id, env.node_id))
        if (run && run.info.attemptEpoch === env.attempt_epoch) this.#runs.cancel(run, cmd.value.reason)
        else {
          log.debug('worker.cancel_unknown_run', { task_id: env.task_id, node_id: env.node_id, attempt_epoch: env.attempt_epoch })
          this.#core.cancelledEarly.add(attemptKey(env.task_id, env.node_id, env.attempt_epoch))
        }
        return
      }
      default:
        log.info('worker.command_ignored', { task_id: env.task_id, node_id: env.node_id, cmd: cmd.value.cmd })
    }
  }

  /**
   * A START this worker cannot run for its ids (a seed coordinator accepts node ids such as
   * `extract.v2`, which build no store key here): it fails the attempt permanently on the bus
   * (`invalid_ids`), so its coordinator learns at once rather than when the lease expires. Only
   * for a well-formed START from a coordinator for this role, with ids that can travel back.
   */
  async #refuseIds(role: string, env: Envelope, why: string): Promise<void> {
    const cmd = parseCommand(env.payload)
    if (!cmd.ok || cmd.value.cmd !== 'TASK_START' || env.msg_type !== 'cmd' || env.role !== 'coordinator' || env.step_type !== role) return
    if (!isWellFormed(env.task_id) || !isWellFormed(env.node_id)) return
    const info: RunInfo = { taskId: env.task_id, nodeId: env.node_id, stepType: role, attemptEpoch: env.attempt_epoch, workerId: this.#core.workerId, leaseId: '' }
    await emitStatus(this.#core, info, { kind: 'TASK_FAILED', reason_code: 'invalid_ids', permanent: true, error: `this worker cannot run a node with these ids: ${why}` }, { kind: 'TASK_FAILED' })
  }

  /**
   * A START a coordinator steered to this worker by name (signals topic; coordinator/steer.ts): it
   * waits behind a busy worker's partition. Run at once if a slot is free; otherwise ignored (the
   * coordinator looks for a free slot again later, and the original is still in its topic).
   */
  async onSteered(env: Envelope, headers: Readonly<Record<string, string>> | undefined): Promise<void> {
    const core = this.#core
    const ids = { task_id: env.task_id, node_id: env.node_id, attempt_epoch: env.attempt_epoch }
    const cmd = parseCommand(env.payload)
    const bad = invalidIds(env)
    if (!cmd.ok || cmd.value.cmd !== 'TASK_START' || env.role !== 'coordinator' || bad !== null || !core.roles.includes(env.step_type)) {
      core.log.warn('bus.message_malformed', { ...ids, error: `a steered START this worker cannot take: ${!cmd.ok ? cmd.error : bad ?? (env.role !== 'coordinator' ? `from role ${JSON.stringify(env.role)}` : `role ${JSON.stringify(env.step_type)} not served here`)}` })
      return
    }
    if (this.#slots.free === 0 || core.stopping) {
      core.log.debug('worker.steer_declined', { ...ids, why: core.stopping ? 'stopping' : 'no free slot' })
      return
    }
    core.log.debug('worker.start_steered', ids)
    try {
      await this.#onStart(env.step_type, env, cmd.value, headers, true)
    } catch (err) {
      // Not retried here (the signals topic carries cancels too: a store outage must not hold
      // them up): the original still waits in its command topic, and the coordinator steers again.
      core.log.debug('worker.steer_declined', { ...ids, why: errorMessage(err) })
    }
  }

  /**
   * One copy of a start at a time: a steered copy arriving while another copy is being checked is
   * dropped (that one goes on); the command topic's copy arriving while a steered one is checked
   * waits for it to settle, then is looked at again (a duplicate if it was taken; if it failed,
   * this one is still here to be taken).
   */
  async #onStart(role: string, env: Envelope, cmd: CmdTaskStart, headers: Readonly<Record<string, string>> | undefined, steered = false): Promise<void> {
    const seenKey = attemptKey(env.task_id, env.node_id, env.attempt_epoch)
    for (let other = this.#starting.get(seenKey); other !== undefined; other = this.#starting.get(seenKey)) {
      if (steered) {
        this.#core.log.debug('worker.start_duplicate', { task_id: env.task_id, node_id: env.node_id, attempt_epoch: env.attempt_epoch })
        return
      }
      await other.catch(() => undefined)
    }
    const p = this.#start(role, env, cmd, headers, seenKey)
    this.#starting.set(seenKey, p)
    try {
      await p
    } finally {
      if (this.#starting.get(seenKey) === p) this.#starting.delete(seenKey)
    }
  }

  async #start(role: string, env: Envelope, cmd: CmdTaskStart, headers: Readonly<Record<string, string>> | undefined, seenKey: string): Promise<void> {
    const core = this.#core
    const ids = { task_id: env.task_id, node_id: env.node_id, attempt_epoch: env.attempt_epoch }
    if (this.#seen.has(seenKey) || core.runs.get(messageKey(env.task_id, env.node_id))?.info.attemptEpoch === env.attempt_epoch) {
      core.log.debug('worker.start_duplicate', ids)
      return
    }
    // A stopping worker takes no new start (it stays uncommitted for another member), and never
    // waits for a slot while its subscriptions close.
    if (core.stopping) throw new FlowkitError(ErrorCode.Closed, 'worker stopping')
    if (this.#slots.free === 0) {
      // Backpressure: stop fetching until a slot frees; the command waits, it is never dropped.
      for (const s of this.subs) s.pause()
      // Before the run (and its span) exists: the trace of the coordinator's attempt the START carries.
      const sc = spanContextFromHeaders(headers)
      core.log.debug('worker.at_capacity', sc === undefined ? ids : { ...ids, ...traceFieldsOf(sc) })
    }
    // Checked again only after waiting for a slot: a start taken at once cannot have been seen since.
    const waited = !this.#slots.tryAcquire()
    if (waited) await this.#slots.acquire()
    let handedOver = false
    try {
      if (core.stopping) throw new FlowkitError(ErrorCode.Closed, 'worker stopping')
      if (waited && this.#seen.has(seenKey)) {
        core.log.debug('worker.start_duplicate', ids)
        return
      }
      // Variables inline (a flowkit coordinator's START): wanted, nothing to read (no await).
      const inline = env.payload['vars']
      const { verdict: wanted, vars } = isObj(inline) ? { verdict: 'yes' as const, vars: inline } : await this.#stillWanted(env)
      if (wanted !== 'yes') {
        core.log.info('worker.start_stale', { ...ids, why: wanted })
        if (wanted === 'cancelled') {
          // The coordinator waits for a confirmation from whoever holds the command: give it.
          const info: RunInfo = { taskId: env.task_id, nodeId: env.node_id, stepType: role, attemptEpoch: env.attempt_epoch, workerId: core.workerId, leaseId: '' }
          await emitStatus(core, info, { kind: 'CANCELLED', reason: 'cancelled before start' }, { kind: 'CANCELLED' })
        }
        return
      }
      // The previous process with this worker id held this attempt when it died (its saved run
      // state says so, or, when it died before saving it, the attempt's claim by an older
      // instance): it may have done part or all of the work. Never run it again at this epoch:
      // hand it back. A newer instance's claim is a live successor's: held elsewhere.
      const restored = core.restored.delete(seenKey)
      if (restored || !(await this.#claim(env))) {
        if (!restored && !(await this.#heldByPredecessor(env))) {
          core.log.info('worker.attempt_held_elsewhere', ids)
          return
        }
        core.log.warn('worker.restored_run_handed_back', restored ? ids : { ...ids, from: 'claim' })
        const info: RunInfo = { taskId: env.task_id, nodeId: env.node_id, stepType: role, attemptEpoch: env.attempt_epoch, workerId: core.workerId, leaseId: '' }
        await emitStatus(core, info, { kind: 'CANCELLED', reason: WORKER_RESTARTED_REASON }, { kind: 'CANCELLED', restored: true })
        return
      }
      // The worker began to stop while this start was being checked and claimed: the claim holds
      // the attempt (no other worker may take it), so it is handed back, as a run in flight is.
      if (core.stopping) {
        const info: RunInfo = { taskId: env.task_id, nodeId: env.node_id, stepType: role, attemptEpoch: env.attempt_epoch, workerId: core.workerId, leaseId: '' }
        await emitStatus(core, info, { kind: 'CANCELLED', reason: WORKER_STOPPING_REASON }, { kind: 'CANCELLED' })
        core.log.info('worker.start_handed_back', ids)
        return
      }
      this.#remember(seenKey)
      if (core.cancelledEarly.delete(seenKey)) {
        // Its CANCEL came first (e.g. the attempt was handed back while this START was on its way).
        core.log.info('worker.start_cancelled', ids)
        const info: RunInfo = { taskId: env.task_id, nodeId: env.node_id, stepType: role, attemptEpoch: env.attempt_epoch, workerId: core.workerId, leaseId: '' }
        await emitStatus(core, info, { kind: 'CANCELLED', reason: 'cancelled before start' }, { kind: 'CANCELLED' })
        return
      }
      this.#runs.launch(role, env, cmd, vars, headers)
      handedOver = true
      this.onLoad?.(this.running)
    } finally {
      if (!handedOver) this.releaseSlot()
    }
  }

  /**
   * Claims the attempt in the store before running it: a start delivered twice (a rebalance
   * between the fetch and the run, a resend, another group reading the same topic) runs on one
   * worker only. A store that cannot be reached retries the command; one that refuses the claim
   * for another reason does not keep the node from running.
   */
  async #claim(env: Envelope): Promise<boolean> {
    const core = this.#core
    try {
      // The holder is this process (worker id and instance): a restarted process with the same
      // worker id does not take over an attempt its dead predecessor claimed.
      return await ClaimBatcher.of(core.store).claim({ task_id: env.task_id, node_id: env.node_id, attempt_epoch: env.attempt_epoch, worker_id: claimHolder(core.workerId, core.instanceId) }, core.clock.now())
    } catch (err) {
      if (err instanceof FlowkitError && err.retryable) throw err
      core.log.warn('worker.claim_failed', { task_id: env.task_id, node_id: env.node_id, attempt_epoch: env.attempt_epoch, error: errorMessage(err) })
      return true
    }
  }

  /**
   * Whether the claim another process holds on this attempt is an older process of this worker
   * id (`workerId#instance`, the instance started before ours): one that died between its claim
   * and saving its run state. A claim of a newer instance is a live successor's (this process was
   * paused and resumed after a restart with its id): held elsewhere, as is any claim a store
   * cannot name (the coordinator resends).
   */
  async #heldByPredecessor(env: Envelope): Promise<boolean> {
    const core = this.#core
    const holder = await core.store.attemptHolder(env.task_id, env.node_id, env.attempt_epoch).catch(() => null)
    return holder !== null && heldByOlderInstance(holder, core.workerId, core.instanceId)
  }

  #remember(key: string): void {
    this.#seen.add(key)
  }

  /**
   * Whether this attempt is still wanted. A flowkit coordinator sends the task variables inside
   * the start command (`payload.vars`, a flowkit extension): then nothing is read, the command is
   * the coordinator's current decision (a cancel that follows it arrives after it on the same key).
   * Otherwise (a Python coordinator, or variables too large to inline) the task document is read:
   * a cancelled task is not run, and a node in flowkit's layout whose stored attempt is newer, or
   * the same attempt already ended, is stale. The stored node may be behind (the coordinator
   * rewrites that document lazily), so an older stored attempt is no reason to refuse. A task
   * document in another layout is judged by its `coordinator.cancelled` flag alone, and a task the
   * store does not know is run.
   */
  async #stillWanted(env: Envelope): Promise<{ verdict: 'yes' | 'cancelled' | 'stale'; vars: Record<string, unknown> }> {
    const inline = env.payload['vars']
    if (isObj(inline)) return { verdict: 'yes', vars: inline }
    const core = this.#core
    let view: RunView | null
    try {
      view = await core.store.getRunView(env.task_id, env.node_id)
    } catch (err) {
      if (err instanceof FlowkitError && err.retryable) throw err // the bus retries the command
      core.log.warn('worker.task_unreadable', { task_id: env.task_id, node_id: env.node_id, error: errorMessage(err) })
      return { verdict: 'yes', vars: {} }
    }
    if (view === null) {
      // Not in this store: run it, as the seed's worker does (the protocol does not require the
      // task document; a command may come from a coordinator that keeps its tasks elsewhere).
      // Its status events are then ignored by any coordinator that does not know the task.
      core.log.info('worker.start_unknown_task', { task_id: env.task_id, node_id: env.node_id, attempt_epoch: env.attempt_epoch })
      return { verdict: 'yes', vars: {} }
    }
    const vars = isObj(view.vars) ? view.vars : {}
    const node = view.node
    if (view.cancelled) {
      const mine = node === null || node.attempt_epoch <= env.attempt_epoch
      return { verdict: mine ? 'cancelled' : 'stale', vars }
    }
    if (node === null || node.attempt_epoch < env.attempt_epoch) return { verdict: 'yes', vars }
    if (node.attempt_epoch > env.attempt_epoch) return { verdict: 'stale', vars }
    return { verdict: node.status === 'running' || node.status === 'queued' ? 'yes' : 'stale', vars }
  }
}

/**
 * A start whose envelope is the coordinator's own object (a memory bus delivers it): what the
 * handler is given of it (input_ref, input_inline, batching) is copied, as parsed text would be,
 * so a handler changing those objects changes nothing of the coordinator's.
 */
function ownInputs(cmd: CmdTaskStart): CmdTaskStart {
  if (cmd.input_ref === null && cmd.input_inline === null && cmd.batching === null) return cmd
  const copy = <T>(v: T): T => (v === null ? v : (JSON.parse(JSON.stringify(v)) as T))
  return { ...cmd, input_ref: copy(cmd.input_ref), input_inline: copy(cmd.input_inline), batching: copy(cmd.batching) }
}
