/** unlessAborted (util/abort.ts): a wait that an abort ends, shared by the pull adapters, the run context and the outbox. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { getEventListeners } from 'node:events'
import { unlessAborted } from '../../src/util/abort.ts'

test('unlessAborted: the outcome when it comes first; the reason (or the given one) at the abort; no listener left behind', async () => {
  const ac = new AbortController()
  assert.equal(await unlessAborted(Promise.resolve(7), ac.signal), 7)
  await assert.rejects(unlessAborted(Promise.reject(new Error('store down')), ac.signal), /store down/)
  for (let i = 0; i < 100; i++) await unlessAborted(Promise.resolve(i), ac.signal)
  assert.equal(getEventListeners(ac.signal, 'abort').length, 0)
  const never = new Promise<number>(() => undefined)
  const waiting = unlessAborted(never, ac.signal)
  const custom = unlessAborted(never, ac.signal, () => new Error('outbox stopping'))
  const reason = new Error('cancelled')
  ac.abort(reason)
  await assert.rejects(waiting, (err) => err === reason)
  await assert.rejects(custom, /outbox stopping/)
  // Already aborted: at once, and a later rejection of the call is not unhandled.
  await assert.rejects(unlessAborted(Promise.reject(new Error('late')), ac.signal), (err) => err === reason)
})
