/**
 * The independent observer: a plain @platformatic/kafka consumer (not flowkit's KafkaBus) in a
 * group of its own that reads the scenario's command and status topics from the earliest offset
 * and appends one JSON line per record to `outFile`: topic, partition, offset, record timestamp
 * and the envelope's ids (task, node, epoch, kind, worker id, batch uid), or `bad: true` for a
 * record that is not a flowkit envelope.
 *
 * After a broker restart or wipe the harness sends `reconnect`: a new consumer (new group, from
 * the earliest offset) reads everything again; records already written are recognised by
 * (topic, partition, offset, value hash) and skipped. `sync` reconnects and answers once the
 * topics have been read to the end (no new record for 3 s).
 */
import { createHash } from 'node:crypto'
import { appendFileSync } from 'node:fs'
import { Consumer, type Message } from '@platformatic/kafka'
import { cmdTopic, statusTopic } from '../lib/spec.ts'
import { errorText, onShutdown, readSpec, say, send, serveIpc, sleep } from './common.ts'

export interface ObservedRecord {
  tp: string
  p: number
  o: number
  /** Record timestamp (producer time, ms). */
  ts: number
  /** When the observer read it (ms). */
  at: number
  bad?: true
  task?: string
  node?: string
  epoch?: number
  /** Event kind (status) or command (cmd). */
  kind?: string
  worker?: string
  batch?: string
}

const spec = readSpec()
const outFile = spec.outFile as string
const topics = spec.roles.flatMap((r) => [cmdTopic(spec.prefix, r), statusTopic(spec.prefix, r)])
const seen = new Set<string>()
let pending: string[] = []
let generation = 0
let current: { consumer: Consumer<Buffer, Buffer, Buffer, Buffer>; end: () => void } | null = null
let sessionStartedAt = 0
let lastActivity = 0
let stopping = false

function flush(): void {
  if (pending.length === 0) return
  appendFileSync(outFile, pending.join(''))
  pending = []
}
setInterval(flush, 200).unref()

function decode(m: Message<Buffer, Buffer, Buffer, Buffer>): ObservedRecord {
  const value = m.value?.toString('utf8') ?? ''
  const rec: ObservedRecord = { tp: m.topic, p: m.partition, o: Number(m.offset), ts: Number(m.timestamp), at: Date.now() }
  try {
    const env = JSON.parse(value) as Record<string, unknown>
    const payload = env['payload'] as Record<string, unknown>
    if (typeof env['task_id'] !== 'string' || typeof env['attempt_epoch'] !== 'number' || payload === null || typeof payload !== 'object') throw new Error('not an envelope')
    rec.task = env['task_id']
    rec.node = String(env['node_id'])
    rec.epoch = env['attempt_epoch']
    const kind = payload['kind'] ?? payload['cmd']
    if (typeof kind === 'string') rec.kind = kind
    if (typeof payload['worker_id'] === 'string') rec.worker = payload['worker_id']
    if (typeof payload['batch_uid'] === 'string') rec.batch = payload['batch_uid']
  } catch {
    rec.bad = true
  }
  return rec
}

function onMessage(m: Message<Buffer, Buffer, Buffer, Buffer>): void {
  lastActivity = Date.now()
  const hash = createHash('sha1')
    .update(m.value ?? Buffer.alloc(0))
    .digest('hex')
    .slice(0, 16)
  const key = `${m.topic}|${m.partition}|${m.offset}|${hash}`
  if (seen.has(key)) return
  seen.add(key)
  pending.push(`${JSON.stringify(decode(m))}\n`)
}

async function session(): Promise<void> {
  generation++
  const consumer = new Consumer<Buffer, Buffer, Buffer, Buffer>({
    clientId: 'rel-observer',
    bootstrapBrokers: [spec.brokers],
    groupId: `${spec.prefix}rel.observer.${process.pid}.${generation}`,
    sessionTimeout: spec.kafka.sessionTimeoutMs,
    heartbeatInterval: spec.kafka.heartbeatIntervalMs,
    rebalanceTimeout: spec.kafka.rebalanceTimeoutMs,
    timeout: spec.kafka.requestTimeoutMs,
    connectTimeout: 3000,
    retries: 3,
    autocreateTopics: false,
  })
  try {
    await new Promise<void>((resolve, reject) => {
      current = { consumer, end: resolve }
      // The callback form: the listeners are on the stream before its positioning runs (a session
      // ended mid-join closes the consumer, and that positioning then fails at once).
      consumer.consume({ topics, mode: 'earliest', fallbackMode: 'earliest', autocommit: false, maxWaitTime: 500 }, (err, stream) => {
        if (err || !stream) {
          reject(err ?? new Error('consume gave no stream'))
          return
        }
        sessionStartedAt = Date.now()
        stream.on('data', onMessage)
        stream.on('error', reject)
        stream.on('close', resolve)
      })
    })
  } finally {
    current = null
    await consumer.close(true).catch(() => undefined)
  }
}

function reconnect(): void {
  sessionStartedAt = 0
  current?.end()
}

async function sync(): Promise<number> {
  reconnect()
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    await sleep(250)
    if (sessionStartedAt > 0 && Date.now() - Math.max(sessionStartedAt, lastActivity) > 3000) break
  }
  flush()
  return seen.size
}

serveIpc(async (req) => {
  switch (req.op) {
    case 'reconnect':
      reconnect()
      return null
    case 'sync':
      return sync()
    case 'ping':
      return seen.size
    default:
      throw new Error(`observer: unknown op ${req.op}`)
  }
})

onShutdown(spec, async () => {
  stopping = true
  flush()
  current?.end()
})

let readySent = false
while (!stopping) {
  const s = session()
  if (!readySent) {
    readySent = true
    send({ ready: true, pid: process.pid })
  }
  try {
    await s
  } catch (err) {
    say(spec, 'rel.observer_session_error', { error: errorText(err) })
  }
  flush()
  if (!stopping) await sleep(500)
}
