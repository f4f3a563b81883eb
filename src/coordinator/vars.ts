/**
 * Task variables (`coordinator.vars`): pure operations on a plain JSON object, and the four
 * coordinator functions built on them (`vars.set`, `vars.merge`, `vars.incr`, `vars.unset`).
 *
 * Rules (SCENARIOS T13):
 * - A key path is split on "." into segments. Every segment is non-empty, has no leading "$", no
 *   NUL, is not `__proto__`, and (for keys of object values, which are single segments) holds no
 *   ".". The same rules apply to every object key inside a written value, arrays included.
 * - Limits: at most 256 leaf keys in the whole variables object after a write; at most 16 segments
 *   in any leaf path (nested keys of written values count); path at most 512 characters; segment
 *   at most 128 characters (characters are Unicode code points); each written value at most 64 KiB,
 *   measured in UTF-8 bytes of its JSON; the whole variables object at most 1 MiB of JSON.
 * - A leaf is anything that is not a non-empty plain object (arrays are leaves, and so is `{}`).
 * - Values are JSON: null, booleans, finite numbers, strings, arrays and plain objects.
 * - Writing under a path whose parent is not an object replaces that parent with an object (last
 *   write wins), as a deep merge does; only `incr` refuses, since a counter must not destroy data.
 * - Errors are `VarsError` (a `PermanentError`) with a reason code; messages and logs name the key
 *   and the limit, never the value.
 *
 * The operations never mutate their inputs: they return a new variables object. The coordinator
 * runs functions inside the task's single writer, so read-modify-write here is atomic per task.
 */
import { PermanentError } from '../errors.ts'
import type { Logger } from '../log.ts'

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
function checkSegment(op: string, path: string, seg: string): void {
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
function checkPathLimits(op: string, path: string, depth: number): void {
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

function describeType(v: unknown): string {
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

const has = (o: Record<string, unknown>, k: string): boolean => Object.hasOwn(o, k)

/**
 * Checks a value about to be written at `path` (itself already valid, `depth` segments): JSON
 * types only; every nested object key a valid segment; every nested leaf path within the depth and
 * length limits (objects inside arrays are not paths: only their keys' syntax counts); the value's
 * JSON at most 64 KiB of UTF-8.
 */
function checkValue(op: string, path: string, depth: number, value: unknown): void {
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
  const bytes = jsonBytes(value)
  if (bytes > VARS_LIMITS.maxValueBytes) {
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

function checkKeyCount(op: string, vars: Vars, touched: readonly string[]): void {
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

// ---------------------------------------------------------------------------------------------
// Secret detector

export const SecretKind = {
  AwsAccessKey: 'aws_access_key_id',
  GithubToken: 'github_token',
  SlackToken: 'slack_token',
  Jwt: 'jwt',
  PrivateKey: 'private_key',
  HighEntropy: 'high_entropy',
} as const
export type SecretKind = (typeof SecretKind)[keyof typeof SecretKind]

const TOKEN_FORMATS: ReadonlyArray<readonly [SecretKind, RegExp]> = [
  [SecretKind.PrivateKey, /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----/],
  [SecretKind.AwsAccessKey, /\b(?:AKIA|ASIA)[A-Z0-9]{16}\b/],
  [SecretKind.GithubToken, /\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})/],
  [SecretKind.SlackToken, /\bxox[abposr]-[A-Za-z0-9-]{10,}/],
  [SecretKind.Jwt, /\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/],
]

/**
 * High-entropy rule, for tokens (runs of the base64 / base64url alphabet) of at least
 * `SECRET_MIN_LENGTH` characters: Shannon entropy of at least
 * min(`SECRET_ENTROPY_CAP`, log2(length) − `SECRET_ENTROPY_SLACK`) bits per character, i.e. close to
 * the most a string of that length can have. Entropy alone cannot tell a 20-character key from a
 * long CamelCase name, so a token must also mix upper case, lower case and digits, and change
 * character class (upper / lower / digit / symbol) between at least `SECRET_MIN_CLASS_CHANGES` of
 * its neighbouring characters (random base64 ≈ 0.65, words and identifiers far less). Measured on
 * random base64 keys: ~92% caught at 20 characters, ~95% at 32, ~100% from 64; hex (git SHAs,
 * UUIDs) never is.
 */
export const SECRET_MIN_LENGTH = 20
export const SECRET_ENTROPY_CAP = 4.5
export const SECRET_ENTROPY_SLACK = 0.7
export const SECRET_MIN_CLASS_CHANGES = 0.45

/** Shannon entropy of a string, in bits per character (code point). */
export function shannonEntropy(s: string): number {
  const counts = new Map<string, number>()
  let n = 0
  for (const c of s) {
    counts.set(c, (counts.get(c) ?? 0) + 1)
    n++
  }
  if (n === 0) return 0
  let h = 0
  for (const k of counts.values()) {
    const p = k / n
    h -= p * Math.log2(p)
  }
  return h
}

function charClass(code: number): number {
  if (code >= 65 && code <= 90) return 0
  if (code >= 97 && code <= 122) return 1
  if (code >= 48 && code <= 57) return 2
  return 3
}

/** True for a token that looks like a random key (see `SECRET_MIN_LENGTH`). */
export function isHighEntropyToken(token: string): boolean {
  if (token.length < SECRET_MIN_LENGTH) return false
  if (!/[A-Z]/.test(token) || !/[a-z]/.test(token) || !/[0-9]/.test(token)) return false
  let changes = 0
  for (let i = 1; i < token.length; i++) if (charClass(token.charCodeAt(i)) !== charClass(token.charCodeAt(i - 1))) changes++
  if (changes / (token.length - 1) < SECRET_MIN_CLASS_CHANGES) return false
  const threshold = Math.min(SECRET_ENTROPY_CAP, Math.log2(token.length) - SECRET_ENTROPY_SLACK)
  return shannonEntropy(token) >= threshold
}

/** The kind of secret a string looks like, or null. */
export function detectSecretString(s: string): SecretKind | null {
  for (const [kind, re] of TOKEN_FORMATS) if (re.test(s)) return kind
  for (const token of s.split(/[^A-Za-z0-9+/=_-]+/)) if (isHighEntropyToken(token)) return SecretKind.HighEntropy
  return null
}

/** First string inside `value` (nested objects and arrays included) that looks like a secret. */
export function findSecret(value: unknown, path: string): { key: string; kind: SecretKind } | null {
  if (typeof value === 'string') {
    const kind = detectSecretString(value)
    return kind === null ? null : { key: path, kind }
  }
  if (Array.isArray(value)) {
    for (const v of value) {
      const hit = findSecret(v, path)
      if (hit !== null) return hit
    }
  } else if (isPlainObject(value)) {
    for (const k of Object.keys(value)) {
      const hit = findSecret(value[k], `${path}.${k}`)
      if (hit !== null) return hit
    }
  }
  return null
}

function checkSecrets(op: string, path: string, value: unknown): void {
  const hit = findSecret(value, path)
  if (hit !== null) {
    throw new VarsError(
      `${op}: value of key ${showKey(hit.key)} looks like a secret (${hit.kind}); blocked by block_secrets`,
      VarsReason.SecretDetected,
      hit.key,
    )
  }
}

// ---------------------------------------------------------------------------------------------
// Pure operations

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

// ---------------------------------------------------------------------------------------------
// Coordinator functions

function badArgs(op: string, message: string): VarsError {
  return new VarsError(`${op}: ${message}`, VarsReason.BadArgs)
}

function blockSecretsArg(op: string, args: Record<string, unknown>): boolean {
  const v = args['block_secrets']
  if (v === undefined || v === null) return false
  if (typeof v !== 'boolean') throw badArgs(op, `block_secrets must be a boolean, got ${describeType(v)}`)
  return v
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

/** `vars.set`: `{ kv: { "a.b": 1, c: { d: 2 } }, block_secrets? }` or `{ key, value, block_secrets? }`. */
export const varsSet: VarsFn = async (ctx) =>
  guarded(ctx, 'vars.set', () => {
    const op = 'vars.set'
    const args = ctx.args
    const kv: Record<string, unknown> = {}
    const rawKv = args['kv']
    if (rawKv !== undefined) {
      if (!isPlainObject(rawKv)) throw badArgs(op, `kv must be an object, got ${describeType(rawKv)}`)
      Object.assign(kv, rawKv)
    }
    if (args['key'] !== undefined) {
      if (typeof args['key'] !== 'string') throw badArgs(op, `key must be a string, got ${describeType(args['key'])}`)
      if (!has(args, 'value') || args['value'] === undefined) throw badArgs(op, `key ${showKey(args['key'])} needs a value`)
      kv[args['key']] = args['value']
    }
    if (Object.keys(kv).length === 0) throw badArgs(op, 'needs kv (an object of key paths to values) or key and value')
    return result(ctx, 'vars.set', setVars(currentVars(ctx), kv, { blockSecrets: blockSecretsArg(op, args) }, op))
  })

/** `vars.merge`: `{ data: {...}, block_secrets? }` deep merge; non-object leaves overwrite. */
export const varsMerge: VarsFn = async (ctx) =>
  guarded(ctx, 'vars.merge', () => {
    const op = 'vars.merge'
    const data = ctx.args['data']
    if (!isPlainObject(data)) throw badArgs(op, `data must be an object, got ${describeType(data)}`)
    return result(ctx, 'vars.merged', mergeVars(currentVars(ctx), data, { blockSecrets: blockSecretsArg(op, ctx.args) }, op))
  })

/** `vars.incr`: `{ key, by? = 1 }`; creates a missing leaf at 0; floats and negatives allowed. */
export const varsIncr: VarsFn = async (ctx) =>
  guarded(ctx, 'vars.incr', () => {
    const op = 'vars.incr'
    const key = ctx.args['key']
    if (typeof key !== 'string') throw badArgs(op, `key must be a string, got ${describeType(key)}`)
    const by = ctx.args['by'] === undefined ? 1 : ctx.args['by']
    const write = incrVar(currentVars(ctx), key, by, op)
    return result(ctx, 'vars.incr', write, { value: write.value })
  })

/** `vars.unset`: `{ keys: ["a.b", "c"] }` or `{ key }`; prunes parents left empty. */
export const varsUnset: VarsFn = async (ctx) =>
  guarded(ctx, 'vars.unset', () => {
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
  })

export const VARS_FUNCTIONS: Record<string, VarsFn> = {
  'vars.set': varsSet,
  'vars.merge': varsMerge,
  'vars.incr': varsIncr,
  'vars.unset': varsUnset,
}
