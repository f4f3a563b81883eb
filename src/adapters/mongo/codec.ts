/**
 * How user-controlled JSON is stored in documents that must also be valid for FerretDB 1.x (and
 * readable by Python workers).
 *
 * A value is first normalised like JSON would see it (`sanitize`): `undefined` object fields are
 * dropped and `undefined` array elements become null (the driver's `ignoreUndefined: true`), numbers
 * JSON cannot represent (NaN, ±Infinity) become null and -0 becomes 0 (FerretDB refuses NaN and
 * Infinity, and BSON int32 has no -0). Dates are kept.
 *
 * A field is then stored as itself when BSON can hold it exactly on every backend (`isBsonSafe`):
 * no nested arrays, no keys that are empty, contain '.' or NUL or start with '$', no lone UTF-16
 * surrogates (UTF-8 would turn them into U+FFFD), bounded depth, only plain objects, arrays,
 * strings, finite numbers, booleans, null and Dates. Otherwise it is stored as JSON text in the
 * field `<name>_json`, and the plain field is absent. Readers take `<name>_json` when it is there.
 * Writers that update a field set one form and unset the other, so a document never holds both.
 * A stored field whose own name ends in `_json` is therefore always JSON text.
 */
import { ErrorCode, FlowkitError } from '../../errors.ts'

export const JSON_SUFFIX = '_json'

/** MongoDB allows 100 levels of nesting; leave room for the path the field lives under. */
const MAX_DEPTH = 80

const LONE_SURROGATE = /[\uD800-\uDFFF]/u

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null
}

/**
 * Deep copy with JSON's view of values (see the module comment). Objects are built with
 * `Object.fromEntries`, so a user key named `__proto__` stays an own key.
 */
export function sanitize(v: unknown): unknown {
  switch (typeof v) {
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined
    case 'number':
      if (!Number.isFinite(v)) return null
      return Object.is(v, -0) ? 0 : v
    case 'string':
    case 'boolean':
    case 'bigint':
      return v
    default:
      break
  }
  if (v === null) return null
  if (v instanceof Date) return new Date(v.getTime())
  if (Array.isArray(v)) {
    return v.map((item) => {
      const s = sanitize(item)
      return s === undefined ? null : s
    })
  }
  const obj = v as Record<string, unknown>
  if (!isPlainObject(obj) && typeof (obj as { toJSON?: unknown }).toJSON === 'function') {
    return sanitize((obj as { toJSON: () => unknown }).toJSON())
  }
  const entries: [string, unknown][] = []
  for (const k of Object.keys(obj)) {
    const s = sanitize(obj[k])
    if (s !== undefined) entries.push([k, s])
  }
  return Object.fromEntries(entries)
}

export function isSafeKey(k: string): boolean {
  return k !== '' && !k.startsWith('$') && !k.includes('.') && !k.includes('\u0000') && !LONE_SURROGATE.test(k)
}

/** True when the (sanitised) value round-trips exactly through BSON on MongoDB and FerretDB 1.x. */
export function isBsonSafe(v: unknown, depth = 0): boolean {
  if (v === null) return true
  switch (typeof v) {
    case 'boolean':
      return true
    case 'number':
      return Number.isFinite(v) && !Object.is(v, -0)
    case 'string':
      return !LONE_SURROGATE.test(v)
    case 'object':
      break
    default:
      return false
  }
  if (depth >= MAX_DEPTH) return false
  if (v instanceof Date) return !Number.isNaN(v.getTime())
  if (Array.isArray(v)) {
    return v.every((item) => !Array.isArray(item) && isBsonSafe(item, depth + 1))
  }
  const obj = v as Record<string, unknown>
  if (!isPlainObject(obj)) return false
  for (const k of Object.keys(obj)) {
    if (!isSafeKey(k) || !isBsonSafe(obj[k], depth + 1)) return false
  }
  return true
}

function toJsonText(v: unknown): string {
  try {
    return JSON.stringify(v) ?? 'null'
  } catch (err) {
    throw new FlowkitError(ErrorCode.StoreError, `value cannot be stored as JSON: ${(err as Error).message}`, { cause: err })
  }
}

/**
 * Puts an already sanitised value into `target` under `name` (plain) or `name_json` (JSON text).
 * `undefined` puts nothing.
 */
export function putField(target: Record<string, unknown>, name: string, value: unknown): void {
  if (value === undefined) return
  if (!name.endsWith(JSON_SUFFIX) && isBsonSafe(value)) target[name] = value
  else target[name + JSON_SUFFIX] = toJsonText(value)
}

/**
 * The `$set` / `$unset` pair that stores an already sanitised value at `path`: one form is set,
 * the other removed.
 */
export function setField(set: Record<string, unknown>, unset: Record<string, ''>, path: string, value: unknown): void {
  if (value === undefined) return
  const name = path.slice(path.lastIndexOf('.') + 1)
  if (!name.endsWith(JSON_SUFFIX) && isBsonSafe(value)) {
    set[path] = value
    unset[path + JSON_SUFFIX] = ''
  } else {
    set[path + JSON_SUFFIX] = toJsonText(value)
    unset[path] = ''
  }
}

/** Sanitises and stores every field of `obj` (one level), skipping `skip`. */
export function encodeFields(obj: object, skip: ReadonlySet<string> = new Set()): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(obj)) {
    if (skip.has(k)) continue
    if (k === '_id' || !isSafeKey(k)) {
      throw new FlowkitError(ErrorCode.InvalidKey, `field name ${JSON.stringify(k)} cannot be stored`, { details: { field: k } })
    }
    putField(out, k, sanitize(v))
  }
  return out
}

function parseJsonText(text: string, name: string): unknown {
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new FlowkitError(ErrorCode.StoreError, `stored field ${name}${JSON_SUFFIX} is not valid JSON`, { cause: err })
  }
}

/** Reads one stored field (`name_json` wins over `name`); undefined when neither is there. */
export function getField(doc: Record<string, unknown>, name: string): unknown {
  const text = doc[name + JSON_SUFFIX]
  if (typeof text === 'string') return parseJsonText(text, name)
  return doc[name]
}

/** Reverse of `encodeFields` for one level: decodes every field except `_id` and `skip`. */
export function decodeFields(doc: Record<string, unknown>, skip: ReadonlySet<string> = new Set()): Record<string, unknown> {
  const entries: [string, unknown][] = []
  const seen = new Set<string>()
  for (const k of Object.keys(doc)) {
    if (k === '_id') continue
    const name = k.endsWith(JSON_SUFFIX) && typeof doc[k] === 'string' ? k.slice(0, -JSON_SUFFIX.length) : k
    if (skip.has(name) || seen.has(name)) continue
    seen.add(name)
    entries.push([name, getField(doc, name)])
  }
  return Object.fromEntries(entries)
}

/** A number of milliseconds from a stored timestamp (ours are numbers; Python may write Dates). */
export function toMs(v: unknown): number {
  if (typeof v === 'number') return v
  if (v instanceof Date) return v.getTime()
  return 0
}
