/**
 * A START steered to this worker by name (signals topic, `target_worker_id`; coordinator/steer.ts):
 * run at once with a free slot, ignored without one (the original still waits in its command
 * topic), ignored by the other workers; and when the original and the steered copy reach the
 * same worker together, the attempt runs once.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ErrorCode, FlowkitError, MemoryBus, MemoryLogger, MemoryStore, protocol, type RoleHandler, type Store } from 'flowkit'
import { gate } from '../helpers/gate.ts'
import { startRuntime } from '../helpers/runtime.ts'
import { aroundClaims } from '../helpers/store-proxy.ts'
import { waitFor } from '../helpers/wait.ts'

const START = { cmd: 'TASK_START', input_ref: null, input_inline: null, batching: null, cancel_token: 't', vars: {} }

function start(task: string, target?: string): string {
  return protocol.encode(
    protocol.makeEnvelope({ msg_type: 'cmd', role: 'coordinator', task_id: task, node_id: 'n', step_type: 'step', attempt_epoch: 1, ts_ms: Date.now(), dedup_id: `start-${task}`, payload: START, ...(target === undefined ? {} : { target_worker_id: target }) }),
  )
}

test('a steered START runs at once on the worker it names, only there; with no free slot it is ignored', async () => {
  const bus = new MemoryBus()
  const logger = new MemoryLogger()
  const hold = gate()
  const ran: string[] = []
  const step: RoleHandler = {
    async processBatch(_b, ctx) {
      ran.push(`${ctx.taskId}@${ctx.workerId}`)
      if (ctx.taskId === 'busy') await hold.wait(ctx.signal)
      return {}
    },
  }
  const rt = await startRuntime({ bus, logger, handlers: { step }, workers: 2, worker: { concurrency: 1 } })
  try {
    const [w1, w2] = rt.workers.map((w) => w.workerId) as [string, string]
    const signals = rt.workerBase.topicSignals ?? 'signals.v1'
    await bus.produce([{ topic: signals, key: w1, value: start('steered', w1) }])
    await waitFor(() => ran.includes(`steered@${w1}`), { message: 'the steered START ran on the worker it names' })
    // Busy: w1 runs one (its only slot; sent again while the first run still holds it).
    const declined = (task: string): number => logger.records.filter((r) => r.event === 'worker.steer_declined' && r.fields['task_id'] === task).length
    for (let sent = 0; !ran.includes(`busy@${w1}`); ) {
      if (sent === 0 || declined('busy') >= sent) {
        sent++
        await bus.produce([{ topic: signals, key: w1, value: start('busy', w1) }])
      }
      await waitFor(() => ran.includes(`busy@${w1}`) || declined('busy') >= sent, { message: 'busy: run or declined' })
    }
    // Now a START steered to it is ignored.
    await bus.produce([{ topic: signals, key: w1, value: start('declined', w1) }])
    await waitFor(() => declined('declined') === 1, { message: 'declined without a free slot' })
    // The same START steered to w2 runs there; and nothing ran twice or elsewhere.
    await bus.produce([{ topic: signals, key: w2, value: start('declined', w2) }])
    await waitFor(() => ran.includes(`declined@${w2}`))
    assert.deepEqual(ran.sort(), [`busy@${w1}`, `declined@${w2}`, `steered@${w1}`])
  } finally {
    hold.open()
    await rt.stop()
  }
})

test('the original START and a steered copy reaching one worker together: the attempt runs once', async () => {
  const bus = new MemoryBus()
  const inner = new MemoryStore()
  const claimed = gate()
  /** Attempts claimed (claims of one round trip counted one by one). */
  let claims = 0
  // Claims wait until both copies are being taken (each would otherwise see the other as seen).
  const store = aroundClaims(inner, async (cs, claim) => {
    claims += cs.length
    await claimed.wait()
    return claim()
  })
  let runs = 0
  const step: RoleHandler = {
    async processBatch() {
      runs++
      return {}
    },
  }
  const logger = new MemoryLogger()
  const rt = await startRuntime({ bus, store, logger, handlers: { step }, worker: { concurrency: 4 } })
  try {
    const [w] = rt.workers.map((x) => x.workerId) as [string]
    await bus.produce([
      { topic: rt.cmdTopic('step'), key: 'twice:n', value: start('twice') },
      { topic: rt.workerBase.topicSignals ?? 'signals.v1', key: w, value: start('twice', w) },
    ])
    // Both copies taken up: the second either recognised as a duplicate, or claiming too.
    await waitFor(() => claims >= 2 || (claims === 1 && logger.records.some((r) => r.event === 'worker.start_duplicate')), { message: 'both copies taken up' })
    assert.equal(claims, 1, 'one claim: the second copy was recognised while the first was being claimed (a second claim by the same worker succeeds: it would run twice)')
    claimed.open()
    await waitFor(() => runs === 1)
    assert.equal(runs, 1, 'one run')
  } finally {
    claimed.open()
    await rt.stop()
  }
})

test('a steered START whose checks fail for a reason that passes (the store down) is declined, not retried: the cancels behind it on the signals topic still arrive', async () => {
  const bus = new MemoryBus()
  const logger = new MemoryLogger()
  let storeDown = false
  let cancelled = 0
  const step: RoleHandler = {
    async processBatch(_b, ctx) {
      if (ctx.taskId === 'running') {
        await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }))
        cancelled++
      }
      return {}
    },
  }
  const down = async (): Promise<never> => {
    throw new FlowkitError(ErrorCode.StoreUnavailable, 'store down', { retryable: true })
  }
  const workerStore = (s: Store): Store => aroundClaims(s, (_cs, claim) => (storeDown ? down() : claim()))
  const rt = await startRuntime({ bus, logger, workerStore, handlers: { step }, worker: { concurrency: 2 } })
  try {
    const [w] = rt.workers.map((x) => x.workerId) as [string]
    const signals = rt.workerBase.topicSignals ?? 'signals.v1'
    await bus.produce([{ topic: rt.cmdTopic('step'), key: 'running:n', value: start('running') }])
    await waitFor(() => rt.workers[0]?.activeRuns().length === 1, { message: 'a run in progress' })
    storeDown = true
    await bus.produce([{ topic: signals, key: w, value: start('steered', w) }])
    const cancel = protocol.encode(
      protocol.makeEnvelope({ msg_type: 'event', role: 'coordinator', task_id: 'running', node_id: 'n', step_type: 'step', attempt_epoch: 1, ts_ms: Date.now(), dedup_id: 'cancel-running', target_worker_id: w, payload: { sig: 'CANCEL', reason: 'by test', cancel_token: 't', deadline_ts_ms: Date.now() + 30_000 } }),
    )
    await bus.produce([{ topic: signals, key: w, value: cancel }])
    await waitFor(() => cancelled === 1, { message: 'the cancel behind the steered START arrived' })
    assert.ok(logger.records.some((r) => r.event === 'worker.steer_declined' && r.fields['task_id'] === 'steered'))
  } finally {
    storeDown = false
    await rt.stop()
  }
})
