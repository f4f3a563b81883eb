import { test } from 'node:test'
import { COORDINATOR_DEFAULTS, MemoryBus, MemoryLogger, SystemClock } from 'flowkit'
import { Discovery } from '../../src/coordinator/discovery.ts'
import { waitFor } from '../helpers/wait.ts'

test('discovery questions leave no abort listener behind once their window ended', async () => {
  // Counts the abort listeners added and removed on every signal while the questions run.
  let live = 0
  const add = EventTarget.prototype.addEventListener
  const remove = EventTarget.prototype.removeEventListener
  EventTarget.prototype.addEventListener = function (this: EventTarget, type: string, ...rest: unknown[]) {
    if (type === 'abort') live++
    return (add as (...a: unknown[]) => void).call(this, type, ...rest)
  } as typeof add
  EventTarget.prototype.removeEventListener = function (this: EventTarget, type: string, ...rest: unknown[]) {
    if (type === 'abort') live--
    return (remove as (...a: unknown[]) => void).call(this, type, ...rest)
  } as typeof remove
  const bus = new MemoryBus()
  const config = { ...COORDINATOR_DEFAULTS, discoveryWindowSec: 0.01 }
  const d = new Discovery(config, bus, new SystemClock(), new MemoryLogger(), {} as never, async () => undefined)
  d.start()
  const rt = { id: 't1', spec: () => ({ node_id: 'a', type: 'job' }), node: () => ({ attempt_epoch: 1 }) } as never
  try {
    for (let i = 0; i < 50; i++) d.ask(rt, 0)
    // Every window (10 ms) has ended once nothing is asked any more: each removed what it added.
    await waitFor(() => live <= 0, { timeoutMs: 10_000, message: `abort listeners left: ${live}` })
  } finally {
    EventTarget.prototype.addEventListener = add
    EventTarget.prototype.removeEventListener = remove
    d.stop()
    await bus.close()
  }
})
