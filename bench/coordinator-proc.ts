/**
 * One coordinator of `npm run bench -- --real --coordinators …`, alone in its process (started by
 * bench/cluster.ts). Requests of the bench process over IPC: `create` (createTask of the given
 * graph; returns the id), `ownership`, `stats`, `status` (the status of each given task id, read
 * with getTask). It reports the tasks it sees terminal (the `flowkit:events` channel: only the
 * owner of a task announces it) with the wall-clock time they were announced, and lease expiries.
 */
import { subscribe } from 'node:diagnostics_channel'
import { Coordinator, EVENTS_CHANNEL, createLogger, type FlowkitEventMessage, type LogLevel } from 'flowkit'
import { notify, onShutdown, procAdapters, readProcSpec, serve, wallNow } from './proc-common.ts'
import { benchTopics } from './runtime.ts'

const spec = readProcSpec()
const adapters = procAdapters(spec)
const coordinator = new Coordinator({
  bus: adapters.bus,
  store: adapters.store,
  logger: createLogger({ level: spec.logLevel as LogLevel }),
  config: { ...benchTopics(spec.prefix), groupId: `${spec.prefix}coord`, workerTypes: spec.roles },
})

const TERMINAL = new Set(['task.finished', 'task.failed', 'task.cancelled'])
let pending: { task_id: string; event: string; at: number }[] = []
let leaseExpiries = 0
subscribe(EVENTS_CHANNEL, (m: unknown) => {
  const { event, fields } = m as FlowkitEventMessage
  if (event === 'node.lease_expired' || event === 'node.heartbeat_lost') notify({ leaseExpiries: ++leaseExpiries })
  if (!TERMINAL.has(event)) return
  const id = (fields as { task_id?: unknown }).task_id
  if (typeof id !== 'string') return
  // Timed now, sent in one message per turn of the event loop.
  if (pending.length === 0) {
    setImmediate(() => {
      notify({ terminal: pending })
      pending = []
    })
  }
  pending.push({ task_id: id, event, at: wallNow() })
})

serve(async (op, args) => {
  switch (op) {
    case 'create':
      return coordinator.createTask({ graph: (args as { graph: unknown }).graph })
    case 'ownership':
      return coordinator.ownership
    case 'stats':
      return coordinator.stats()
    case 'status': {
      const out: Record<string, string | null> = {}
      for (const id of args as string[]) out[id] = (await coordinator.getTask(id))?.status ?? null
      return out
    }
    default:
      throw new Error(`coordinator-proc: unknown op ${op}`)
  }
})

const started = coordinator.start()
onShutdown(async () => {
  await started.catch(() => undefined)
  await coordinator.stop()
  await adapters.close()
})
await started
notify({ ready: true, pid: process.pid })
