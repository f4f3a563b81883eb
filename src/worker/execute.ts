/**
 * One run's execution: TASK_ACCEPTED with a lease, heartbeats while it runs, batches from the
 * chosen input (input-select.ts) through the handler, one partial artifact per successful batch
 * before its BATCH_OK, the complete artifact before TASK_DONE; a failure or a cancel is reported
 * as BATCH_FAILED/TASK_FAILED or CANCELLED. Cleanups registered by the handler run at the end.
 */
import { setImmediate as yieldTurn } from 'node:timers/promises'
import { errorMessage } from '../errors.ts'
import type { Logger } from '../log.ts'
import { type CmdTaskStart, FINAL_UID, cutReasonCode, messageKey } from '../protocol/messages.ts'
import { CancelledRunError, cleanupsOnce } from './cancel.ts'
import type { ActiveRun, WorkerCore } from './core.ts'
import { type ArtifactsWriter, type RoleHandler, type RunContext, classifyErrorDefault } from './handler.ts'
import { plainInput, resolveInput } from './input-select.ts'
import { BATCH_RESULT_FIELDS, FINALIZE_RESULT_FIELDS, HandlerResultError, checkArtifactMeta, checkBatch, checkBatchResult, checkBatchUid, checkBusRecord, checkFinalizeResult, checkLossless, failureStack, failureText } from './results.ts'
import { unlessAborted } from '../util/abort.ts'
import { emitStatus, statusRecord } from './status.ts'
import { type SpawnOptions, spawnInGroup } from './subprocess.ts'
import { observeRun } from '../observability/worker.ts'
import { ArtifactBatcher } from './artifacts.ts'
import { deepFreeze, handOver } from '../ports/store-rules.ts'
import { FewStrings, inOrder, noteUnknownField } from './run-parts.ts'
import type { ArtifactWrite } from '../ports/store.ts'
import type { BusRecord } from '../ports/bus.ts'

/** Longest the batch loop of a run holds the event loop before it yields a turn (see the batch step). */
const YIELD_AFTER_MS = 20

/** Largest checkpoint a handler may save (JSON bytes). */
const MAX_CHECKPOINT_BYTES = 1024 * 1024
const EMPTY_VARS: Readonly<Record<string, unknown>> = Object.freeze({})

/**
 * The handler's frozen copy of a run's task variables, by the object they came in: the runs of
 * one fan-out get the same variables object (a START's, or the store's view), copied once.
 */
const FROZEN_VARS = new WeakMap<object, Readonly<Record<string, unknown>>>()

function handlerVars(vars: Record<string, unknown>): Readonly<Record<string, unknown>> {
  if (Object.keys(vars).length === 0) return EMPTY_VARS
  let frozen = FROZEN_VARS.get(vars)
  if (frozen === undefined) {
    frozen = deepFreeze(structuredClone(vars))
    FROZEN_VARS.set(vars, frozen)
  }
  return frozen
}
const RESOLVED: Promise<void> = Promise.resolve()

export async function executeRun(
  core: WorkerCore,
  role: string,
  run: ActiveRun,
  cmd: CmdTaskStart,
  vars: Record<string, unknown>,
): Promise<void> {
  const { info } = run
  const observed = observeRun(core, role, run) // span and metrics of the run (observability)
  const ids = { task_id: info.taskId, node_id: info.nodeId, attempt_epoch: info.attemptEpoch }
  const handler = core.handlers[role] as RoleHandler
  const leaseMs = Math.ceil(core.config.leaseTtlSec * 1000)
  // The lease is stated as a duration: deadline and ts_ms come from one reading of the clock.
  const acceptedAt = core.clock.now()
  // The acceptance is held a moment (StatusEmitter.send): a run whose first batch ends soon
  // reports both in one produce, applied and written by its coordinator as one journal entry. The
  // handler does not wait for it: the run's next event goes out after it (same key), and the run
  // ends only once it is on the bus (it is the first of the run's reports).
  const statusKey = messageKey(info.taskId, info.nodeId)
  const accepted = emitStatus(
    core,
    info,
    { kind: 'TASK_ACCEPTED', lease_id: info.leaseId, lease_deadline_ts_ms: acceptedAt + leaseMs },
    { kind: 'TASK_ACCEPTED' },
    acceptedAt,
    true,
  ).then(() => {
    run.accepted = true
  })
  accepted.catch(() => undefined)
  core.log.info('node.accepted', ids)
  core.state.request() // in the background: the batch loop does not wait for this write

  const stopHeartbeats = core.heartbeats.add(run)
  run.stopHeartbeats = stopHeartbeats
  const cleanups: (() => void | Promise<void>)[] = []
  const runCleanups = cleanupsOnce(cleanups, (err) => core.log.warn('worker.cleanup_failed', { ...ids, error: errorMessage(err) }))
  run.cleanup = runCleanups
  // Batches whose partial artifact is written (a handler's writePartial, or the run's own).
  const written = new FewStrings()
  let completeWritten = false
  // The batches are over and their BATCH_OKs on the bus: a complete artifact may be written now.
  let ending = false
  // The meta a handler gave markComplete while its batches ran.
  let completeAsked: Record<string, unknown> | null = null
  // An attempt that was cancelled (replaced, lease lost) or has ended writes nothing more: its
  // late outputs would sit next to the attempt that replaced it.
  const writable = (what: string): void => {
    if (run.abort.signal.aborted || run.released) {
      throw new CancelledRunError(`${what} refused: attempt ${info.attemptEpoch} of ${info.nodeId} was ${run.released ? 'ended' : 'cancelled'}`)
    }
  }
  // The finalize metrics, once finalize returned: the complete artifact carries them (a coordinator
  // that finishes the node from it, its TASK_DONE lost, counts them), and the meta it was written with.
  let finalMetrics: Record<string, unknown> | undefined
  let completeMeta: Record<string, unknown> = {}
  // An artifact of the run (batch_uid null: the complete one), its meta checked by the caller.
  const store = async (batchUid: string | null, meta: Record<string, unknown>): Promise<void> => {
    writable(batchUid === null ? 'complete artifact' : `partial artifact ${batchUid}`)
    const artifact: ArtifactWrite = { task_id: info.taskId, node_id: info.nodeId, batch_uid: batchUid, status: batchUid === null ? 'complete' : 'partial', meta, attempt_epoch: info.attemptEpoch, worker_id: core.workerId }
    if (batchUid === null && finalMetrics !== undefined) artifact.final_metrics = finalMetrics
    await ArtifactBatcher.of(core.store).write(artifact, core.clock.now())
    if (batchUid === null) {
      completeWritten = true
      completeMeta = meta
    } else written.add(batchUid)
  }
  // The handler's writePartial calls by batch uid, known as soon as called: a handler that does
  // not await one (a floating promise) still has its meta kept, not replaced by the run's own
  // artifact, and its BATCH_OK waits for it. Null until a handler writes one.
  let asked = null as Map<string, Promise<void>> | null
  const writePartial = async (batchUid: string, meta: Record<string, unknown>): Promise<void> => {
    writable(`partial artifact ${batchUid}`)
    if (typeof batchUid !== 'string') throw new HandlerResultError(`writePartial: the batch uid must be a string, got ${typeof batchUid}`, 'bad_handler_result')
    checkBatchUid('writePartial', batchUid)
    await store(batchUid, checkArtifactMeta(`partial artifact meta of batch ${batchUid}`, meta))
  }
  const writer: ArtifactsWriter = {
    writePartial: (batchUid, meta) => {
      const w = writePartial(batchUid, meta)
      if (typeof batchUid === 'string') {
        asked ??= new Map()
        asked.set(batchUid, w)
        // Failing, it fails the run (at its next batch, or at its end) even when nobody awaits it,
        // and never the process (an unhandled rejection).
        void writtenBy(batchUid, w).catch(() => undefined)
      }
      return w
    },
    markComplete: async (meta = {}) => {
      writable('complete artifact')
      const own = checkArtifactMeta('complete artifact meta', meta)
      if (!ending) {
        // Asked for while batches run (from processBatch) or from finalize: written at the end of
        // the run, once its BATCH_OKs are on the bus and finalize returned, with this meta (a run
        // that fails writes none).
        completeAsked = own
        return
      }
      await store(null, own)
    },
  }
  const signal = run.abort.signal
  const ctx: RunContext = {
    ...info,
    signal,
    artifacts: writer,
    inputRef: cmd.input_ref,
    inputInline: cmd.input_inline,
    batching: cmd.batching,
    vars: handlerVars(vars),
    upstreamFailures: Object.freeze(cmd.failures ?? []),
    throwIfCancelled: () => {
      if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new CancelledRunError(String(signal.reason))
    },
    sleep: (ms) => (typeof ms === 'number' && !Number.isNaN(ms) ? core.clock.sleep(ms, signal) : Promise.reject(new TypeError(`ctx.sleep: ms must be a number of milliseconds, got ${Number.isNaN(ms) ? 'NaN' : typeof ms}`))),
    spawn: (command: string, args: readonly string[] = [], options: SpawnOptions = {}) =>
      spawnInGroup(command, args, signal, { graceMs: core.config.cancelGraceMs, ...options }),
    onCleanup: (fn) => {
      cleanups.push(fn)
    },
    checkpoint: async (state) => {
      writable('checkpoint')
      // JSON data only: a Map or a Set came back {} to the next attempt, a Date a string.
      checkLossless('checkpoint', state)
      const bytes = Buffer.byteLength(JSON.stringify(state ?? null))
      if (bytes > MAX_CHECKPOINT_BYTES) {
        throw new HandlerResultError(`checkpoint is too large: ${bytes} bytes of JSON, more than the limit of ${MAX_CHECKPOINT_BYTES} bytes`, 'result_too_large')
      }
      await core.store.saveCheckpoint({ task_id: info.taskId, node_id: info.nodeId, attempt_epoch: info.attemptEpoch, state }, core.clock.now())
    },
    // (Reads end at a cancel: a slow store's answer is then ignored.)
    lastCheckpoint: async () => {
      const cp = await unlessAborted(core.store.getCheckpoint(info.taskId, info.nodeId), signal)
      return cp === null ? null : { attemptEpoch: cp.attempt_epoch, state: cp.state }
    },
    earlierPartial: async (batchUid) => {
      const a = await unlessAborted(core.store.getArtifact(info.taskId, info.nodeId, batchUid), signal)
      return a !== null && a.status === 'partial' && a.attempt_epoch < info.attemptEpoch ? { attemptEpoch: a.attempt_epoch, meta: a.meta } : null
    },
  }

  let currentBatch: string | null = null
  const usedUids = new FewStrings()
  const reports: Promise<void>[] = [accepted]
  // Resolves once every BATCH_OK so far was handed to the status emitter (in batch order); null
  // before the first batch (nothing to wait for).
  let sendGate: Promise<unknown> | null = null
  // The first batch whose partial artifact could not be written, and why (the run fails with it).
  const failed: { write: { uid: string; err: unknown } | null } = { write: null }
  const writtenBy = (uid: string, write: Promise<void>): Promise<void> =>
    write.catch((err: unknown) => {
      failed.write ??= { uid, err }
      throw err
    })
  try {
    // (No await when there is nothing to wait for: each is a turn of the microtask queue per run.)
    if (handler.init !== undefined) await handler.init(info)
    ctx.throwIfCancelled()
    const direct = plainInput(handler, cmd)
    const batches = direct ?? (await resolveInput(core, handler, cmd, info, signal))
    let index = 0
    let turnAt = performance.now()
    const step = async (raw: unknown): Promise<void> => {
      // A run of batches that each compute without awaiting I/O holds the event loop between
      // them (their writes and reports are not awaited): a turn of the loop every YIELD_AFTER_MS
      // lets heartbeats, timeouts and cancel signals in. (100 ms batches ran 3 s past a 1.5 s
      // timeout_sec, and with a 1 s lease not one heartbeat went out.)
      if (performance.now() - turnAt >= YIELD_AFTER_MS) {
        await yieldTurn()
        turnAt = performance.now()
      }
      ctx.throwIfCancelled()
      if (failed.write !== null) throw failed.write.err
      const batch = checkBatch(raw, index)
      let uid = typeof batch.batch_uid === 'string' && batch.batch_uid.length > 0 ? batch.batch_uid : `b${index}`
      index++
      if (usedUids.has(uid) || uid === FINAL_UID) {
        // Batch ids identify partial artifacts and metrics: two batches of one run never share one
        // (nor one with the run's final metrics, `__final__`).
        let n = 2
        while (usedUids.has(`${uid}#${n}`)) n++
        core.log.warn('worker.batch_uid_duplicate', { ...ids, batch_uid: uid, renamed: `${uid}#${n}`, ...(uid === FINAL_UID ? { reserved: true } : {}) })
        uid = `${uid}#${n}`
      }
      usedUids.add(uid)
      currentBatch = uid
      const call = (): ReturnType<RoleHandler['processBatch']> => handler.processBatch({ ...batch, batch_uid: uid }, ctx)
      const result = await (observed === null ? call() : observed.within(call))
      const res = checkBatchResult(result)
      noteUnknownField(core, role, 'processBatch', result, BATCH_RESULT_FIELDS)
      ctx.throwIfCancelled()
      if (res.success === false) {
        const err = Object.assign(new Error(res.error ?? `batch ${uid} failed`), {
          reasonCode: res.reason_code ?? 'batch_failed',
          permanent: res.permanent === true,
        })
        throw err
      }
      // Checked before anything is stored: an event too large for the bus fails the batch here.
      const okRecord = statusRecord(
        core,
        info,
        { kind: 'BATCH_OK', batch_uid: uid, metrics: res.metrics ?? {}, artifacts_ref: res.artifacts_ref ?? null },
        { kind: 'BATCH_OK', batch_uid: uid },
      )
      checkBusRecord(`BATCH_OK of batch ${uid} (its metrics and artifacts_ref)`, okRecord, core.config.maxMessageBytes)
      // The next batch waits neither for this batch's partial artifact nor for its report: the
      // artifact write starts now (writes of consecutive batches share a store round trip), and
      // the BATCH_OK is sent once that artifact is durable and the previous BATCH_OK was sent, so
      // reports keep their order and never announce an artifact that is not stored. TASK_DONE
      // waits for all of them; a write or report that fails fails the run (at the next batch).
      // Without a meta of the handler's, the partial artifact's is the worker's own: the metrics
      // of the BATCH_OK (already copied, checked, and within a bus message), handed to the store.
      const own = asked?.get(uid)
      const durable = written.has(uid) ? null : own !== undefined ? own : writtenBy(uid, res.meta === undefined ? store(uid, handOver({ metrics: payloadOf(okRecord)['metrics'] })) : writePartial(uid, res.meta))
      const gate: Promise<unknown> = durable === null ? (sendGate ?? RESOLVED) : sendGate === null ? durable : Promise.all([durable, sendGate])
      const report = gate.then(() => core.status.send(okRecord))
      sendGate = gate
      report.catch(() => undefined)
      reports.push(report)
      if (reports.length >= 64) await inOrder(reports.splice(0, 32))
      run.batches++
      currentBatch = null
      core.log.debug('node.batch_ok', { ...ids, batch_uid: uid })
    }
    // An array (one batch, or a handler's list) is walked as such: no async iterator per run.
    if (Array.isArray(batches)) for (const raw of batches as unknown[]) await step(isThenable(raw) ? await raw : raw)
    else for await (const raw of batches) await step(raw)
    // The complete artifact only once every BATCH_OK of the run is on the bus: a coordinator that
    // finds it (recovery, a suspected node) finishes the node from it and its applied batches, so
    // a complete artifact durable before the last BATCH_OKs are sent finishes the node with part
    // of its metrics (the `everything` reliability scenario did, with it written alongside the
    // last partial artifact). finalize may read the partial artifacts: they are durable here.
    if (run.batches === 0) core.status.release(statusKey) // no BATCH_OK to take the acceptance along
    await inOrder(reports.splice(0))
    // Partial artifacts the handler wrote for other uids than its batches', awaited or not: durable first.
    if (asked !== null) await Promise.allSettled(asked.values())
    ctx.throwIfCancelled()
    if (failed.write !== null) throw failed.write.err
    // A markComplete from finalize is recorded, not written: the complete artifact says the node's
    // work is done (a coordinator finishes the node from it when the worker dies; a pulling
    // consumer stops reading at it), so it is written only once finalize returned. (It was
    // written at once: a worker that died later in finalize left the node finished with the
    // provisional meta and without the finalize metrics, and a streaming consumer ended before
    // the partials written after it, or a retry's batches when finalize then failed.)
    const finRaw = handler.finalize === undefined ? undefined : await handler.finalize(ctx)
    const fin = checkFinalizeResult(finRaw)
    noteUnknownField(core, role, 'finalize', finRaw, FINALIZE_RESULT_FIELDS)
    ctx.throwIfCancelled()
    // Partials finalize wrote, awaited or not: durable before the complete artifact.
    if (asked !== null) await Promise.allSettled(asked.values())
    const lateWrite = failed.write as { err: unknown } | null // (set by a write's rejection meanwhile)
    if (lateWrite !== null) throw lateWrite.err
    ending = true
    const doneRecord = statusRecord(
      core,
      info,
      { kind: 'TASK_DONE', metrics: fin.metrics ?? {}, artifacts_ref: fin.artifacts_ref ?? null, final_uid: FINAL_UID, batches: run.batches },
      { kind: 'TASK_DONE' },
    )
    checkBusRecord('TASK_DONE (the finalize metrics and artifacts_ref)', doneRecord, core.config.maxMessageBytes)
    finalMetrics = fin.metrics ?? {}
    // The meta finalize returns is the last word on the complete artifact's (over a markComplete's).
    const askedMeta = fin.meta ?? completeAsked ?? undefined
    if (!completeWritten) await (askedMeta === undefined ? store(null, handOver({ batches: run.batches })) : writer.markComplete(askedMeta))
    // finalize wrote it itself (markComplete), before its metrics were known (or before the meta it returns): written again.
    else if (fin.meta !== undefined) await writer.markComplete(fin.meta)
    else if (Object.keys(finalMetrics).length > 0) await store(null, completeMeta)
    await core.status.send(doneRecord)
    core.log.info('node.done', { ...ids, batches: run.batches })
  } catch (err) {
    core.status.release(statusKey)
    await Promise.allSettled(reports.splice(0))
    if (run.cancelReason === '__killed__') return
    // Abandoned after its cancel grace: CANCELLED went out then and its slot was given back (the
    // worker may have stopped since); its handler returning now reports nothing more.
    if (run.released) return
    if (signal.aborted) {
      await emitStatus(core, info, { kind: 'CANCELLED', reason: run.cancelReason ?? 'cancelled' }, { kind: 'CANCELLED' })
      core.log.info('node.cancelled', { ...ids, reason: run.cancelReason })
      return
    }
    const classified = classify(core.log, handler, err)
    const error = failureText(err)
    // A partial artifact that failed to be written fails its own batch, not the one in progress.
    if (failed.write !== null && err === failed.write.err) currentBatch = failed.write.uid
    if (currentBatch !== null) {
      await emitStatus(
        core,
        info,
        { kind: 'BATCH_FAILED', batch_uid: currentBatch, reason_code: classified.reasonCode, permanent: classified.permanent, error, artifacts_ref: null },
        { kind: 'BATCH_FAILED', batch_uid: currentBatch },
      )
    }
    await emitStatus(
      core,
      info,
      { kind: 'TASK_FAILED', reason_code: classified.reasonCode, permanent: classified.permanent, error },
      { kind: 'TASK_FAILED' },
    )
    core.log.warn('node.failed', { ...ids, reason_code: classified.reasonCode, permanent: classified.permanent, error, stack: failureStack(err) })
  } finally {
    observed?.end()
    const beating = stopHeartbeats()
    if (beating !== null) await beating
    await runCleanups()
  }
}

function classify(log: Logger, handler: RoleHandler, err: unknown): { reasonCode: string; permanent: boolean } {
  const c = classifyRaw(log, handler, err)
  // An empty code (a classifyError's, an error's own reasonCode) is none: the default one.
  const code = typeof c.reasonCode === 'string' && c.reasonCode !== '' ? c.reasonCode : 'unexpected_error'
  return { reasonCode: cutReasonCode(code), permanent: c.permanent }
}

function classifyRaw(log: Logger, handler: RoleHandler, err: unknown): { reasonCode: string; permanent: boolean } {
  // The worker's own refusal of a handler's result: permanent, whatever the handler's classifier says.
  if (err instanceof HandlerResultError) return { reasonCode: err.reasonCode, permanent: true }
  const adapterErr = err as { adapterReason?: string }
  if (adapterErr?.adapterReason) return { reasonCode: adapterErr.adapterReason, permanent: true }
  if (handler.classifyError) {
    try {
      const c: unknown = handler.classifyError(err)
      const r = c as { reasonCode?: unknown; permanent?: unknown } | null
      if (r !== null && typeof r === 'object' && typeof r.reasonCode === 'string' && typeof r.permanent === 'boolean') {
        return { reasonCode: r.reasonCode, permanent: r.permanent }
      }
      log.warn('worker.classify_invalid', { error: 'classifyError must return { reasonCode: string, permanent: boolean }' })
    } catch (e) {
      log.warn('worker.classify_failed', { error: errorMessage(e) })
    }
  }
  return classifyErrorDefault(err)
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as { then?: unknown }).then === 'function'
}

/** The payload of a status record this worker made (statusRecord always gives its envelope). */
function payloadOf(record: BusRecord): Record<string, unknown> {
  return (record.decoded as { payload: Record<string, unknown> }).payload
}
