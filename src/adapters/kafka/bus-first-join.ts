/**
 * A subscription's first join (KafkaSubscription.start): the consumer session joins its group
 * within `subscribeTimeoutMs`, tried again with backoff while it fails for a reason that passes
 * (the group's coordinator moving or loading, a rebalance under way, a network error: seen on a
 * busy broker as `NOT_COORDINATOR` / `REBALANCE_IN_PROGRESS` after the library's own retries) and
 * time is left; any other error, or a close, ends it at once. Only a start that failed before it
 * had a stream is tried again here (a stream that died restarts by itself).
 */
import { ErrorCode, FlowkitError } from '../../errors.ts'
import type { Logger } from '../../log.ts'
import { type Redactor, toBusError } from './bus-errors.ts'
import type { ConsumerSession } from './bus-session.ts'
import { RECOVERY_MAX_MS, RECOVERY_START_MS, backoffMs, delay } from './bus-settings.ts'

export interface FirstJoinHost {
  readonly groupId: string
  readonly log: Logger
  readonly redactor: Redactor
  readonly subscribeTimeoutMs: number
  /** The subscription's current session (a reset may replace it). */
  session(): ConsumerSession
  /** The subscription is closing. */
  stopping(): boolean
}

/** Joins the group, or rejects once `subscribeTimeoutMs` passed (retryable `BusUnavailable`) or the join failed for good. */
export async function firstJoin(host: FirstJoinHost): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new FlowkitError(ErrorCode.BusUnavailable, `kafka bus: subscribe ${host.groupId} not ready after ${host.subscribeTimeoutMs}ms`, { retryable: true })),
      host.subscribeTimeoutMs,
    )
  })
  try {
    await Promise.race([join(host, performance.now() + host.subscribeTimeoutMs), timeout])
  } finally {
    clearTimeout(timer)
  }
}

async function join(host: FirstJoinHost, deadline: number): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await host.session().start()
      return
    } catch (err) {
      const session = host.session()
      const waitMs = backoffMs(attempt, RECOVERY_START_MS, RECOVERY_MAX_MS)
      const again = !host.stopping() && session.stream === null && !session.recovering && performance.now() + waitMs < deadline
      if (!again || !toBusError(err, 'subscribe', host.redactor, false).retryable) throw err
      host.log.warn('bus.kafka.subscribe_retry', { groupId: host.groupId, attempt, inMs: waitMs, err: host.redactor.describe(err) })
      await delay(waitMs)
      if (host.stopping()) throw err
    }
  }
}
