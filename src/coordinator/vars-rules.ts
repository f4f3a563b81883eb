/**
 * Task variables, the rules every write obeys: what a key path and a written value may be, the
 * limits, and the error a rejected write throws (SCENARIOS T13). The operations (vars-ops.ts) and
 * the coordinator functions (vars.ts) build on these checks.
 *
 * - A key path is split on "." into segments. Every segment is non-empty, has no leading "$", no
 *   NUL, is not `__proto__`, and (for keys of object values, which are single segments) holds no
 *   ".". The same rules apply to every object key inside a written value, arrays included.
 * - Limits: at most 256 leaf keys in the whole variables object after a write; at most 16 segments
 *   in any leaf path (nested keys of written values count); path at most 512 characters; segment
 *   at most 128 characters (characters are Unicode code points); each written value at most 64 KiB,
 *   measured in UTF-8 bytes of its JSON; the whole variables object at most 1 MiB of JSON.
 * - A leaf is anything that is not a non-empty plain object (arrays are leaves, and so is `{}`).
 * - Values are JSON: null, booleans, finite numbers, strings, arrays and plain objects.
 * - Errors are `VarsError` (a `PermanentError`) with a reason code; messages and logs name the key
 *   and the limit, never the value.
 */
import { PermanentError } from '../errors.ts'

export type Vars = Record<string, unknown>

export const VARS_LIMITS = {
  maxKeys: 256,
  maxDepth: 16,
  maxPathChars: 512,
  maxSegmentChars: 128,
  maxValueBytes: 64 * 1024,
  /** The whole variables object, as UTF-8 JSON: keeps the task document far below 16 MiB. */
  maxTotalBytes: 1024 * 1024,
} as const

export const VarsReason = {
  InvalidKey: 'vars_invalid_key',
  Limit: 'vars_limit',
  InvalidValue: 'vars_invalid_value',
  NotNumeric: 'vars_not_numeric',
  TypeConflict: 'vars_type_conflict',
  SecretDetected: 'vars_secret_detected',
  BadArgs: 'bad_fn_args',
} as const
export type VarsReason = (typeof VarsReason)[keyof typeof VarsReason]

/** A rejected variables write. `key` names the offending path (never the value). */
export class VarsError extends PermanentError {
  readonly key: string | null
  /** Which limit was exceeded (`maxKeys`, `maxDepth`…) for `vars_limit`, else null. */
  readonly limit: keyof typeof VARS_LIMITS | null
  constructor(message: string, reasonCode: VarsReason, key: string | null = null, limit: keyof typeof VARS_LIMITS | null = null) {
    super(message, reasonCode)
    this.name = 'VarsError'
    this.key = key
    this.limit = limit
  }
}

/** What a write did: the new variables and the paths it wrote or removed. */
export interface VarsWrite {
  vars: Vars
  touched: string[]
}

// ---------------------------------------------------------------------------------------------
// Keys

const MAX_SHOWN_KEY = 80

/** A key as it may appear in a message: JSON-quoted (NUL and controls escaped), shortened. */
export function showKey(key: string): string {
  const cut = key.length > MAX_SHOWN_KEY ? `${key.slice(0, MAX_SHOWN_KEY)}…` : key
  return JSON.stringify(cut)
}

function charCount(s: string): number {
  // Code points; a string can only have fewer code points than UTF-16 units.
  let n = 0
  for (const _ of s) n++
  return n
}

function segmentProblem(seg: string): string | null {
  if (seg.length === 0) return 'empty segment'
  if (seg.startsWith('$')) return 'segment starts with "$"'
  if (seg.includes('\0')) return 'NUL character'
  if (seg.includes('.')) return '"." inside a segment'
  if (seg === '__proto__') return 'reserved segment "__proto__"'
  return null
}

/** Syntax and length of one segment; `path` is what the message names. */
export function checkSegment(op: string, path: string, seg: string): void {
  const problem = segmentProblem(seg)
  if (problem !== null) throw new VarsError(`${op}: invalid key ${showKey(path)}: ${problem}`, VarsReason.InvalidKey, path)
  const len = seg.length > VARS_LIMITS.maxSegmentChars ? charCount(seg) : seg.length
  if (len > VARS_LIMITS.maxSegmentChars) {
    throw new VarsError(
      `${op}: key ${showKey(path)} has a segment of ${len} characters; the segment limit is ${VARS_LIMITS.maxSegmentChars}`,
      VarsReason.Limit,
      path,
      'maxSegmentChars',
    )
  }
}

/** Depth (segments) and length of a full path. */
export function checkPathLimits(op: string, path: string, depth: number): void {
  if (depth > VARS_LIMITS.maxDepth) {
    throw new VarsError(
      `${op}: key ${showKey(path)} is ${depth} levels deep; the depth limit is ${VARS_LIMITS.maxDepth}`,
      VarsReason.Limit,
      path,
      'maxDepth',
    )
  }
  const len = path.length > VARS_LIMITS.maxPathChars ? charCount(path) : path.length
  if (len > VARS_LIMITS.maxPathChars) {
    throw new VarsError(
      `${op}: key ${showKey(path)} is ${len} characters long; the path limit is ${VARS_LIMITS.maxPathChars}`,
      VarsReason.Limit,
      path,
      'maxPathChars',
    )
  }
}

/** Splits and validates a dotted key path. Throws `VarsError` (`vars_invalid_key` / `vars_limit`). */
export function parseKeyPath(path: unknown, op = 'vars'): string[] {
  if (typeof path !== 'string') throw new VarsError(`${op}: a key must be a string, got ${describeType(path)}`, VarsReason.InvalidKey)
  const segments = path.split('.')
  for (const seg of segments) checkSegment(op, path, seg)
  checkPathLimits(op, path, segments.length)
  return segments
}

// ---------------------------------------------------------------------------------------------
// Values

/** The type of a value, as a message names it (never the value itself). */
export function describeType(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v)
  return typeof v
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false
  const proto = Object.getPrototypeOf(v) as unknown
  return proto === Object.prototype || proto === null
}

/** Own key (never one inherited from the prototype). */
export const has = (o: Record<string, unknown>, k: string): boolean => Object.hasOwn(o, k)

/**
 * Checks a value about to be written at `path` (itself already valid, `depth` segments): JSON
 * types only; every nested object key a valid segment; every nested leaf path within the depth and
 * length limits (objects inside arrays are not paths: only their keys' syntax counts); the value's
 * JSON at most `maxBytes` of UTF-8 (64 KiB; unbounded for a whole variables object, whose total
 * the caller bounds).
 */
export function checkValue(op: string, path: string, depth: number, value: unknown, maxBytes: number = VARS_LIMITS.maxValueBytes): void {
  const ancestors = new Set<object>()
  const walk = (v: unknown, at: string, level: number, inArray: boolean): void => {
    if (v === null || typeof v === 'string' || typeof v === 'boolean') return
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw new VarsError(`${op}: value of key ${showKey(at)} is not a finite number`, VarsReason.InvalidValue, at)
      return
    }
    if (typeof v !== 'object') throw new VarsError(`${op}: value of key ${showKey(at)} has unsupported type ${typeof v}`, VarsReason.InvalidValue, at)
    if (ancestors.has(v)) throw new VarsError(`${op}: value of key ${showKey(at)} is circular`, VarsReason.InvalidValue, at)
    ancestors.add(v)
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) walk(v[i], at, level, true)
    } else if (isPlainObject(v)) {
      for (const k of Object.keys(v)) {
        const child = `${at}.${k}`
        checkSegment(op, child, k)
        if (!inArray) checkPathLimits(op, child, level + 1)
        walk(v[k], child, level + 1, inArray)
      }
    } else {
      throw new VarsError(`${op}: value of key ${showKey(at)} is not plain JSON (${Object.prototype.toString.call(v)})`, VarsReason.InvalidValue, at)
    }
    ancestors.delete(v)
  }
  walk(value, path, depth, false)
  if (maxBytes === Number.POSITIVE_INFINITY) return
  const bytes = jsonBytes(value)
  if (bytes > maxBytes) {
    throw new VarsError(
      `${op}: value of key ${showKey(path)} is ${bytes} bytes of JSON; the value limit is ${VARS_LIMITS.maxValueBytes} bytes`,
      VarsReason.Limit,
      path,
      'maxValueBytes',
    )
  }
}

/** UTF-8 bytes of a value's JSON. */
export function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value) ?? '', 'utf8')
}

/** Leaf keys of a variables object: every key whose value is not a non-empty plain object. */
export function countLeaves(vars: unknown): number {
  if (!isPlainObject(vars)) return 0
  let n = 0
  for (const k of Object.keys(vars)) {
    const v = vars[k]
    n += isPlainObject(v) && Object.keys(v).length > 0 ? countLeaves(v) : 1
  }
  return n
}

/** Whole-object limits after a write: leaf keys (`maxKeys`) and JSON size (`maxTotalBytes`). */
export function checkKeyCount(op: string, vars: Vars, touched: readonly string[]): void {
  const n = countLeaves(vars)
  if (n > VARS_LIMITS.maxKeys) {
    const key = touched[0] ?? null
    const shown = touched.slice(0, 3).map(showKey).join(', ') + (touched.length > 3 ? ` and ${touched.length - 3} more` : '')
    throw new VarsError(
      `${op}: writing ${shown} would make ${n} variable keys; the key limit is ${VARS_LIMITS.maxKeys}`,
      VarsReason.Limit,
      key,
      'maxKeys',
    )
  }
  const bytes = Buffer.byteLength(JSON.stringify(vars))
  if (bytes > VARS_LIMITS.maxTotalBytes) {
    throw new VarsError(
      `${op}: writing ${touched.slice(0, 3).map(showKey).join(', ')} would make the variables ${bytes} bytes of JSON; the total limit is ${VARS_LIMITS.maxTotalBytes} bytes`,
      VarsReason.Limit,
      touched[0] ?? null,
      'maxTotalBytes',
    )
  }
}
