/**
 * A private, single-node Kafka (KRaft) broker for tests that must stop, kill, wipe or restart a
 * broker: the shared one (FLOWKIT_KAFKA_BROKERS) is never touched. It runs from the jars that
 * scripts/services.sh installs in the cache (`$FLOWKIT_CACHE`, default
 * `${XDG_CACHE_HOME:-~/.cache}/flowkit/kafka-4.2.0/libs`), with the same server settings, on free
 * ports and in its own temporary folder.
 *
 *   const kafka = await startPrivateKafka()      // ready once a metadata request succeeds
 *   kafka.brokers                                // ['127.0.0.1:<port>']
 *   await kafka.restart({ wipe: true })          // same ports, empty data: a brand-new cluster
 *   await kafka.stop()                           // SIGTERM, SIGKILL after a grace; removes the folder
 *
 * `privateKafkaSkip()` is the `skip` option for suites that need it (java or the jars missing).
 */
import { execFile, spawn, spawnSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { homedir, tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Admin } from '@platformatic/kafka'

const execFileAsync = promisify(execFile)
const KAFKA_VERSION = '4.2.0'
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const READY_TIMEOUT_MS = 90_000
const STOP_GRACE_MS = 20_000

function cacheDir(): string {
  return process.env['FLOWKIT_CACHE'] ?? join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'flowkit')
}

export function kafkaLibs(): string {
  return join(cacheDir(), `kafka-${KAFKA_VERSION}`, 'libs')
}

/** false when a private broker can run here, else the reason (for a suite's `skip`). */
export function privateKafkaSkip(): false | string {
  const libs = kafkaLibs()
  if (!existsSync(libs) || !readdirSync(libs).some((f) => f.startsWith(`kafka_2.13-${KAFKA_VERSION}`))) {
    return `no Kafka jars in ${libs} (run: bash scripts/services.sh install kafka)`
  }
  const java = spawnSync('java', ['-version'], { stdio: 'ignore' })
  if (java.error || java.status !== 0) return 'java is not on PATH'
  return false
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolveListen) => {
    const server = createServer()
    server.unref()
    server.once('error', () => resolveListen(false))
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => server.close(() => resolveListen(true)))
  })
}

/** Free ports between 20000 and 32000 (below Linux's ephemeral range), as scripts/services.ts picks them. */
async function freePorts(count: number): Promise<number[]> {
  const chosen: number[] = []
  for (let attempt = 0; chosen.length < count && attempt < 500; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 12000)
    if (!chosen.includes(port) && (await canListen(port))) chosen.push(port)
  }
  if (chosen.length < count) throw new Error(`private kafka: could not find ${count} free ports`)
  return chosen
}

/** The same broker settings as scripts/services.sh writes for the shared test broker. */
function serverProperties(dataDir: string, port: number, controllerPort: number): string {
  return `process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${controllerPort}
listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}
advertised.listeners=PLAINTEXT://127.0.0.1:${port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=${dataDir}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
`
}

/** A KRaft cluster id: 16 random bytes, base64url without padding, not starting with '-'. */
function clusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url')
    if (!id.startsWith('-')) return id
  }
}

export interface PrivateKafka {
  readonly brokers: string[]
  readonly port: number
  /** The folder with server.properties, the logs and the data. */
  readonly dir: string
  /** The cluster id of the current data (changes on a wipe). */
  readonly clusterId: string
  readonly running: boolean
  /** Stops the broker (SIGTERM, SIGKILL after a grace); `kill: true` sends SIGKILL at once. */
  halt(options?: { kill?: boolean }): Promise<void>
  /** Starts it again on the same ports; `wipe: true` first deletes the data (a new, empty cluster). */
  start(options?: { wipe?: boolean }): Promise<void>
  restart(options?: { wipe?: boolean; kill?: boolean }): Promise<void>
  /** Stops the broker and deletes its folder. Idempotent. */
  stop(): Promise<void>
}

const live = new Set<ChildProcess>()
let exitHook = false

export async function startPrivateKafka(): Promise<PrivateKafka> {
  const skip = privateKafkaSkip()
  if (skip) throw new Error(`private kafka: ${skip}`)
  const dir = mkdtempSync(join(tmpdir(), 'flowkit-private-kafka-'))
  const dataDir = join(dir, 'data')
  const [port, controllerPort] = (await freePorts(2)) as [number, number]
  writeFileSync(join(dir, 'server.properties'), serverProperties(dataDir, port, controllerPort))
  const java = [
    '-Xms128m',
    '-Xmx384m',
    '-XX:+UseSerialGC',
    '-XX:TieredStopAtLevel=1',
    '-XX:+ExitOnOutOfMemoryError',
    '-Djava.awt.headless=true',
    `-Dlog4j2.configurationFile=${join(REPO, 'tools/kafka/log4j2.xml')}`,
    `-Dkafka.logs.dir=${dir}`,
    `-Dflowkit.kafka.log.level=${process.env['FLOWKIT_KAFKA_LOG_LEVEL'] ?? 'INFO'}`,
    '-cp',
    `${kafkaLibs()}/*`,
  ]
  if (!exitHook) {
    exitHook = true
    // A test process that ends without stop() must not leave a broker behind.
    process.once('exit', () => {
      for (const child of live) child.kill('SIGKILL')
    })
  }
  let child: ChildProcess | null = null
  let currentId = ''
  let removed = false

  const format = async (): Promise<void> => {
    rmSync(dataDir, { recursive: true, force: true })
    mkdirSync(dataDir, { recursive: true })
    currentId = clusterId()
    try {
      await execFileAsync('java', [...java, 'kafka.tools.StorageTool', 'format', '-t', currentId, '-c', join(dir, 'server.properties')])
    } catch (err) {
      const out = err as { stderr?: string; stdout?: string; message?: string }
      throw new Error(`private kafka: format failed: ${out.stderr || out.stdout || out.message}`)
    }
  }

  const waitReady = async (proc: ChildProcess): Promise<void> => {
    const deadline = performance.now() + READY_TIMEOUT_MS
    let lastError = 'no attempt made'
    while (performance.now() < deadline) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`private kafka: the broker exited before it was ready (see ${dir})`)
      const admin = new Admin({ clientId: 'flowkit-private-probe', bootstrapBrokers: [`127.0.0.1:${port}`], connectTimeout: 2000, timeout: 5000, retries: 0 })
      admin.on('error', () => {})
      try {
        const metadata = await admin.metadata({ forceUpdate: true })
        if (metadata.brokers.size > 0 && metadata.controllerId >= 0) return
        lastError = 'metadata lists no broker or controller'
      } catch (err) {
        lastError = err instanceof Error ? err.message : String(err)
      } finally {
        await admin.close().catch(() => {})
      }
      await new Promise((r) => setTimeout(r, 250))
    }
    throw new Error(`private kafka: not ready after ${READY_TIMEOUT_MS}ms: ${lastError}`)
  }

  const launch = async (): Promise<void> => {
    const proc = spawn('java', [...java, 'kafka.Kafka', join(dir, 'server.properties')], { stdio: 'ignore', cwd: dir })
    child = proc
    live.add(proc)
    proc.once('exit', () => live.delete(proc))
    await waitReady(proc)
  }

  const halt = async ({ kill = false } = {}): Promise<void> => {
    const proc = child
    child = null
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return
    const exited = new Promise<void>((r) => proc.once('exit', () => r()))
    proc.kill(kill ? 'SIGKILL' : 'SIGTERM')
    const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_GRACE_MS)
    await exited
    clearTimeout(timer)
  }

  const kafka: PrivateKafka = {
    brokers: [`127.0.0.1:${port}`],
    port,
    dir,
    get clusterId() {
      return currentId
    },
    get running() {
      return child !== null && child.exitCode === null && child.signalCode === null
    },
    halt,
    async start({ wipe = false } = {}) {
      if (kafka.running) throw new Error('private kafka: already running')
      if (wipe) await format()
      await launch()
    },
    async restart({ wipe = false, kill = false } = {}) {
      await halt({ kill })
      await kafka.start({ wipe })
    },
    async stop() {
      await halt()
      if (!removed) {
        removed = true
        rmSync(dir, { recursive: true, force: true })
      }
    },
  }
  try {
    await format()
    await launch()
  } catch (err) {
    await kafka.stop()
    throw err
  }
  return kafka
}
