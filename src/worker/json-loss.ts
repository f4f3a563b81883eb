/**
 * What JSON would store changed without a word, found while measuring a value as the store
 * encodes it: the walk behind the worker's checks of metas (results.ts `checkArtifactMeta`) and
 * checkpoints (`checkLossless`). NaN and Infinity become null; a Map, a Set, an Error or a RegExp
 * `{}`; a typed array an object of its byte indexes. A Date is kept as its ISO text (its toJSON).
 */

/** A value in a meta that JSON would store changed (bsonSizeBound's walk); `path` filled in on the way out. */
export class Lossy extends Error {
  path = ''
  readonly what: string
  readonly becomes: string
  readonly hint: string
  constructor(what: string, becomes: string, hint: string) {
    super(what)
    this.what = what
    this.becomes = becomes
    this.hint = hint
  }
}

/**
 * The BSON size of a JSON-like value as the driver encodes it (an upper bound for other values):
 * integers in int32 range take 4 bytes, other numbers 8, strings their UTF-8 bytes with their
 * length and NUL, objects and arrays are documents (array keys are indexes).
 * `depth` stops runaway recursion (JSON.stringify already refused cycles).
 */
export function bsonSizeBound(v: unknown, depth: number): number {
  if (depth > 200) return Number.POSITIVE_INFINITY
  if (v === null || v === undefined) return 0
  switch (typeof v) {
    case 'string':
      return 5 + Buffer.byteLength(v, 'utf8')
    case 'number':
      if (!Number.isFinite(v)) throw new Lossy(String(v), 'null', '')
      return Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31 ? 4 : 8 // int32, else double
    case 'bigint':
      return 8
    case 'boolean':
      return 1
    case 'object': {
      let size = 5
      if (Array.isArray(v)) {
        v.forEach((item, i) => {
          try {
            size += 2 + String(i).length + bsonSizeBound(item, depth + 1)
          } catch (err) {
            if (err instanceof Lossy) err.path = `[${i}]${err.path}`
            throw err
          }
        })
      } else if (v instanceof Date) {
        return 8
      } else if (v instanceof Map || v instanceof Set) {
        throw new Lossy(v instanceof Map ? 'a Map' : 'a Set', '{} (its entries lost)', v instanceof Map ? ' (Object.fromEntries(map))' : ' ([...set])')
      } else if (v instanceof Error) {
        throw new Lossy('an Error', '{} (its message and stack lost)', ' ({ message: err.message })')
      } else if (v instanceof RegExp) {
        throw new Lossy('a RegExp', '{}', ' (re.source)')
      } else if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) {
        throw new Lossy(`a ${v.constructor.name}`, 'an object of its byte indexes', ' (Array.from(bytes), or a base64 string)')
      } else {
        for (const [k, item] of Object.entries(v)) {
          try {
            size += 2 + Buffer.byteLength(k, 'utf8') + bsonSizeBound(item, depth + 1)
          } catch (err) {
            if (err instanceof Lossy) err.path = `.${k}${err.path}`
            throw err
          }
        }
      }
      return size
    }
    default:
      return 0
  }
}

/** The message of a lossy value found in `what`, at `root` + its path (`meta.a.b[2]`). */
export function lossMessage(what: string, root: string, err: Lossy): string {
  return `${what}: ${err.what} at ${root}${err.path}, which JSON would store as ${err.becomes}; convert it first${err.hint}`
}
