/**
 * How the CLI reaches the coordinator that owns a task: control requests (cancel, adopt) on the
 * coordinators' owners' topic `topicTasks`, keyed by task id, read by the owner of the task's
 * partition (src/coordinator/ownership.ts). Requests wait there through a hand-over.
 */
import { COORDINATOR_DEFAULTS, resolveConfig } from '../config.ts'
import { type ControlRequest, sendControl } from '../coordinator/control.ts'
import { openBus, processLogger } from './connect.ts'
import { CliError, EXIT, toCliError } from './errors.ts'
import { within } from '../util/deadline.ts'
import type { Settings } from './settings.ts'

/** The topic that reaches the owners of tasks, for the coordinators these settings describe. */
export function controlTopic(s: Settings): string {
  return resolveConfig(COORDINATOR_DEFAULTS, s.coordinator, 'coordinator config').topicTasks
}

/**
 * Sends `req` to the owners' topic within the connect deadline (`--connect-timeout`): a broker
 * that accepts connections but does not answer (paused, overloaded) would otherwise hold the
 * command for the Kafka client's own retries (a minute and more). Past the deadline: exit 3.
 */
export async function sendControlWithin(settings: Settings, req: ControlRequest): Promise<void> {
  const ms = settings.connectTimeoutMs
  // Warnings only: a one-shot command's output is not the bus's info log.
  const bus = await openBus(settings, processLogger('warn'))
  const hint = 'is the broker answering? check FLOWKIT_KAFKA_BROKERS / --brokers (and --connect-timeout)'
  try {
    await within(sendControl(bus, controlTopic(settings), req), ms, () => new CliError(EXIT.connect, `Kafka did not take the ${req.op} request within ${ms / 1000} s`, { hint })).catch((err: unknown) => {
      throw toCliError(err)
    })
  } finally {
    // A close that hangs on the same broker does not hold the command either.
    await within(bus.close(), ms, () => new Error('close')).catch(() => undefined)
  }
}
