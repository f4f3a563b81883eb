/**
 * Real-service settings for integration suites. `npm test` (scripts/test.ts) starts the project's
 * own Kafka and FerretDB and exports FLOWKIT_KAFKA_BROKERS / FLOWKIT_MONGO_URL; a user may point
 * them at existing servers instead.
 *
 * `realSkip(kind)` is the `skip` option for a suite: false when the service is configured, else the
 * reason. With FLOWKIT_REQUIRE_REAL_SERVICES=1 a missing service throws instead, so CI fails.
 *
 * Every test file that imports this (or runtime.ts) gets the exit guard (exit-guard.ts).
 */
import { armExitGuard } from './exit-guard.ts'

armExitGuard()

export function kafkaBrokers(): string[] | null {
  const v = process.env['FLOWKIT_KAFKA_BROKERS']
  return v ? v.split(',').map((s) => s.trim()).filter(Boolean) : null
}

export function mongoUrl(): string | null {
  return process.env['FLOWKIT_MONGO_URL'] || null
}

export function realSkip(kind: 'kafka' | 'mongo' | 'both'): false | string {
  const missing: string[] = []
  if ((kind === 'kafka' || kind === 'both') && kafkaBrokers() === null) missing.push('FLOWKIT_KAFKA_BROKERS')
  if ((kind === 'mongo' || kind === 'both') && mongoUrl() === null) missing.push('FLOWKIT_MONGO_URL')
  if (missing.length === 0) return false
  const reason = `${missing.join(' and ')} not set${process.env['FLOWKIT_REAL_SKIP_REASON'] ? `: ${process.env['FLOWKIT_REAL_SKIP_REASON']}` : ''}`
  if (process.env['FLOWKIT_REQUIRE_REAL_SERVICES'] === '1') {
    throw new Error(`FLOWKIT_REQUIRE_REAL_SERVICES=1 but ${reason}`)
  }
  return reason
}

/** Every topic name of a runtime, under `prefix` (a runtime of its own on a shared broker). */
export function topicNames(prefix: string) {
  return {
    topicCmdFmt: `${prefix}cmd.{type}.v1`,
    topicStatusFmt: `${prefix}status.{type}.v1`,
    topicWorkerAnnounce: `${prefix}workers.announce.v1`,
    topicQuery: `${prefix}query.tasks.v1`,
    topicReply: `${prefix}reply.tasks.v1`,
    topicSignals: `${prefix}signals.v1`,
    topicControl: `${prefix}control.tasks.v1`,
    topicTasks: `${prefix}coord.tasks.v1`,
  }
}
