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
  return murmur2Of(data.length, (i) => data[i] as number)
}

/** The hash over `length` bytes read by `byteAt` (a byte array's, or an ASCII string's char codes). */
function murmur2Of(length: number, byteAt: (i: number) => number): number {
  let h = (SEED ^ length) | 0
  const blocks = length >>> 2
  for (let i = 0; i < blocks; i++) {
    const i4 = i * 4
    let k = byteAt(i4) | (byteAt(i4 + 1) << 8) | (byteAt(i4 + 2) << 16) | (byteAt(i4 + 3) << 24)
    k = Math.imul(k, M)
    k ^= k >>> R
    k = Math.imul(k, M)
    h = Math.imul(h, M)
    h ^= k
  }
  const tail = length & ~3
  const rest = length & 3
  if (rest === 3) h ^= byteAt(tail + 2) << 16
  if (rest >= 2) h ^= byteAt(tail + 1) << 8
  if (rest >= 1) {
    h ^= byteAt(tail)
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

/** No character outside 7-bit ASCII (its UTF-8 bytes are its char codes). */
const NOT_ASCII = /\P{ASCII}/u

/** The partition Kafka's Java producer picks for a non-null string key. */
export function partitionForKey(key: string, partitions: number): number {
  checkPartitions(partitions)
  const h = NOT_ASCII.test(key) ? murmur2(encoder.encode(key)) : murmur2Of(key.length, (i) => key.charCodeAt(i))
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
