/**
 * The scenario's own Kafka broker and MongoDB-protocol server, as separate processes the harness
 * can pause (SIGSTOP), kill, restart and wipe: Apache Kafka 4.2 (single-node KRaft, jars from the
 * cache scripts/services.sh fills) and FerretDB 1.24 (SQLite, the cached binary). Each runs on
 * ports chosen once and kept across restarts, with its data under the run's temp dir — never the
 * shared services of .run/.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { Admin } from '@platformatic/kafka'
import { MongoClient } from 'mongodb'
import { Supervised, sleep } from './process.ts'

export const KAFKA_VERSION = '4.2.0'
export const FERRETDB_VERSION = '1.24.2'

export function cacheDir(): string {
  return process.env['FLOWKIT_CACHE'] ?? join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'flowkit')
}

export function kafkaLibs(): string {
  return join(cacheDir(), `kafka-${KAFKA_VERSION}`, 'libs')
}

export function ferretBinary(): string {
  return join(cacheDir(), `ferretdb-${FERRETDB_VERSION}`, 'ferretdb')
}

/** Why the real services cannot run here, or null when the cached binaries and java are present. */
export function servicesUnavailable(): string | null {
  if (!existsSync(join(kafkaLibs(), '.flowkit-complete'))) return `no Kafka ${KAFKA_VERSION} jars in ${kafkaLibs()} (bash scripts/services.sh install)`
  if (!existsSync(ferretBinary())) return `no FerretDB binary at ${ferretBinary()} (bash scripts/services.sh install)`
  if (spawnSync('sh', ['-c', 'command -v java'], { stdio: 'ignore' }).status !== 0) return 'java is not on PATH'
  return null
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.unref()
    server.once('error', () => resolve(false))
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => server.close(() => resolve(true)))
  })
}

/** Free ports below Linux's ephemeral range (so outgoing connections never take them). */
export async function freePorts(count: number): Promise<number[]> {
  const chosen: number[] = []
  for (let i = 0; chosen.length < count && i < 500; i++) {
    const port = 20000 + Math.floor(Math.random() * 12000)
    if (!chosen.includes(port) && (await canListen(port))) chosen.push(port)
  }
  if (chosen.length < count) throw new Error(`could not find ${count} free ports`)
  return chosen
}

async function waitReady(what: Supervised, deadlineMs: number, probe: () => Promise<void>): Promise<void> {
  const end = Date.now() + deadlineMs
  let last = 'no attempt'
  while (Date.now() < end) {
    if (!what.alive) throw new Error(`${what.name} exited before it was ready`)
    try {
      await probe()
      return
    } catch (err) {
      last = err instanceof Error ? err.message : String(err)
    }
    await sleep(500)
  }
  throw new Error(`${what.name} not ready after ${deadlineMs / 1000} s: ${last}`)
}

export async function probeKafka(broker: string): Promise<void> {
  const admin = new Admin({ clientId: 'rel-probe', bootstrapBrokers: [broker], connectTimeout: 2000, timeout: 5000, retries: 0 })
  try {
    const md = await admin.metadata({ forceUpdate: true })
    if (md.brokers.size === 0 || md.controllerId < 0) throw new Error('no broker or no controller yet')
  } finally {
    await admin.close().catch(() => undefined)
  }
}

export async function probeMongo(url: string): Promise<void> {
  const client = new MongoClient(url, { serverSelectionTimeoutMS: 2000, connectTimeoutMS: 2000, socketTimeoutMS: 5000 })
  try {
    await client.connect()
    await client.db('admin').command({ ping: 1 })
  } finally {
    await client.close().catch(() => undefined)
  }
}

/** Kafka's Uuid text form: 16 random bytes, base64url without padding, not starting with '-'. */
function kafkaUuid(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url')
    if (!id.startsWith('-')) return id
  }
}

export class KafkaService extends Supervised {
  readonly dir: string
  readonly repo: string
  port = 0
  controllerPort = 0
  #formatted = false

  constructor(dir: string, repo: string) {
    super('broker')
    this.dir = dir
    this.repo = repo
  }

  get brokers(): string {
    return `127.0.0.1:${this.port}`
  }

  #java(): string[] {
    return [
      '-XX:+UseSerialGC',
      '-XX:+ExitOnOutOfMemoryError',
      '-Djava.awt.headless=true',
      `-Dlog4j2.configurationFile=${join(this.repo, 'tools', 'kafka', 'log4j2.xml')}`,
      `-Dkafka.logs.dir=${this.dir}`,
      '-Dflowkit.kafka.log.level=INFO',
      '-cp',
      `${kafkaLibs()}/*`,
    ]
  }

  #properties(): void {
    const p = this.port
    const c = this.controllerPort
    const lines = [
      'process.roles=broker,controller',
      'node.id=1',
      `controller.quorum.voters=1@127.0.0.1:${c}`,
      `listeners=PLAINTEXT://127.0.0.1:${p},CONTROLLER://127.0.0.1:${c}`,
      `advertised.listeners=PLAINTEXT://127.0.0.1:${p}`,
      'controller.listener.names=CONTROLLER',
      'inter.broker.listener.name=PLAINTEXT',
      'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
      `log.dirs=${join(this.dir, 'data')}`,
      'num.partitions=1',
      'default.replication.factor=1',
      'min.insync.replicas=1',
      'auto.create.topics.enable=true',
      'offsets.topic.replication.factor=1',
      'offsets.topic.num.partitions=1',
      'transaction.state.log.replication.factor=1',
      'transaction.state.log.min.isr=1',
      'transaction.state.log.num.partitions=1',
      'share.coordinator.state.topic.replication.factor=1',
      'share.coordinator.state.topic.min.isr=1',
      'share.coordinator.state.topic.num.partitions=1',
      'group.initial.rebalance.delay.ms=0',
      'group.min.session.timeout.ms=1000',
      'num.network.threads=2',
      'num.io.threads=2',
      'num.recovery.threads.per.data.dir=1',
      'background.threads=2',
      'log.cleaner.threads=1',
      'log.cleaner.dedupe.buffer.size=16777216',
    ]
    writeFileSync(join(this.dir, 'server.properties'), `${lines.join('\n')}\n`)
  }

  #format(): void {
    const r = spawnSync('java', [...this.#java(), 'kafka.tools.StorageTool', 'format', '-t', kafkaUuid(), '-c', join(this.dir, 'server.properties')], {
      cwd: this.dir,
      encoding: 'utf8',
    })
    if (r.status !== 0) throw new Error(`kafka storage format failed: ${r.stderr || r.stdout}`)
    this.#formatted = true
  }

  /** Starts the broker (formatting its storage first if it has none) and waits until it answers. */
  async start(readyMs = 120_000): Promise<void> {
    if (this.port === 0) {
      ;[this.port, this.controllerPort] = (await freePorts(2)) as [number, number]
      mkdirSync(this.dir, { recursive: true })
    }
    this.#properties()
    if (!this.#formatted || !existsSync(join(this.dir, 'data', 'meta.properties'))) this.#format()
    this.spawnProcess({
      command: 'java',
      args: ['-Xms256m', '-Xmx512m', ...this.#java(), 'kafka.Kafka', join(this.dir, 'server.properties')],
      cwd: this.dir,
      log: join(this.dir, 'stdout.log'),
    })
    await waitReady(this, readyMs, () => probeKafka(this.brokers))
  }

  /** The broker loses its disk: killed, data dir removed (formatted again at the next start). */
  async wipe(): Promise<void> {
    await this.kill()
    rmSync(join(this.dir, 'data'), { recursive: true, force: true })
    this.#formatted = false
  }
}

export class FerretService extends Supervised {
  readonly dir: string
  port = 0

  constructor(dir: string) {
    super('store')
    this.dir = dir
  }

  get url(): string {
    return `mongodb://127.0.0.1:${this.port}/?directConnection=true`
  }

  async start(readyMs = 60_000): Promise<void> {
    if (this.port === 0) {
      ;[this.port] = (await freePorts(1)) as [number]
      mkdirSync(join(this.dir, 'data'), { recursive: true })
    }
    this.spawnProcess({
      command: ferretBinary(),
      args: ['-listen-addr', `127.0.0.1:${this.port}`, '-sqlite-dir', join(this.dir, 'data'), '-log-level', 'warn'],
      cwd: this.dir,
      log: join(this.dir, 'ferretdb.log'),
    })
    await waitReady(this, readyMs, () => probeMongo(this.url))
  }
}
