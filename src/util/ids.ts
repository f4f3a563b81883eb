/**
 * Deterministic ids and hashing shared by the store adapters (memory and MongoDB), so that both
 * derive the same keys from the same inputs.
 */
import { hash, randomFillSync } from 'node:crypto'

/**
 * JSON with object keys sorted (by UTF-16 code units, as `Array.prototype.sort` does) and no
 * whitespace. Follows JSON.stringify for everything else: `toJSON` is honoured, `undefined` /
 * functions / symbols are dropped from objects and become `null` in arrays, non-finite numbers
 * become `null`, a bigint throws. A top-level value JSON cannot represent yields `"null"`.
 */
export function canonicalJson(value: unknown): string {
  // Fast paths (the common shapes of ids): JSON.stringify is already canonical for an array of
  // primitives, and for a flat object given its keys in sorted order.
  if (Array.isArray(value)) {
    if (value.every(isPrimitive)) return JSON.stringify(value)
  } else if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const o = value as Record<string, unknown>
    const keys = Object.keys(o)
    if (typeof o['toJSON'] !== 'function') {
      if (sortedFlat(o, keys)) return JSON.stringify(o)
      const flat = flatSorted(o, keys)
      if (flat !== null) return flat
    }
  }
  return encode(value, true) ?? 'null'
}

/**
 * A flat object of primitives whose keys already come in sorted order (JSON.stringify writes them
 * in the order Object.keys gives): its JSON is canonical as it is, no copy needed.
 */
function sortedFlat(o: Record<string, unknown>, keys: string[]): boolean {
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as string
    if (i > 0 && !((keys[i - 1] as string) < k)) return false
    if (!isPrimitive(o[k])) return false
  }
  return true
}

/**
 * A flat object of primitives as canonical JSON: its fields copied in sorted key order into a new
 * object, which JSON.stringify then writes in that order. Null when a field is not a primitive,
 * or a key looks like an array index (JavaScript puts those first whatever the insertion order).
 */
function flatSorted(o: Record<string, unknown>, keys: string[]): string | null {
  keys.sort()
  const copy: Record<string, unknown> = {}
  for (const k of keys) {
    const v = o[k]
    if (!isPrimitive(v)) return null
    const c = k.charCodeAt(0)
    if ((c >= 48 && c <= 57) || k === '__proto__') return null
    copy[k] = v
  }
  return JSON.stringify(copy)
}

function isPrimitive(v: unknown): boolean {
  return v === null || (typeof v !== 'object' && typeof v !== 'bigint')
}

function encode(value: unknown, inArrayOrTop: boolean): string | undefined {
  let v = value
  if (v !== null && typeof v === 'object' && typeof (v as { toJSON?: unknown }).toJSON === 'function') {
    v = (v as { toJSON: () => unknown }).toJSON()
  }
  if (v === undefined || typeof v === 'function' || typeof v === 'symbol') {
    return inArrayOrTop ? 'null' : undefined
  }
  if (v === null || typeof v !== 'object') {
    // strings, finite/non-finite numbers, booleans; bigint throws like JSON.stringify
    return JSON.stringify(v)
  }
  if (Array.isArray(v)) {
    return `[${v.map((item) => encode(item, true) ?? 'null').join(',')}]`
  }
  const obj = v as Record<string, unknown>
  const parts: string[] = []
  for (const k of Object.keys(obj).sort()) {
    const enc = encode(obj[k], false)
    if (enc !== undefined) parts.push(`${JSON.stringify(k)}:${enc}`)
  }
  return `{${parts.join(',')}}`
}

/** Lower-case hex SHA-256 of the UTF-8 bytes of `s`. */
export function sha256Hex(s: string): string {
  return hash('sha256', s, 'hex')
}

/**
 * The first `chars` (at most 64) hex characters of sha256Hex(s). (A slice: it keeps the whole
 * digest's text alive as long as it lives. The digest as a Buffer, written as hex up to `chars`,
 * makes a string of its own but costs three times as much: about 1.2 µs against 0.4 µs.)
 */
export function sha256HexPrefix(s: string, chars: number): string {
  return hash('sha256', s, 'hex').slice(0, chars)
}

/**
 * Stable outbox row id: the first 32 hex chars of sha256(canonicalJson([topic, key, dedupId])).
 * A null key and the string "null" give different ids.
 */
export function outboxId(topic: string, key: string | null, dedupId: string): string {
  return sha256Hex(canonicalJson([topic, key, dedupId])).slice(0, 32)
}

/** Random bytes for 128 UUIDs at a time (as node:crypto's randomUUID pools them). */
const UUID_POOL = Buffer.allocUnsafe(16 * 128)
let uuidAt = UUID_POOL.length
const UUID_TEXT = Buffer.allocUnsafe(36)
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1')

/**
 * A random (version 4) UUID, like `crypto.randomUUID()`, as one flat string: randomUUID builds its
 * text by concatenation, a tree of a dozen string pieces that stays in memory as long as the id
 * does unless something flattens it (a JSON encoding did; ids a memory bus carries as objects are
 * never encoded). Several are made per node run (message correlation ids, leases, task ids).
 */
export function uuidV4(): string {
  if (uuidAt === UUID_POOL.length) {
    randomFillSync(UUID_POOL)
    uuidAt = 0
  }
  let o = 0
  for (let i = 0; i < 16; i++) {
    let b = UUID_POOL[uuidAt + i] as number
    if (i === 6) b = (b & 0x0f) | 0x40 // version 4
    else if (i === 8) b = (b & 0x3f) | 0x80 // variant 10
    if (i === 4 || i === 6 || i === 8 || i === 10) UUID_TEXT[o++] = 45 // '-'
    UUID_TEXT[o++] = HEX_DIGITS[b >> 4] as number
    UUID_TEXT[o++] = HEX_DIGITS[b & 15] as number
  }
  uuidAt += 16
  return UUID_TEXT.toString('latin1', 0, 36)
}

/**
 * A Kafka group instance id (static membership) for `raw` (a worker or coordinator id and the
 * group's use): `raw` itself when it is made of `[a-zA-Z0-9._-]` and at most 200 characters;
 * else its allowed characters (others as `_`, cut) and a hash of the whole `raw`, so that two ids
 * that differ only in other characters or past the cut never share an instance id (two members
 * with one instance id fence each other).
 */
export function groupInstanceId(raw: string): string {
  if (raw.length <= 200 && /^[a-zA-Z0-9._-]+$/.test(raw)) return raw
  return `${raw.replace(/[^a-zA-Z0-9._-]/g, '_').slice(0, 180)}-${sha256HexPrefix(raw, 16)}`
}
