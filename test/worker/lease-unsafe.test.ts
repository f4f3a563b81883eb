/**
 * A heartbeat period the lease cannot survive (a worker audit: lease 2 s, heartbeat 3 s, a 3.5 s
 * handler ran at epochs 1, 2 and 3 and the task failed, with nothing said) is allowed — a test may
 * want leases to lapse — but said at start: `worker.lease_unsafe` (warn).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryBus, MemoryLogger, MemoryStore, Worker } from 'flowkit'

async function warnings(config: Record<string, unknown>): Promise<Array<Record<string, unknown>>> {
  const logger = new MemoryLogger()
  const worker = new Worker({ bus: new MemoryBus(), store: new MemoryStore(), logger, handlers: { h: { async processBatch() { return {} } } }, config })
  await worker.start()
  await worker.stop()
  return logger.records.filter((r) => r.event === 'worker.lease_unsafe').map((r) => r.fields)
}

test('a heartbeat at or over the lease, or over half of it, is logged at start as worker.lease_unsafe; the defaults are not', async () => {
  const over = await warnings({ leaseTtlSec: 2, hbIntervalSec: 3 })
  assert.equal(over.length, 1)
  assert.equal(over[0]?.['lease_ttl_sec'], 2)
  assert.equal(over[0]?.['hb_interval_sec'], 3)
  assert.match(String(over[0]?.['why']), /after the lease ends/)
  const half = await warnings({ leaseTtlSec: 10, hbIntervalSec: 6 })
  assert.equal(half.length, 1)
  assert.match(String(half[0]?.['why']), /one late heartbeat/)
  assert.deepEqual(await warnings({}), [])
  assert.deepEqual(await warnings({ leaseTtlSec: 2, hbIntervalSec: 1 }), [])
})
