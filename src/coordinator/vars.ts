/**
 * Task variables (`coordinator.vars`): the four coordinator functions `vars.set`, `vars.merge`,
 * `vars.incr` and `vars.unset` (SCENARIOS T13), which check their arguments, run the pure operation
 * and log what they wrote or why they refused (the key and the reason, never the value).
 *
 * The variables are split by responsibility:
 * - vars-rules.ts: key and value rules, limits, `VarsError`;
 * - vars-secrets.ts: the secret detector behind `block_secrets`;
 * - vars-ops.ts: the pure operations (`setVars`, `mergeVars`, `incrVar`, `unsetVars`, `getVar`);
 * - this file: the coordinator functions; it re-exports the other three modules' public names.
 */
import type { Logger } from '../log.ts'
import { incrVar, mergeVars, setVars, unsetVars } from './vars-ops.ts'
import { type Vars, VarsError, VarsReason, type VarsWrite, checkSegment, countLeaves, describeType, has, isPlainObject, showKey } from './vars-rules.ts'

export { VARS_LIMITS, type Vars, VarsError, VarsReason, type VarsWrite, countLeaves, isPlainObject, jsonBytes, parseKeyPath, showKey } from './vars-rules.ts'
export {
  SECRET_ENTROPY_CAP,
  SECRET_ENTROPY_SLACK,
  SECRET_MIN_CLASS_CHANGES,
  SECRET_MIN_LENGTH,
  SecretKind,
  detectSecretString,
  findSecret,
  isHighEntropyToken,
  shannonEntropy,
} from './vars-secrets.ts'
export { type WriteOptions, getVar, incrVar, mergeVars, setVars, unsetVars } from './vars-ops.ts'

function badArgs(op: string, message: string): VarsError {
  return new VarsError(`${op}: ${message}`, VarsReason.BadArgs)
}

function defineKey(o: Record<string, unknown>, k: string, v: unknown): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true })
}

/** The arguments that steer a write, not variables (the seed's flag is `block_sensitive`). */
const CONTROL_ARGS: ReadonlySet<string> = new Set(['block_secrets', 'block_sensitive'])

function blockSecretsArg(op: string, args: Record<string, unknown>): boolean {
  let block = false
  for (const name of CONTROL_ARGS) {
    const v = args[name]
    if (v === undefined || v === null) continue
    if (typeof v !== 'boolean') throw badArgs(op, `${name} must be a boolean, got ${describeType(v)}`)
    block ||= v
  }
  return block
}

/**
 * Adds one entry of a set as the seed reads it: an object under a key without a dot lands leaf by
 * leaf (`{ sla: { a: 1 } }` sets `sla.a` and keeps `sla.b`; an empty object sets nothing); under a
 * dotted key, and any other value, it is set whole.
 */
function setEntry(op: string, kv: Record<string, unknown>, key: string, value: unknown): void {
  if (key.includes('.') || !isPlainObject(value)) {
    defineKey(kv, key, value)
    return
  }
  const walk = (prefix: string, o: Record<string, unknown>): void => {
    for (const [k, v] of Object.entries(o)) {
      const path = `${prefix}.${k}`
      // A nested key is one segment ("a.b" inside an object is not a path).
      checkSegment(op, path, k)
      if (isPlainObject(v)) walk(path, v)
      else defineKey(kv, path, v)
    }
  }
  checkSegment(op, key, key)
  walk(key, value)
}

/**
 * What the variable functions need of a `CoordinatorFnContext` (a structural subset, so this module
 * does not import functions.ts, which registers these functions).
 */
export interface VarsFnContext {
  task: { coordinator: { vars: Record<string, unknown> } }
  args: Record<string, unknown>
  log: Pick<Logger, 'info' | 'warn'>
}

export interface VarsFnResult {
  /** The task's new variables (replaces coordinator.vars). */
  vars: Vars
  meta: { touched: string[] } & Record<string, unknown>
  stats: { vars_touched: number; vars_keys: number }
}

export type VarsFn = (ctx: VarsFnContext) => Promise<VarsFnResult>
type VarsBody = (ctx: VarsFnContext) => VarsFnResult

function currentVars(ctx: VarsFnContext): Vars {
  const v = ctx.task.coordinator?.vars
  return isPlainObject(v) ? v : {}
}

function result(ctx: VarsFnContext, event: string, write: VarsWrite, extraMeta: Record<string, unknown> = {}): VarsFnResult {
  const keys = countLeaves(write.vars)
  ctx.log.info(event, { keys: write.touched, count: write.touched.length, total_keys: keys })
  return { vars: write.vars, meta: { touched: write.touched, ...extraMeta }, stats: { vars_touched: write.touched.length, vars_keys: keys } }
}

/** Runs an operation, logging a rejection with its key and reason (never the value). */
async function guarded(ctx: VarsFnContext, op: string, body: () => VarsFnResult): Promise<VarsFnResult> {
  try {
    return body()
  } catch (err) {
    if (err instanceof VarsError) {
      const fields = { fn: op, key: err.key, reason_code: err.reasonCode, ...(err.limit !== null ? { limit: err.limit } : {}) }
      if (err.reasonCode === VarsReason.SecretDetected) ctx.log.warn('vars.secret_blocked', fields)
      else ctx.log.warn('vars.rejected', fields)
    }
    throw err
  }
}

/**
 * `vars.set`: `{ kv: { "a.b": 1, c: { d: 2 } }, block_secrets? }`, `{ key, value, block_secrets? }`,
 * or the variables as the arguments themselves (`{ qps: 7 }`, the seed's keyword form). An object
 * under a key without a dot is set leaf by leaf (setEntry); `block_sensitive` (the seed's name,
 * also inside `kv`) is `block_secrets`.
 */
const setBody: VarsBody = (ctx) => {
  const op = 'vars.set'
  const args = ctx.args
  const kv: Record<string, unknown> = {}
  let given = false
  let block = blockSecretsArg(op, args)
  const rawKv = args['kv']
  if (rawKv !== undefined) {
    if (!isPlainObject(rawKv)) throw badArgs(op, `kv must be an object, got ${describeType(rawKv)}`)
    if (Object.keys(rawKv).length === 0) throw badArgs(op, 'kv is empty: it sets nothing')
    given = true
    // Defined, never assigned: a key "__proto__" stays a key (refused with the others' checks)
    // instead of setting kv's prototype and vanishing.
    for (const [k, v] of Object.entries(rawKv)) {
      if (k === 'block_sensitive') block ||= blockSecretsArg(op, { block_sensitive: v })
      else setEntry(op, kv, k, v)
    }
  }
  if (args['key'] !== undefined) {
    if (typeof args['key'] !== 'string') throw badArgs(op, `key must be a string, got ${describeType(args['key'])}`)
    if (!has(args, 'value') || args['value'] === undefined) throw badArgs(op, `key ${showKey(args['key'])} needs a value`)
    given = true
    defineKey(kv, args['key'], args['value'])
  }
  if (!given) {
    for (const [k, v] of Object.entries(args)) {
      if (CONTROL_ARGS.has(k)) continue
      given = true
      setEntry(op, kv, k, v)
    }
  }
  if (!given) throw badArgs(op, 'needs kv (an object of key paths to values), key and value, or the variables as its arguments')
  return result(ctx, 'vars.set', setVars(currentVars(ctx), kv, { blockSecrets: block }, op))
}
export const varsSet: VarsFn = async (ctx) => guarded(ctx, 'vars.set', () => setBody(ctx))

/**
 * `vars.merge`: `{ data: {...}, block_secrets? }` deep merge; non-object leaves overwrite. As the
 * seed reads it, `kv` stands for `data`, and without either the arguments themselves are the data.
 */
const mergeBody: VarsBody = (ctx) => {
  const op = 'vars.merge'
  const args = ctx.args
  const named = args['data'] !== undefined ? 'data' : args['kv'] !== undefined ? 'kv' : null
  let data: unknown
  if (named !== null) data = args[named]
  else {
    const rest: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(args)) if (!CONTROL_ARGS.has(k)) defineKey(rest, k, v)
    if (Object.keys(rest).length === 0) throw badArgs(op, 'needs data (an object to merge), kv, or the variables as its arguments')
    data = rest
  }
  if (!isPlainObject(data)) throw badArgs(op, `${named ?? 'data'} must be an object, got ${describeType(data)}`)
  return result(ctx, 'vars.merged', mergeVars(currentVars(ctx), data, { blockSecrets: blockSecretsArg(op, args) }, op))
}
export const varsMerge: VarsFn = async (ctx) => guarded(ctx, 'vars.merge', () => mergeBody(ctx))

/** `vars.incr`: `{ key, by? = 1 }`; creates a missing leaf at 0; floats and negatives allowed. */
const incrBody: VarsBody = (ctx) => {
  const op = 'vars.incr'
  const key = ctx.args['key']
  if (typeof key !== 'string') throw badArgs(op, `key must be a string, got ${describeType(key)}`)
  const by = ctx.args['by'] === undefined ? 1 : ctx.args['by']
  const write = incrVar(currentVars(ctx), key, by, op)
  return result(ctx, 'vars.incr', write, { value: write.value })
}
export const varsIncr: VarsFn = async (ctx) => guarded(ctx, 'vars.incr', () => incrBody(ctx))

/** `vars.unset`: `{ keys: ["a.b", "c"] }` or `{ key }`; prunes parents left empty. */
const unsetBody: VarsBody = (ctx) => {
  const op = 'vars.unset'
  const keys: string[] = []
  const many = ctx.args['keys']
  if (many !== undefined) {
    if (!Array.isArray(many)) throw badArgs(op, `keys must be an array of key paths, got ${describeType(many)}`)
    for (const k of many) {
      if (typeof k !== 'string') throw badArgs(op, `keys must hold strings, got ${describeType(k)}`)
      keys.push(k)
    }
  }
  const one = ctx.args['key']
  if (one !== undefined) {
    if (typeof one !== 'string') throw badArgs(op, `key must be a string, got ${describeType(one)}`)
    keys.push(one)
  }
  if (keys.length === 0) throw badArgs(op, 'needs keys (an array of key paths) or key')
  const write = unsetVars(currentVars(ctx), keys, op)
  return result(ctx, 'vars.unset', write, { missing: write.missing })
}
export const varsUnset: VarsFn = async (ctx) => guarded(ctx, 'vars.unset', () => unsetBody(ctx))

/** The synchronous body of each vars function (run on empty variables by the submission checks). */
const VARS_BODIES: Record<string, VarsBody> = { 'vars.set': setBody, 'vars.merge': mergeBody, 'vars.incr': incrBody, 'vars.unset': unsetBody }
const QUIET = { info: () => undefined, warn: () => undefined }

/**
 * Why the vars function `name` refuses these arguments whatever the task's variables are (its run
 * on empty variables: bad arguments, keys, values, limits, secrets when blocked), or null.
 */
export function varsArgsProblem(name: string, args: Record<string, unknown>): VarsError | null {
  const body = VARS_BODIES[name]
  if (body === undefined) return null
  try {
    body({ task: { coordinator: { vars: {} } }, args, log: QUIET })
    return null
  } catch (err) {
    // A merge into empty variables writes each object whole, measured as one value; into the
    // task's variables it may land leaf by leaf: the value limit is not for a submission to judge.
    if (err instanceof VarsError) return name === 'vars.merge' && err.limit === 'maxValueBytes' ? null : err
    throw err
  }
}

export const VARS_FUNCTIONS: Record<string, VarsFn> = {
  'vars.set': varsSet,
  'vars.merge': varsMerge,
  'vars.incr': varsIncr,
  'vars.unset': varsUnset,
}
