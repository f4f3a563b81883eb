/**
 * Consumer guard: a message whose handling fails for a retryable reason (the store or the bus is
 * unavailable, or the consumer is closing) is given back to the bus, which delivers it again; any
 * other failure is a poison
 * message for this handler: it is logged as parked and skipped, so it never blocks its partition.
 */
import { ErrorCode, FlowkitError, errorMessage } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { BusHandler, BusMessage } from '../ports/bus.ts'

export function parkPoison(handler: BusHandler, log: Logger): BusHandler {
  return async (m: BusMessage) => {
    try {
      await handler(m)
    } catch (err) {
      // Retryable, or the consumer is closing: not handled, so not committed (delivered again).
      if (err instanceof FlowkitError && (err.retryable || err.code === ErrorCode.Closed)) throw err
      log.error('bus.message_parked', {
        topic: m.topic,
        partition: m.partition,
        offset: m.offset,
        key: m.key,
        error: errorMessage(err),
        value: m.value.length > 512 ? `${m.value.slice(0, 512)}…` : m.value,
      })
    }
  }
}
