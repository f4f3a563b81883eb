import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, MemoryBus, MemoryLogger, MemoryStore, PermanentError, Worker, createLogger } from 'flowkit'
import { Writable } from 'node:stream'

test('every transition is logged with a stable event name and the ids', async () => {
  const logger = new MemoryLogger()
  const bus = new MemoryBus()
  const store = new MemoryStore()
  let n = 0
  const coordinator = new Coordinator({ bus, store, logger })
  const worker = new Worker({
    bus,
    store,
    logger,
    handlers: {
      step: {
        async processBatch() {
          n++
          if (n === 1) throw new Error('once')
          return { metrics: { count: 1 } }
        },
      },
      bad: { async processBatch() { throw new PermanentError('no') } },
    },
    config: { concurrency: 2 },
  })
  await coordinator.start()
  await worker.start()
  try {
    const ok = await coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'step', retry_policy: { max: 2, backoff_sec: 0 } }] } })
    await coordinator.waitForTask(ok, { timeoutMs: 5000 })
    const bad = await coordinator.createTask({ graph: { nodes: [{ node_id: 'x', type: 'bad' }, { node_id: 'y', type: 'step', depends_on: ['x'] }] } })
    await coordinator.waitForTask(bad, { timeoutMs: 5000 })
  } finally {
    await worker.stop()
    await coordinator.stop()
  }
  const events = new Set(logger.events())
  for (const e of ['task.created', 'node.dispatched', 'node.accepted', 'node.batch_ok', 'node.done', 'node.deferred', 'node.retried', 'node.failed', 'node.cancelled', 'task.finished', 'task.failed', 'outbox.sent']) {
    assert.ok(events.has(e), `missing log event ${e}`)
  }
  for (const r of logger.records.filter((r) => r.event.startsWith('node.'))) {
    assert.equal(typeof r.fields['task_id'], 'string', `${r.event} carries task_id`)
    assert.equal(typeof r.fields['node_id'], 'string', `${r.event} carries node_id`)
  }
})

test('no secret reaches a log line: URL credentials and secret-looking fields are redacted', () => {
  const lines: string[] = []
  const sink = new Writable({ write(chunk, _e, cb) { lines.push(String(chunk)); cb() } })
  const log = createLogger({ level: 'info', destination: sink })
  log.info('store.connect', { url: 'mongodb://admin:hunter2@db:27017/x', sasl: { password: 'pw-123' }, password: 'pw-456', note: 'kafka://u:p4ss@h' })
  const text = lines.join('')
  for (const secret of ['hunter2', 'pw-123', 'pw-456', 'p4ss']) assert.ok(!text.includes(secret), `${secret} leaked: ${text}`)
  assert.match(text, /"event":"store.connect"/)
})

test('every transition is published on the flowkit:events diagnostics channel, with ids and no secrets', async () => {
  const { subscribe, unsubscribe } = await import('node:diagnostics_channel')
  const { EVENTS_CHANNEL } = await import('flowkit')
  const seen: { event: string; fields: Record<string, unknown> }[] = []
  const onMessage = (m: unknown): void => {
    seen.push(m as { event: string; fields: Record<string, unknown> })
  }
  subscribe(EVENTS_CHANNEL, onMessage)
  const bus = new MemoryBus()
  const store = new MemoryStore()
  // default loggers (silent under node --test): the channel still gets every record
  const coordinator = new Coordinator({ bus, store })
  const worker = new Worker({ bus, store, handlers: { step: { async processBatch() { return {} } } } })
  try {
    await coordinator.start()
    await worker.start()
    const id = await coordinator.createTask({ params: { password: 'pw-789' }, graph: { nodes: [{ node_id: 'a', type: 'step' }] } })
    await coordinator.waitForTask(id, { timeoutMs: 5000 })
    const mine = seen.filter((m) => m.fields['task_id'] === id).map((m) => m.event)
    for (const e of ['task.created', 'node.dispatched', 'node.accepted', 'node.batch_ok', 'node.done', 'task.finished']) assert.ok(mine.includes(e), `missing ${e}`)
    assert.ok(seen.some((m) => m.event === 'node.accepted' && m.fields['component'] === 'worker' && typeof m.fields['worker_id'] === 'string'))
    assert.ok(!JSON.stringify(seen).includes('pw-789'))
  } finally {
    unsubscribe(EVENTS_CHANNEL, onMessage)
    await worker.stop()
    await coordinator.stop()
  }
})
