/**
 * SIGINT / SIGTERM while `flowkit coordinator` or `worker` starts: a start that hangs (a broker
 * that answers the connect check and then stalls) no longer leaves the process deaf to the signal
 * (the new-user audit had to SIGKILL a worker hung at its start): exit 130 at once.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startUnlessAborted } from '../../src/cli/serve.ts'
import { CliError, EXIT } from '../../src/cli/errors.ts'

test('a start that never ends gives way to the signal: exit 130 (interrupted)', async () => {
  const abort = new AbortController()
  const hung = new Promise<void>(() => undefined)
  setTimeout(() => abort.abort(), 20)
  const t0 = Date.now()
  await assert.rejects(startUnlessAborted(hung, abort.signal, 'flowkit worker'), (err: unknown) => err instanceof CliError && err.exitCode === EXIT.interrupted && /interrupted while starting/.test(err.message))
  assert.ok(Date.now() - t0 < 2_000)
})

test('a start that ends, or fails, is what the command gets', async () => {
  const abort = new AbortController()
  await startUnlessAborted(Promise.resolve(), abort.signal, 'x')
  await assert.rejects(startUnlessAborted(Promise.reject(new Error('boom')), abort.signal, 'x'), /boom/)
})
