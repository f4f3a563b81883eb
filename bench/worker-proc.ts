/**
 * The worker of `npm run bench -- --real --coordinators …` in its own process (started by
 * bench/cluster.ts): no-op handlers for the chain's roles, the given concurrency. No requests.
 */
import { Worker, createLogger, type LogLevel } from 'flowkit'
import { HANDLERS } from './chain.ts'
import { notify, onShutdown, procAdapters, readProcSpec } from './proc-common.ts'
import { benchTopics } from './runtime.ts'

const spec = readProcSpec()
const adapters = procAdapters(spec)
const worker = new Worker({
  bus: adapters.bus,
  store: adapters.store,
  logger: createLogger({ level: spec.logLevel as LogLevel }),
  handlers: HANDLERS,
  config: { ...benchTopics(spec.prefix), groupPrefix: spec.prefix, concurrency: spec.concurrency },
})

const started = worker.start()
onShutdown(async () => {
  await started.catch(() => undefined)
  await worker.stop()
  await adapters.close()
})
await started
notify({ ready: true, pid: process.pid })
