import { test } from 'node:test'
import assert from 'node:assert/strict'
import { getEventListeners } from 'node:events'
import { Watchers, pollJournal } from '../../src/coordinator/watch.ts'
import { quietPeriod, waitFor } from '../helpers/wait.ts'

test('a remote watch polling the journal keeps one abort listener, whatever its length, and ends on abort', async () => {
  let reads = 0
  const store = {
    readJournal: async () => {
      reads++
      return []
    },
  }
  const stop = new AbortController()
  const polling = pollJournal(new Watchers(), store, 't1', 0, stop.signal, 2)
  try {
    await waitFor(() => reads >= 20, { timeoutMs: 10_000 })
    assert.ok(getEventListeners(stop.signal, 'abort').length <= 1, `listeners: ${getEventListeners(stop.signal, 'abort').length}`)
  } finally {
    stop.abort()
  }
  await polling
  const after = reads
  await quietPeriod(20) // proving that nothing is read after the abort
  assert.equal(reads, after)
})
