/**
 * Topics of the Kafka bus: creation (idempotent, waits for leaders) and the watch that notices
 * when they are gone.
 *
 * A broker that lost its data (a new, empty cluster on the same address) or a deleted topic leaves
 * producers failing with "unknown topic" and consumers looping on it for ever. The watch knows
 * every topic the bus created (`ensureTopics`, with its partition count) or consumes, the topic ids
 * and the cluster id. It checks them every `topicCheckIntervalMs`, and soon after an error that
 * may mean a missing topic (a failed produce, a stream or group error). A check that finds topics
 * missing creates them again with their partition count; when topics were recreated (by this bus
 * or by another process: the topic id changed) or the cluster id changed, it logs the warning
 * `bus.topics_recreated` and tells the bus, which replaces its producer and restarts the affected
 * subscriptions. Records that were only in the lost topics are lost; the rest flows again.
 */
import type { Admin, ClusterMetadata } from '@platformatic/kafka'
import { ErrorCode, FlowkitError } from '../../errors.ts'
import type { Logger } from '../../log.ts'
import { flattenErrors, hasApiId } from './bus-errors.ts'
import type { Redactor } from './bus-errors.ts'
import { backoffMs, delay } from './bus-settings.ts'
import type { Settings } from './bus-settings.ts'

/** A minimum gap between checks that errors trigger (the periodic check is separate). */
const TROUBLE_CHECK_GAP_MS = 1000

/** False for a missing or nil topic id (a metadata answer for a topic that is not ready). */
export function isTopicId(id: string | undefined): id is string {
  return typeof id === 'string' && id !== '' && !/^[0-]+$/.test(id)
}

/** True for an error that says a topic (or a topic id) is unknown to the broker. */
export function isUnknownTopic(err: unknown): boolean {
  return flattenErrors(err).some(
    (e) =>
      e.apiId === 'UNKNOWN_TOPIC_OR_PARTITION' ||
      e.apiId === 'UNKNOWN_TOPIC_ID' ||
      (typeof e.message === 'string' && /unknown topic/i.test(e.message)),
  )
}

/**
 * Creates the topics (existing ones are fine), then waits until every partition has a leader;
 * returns that metadata and the topics this call created.
 */
export async function createTopics(
  admin: Admin,
  settings: Settings,
  log: Logger,
  redactor: Redactor,
  topics: Map<string, number>,
  isOpen: () => void,
): Promise<{ metadata: ClusterMetadata; created: string[] }> {
  const created: string[] = []
  await Promise.all(
    [...topics].map(async ([name, partitions]) => {
      try {
        await admin.createTopics({ topics: [name], partitions, replicas: settings.replicationFactor })
        created.push(name)
        log.info('bus.kafka.topic_created', { topic: name, partitions })
      } catch (err) {
        if (!hasApiId(err, 'TOPIC_ALREADY_EXISTS')) throw err
      }
    }),
  )
  const metadata = await waitForLeaders(admin, settings, redactor, [...topics.keys()], isOpen)
  return { metadata, created }
}

/** Waits until the metadata shows a leader for every partition of every topic; returns that metadata. */
export async function waitForLeaders(
  admin: Admin,
  settings: Settings,
  redactor: Redactor,
  topics: string[],
  isOpen: () => void,
): Promise<ClusterMetadata> {
  const deadline = performance.now() + settings.topicReadyTimeoutMs
  let lastError: unknown = null
  for (let attempt = 1; ; attempt++) {
    isOpen()
    try {
      const metadata = await admin.metadata({ topics, forceUpdate: true })
      const notReady = topics.filter((name) => {
        const topic = metadata.topics.get(name)
        return !topic || topic.partitions.length === 0 || topic.partitions.some((p) => p === undefined || p.leader < 0)
      })
      if (notReady.length === 0) return metadata
      lastError = new Error(`no leader yet for ${notReady.join(', ')}`)
    } catch (err) {
      lastError = err
    }
    if (performance.now() >= deadline) {
      const why = redactor.describe(lastError)
      throw new FlowkitError(ErrorCode.BusUnavailable, `kafka bus: topics not ready after ${settings.topicReadyTimeoutMs}ms: ${why}`, { retryable: true })
    }
    await delay(backoffMs(attempt, 50, 500))
  }
}

export interface TopicWatchHost {
  readonly settings: Settings
  readonly log: Logger
  readonly redactor: Redactor
  admin(): Admin
  /** Throws CLOSED once the bus is closed. */
  assertOpen(): void
  /**
   * Topics were replaced (their new ids; with `cluster`, every watched topic): produce and consume
   * anew. `since`: when the check that found it began (what started later already sees them).
   */
  replaced(ids: Map<string, string>, cluster: boolean, since: number): Promise<void>
}

interface Watched {
  /** Partition count to create it with again; null until known. */
  partitions: number | null
  /** Topic id when last seen; null until known. */
  id: string | null
}

export class TopicWatch {
  readonly #host: TopicWatchHost
  readonly #topics = new Map<string, Watched>()
  #clusterId: string | null = null
  #timer: ReturnType<typeof setTimeout> | null = null
  #soon: ReturnType<typeof setTimeout> | null = null
  #running: Promise<boolean> | null = null
  #lastCheck = 0
  #stopped = false

  constructor(host: TopicWatchHost) {
    this.#host = host
  }

  /** Topics created or found by `ensureTopics` (with their metadata then). */
  learn(metadata: ClusterMetadata, names: string[], partitions: Map<string, number>): void {
    // Only as a first value: the admin client keeps the cluster id of its first metadata, so a
    // later one here may be stale (a check clears that cache and reads it afresh).
    this.#clusterId ??= metadata.id
    for (const name of names) {
      const topic = metadata.topics.get(name)
      const known = this.#topics.get(name)
      if (known && known.id !== null && topic && isTopicId(topic.id) && topic.id !== known.id) {
        this.poke() // recreated behind our back: a check restarts what consumes it
        continue
      }
      this.#topics.set(name, {
        partitions: topic?.partitionsCount ?? known?.partitions ?? partitions.get(name) ?? null,
        id: isTopicId(topic?.id) ? topic.id : (known?.id ?? null),
      })
    }
    this.#arm()
  }

  /** Topics a subscription consumes (they exist: subscribe succeeded), with the ids its consumer saw. */
  watch(names: readonly string[], seen: { ids: ReadonlyMap<string, string>; clusterId: string | null }): void {
    let unknown = false
    for (const name of names) {
      const known = this.#topics.get(name)
      const id = seen.ids.get(name) ?? null
      if (!known) this.#topics.set(name, { partitions: null, id })
      else known.id ??= id
      if (this.#topics.get(name)?.id === null) unknown = true
    }
    this.#clusterId ??= seen.clusterId
    this.#arm()
    // Learn what is still unknown now, so a later loss is recognised as one.
    if (unknown || this.#clusterId === null) this.poke()
  }

  /** Something failed in a way a missing topic would explain: check soon. */
  poke(): void {
    if (this.#stopped || this.#soon || this.#topics.size === 0) return
    const waitMs = Math.max(0, this.#lastCheck + TROUBLE_CHECK_GAP_MS - performance.now())
    this.#soon = setTimeout(() => {
      this.#soon = null
      void this.check().catch(() => {})
    }, waitMs)
  }

  /**
   * Checks the watched topics now (joins a check under way); true when topics were recreated or
   * replaced and the bus restarted what uses them.
   */
  check(): Promise<boolean> {
    this.#running ??= this.#check().finally(() => {
      this.#running = null
      this.#lastCheck = performance.now()
    })
    return this.#running
  }

  stop(): void {
    this.#stopped = true
    for (const timer of [this.#timer, this.#soon]) if (timer) clearTimeout(timer)
    this.#timer = null
    this.#soon = null
  }

  #arm(): void {
    const every = this.#host.settings.topicCheckIntervalMs
    if (this.#stopped || this.#timer || every === 0 || this.#topics.size === 0) return
    this.#timer = setTimeout(() => {
      this.#timer = null
      this.check()
        .catch(() => {})
        .finally(() => this.#arm())
    }, every)
    this.#timer.unref?.()
  }

  async #check(): Promise<boolean> {
    const host = this.#host
    if (this.#stopped || this.#topics.size === 0) return false
    try {
      return await this.#inspect()
    } catch (err) {
      if (!this.#stopped) host.log.debug('bus.kafka.topic_check_failed', { err: host.redactor.describe(err) })
      return false
    }
  }

  async #inspect(): Promise<boolean> {
    const since = performance.now()
    const host = this.#host
    const admin = host.admin()
    const names = [...this.#topics.keys()]
    let missing: string[] = []
    // The admin client caches the cluster id of its first metadata: forget it to read the current one.
    admin.clearMetadata()
    let metadata: ClusterMetadata
    try {
      metadata = await admin.metadata({ topics: names, forceUpdate: true })
    } catch (err) {
      if (!isUnknownTopic(err)) throw err
      const existing = new Set(await admin.listTopics())
      missing = names.filter((name) => !existing.has(name))
      admin.clearMetadata()
      metadata = await admin.metadata({ topics: names.filter((name) => existing.has(name)), forceUpdate: true })
    }
    host.assertOpen()
    const clusterChanged = this.#clusterId !== null && metadata.id !== this.#clusterId
    // Created here: gone, certainly. Missing but found existing when creating it (a metadata
    // answer that raced its creation elsewhere): replaced only if its id changed (below).
    let created: string[] = []
    if (missing.length > 0) {
      const create = new Map(missing.map((name) => [name, this.#topics.get(name)?.partitions ?? host.settings.defaultPartitions]))
      const result = await createTopics(admin, host.settings, host.log, host.redactor, create, () => host.assertOpen())
      created = result.created
      for (const name of missing) {
        const topic = result.metadata.topics.get(name)
        if (topic) metadata.topics.set(name, topic)
      }
    }
    const replaced = new Set(created)
    for (const name of names) {
      const topic = metadata.topics.get(name)
      const known = this.#topics.get(name)
      if (!topic || !known || !isTopicId(topic.id)) continue
      if (known.id !== null && known.id !== topic.id) replaced.add(name)
      known.id = topic.id
      known.partitions ??= topic.partitionsCount
    }
    this.#clusterId = metadata.id
    if (replaced.size === 0 && !clusterChanged) return false
    const affected = clusterChanged ? names : [...replaced]
    host.log.warn('bus.topics_recreated', { created, topics: affected, clusterChanged })
    const ids = new Map<string, string>()
    for (const name of affected) {
      const id = metadata.topics.get(name)?.id
      if (id !== undefined) ids.set(name, id)
    }
    await host.replaced(ids, clusterChanged, since)
    return true
  }
}
