/**
 * How the CLI reaches the coordinator that owns a task: control requests (cancel, adopt) on the
 * coordinators' owners' topic `topicTasks`, keyed by task id, read by the owner of the task's
 * partition (src/coordinator/ownership.ts). Requests wait there through a hand-over.
 */
import { COORDINATOR_DEFAULTS, resolveConfig } from '../config.ts'
import { type ControlRequest, sendControl } from '../coordinator/control.ts'
import { openBus, processLogger } from './connect.ts'
import { CliError, EXIT, toCliError } from './errors.ts'
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
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new CliError(EXIT.connect, `Kafka did not take the ${req.op} request within ${ms / 1000} s`, { hint: 'is the broker answering? check FLOWKIT_KAFKA_BROKERS / --brokers (and --connect-timeout)' }))
    }, ms)
  })
  try {
    await Promise.race([sendControl(bus, controlTopic(settings), req), late]).catch((err: unknown) => {
      throw toCliError(err)
    })
  } finally {
    clearTimeout(timer)
    // A close that hangs on the same broker does not hold the command either.
    const closing = bus.close().catch(() => undefined)
    await Promise.race([closing, new Promise((r) => setTimeout(r, ms).unref())])
  }
}
