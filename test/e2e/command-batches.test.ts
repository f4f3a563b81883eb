/**
 * The worker takes the start commands of one partition together: their claims share one store
 * round trip. Before, a partition's commands were handled one at a time, each waiting for its own
 * claim (a store write): a worker took at most (partitions × roles) starts per round trip, which
 * bounded the chain on Kafka + FerretDB at about 460 node runs/s with 23 of its 32 slots busy.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { Store } from 'flowkit'
import type { AttemptClaim } from '../../src/ports/store.ts'
import { noopHandler, startRuntime, testStore } from '../helpers/runtime.ts'

/** The store, with its claim calls recorded (how many claims each call carried). */
function countingClaims(store: Store, calls: number[]): Store {
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'claimAttempt') {
        return (claim: AttemptClaim, now: number) => {
          calls.push(1)
          return target.claimAttempt(claim, now)
        }
      }
      if (prop === 'claimAttempts') {
        return (claims: readonly AttemptClaim[], now: number) => {
          calls.push(claims.length)
          return target.claimAttempts(claims, now)
        }
      }
      const v = Reflect.get(target, prop, target) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    },
  })
}

describe('command batches', () => {
  test('the starts of one partition are claimed together: 8 parallel nodes take at most 3 claim calls, not 8', async () => {
    const calls: number[] = []
    const { store, drop } = await testStore()
    const rt = await startRuntime({
      store: countingClaims(store, calls),
      handlers: { step: noopHandler() },
      worker: { concurrency: 8, topicPartitions: 1 },
      coordinator: { topicPartitions: 1 },
    })
    try {
      const nodes = Array.from({ length: 8 }, (_, i) => ({ node_id: `n${i}`, type: 'step' }))
      const id = await rt.coordinator.createTask({ graph: { nodes } })
      const t = await rt.coordinator.waitForTask(id, { timeoutMs: 30_000 })
      assert.equal(t.status, 'finished')
      const claims = calls.reduce((a, b) => a + b, 0)
      assert.equal(claims, 8, `one claim per start (calls: ${JSON.stringify(calls)})`)
      assert.ok(calls.length <= 3, `8 starts of one partition in ${calls.length} claim calls (${JSON.stringify(calls)}): they were claimed one after another`)
    } finally {
      await rt.stop()
      await drop()
    }
  })
})
