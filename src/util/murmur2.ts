/**
 * Kafka's key partitioner, bit-for-bit compatible with the Java client
 * (`org.apache.kafka.common.utils.Utils.murmur2` + `BuiltInPartitioner.partitionForKey`):
 * `partition = (murmur2(utf8(key)) & 0x7fffffff) % partitions`.
 *
 * Note: `@platformatic/kafka`'s `defaultPartitioner` uses `murmur2(key) >>> 0` (unsigned), which
 * differs from Java for half of all keys; its `compatibilityPartitioner` matches this module.
 * Keys with lone UTF-16 surrogates encode to U+FFFD here (as in Node's Buffer), to '?' in Java.
 */

const SEED = 0x9747b28c
const M = 0x5bd1e995
const R = 24

const encoder = new TextEncoder()

/** Java-compatible murmur2 of raw bytes; returns a signed 32-bit integer like Java's `int`. */
export function murmur2(data: Uint8Array): number {
  const length = data.length
  let h = (SEED ^ length) | 0
  const blocks = length >>> 2
  for (let i = 0; i < blocks; i++) {
    const i4 = i * 4
    h = mixBlock(h, (data[i4] as number) | ((data[i4 + 1] as number) << 8) | ((data[i4 + 2] as number) << 16) | ((data[i4 + 3] as number) << 24))
  }
  const tail = length & ~3
  return finish(h, length & 3, data[tail] ?? 0, data[tail + 1] ?? 0, data[tail + 2] ?? 0)
}

/**
 * murmur2 of a string whose characters are all 7-bit ASCII (its UTF-8 bytes are its char codes),
 * or null when one is not (the caller encodes it). One pass: the check is made while hashing.
 */
function murmur2Ascii(s: string): number | null {
  const length = s.length
  let h = (SEED ^ length) | 0
  const blocks = length >>> 2
  for (let i = 0; i < blocks; i++) {
    const i4 = i * 4
    const b0 = s.charCodeAt(i4)
    const b1 = s.charCodeAt(i4 + 1)
    const b2 = s.charCodeAt(i4 + 2)
    const b3 = s.charCodeAt(i4 + 3)
    if ((b0 | b1 | b2 | b3) > 0x7f) return null
    h = mixBlock(h, b0 | (b1 << 8) | (b2 << 16) | (b3 << 24))
  }
  const tail = length & ~3
  const rest = length & 3
  const t0 = rest >= 1 ? s.charCodeAt(tail) : 0
  const t1 = rest >= 2 ? s.charCodeAt(tail + 1) : 0
  const t2 = rest === 3 ? s.charCodeAt(tail + 2) : 0
  if ((t0 | t1 | t2) > 0x7f) return null
  return finish(h, rest, t0, t1, t2)
}

function mixBlock(h: number, block: number): number {
  let k = Math.imul(block, M)
  k ^= k >>> R
  k = Math.imul(k, M)
  return Math.imul(h, M) ^ k
}

/** The tail (`rest` bytes: t0, t1, t2) and the final avalanche. */
function finish(hash: number, rest: number, t0: number, t1: number, t2: number): number {
  let h = hash
  if (rest === 3) h ^= t2 << 16
  if (rest >= 2) h ^= t1 << 8
  if (rest >= 1) {
    h ^= t0
    h = Math.imul(h, M)
  }
  h ^= h >>> 13
  h = Math.imul(h, M)
  h ^= h >>> 15
  return h | 0
}

/** Java's `Utils.toPositive`: clears the sign bit (not `Math.abs`). */
export function toPositive(n: number): number {
  return n & 0x7fffffff
}

function checkPartitions(partitions: number): void {
  if (!Number.isInteger(partitions) || partitions < 1) {
    throw new RangeError(`partitions must be a positive integer, got ${partitions}`)
  }
}

/** The partition Kafka's Java producer picks for a non-null string key. */
export function partitionForKey(key: string, partitions: number): number {
  checkPartitions(partitions)
  const h = murmur2Ascii(key) ?? murmur2(encoder.encode(key))
  return toPositive(h) % partitions
}

/** Picks a partition for a record: murmur2 for a key, per-topic round robin for a null key. */
export type Partitioner = (topic: string, key: string | null, partitions: number) => number

export function createPartitioner(): Partitioner {
  const counters = new Map<string, number>()
  return (topic, key, partitions) => {
    if (key !== null) return partitionForKey(key, partitions)
    checkPartitions(partitions)
    const n = counters.get(topic) ?? 0
    counters.set(topic, (n + 1) % 0x7fffffff)
    return n % partitions
  }
}
