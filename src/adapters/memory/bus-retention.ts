/**
 * Retention of the in-memory Bus (see MemoryRetention in bus-types.ts): which records of a
 * partition may go, checked each time a group commits on it, acted on in chunks (one array copy
 * per TRIM_CHUNK records at least). Offsets never change: a partition's `base` moves up.
 */
import { ErrorCode, FlowkitError } from '../../errors.ts'
import type { GroupState } from './bus-group.ts'
import { type MemoryRetention, type PartitionState, type TopicState, endOffset, partitionKey } from './bus-types.ts'
import type { PartitionWorker } from './bus-worker.ts'

/** Records a partition keeps in any case (MemoryRetention.records). */
const DEFAULT_RETAINED = 1_000
/** Most records a partition holds (MemoryRetention.maxRecords). */
const DEFAULT_MAX_RECORDS = 250_000
/** Retention drops records by at least this many at a time. */
const TRIM_CHUNK = 1024

export interface Retention {
  readonly retained: number
  readonly maxRecords: number
}

export function resolveRetention(r: MemoryRetention | undefined): Retention {
  const retained = r?.records ?? DEFAULT_RETAINED
  const max = r?.maxRecords ?? DEFAULT_MAX_RECORDS
  if (!Number.isInteger(retained) || retained < 0 || !(Number.isInteger(max) || max === Number.POSITIVE_INFINITY) || max < retained) {
    throw new FlowkitError(ErrorCode.Config, `retention: records must be an integer >= 0 and maxRecords an integer >= records, got ${retained} and ${max}`)
  }
  return { retained, maxRecords: max }
}

/**
 * Drops what retention lets go of one partition: records older than the last `retained` that
 * every group subscribed to the topic consumed; over `maxRecords`, the oldest regardless (a chunk
 * below the cap, so the next records do not trim again at once), except what a partition worker
 * is handling right now.
 */
export function dropRetained(topic: TopicState, partition: number, r: Retention, groups: Iterable<GroupState>, workers: Iterable<PartitionWorker>): void {
  const part = topic.partitions[partition] as PartitionState
  const length = part.records.length
  if (length < r.retained + TRIM_CHUNK && length <= r.maxRecords) return
  const end = endOffset(part)
  let upTo = end - r.retained
  const key = partitionKey(topic.name, partition)
  for (const group of groups) {
    if (!group.members.some((m) => m.topics.includes(topic.name))) continue
    upTo = Math.min(upTo, group.committed.get(key) ?? part.base)
  }
  const over = end - upTo > r.maxRecords
  if (over) {
    upTo = end - Math.max(0, r.maxRecords - TRIM_CHUNK)
    for (const w of workers) {
      if (w.topic === topic.name && w.partition === partition && (w.state === 'handling' || w.state === 'backoff')) upTo = Math.min(upTo, w.position)
    }
  }
  const drop = upTo - part.base
  if (drop <= 0 || (!over && drop < TRIM_CHUNK)) return
  part.records = part.records.slice(drop)
  part.base = upTo
  topic.dropped += drop
  if (topic.dropped * 2 > topic.log.length) {
    topic.log = topic.log.filter((m) => m.offset >= (topic.partitions[m.partition] as PartitionState).base)
    topic.dropped = 0
  }
}
