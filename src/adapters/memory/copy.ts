/**
 * How documents enter and leave the MemoryStore: as copies (no shared references with callers),
 * with `undefined` treated as the MongoDB driver does under `ignoreUndefined: true`, and listing
 * limits as the Store port defines them (a `limit` <= 0 returns nothing).
 */

/** Deep copy of a stored (JSON) document on its way out. */
export const clone = <T>(v: T): T => (v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T))

/**
 * Deep copy of a caller's value on its way in, with `undefined` treated as BSON does under the
 * driver option `ignoreUndefined: true` (and as JSON does): object fields holding `undefined` are
 * dropped, `undefined` array elements (and holes) become `null`.
 */
export function ingest<T>(v: T): T {
  // A JSON round trip does exactly what a document store does with JSON data: undefined fields
  // dropped, undefined array elements (and holes) null, NaN/±Infinity null, -0 as 0.
  if (v === undefined) return v
  return JSON.parse(JSON.stringify(v)) as T
}

export function limitOf(limit: number | undefined): number {
  if (limit === undefined) return Number.POSITIVE_INFINITY
  return limit > 0 ? Math.floor(limit) : 0
}

export function take<T>(rows: T[], limit: number | undefined): T[] {
  const n = limitOf(limit)
  return n === Number.POSITIVE_INFINITY ? rows : rows.slice(0, n)
}
