/**
 * A control request (`flowkit cancel`, `flowkit submit`'s adopt) reaches Kafka within the connect
 * deadline or fails with exit 3: a broker that accepts connections and never answers (a paused
 * JVM) held `flowkit submit` for about 90 s, the Kafka client's own retries. A broker refusing the
 * client's credentials is exit 3 too, with a hint at the SASL/TLS settings (it was exit 1 with none).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { type Socket, createServer } from 'node:net'
import { ErrorCode, FlowkitError } from 'flowkit'
import { controlRequest } from '../../src/coordinator/control.ts'
import { sendControlWithin } from '../../src/cli/control.ts'
import { CliError, EXIT, toCliError } from '../../src/cli/errors.ts'
import { resolveSettings } from '../../src/cli/settings.ts'

test('a control request to a broker that never answers fails with exit 3 at the connect deadline', async () => {
  // Accepts every connection, reads what comes, answers nothing (what a paused broker does).
  const sockets = new Set<Socket>()
  const silent = createServer((s) => {
    sockets.add(s)
    s.on('data', () => undefined)
    s.on('error', () => undefined)
  })
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r))
  const port = (silent.address() as { port: number }).port
  try {
    const settings = { ...resolveSettings({ values: {}, positionals: [] } as never, {}), brokers: [`127.0.0.1:${port}`], connectTimeoutMs: 800 }
    const started = performance.now()
    const err = await sendControlWithin(settings, controlRequest('cancel', 't-1', Date.now(), 'test')).then(
      () => null,
      (e: unknown) => e,
    )
    const ms = performance.now() - started
    assert.ok(err instanceof CliError, `expected a CliError, got ${String(err)}`)
    assert.equal(err.exitCode, EXIT.connect)
    // (The connect check's ApiVersions request finds it out first; a broker that answers that and
    // then hangs meets the request's own deadline: "Kafka did not take the cancel request".)
    assert.match(err.message, /cannot connect to Kafka: .*no answer within 0\.8 s|Kafka did not take the cancel request within 0\.8 s/)
    // The deadline and the bounded close, with room for a loaded machine (it took ~90 s before).
    assert.ok(ms < 10_000, `took ${Math.round(ms)} ms`)
  } finally {
    for (const s of sockets) s.destroy()
    await new Promise((r) => silent.close(r))
  }
})

test('a broker refusing the credentials is exit 3 with a hint at the SASL and TLS settings', () => {
  const refused = new FlowkitError(ErrorCode.BusError, 'kafka bus: ensureTopics failed (authentication/authorization): Cannot find a suitable SASL mechanism', { details: { op: 'ensureTopics', auth: true } })
  const cli = toCliError(refused)
  assert.equal(cli.exitCode, EXIT.connect)
  assert.match(cli.message, /^cannot use Kafka: kafka bus: ensureTopics failed \(authentication\/authorization\)/)
  assert.match(cli.hint ?? '', /FLOWKIT_KAFKA_SASL_MECHANISM.*FLOWKIT_KAFKA_TLS/)
  // Another bus error stays a plain failure.
  assert.equal(toCliError(new FlowkitError(ErrorCode.BusError, 'kafka bus: produce failed: boom')).exitCode, EXIT.failed)
})
