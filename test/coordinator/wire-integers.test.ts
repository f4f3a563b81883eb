/**
 * Times on the wire are whole milliseconds, whatever the config's seconds: a Python peer's models
 * take `int` for `deadline_ts_ms` and `lease_deadline_ts_ms` (pydantic refuses 1796689075037.3),
 * so a `cancelGraceSec` or `leaseTtlSec` of 0.3333 made its worker drop the CANCEL signal and its
 * coordinator drop the lease events.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryBus } from 'flowkit'
import type { BusRecord } from '../../src/ports/bus.ts'
import { holdingHandler, startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'
import { spyBus } from '../observability/helpers.ts'

/** Every `*_ts_ms` number in a record's JSON, with its key. */
function times(r: BusRecord): Array<[string, number]> {
  const out: Array<[string, number]> = []
  JSON.parse(r.value, (key, v) => {
    if (key.endsWith('_ts_ms') && typeof v === 'number') out.push([key, v])
    return v
  })
  return out
}

test('CANCEL deadlines and lease deadlines are whole milliseconds with fractional cancelGraceSec and leaseTtlSec', async () => {
  const produced: BusRecord[] = []
  const { handler: hold, started } = holdingHandler()
  let heartbeats = 0
  const rt = await startRuntime({
    bus: new MemoryBus(),
    handlers: { hold },
    coordinator: { cancelGraceSec: 0.3333 },
    worker: { leaseTtlSec: 0.3333, hbIntervalSec: 0.1 },
    coordinatorBus: (bus) => spyBus(bus, produced),
    workerBus: (bus) =>
      spyBus(bus, {
        push(...records: BusRecord[]) {
          for (const r of records) if (r.value.includes('"TASK_HEARTBEAT"')) heartbeats++
          return produced.push(...records)
        },
      } as BusRecord[]),
  })
  try {
    const id = await rt.coordinator.createTask({ graph: { nodes: [{ node_id: 'n', type: 'hold' }] } })
    await started.wait()
    await waitFor(() => heartbeats > 0, { timeoutMs: 10_000, message: 'a heartbeat' })
    assert.equal(await rt.coordinator.cancelTask(id), true)
    assert.equal((await rt.coordinator.waitForTask(id, { timeoutMs: 30_000 })).status, 'cancelled')
    const all = produced.flatMap(times)
    const keys = new Set(all.map(([k]) => k))
    for (const k of ['deadline_ts_ms', 'lease_deadline_ts_ms']) assert.ok(keys.has(k), `${k} sent`)
    const fractional = all.filter(([, v]) => !Number.isInteger(v))
    assert.deepEqual(fractional, [], 'no fractional time on the wire')
  } finally {
    await rt.stop()
  }
})
