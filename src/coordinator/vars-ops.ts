/**
 * Task variables, the pure operations: read, set, deep merge, increment and unset on a plain JSON
 * object, each checked against the rules of vars-rules.ts (and, when asked, the secret detector of
 * vars-secrets.ts).
 *
 * Writing under a path whose parent is not an object replaces that parent with an object (last
 * write wins), as a deep merge does; only `incr` refuses, since a counter must not destroy data.
 *
 * The operations never mutate their inputs: they return a new variables object. The coordinator
 * runs functions inside the task's single writer, so read-modify-write here is atomic per task.
 */
import {
  type Vars,
  VarsError,
  VarsReason,
  type VarsWrite,
  checkKeyCount,
  checkPathLimits,
  checkSegment,
  checkValue,
  describeType,
  has,
  isPlainObject,
  parseKeyPath,
  showKey,
} from './vars-rules.ts'
import { checkSecrets } from './vars-secrets.ts'

/** Reads the value at a key path (undefined when absent). */
export function getVar(vars: Vars, path: string): unknown {
  let cur: unknown = vars
  for (const seg of parseKeyPath(path)) {
    if (!isPlainObject(cur) || !has(cur, seg)) return undefined
    cur = cur[seg]
  }
  return cur
}

function clone(vars: unknown): Vars {
  return isPlainObject(vars) ? (structuredClone(vars) as Vars) : {}
}

/** Walks to the parent of the last segment, creating (or replacing non-objects with) objects. */
function parentFor(root: Vars, segments: readonly string[]): Vars {
  let cur = root
  for (const seg of segments.slice(0, -1)) {
    const next = has(cur, seg) ? cur[seg] : undefined
    if (isPlainObject(next)) cur = next
    else {
      const created: Vars = {}
      cur[seg] = created
      cur = created
    }
  }
  return cur
}

export interface WriteOptions {
  /** Refuse values that look like secrets (`vars_secret_detected`). */
  blockSecrets?: boolean
}

/**
 * Sets several key paths at once, in order; dotted paths create nested objects. A value replaces
 * whatever was at its path.
 */
export function setVars(vars: Vars, kv: Record<string, unknown>, options: WriteOptions = {}, op = 'vars.set'): VarsWrite {
  const entries = Object.keys(kv).map((path) => {
    const segments = parseKeyPath(path, op)
    const value = kv[path]
    checkValue(op, path, segments.length, value)
    if (options.blockSecrets === true) checkSecrets(op, path, value)
    return { path, segments, value }
  })
  const out = clone(vars)
  for (const { segments, value } of entries) {
    parentFor(out, segments)[segments[segments.length - 1] as string] = structuredClone(value)
  }
  const touched = entries.map((e) => e.path)
  checkKeyCount(op, out, touched)
  return { vars: out, touched }
}

/**
 * Deep merge of `data` into the variables: objects merge recursively, anything else (arrays
 * included) overwrites. `touched` lists the paths written: each incoming leaf, or an incoming
 * object where no object was before (written whole).
 */
export function mergeVars(vars: Vars, data: Record<string, unknown>, options: WriteOptions = {}, op = 'vars.merge'): VarsWrite {
  const out = clone(vars)
  const touched: string[] = []
  const merge = (target: Vars, incoming: Record<string, unknown>, prefix: string[]): void => {
    for (const k of Object.keys(incoming)) {
      const segments = [...prefix, k]
      const path = segments.join('.')
      checkSegment(op, path, k)
      checkPathLimits(op, path, segments.length)
      const v = incoming[k]
      const cur = has(target, k) ? target[k] : undefined
      if (isPlainObject(v) && isPlainObject(cur)) {
        merge(cur, v, segments)
        continue
      }
      checkValue(op, path, segments.length, v)
      if (options.blockSecrets === true) checkSecrets(op, path, v)
      target[k] = structuredClone(v)
      touched.push(path)
    }
  }
  merge(out, data, [])
  checkKeyCount(op, out, touched)
  return { vars: out, touched }
}

/**
 * Adds `by` (default 1) to the number at `key`, creating it at 0 when missing. Rejects a non-finite
 * `by` (`bad_fn_args`), a non-numeric target (`vars_not_numeric`), a path through a non-object
 * (`vars_type_conflict`) and a non-finite result.
 */
export function incrVar(vars: Vars, key: string, by: unknown = 1, op = 'vars.incr'): VarsWrite & { value: number } {
  const segments = parseKeyPath(key, op)
  if (typeof by !== 'number' || !Number.isFinite(by)) {
    throw new VarsError(`${op}: "by" for key ${showKey(key)} must be a finite number, got ${describeType(by)}`, VarsReason.BadArgs, key)
  }
  const out = clone(vars)
  let cur: Vars = out
  for (let i = 0; i < segments.length - 1; i++) {
    const seg = segments[i] as string
    const next = has(cur, seg) ? cur[seg] : undefined
    if (next === undefined) {
      const created: Vars = {}
      cur[seg] = created
      cur = created
    } else if (isPlainObject(next)) cur = next
    else {
      const at = segments.slice(0, i + 1).join('.')
      throw new VarsError(`${op}: cannot increment ${showKey(key)}: ${showKey(at)} holds ${describeType(next)}, not an object`, VarsReason.TypeConflict, key)
    }
  }
  const leaf = segments[segments.length - 1] as string
  const before = has(cur, leaf) ? cur[leaf] : undefined
  if (before !== undefined && (typeof before !== 'number' || !Number.isFinite(before))) {
    throw new VarsError(`${op}: cannot increment ${showKey(key)}: it holds ${describeType(before)}, not a number`, VarsReason.NotNumeric, key)
  }
  const value = ((before as number | undefined) ?? 0) + by
  if (!Number.isFinite(value)) throw new VarsError(`${op}: incrementing ${showKey(key)} overflows to ${value}`, VarsReason.InvalidValue, key)
  cur[leaf] = value
  checkKeyCount(op, out, [key])
  return { vars: out, touched: [key], value }
}

/**
 * Removes several key paths (a path to an object removes its subtree) and prunes the parents the
 * removal left empty. Missing paths are ignored; `touched` lists the removed ones, `missing` the
 * rest.
 */
export function unsetVars(vars: Vars, keys: readonly string[], op = 'vars.unset'): VarsWrite & { missing: string[] } {
  const parsed = keys.map((k) => ({ key: k, segments: parseKeyPath(k, op) }))
  const out = clone(vars)
  const touched: string[] = []
  const missing: string[] = []
  for (const { key, segments } of parsed) {
    const chain: Vars[] = [out]
    let cur: Vars = out
    let found = true
    for (const seg of segments.slice(0, -1)) {
      const next = has(cur, seg) ? cur[seg] : undefined
      if (!isPlainObject(next)) {
        found = false
        break
      }
      cur = next
      chain.push(cur)
    }
    const leaf = segments[segments.length - 1] as string
    if (!found || !has(cur, leaf)) {
      missing.push(key)
      continue
    }
    delete cur[leaf]
    touched.push(key)
    // Prune the parents this removal emptied, deepest first; the root stays.
    for (let i = chain.length - 1; i > 0; i--) {
      if (Object.keys(chain[i] as Vars).length > 0) break
      delete (chain[i - 1] as Vars)[segments[i - 1] as string]
    }
  }
  return { vars: out, touched, missing }
}
