/**
 * The CLI's Kafka check speaks the protocol (an ApiVersions request): a listener that takes the
 * connection but never answers — a hung broker, a proxy with no backend — is "cannot connect"
 * (exit 3) within the connect deadline. The new-user audit found `flowkit coordinator` and
 * `worker` silent for 95–286 s against one (the check was a TCP connect alone), and deaf to the
 * first SIGTERM meanwhile.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Server, type Socket } from 'node:net'
import { checkKafka } from '../../src/cli/connect.ts'
import { CliError } from '../../src/cli/errors.ts'
import { resolveSettings } from '../../src/cli/settings.ts'
import { waitFor } from '../helpers/wait.ts'
import { CliProcess } from './helpers.ts'

async function listen(onSocket: (s: Socket) => void): Promise<{ server: Server; broker: string; sockets: Socket[] }> {
  const sockets: Socket[] = []
  const server = createServer((s) => {
    sockets.push(s)
    s.on('error', () => undefined)
    onSocket(s)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const a = server.address() as { port: number }
  return { server, broker: `127.0.0.1:${a.port}`, sockets }
}

async function close(l: { server: Server; sockets: Socket[] }): Promise<void> {
  for (const s of l.sockets) s.destroy()
  await new Promise((r) => l.server.close(r))
}

const settingsFor = (broker: string, tls = false) => {
  const s = resolveSettings({ values: {}, positionals: [] } as never)
  return { ...s, brokers: [broker], connectTimeoutMs: 800, kafka: tls ? { tls: true } : {} }
}

test('a listener that never answers is exit 3 within the connect deadline', async () => {
  const l = await listen(() => undefined)
  try {
    const t0 = Date.now()
    await assert.rejects(checkKafka(settingsFor(l.broker)), (err: unknown) => err instanceof CliError && err.exitCode === 3 && /no Kafka response came/.test(err.message))
    assert.ok(Date.now() - t0 < 5_000, `took ${Date.now() - t0} ms`)
  } finally {
    await close(l)
  }
})

test('a server of another protocol is exit 3, said so', async () => {
  const l = await listen((s) => s.on('data', () => s.write(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'))))
  try {
    await assert.rejects(checkKafka(settingsFor(l.broker)), (err: unknown) => err instanceof CliError && err.exitCode === 3 && /does not speak the Kafka protocol/.test(err.message))
  } finally {
    await close(l)
  }
})

test('a server that answers ApiVersions passes; with TLS configured, an accepted connection is enough (the handshake is the bus’s)', async () => {
  let request: Buffer | null = null
  const kafka = await listen((s) =>
    s.on('data', (d: Buffer) => {
      request = d
      const res = Buffer.alloc(14)
      res.writeInt32BE(10, 0)
      res.writeInt32BE(d.readInt32BE(8), 4) // the request's correlation id
      s.write(res)
    }),
  )
  const silent = await listen(() => undefined)
  try {
    await checkKafka(settingsFor(kafka.broker))
    assert.equal((request as Buffer | null)?.readInt16BE(4), 18, 'an ApiVersions request')
    await checkKafka(settingsFor(silent.broker, true))
  } finally {
    await close(kafka)
    await close(silent)
  }
})

test('SIGTERM or SIGINT while a command waits for a silent server ends it at once with exit 130 (it waited out the whole --connect-timeout, then exited 3)', async () => {
  let connected = 0
  const l = await listen(() => {
    connected++
  })
  const mongoUrl = `mongodb://${l.broker}/?directConnection=true`
  try {
    const cases: Array<[string[], NodeJS.Signals]> = [
      [['coordinator', '--brokers', l.broker, '--mongo-url', mongoUrl, '--connect-timeout', '60000'], 'SIGTERM'],
      [['ls', '--mongo-url', mongoUrl, '--connect-timeout', '60000'], 'SIGINT'],
    ]
    for (const [args, signal] of cases) {
      const before = connected
      const p = new CliProcess(args)
      try {
        await waitFor(() => connected > before, { timeoutMs: 30_000, message: `${args[0]} never connected` })
        const r = await p.stop(signal, 20_000)
        assert.equal(r.code, 130, `${args[0]}: ${p.stderr}`)
        assert.match(p.stderr, /interrupted while connecting to (Kafka|MongoDB)/)
        assert.ok(r.ms < 15_000, `${args[0]} exited ${Math.round(r.ms)} ms after ${signal}`)
      } finally {
        p.kill()
      }
    }
  } finally {
    await close(l)
  }
})
