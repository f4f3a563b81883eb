/**
 * A coordinator process for the reliability suite: KafkaBus (optionally wrapped in ChaosBus) and
 * MongoStore on the scenario's servers, topics and database. Answers the harness over IPC
 * (`create`, `cancel`, `ping`, `ownership`); SIGTERM stops it cleanly. A failed start is retried (common.ts
 * startWithRetry); an error it cannot handle ends the process with a non-zero code (a crash).
 */
import { Coordinator } from 'flowkit'
import { topicsConfig } from '../lib/spec.ts'
import { readSpec, say, send, serveIpc, startWithRetry } from './common.ts'

const spec = readSpec()
let coordinator: Coordinator | null = null

serveIpc(async (req) => {
  const c = coordinator
  if (c === null) throw new Error('coordinator not started yet')
  switch (req.op) {
    case 'create':
      return c.createTask({ id: req.task.id, params: req.task.params, graph: req.task.graph })
    case 'cancel': {
      // Whether this coordinator owns the task as it is asked (the same tick cancelTask decides):
      // an owner applies the cancel, another coordinator hands it to the owner.
      const owner = c.ownsTask(req.taskId)
      const applied = await c.cancelTask(req.taskId, { reason: 'cancelled by the reliability harness' })
      return { applied, owner }
    }
    case 'ping':
      return c.stats()
    case 'ownership':
      return c.ownership
    default:
      throw new Error(`coordinator: unknown op ${req.op}`)
  }
})

coordinator = await startWithRetry(
  spec,
  (bus, store) =>
    new Coordinator({
      bus,
      store,
      config: { ...topicsConfig(spec.prefix), groupId: `${spec.prefix}flowkit.coordinator`, workerTypes: spec.roles, ...spec.config },
    }),
  { start: (c) => c.start(), abandon: (c) => c.stop(), stop: (c) => c.stop() },
)
say(spec, 'rel.ready')
send({ ready: true, pid: process.pid })
