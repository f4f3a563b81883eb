/**
 * The last stretch of the in-memory Bus's produce path: chaos rules (delay, duplicate, reorder,
 * drop; see bus.ts) and the append to a partition's log. Deterministic for a given seed and
 * produce order: each rule draws from its own PRNG, four draws per record.
 */
import type { BusMessage } from '../../ports/bus.ts'
import { ErrorCode, FlowkitError } from '../../errors.ts'
import { createRandom } from '../../util/random.ts'
import type { Random } from '../../util/random.ts'
import { type ChaosOptions, type ChaosRule, type MemoryBusLogger, type Pending, type TopicState, textLaterMessage } from './bus-types.ts'

interface CompiledRule {
  rule: ChaosRule
  random: Random
}

export class RecordStager {
  readonly #logger: MemoryBusLogger | undefined
  /** Called when staged or held records reached the log (the bus may have become idle). */
  readonly #onSettled: () => void
  #chaos: { rules: CompiledRule[]; reorderWindowMs: number } | null = null
  #closed = false

  constructor(logger: MemoryBusLogger | undefined, onSettled: () => void) {
    this.#logger = logger
    this.#onSettled = onSettled
  }

  /** Replaces (or clears with null) the chaos rules; PRNGs restart from the seed. */
  setChaos(chaos: ChaosOptions | null): void {
    if (chaos === null) {
      this.#chaos = null
      return
    }
    const rules = chaos.rules.map((rule, index): CompiledRule => {
      for (const knob of ['duplicate', 'reorder', 'drop'] as const) {
        const p = rule[knob]
        if (p !== undefined && !(p >= 0 && p <= 1)) {
          throw new FlowkitError(ErrorCode.Config, `chaos rule ${index}: ${knob} must be a probability in [0, 1]`)
        }
      }
      if (rule.delayMs !== undefined) {
        const [min, max] = rule.delayMs
        if (!(min >= 0 && max >= min)) {
          throw new FlowkitError(ErrorCode.Config, `chaos rule ${index}: delayMs must be [min, max] with 0 <= min <= max`)
        }
      }
      return { rule, random: createRandom((chaos.seed + Math.imul(index + 1, 0x9e3779b9)) | 0) }
    })
    this.#chaos = { rules, reorderWindowMs: chaos.reorderWindowMs ?? 50 }
  }

  /** Applies the chaos rule of the topic (if any), then stages the record for its partition. */
  stage(topic: TopicState, partition: number, pending: Pending): void {
    if (this.#closed) return
    const compiled = this.#chaos?.rules.find((r) => topic.name.startsWith(r.rule.topicPrefix))
    if (!compiled) {
      this.#stage(topic, partition, pending, 0)
      return
    }
    const { rule, random } = compiled
    // Always four draws per record, so the sequence depends only on the seed and produce order.
    const drop = random.chance(rule.drop ?? 0)
    const duplicate = random.chance(rule.duplicate ?? 0)
    const reorder = random.chance(rule.reorder ?? 0)
    const delayDraw = random.next()
    if (drop) {
      this.#logger?.debug?.({ event: 'bus.chaos_drop', topic: topic.name, partition }, 'chaos dropped a record')
      return
    }
    const [min, max] = rule.delayMs ?? [0, 0]
    const delayMs = min + Math.floor(delayDraw * (max - min + 1))
    this.#stage(topic, partition, { ...pending, reorder }, delayMs)
    if (duplicate) this.#stage(topic, partition, { ...pending, headers: { ...pending.headers }, reorder: false }, delayMs)
  }

  /** True when a record of these topics waits for its delay or its reorder partner. */
  hasPending(topics: Iterable<TopicState>): boolean {
    for (const topic of topics) {
      for (const part of topic.partitions) {
        if (part.staged.length > 0 || part.held) return true
      }
    }
    return false
  }

  /** Stops staging; drops what waits and returns how many records that were. */
  close(topics: Iterable<TopicState>): number {
    this.#closed = true
    let discarded = 0
    for (const topic of topics) {
      for (const part of topic.partitions) {
        if (part.stagedTimer) clearTimeout(part.stagedTimer)
        if (part.heldTimer) clearTimeout(part.heldTimer)
        discarded += part.staged.length + (part.held ? 1 : 0)
        part.staged = []
        part.stagedTimer = null
        part.held = null
        part.heldTimer = null
      }
    }
    return discarded
  }

  #stage(topic: TopicState, partition: number, pending: Pending, delayMs: number): void {
    const part = topic.partitions[partition]!
    if (delayMs <= 0 && part.staged.length === 0) {
      this.#admit(topic, partition, pending)
      return
    }
    part.staged.push({ pending, readyAt: performance.now() + delayMs })
    this.#drainStaged(topic, partition)
  }

  #drainStaged(topic: TopicState, partition: number): void {
    const part = topic.partitions[partition]!
    if (part.stagedTimer) {
      clearTimeout(part.stagedTimer)
      part.stagedTimer = null
    }
    const now = performance.now()
    while (part.staged.length > 0) {
      const head = part.staged[0]!
      if (head.readyAt > now) {
        part.stagedTimer = setTimeout(
          () => {
            part.stagedTimer = null
            this.#drainStaged(topic, partition)
          },
          Math.max(1, Math.ceil(head.readyAt - now)),
        )
        return
      }
      part.staged.shift()
      this.#admit(topic, partition, head.pending)
    }
    this.#onSettled()
  }

  /** Last step before the log: applies a pending reorder swap. */
  #admit(topic: TopicState, partition: number, pending: Pending): void {
    const part = topic.partitions[partition]!
    const held = part.held
    if (held) {
      part.held = null
      if (part.heldTimer) clearTimeout(part.heldTimer)
      part.heldTimer = null
      append(topic, partition, pending)
      append(topic, partition, held)
      return
    }
    if (pending.reorder) {
      part.held = pending
      part.heldTimer = setTimeout(() => {
        part.heldTimer = null
        const late = part.held
        part.held = null
        if (late) append(topic, partition, late)
        this.#onSettled()
      }, this.#chaos?.reorderWindowMs ?? 50)
      return
    }
    append(topic, partition, pending)
  }
}

function append(topic: TopicState, partition: number, pending: Pending): void {
  const part = topic.partitions[partition]!
  const offset = part.base + part.records.length
  let message: BusMessage
  if (pending.later !== undefined) {
    message = textLaterMessage(pending.later, topic.name, pending.key, pending.headers, partition, offset, pending.timestamp)
  } else {
    message = { topic: topic.name, key: pending.key, value: pending.value, headers: pending.headers, partition, offset, timestamp: pending.timestamp }
    if (pending.decoded !== undefined) message.decoded = pending.decoded
  }
  part.records.push(message)
  topic.log.push(message)
  for (const listener of part.listeners) listener.notify()
}
