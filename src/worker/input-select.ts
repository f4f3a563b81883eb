/**
 * Where a run's batches come from: the input adapter named by the command wins; else a known
 * adapter suggested by the handler's loadInput; else the handler's own iterBatches; else one batch.
 */
import type { CmdTaskStart } from '../protocol/messages.ts'
import { isObj, runIds, type WorkerCore } from './core.ts'
import type { Batch, RoleHandler, RunInfo } from './handler.ts'
import { type AdapterSpec, adapterBatches, checkAdapter } from './input.ts'
import { HandlerResultError } from './results.ts'

/**
 * The batches of a start that names no input adapter, for a handler that neither loads its input
 * nor makes its own batches: the one batch. resolveInput starts with it; a run calls it first, so
 * the usual case costs no promise (resolveInput's would be a turn of the microtask queue). Null
 * otherwise.
 */
export function plainInput(handler: RoleHandler, cmd: CmdTaskStart): Batch[] | null {
  const inline = cmd.input_inline ?? {}
  if (handler.loadInput !== undefined || handler.iterBatches !== undefined) return null
  if (inline['input_adapter'] !== undefined) return null
  return oneBatch(unloaded(cmd))
}

/** What a handler without `loadInput` gets as its loaded input: the start's input as it came. */
function unloaded(cmd: CmdTaskStart): Record<string, unknown> {
  return { input_ref: cmd.input_ref ?? {}, input_inline: cmd.input_inline ?? {} }
}

/** The one batch of a run that has no adapter and no batches of the handler's own. */
function oneBatch(loaded: unknown): Batch[] {
  return [{ batch_uid: null, payload: isObj(loaded) ? loaded : { value: loaded } }]
}

export async function resolveInput(
  core: WorkerCore,
  handler: RoleHandler,
  cmd: CmdTaskStart,
  info: RunInfo,
  signal: AbortSignal,
): Promise<AsyncIterable<Batch> | Iterable<Batch>> {
  const plain = plainInput(handler, cmd)
  if (plain !== null) return plain
  const inline = cmd.input_inline ?? {}
  const opts = { strict: core.config.strictInputAdapters, defaultPollMs: core.config.pullPollMsDefault }
  const ids = runIds(info)
  let spec: AdapterSpec | null = null
  if (inline['input_adapter'] !== undefined && inline['input_adapter'] !== null) {
    const check = checkAdapter(inline['input_adapter'], inline['input_args'], opts)
    if (!check.ok) throw Object.assign(new Error(check.error), { adapterReason: check.reasonCode })
    spec = check.spec
  }
  const loaded = handler.loadInput ? await handler.loadInput(cmd.input_ref, cmd.input_inline) : unloaded(cmd)
  const suggestion = suggestedAdapter(loaded)
  if (spec !== null) {
    // The command wins. A suggestion that reads other input (another adapter, other args, or an
    // invalid one) is ignored and said so; one that reads the same input is simply agreed with.
    if (suggestion) {
      const other = checkAdapter(suggestion.name, suggestion.args, opts)
      if (!other.ok || !sameAdapterSpec(other.spec, spec)) {
        core.log.info('worker.adapter_suggestion_ignored', { ...ids, suggested: String(suggestion.name), chosen: spec.name })
      }
    }
  } else if (suggestion) {
    const check = checkAdapter(suggestion.name, suggestion.args, opts)
    if (check.ok) spec = check.spec
    else core.log.warn('worker.adapter_suggestion_ignored', { ...ids, suggested: String(suggestion.name), error: check.error })
  }
  if (spec !== null) {
    core.log.debug('worker.input_adapter', { ...ids, adapter: spec.name, from_nodes: spec.fromNodes })
    return adapterBatches(
      {
        store: core.store,
        clock: core.clock,
        taskId: info.taskId,
        consumerNode: info.nodeId,
        epoch: info.attemptEpoch,
        signal,
        maxBackoffMs: core.config.pullEmptyBackoffMsMax,
        warn: (event, fields) => core.log.warn(event, { ...ids, ...fields }),
      },
      spec,
    )
  }
  if (handler.iterBatches) {
    // An `async iterBatches` that returns its batches (not `async *`) is awaited.
    const b: unknown = handler.iterBatches(loaded)
    return iterable(typeof (b as { then?: unknown } | null)?.then === 'function' ? await b : b)
  }
  return oneBatch(loaded)
}

/** What iterBatches returned, if the run can walk it; a clear error otherwise (not "batches is not async iterable"). */
function iterable(batches: unknown): AsyncIterable<Batch> | Iterable<Batch> {
  const b = batches as { [Symbol.asyncIterator]?: unknown; [Symbol.iterator]?: unknown } | null
  if (b !== null && (typeof b === 'object' || typeof b === 'function') && (typeof b[Symbol.asyncIterator] === 'function' || typeof b[Symbol.iterator] === 'function')) return batches as AsyncIterable<Batch>
  const got = b === null ? 'null' : typeof b
  throw new HandlerResultError(`iterBatches must return an array, an iterable or an async iterable of batches, got ${got}`, 'bad_handler_result')
}

/** Whether two validated adapter specs read the same input the same way. */
function sameAdapterSpec(a: AdapterSpec, b: AdapterSpec): boolean {
  return (
    a.name === b.name &&
    a.pollMs === b.pollMs &&
    a.size === b.size &&
    a.metaListKey === b.metaListKey &&
    a.fromNodes.length === b.fromNodes.length &&
    a.fromNodes.every((n, i) => n === b.fromNodes[i])
  )
}

function suggestedAdapter(loaded: unknown): { name: unknown; args: unknown } | null {
  if (!isObj(loaded)) return null
  if (loaded['input_adapter'] !== undefined) return { name: loaded['input_adapter'], args: loaded['input_args'] }
  const inline = loaded['input_inline']
  if (isObj(inline) && inline['input_adapter'] !== undefined) return { name: inline['input_adapter'], args: inline['input_args'] }
  return null
}
