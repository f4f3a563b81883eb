/**
 * A coordinator process for the reliability suite: KafkaBus (optionally wrapped in ChaosBus) and
 * MongoStore on the scenario's servers, topics and database. Answers the harness over IPC
 * (`create`, `cancel`, `ping`); SIGTERM stops it cleanly. If `start()` fails (a server is down
 * right now) it is retried with fresh adapters for up to two minutes, as a deployment's process
 * supervisor would; an error it cannot handle ends the process with a non-zero code (a crash).
 */
import { Coordinator } from 'flowkit'
import { topicsConfig } from '../lib/spec.ts'
import { errorText, makeBus, makeStore, onShutdown, readSpec, say, send, serveIpc, sleep, within } from './common.ts'

const spec = readSpec()
let coordinator: Coordinator | null = null
let shuttingDown = false
const closers: (() => Promise<void>)[] = []

serveIpc(async (req) => {
  const c = coordinator
  if (c === null) throw new Error('coordinator not started yet')
  switch (req.op) {
    case 'create':
      return c.createTask({ id: req.task.id, params: req.task.params, graph: req.task.graph })
    case 'cancel':
      return c.cancelTask(req.taskId, { reason: 'cancelled by the reliability harness' })
    case 'ping':
      return c.stats()
    default:
      throw new Error(`coordinator: unknown op ${req.op}`)
  }
})

onShutdown(spec, async () => {
  shuttingDown = true
  await coordinator?.stop()
  for (const close of closers.splice(0)) await close().catch(() => undefined)
})

const deadline = Date.now() + 120_000
for (let attempt = 1; ; attempt++) {
  const bus = makeBus(spec)
  const store = makeStore(spec)
  const c = new Coordinator({
    bus,
    store,
    config: { ...topicsConfig(spec.prefix), groupId: `${spec.prefix}flowkit.coordinator`, workerTypes: spec.roles, ...spec.config },
  })
  try {
    await c.start()
    coordinator = c
    closers.push(
      () => bus.close(),
      () => store.close(),
    )
    break
  } catch (err) {
    say(spec, 'rel.start_failed', { attempt, error: errorText(err) })
    await within(5000, c.stop())
    await within(5000, bus.close())
    await within(5000, store.close())
    if (shuttingDown) process.exit(0)
    if (Date.now() > deadline) {
      say(spec, 'rel.start_gave_up', { attempts: attempt })
      process.exit(2)
    }
    await sleep(Math.min(5000, 500 * attempt))
  }
}
say(spec, 'rel.ready')
send({ ready: true, pid: process.pid })
