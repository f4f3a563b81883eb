/**
 * Opening MongoDB and Kafka for a command, within a connect deadline (`--connect-timeout`,
 * FLOWKIT_CONNECT_TIMEOUT_MS; default 4 s): an unreachable server is ONE line and exit 3 within
 * about that time, not the driver's 30 s server selection and a stack.
 *
 * Short-lived commands open the store with the deadline as the driver's server-selection and
 * connect timeouts. Long-running processes (coordinator, worker) first check that both services
 * answer within the deadline, then open them with the drivers' own (patient) defaults.
 *
 * Read-only commands (status, ls, workers, dlq ls) open a read-only store (`readOnly: true`): no
 * collection or index is created, so a mistyped database name stays absent.
 */
import { connect as tcpConnect } from 'node:net'
import { ErrorCode, FlowkitError, assertDependency, importDependency } from '../errors.ts'
import { type LogLevel, type Logger, createLogger, parseLogLevel } from '../log.ts'
import type { Bus } from '../ports/bus.ts'
import type { Store } from '../ports/store.ts'
import { CliError, EXIT, firstLine, redactUrl } from './errors.ts'
import { within } from '../util/deadline.ts'
import { unlessAborted } from '../util/abort.ts'
import { type Settings, mongoAddress, requireBrokers, requireMongoUrl } from './settings.ts'

export type StoreMode = 'read' | 'write' | 'serve'

/** The process's logger: FLOWKIT_LOG_LEVEL, else `fallback` (JSON on stderr). */
export function processLogger(fallback: LogLevel = 'info'): Logger {
  const raw = process.env['FLOWKIT_LOG_LEVEL']
  const level = raw ? parseLogLevel(raw, 'FLOWKIT_LOG_LEVEL') : undefined
  return createLogger(level ? { level } : process.env['NODE_TEST_CONTEXT'] !== undefined ? {} : { level: fallback })
}

/**
 * The process's SIGINT / SIGTERM (main.ts): a connect check in progress gives up at once, exit 130.
 * (The first signal was noted and the check waited out its whole deadline, then exited 3: a pod
 * stopped while its broker did not answer hung for the `--connect-timeout`.)
 */
let interrupt: AbortSignal | undefined

export function interruptConnectsOn(signal: AbortSignal): void {
  interrupt = signal
}

/** `promise`, or exit 130 as soon as the process is interrupted. */
function unlessInterrupted<T>(promise: Promise<T>, what: string): Promise<T> {
  return interrupt === undefined ? promise : unlessAborted(promise, interrupt, () => new CliError(EXIT.interrupted, `interrupted while connecting to ${what}`))
}

/** Rejects with exit 3 when `promise` has not settled within `ms` (and with exit 130 when the process is interrupted first). */
export function withDeadline<T>(promise: Promise<T>, ms: number, what: string, hint: string): Promise<T> {
  return unlessInterrupted(within(promise, ms, () => new CliError(EXIT.connect, `cannot connect to ${what}: no answer within ${ms / 1000} s`, { hint })), what)
}

const MONGO_HINT = 'is MongoDB running? check FLOWKIT_MONGO_URL / --mongo-url (and --connect-timeout)'
const KAFKA_HINT = 'is Kafka running? check FLOWKIT_KAFKA_BROKERS / --brokers (and --connect-timeout)'

/** Opens the store and connects it; connection failures are exit 3. */
export async function openStore(s: Settings, mode: StoreMode, logger?: Logger): Promise<Store> {
  const url = requireMongoUrl(s)
  const { MongoStore } = await import('../adapters/lazy.ts')
  const t = s.connectTimeoutMs
  const options = {
    url,
    ...(s.mongo.dbName === undefined ? {} : { dbName: s.mongo.dbName }),
    ...(s.mongo.collectionPrefix === undefined ? {} : { collectionPrefix: s.mongo.collectionPrefix }),
    ...(logger === undefined ? {} : { logger }),
    ...(mode === 'serve' ? {} : { clientOptions: { serverSelectionTimeoutMS: t, connectTimeoutMS: t } }),
    ...(mode === 'read' ? { readOnly: true } : {}),
  }
  // A missing driver is said as such (exit 2), not as a settings problem.
  assertDependency('MongoStore', MONGO_DRIVER)
  let store: InstanceType<typeof MongoStore>
  try {
    store = new MongoStore(options)
  } catch (err) {
    throw new CliError(EXIT.usage, `MongoDB settings: ${firstLine(err instanceof Error ? err.message : String(err))}`, { cause: err })
  }
  if (mode === 'serve') {
    await checkMongo(s)
    return store
  }
  try {
    await withDeadline(store.init(), t + 1000, `MongoDB at ${mongoAddress(s)}`, MONGO_HINT)
  } catch (err) {
    await store.close().catch(() => undefined)
    throw connectError(err, 'MongoDB', mongoAddress(s), MONGO_HINT)
  }
  return store
}

const MONGO_DRIVER = 'mongodb'
const KAFKA_DRIVER = '@platformatic/kafka'

/**
 * The drivers the long-running commands need are installed (they are optional dependencies):
 * said before anything is tried on the network, whatever answers there.
 */
export function requireDrivers(): void {
  assertDependency('MongoStore', MONGO_DRIVER)
  assertDependency('KafkaBus', KAFKA_DRIVER)
}

/** Checks that MongoDB answers within the deadline (creates nothing). */
export async function checkMongo(s: Settings): Promise<void> {
  const url = requireMongoUrl(s)
  const t = s.connectTimeoutMs
  const { mongoServerInfo } = await importDependency('MongoStore', MONGO_DRIVER, () => import('../adapters/mongo/admin.ts'))
  try {
    await withDeadline(mongoServerInfo(url, { serverSelectionTimeoutMS: t, connectTimeoutMS: t }), t + 1000, `MongoDB at ${mongoAddress(s)}`, MONGO_HINT)
  } catch (err) {
    throw connectError(err, 'MongoDB', mongoAddress(s), MONGO_HINT)
  }
}

export function connectError(err: unknown, what: string, address: string, hint: string): CliError {
  if (err instanceof CliError) return err
  if (err instanceof FlowkitError && err.code === ErrorCode.Config) {
    return new CliError(EXIT.usage, `${what} settings: ${firstLine(err.message)}`, { cause: err })
  }
  const message = err instanceof Error ? err.message : String(err)
  // The server answered and refused the credentials: "is it running?" would send the operator the wrong way.
  const auth = /authenticat|SCRAM|SASL|Unsupported authentication mechanism|not authorized|unauthorized/i.test(message)
  return new CliError(EXIT.connect, `cannot connect to ${what} at ${address}: ${firstLine(message)}`, {
    cause: err,
    hint: auth ? `${what} answered but refused the login: check the user, password and mechanism (${what === 'Kafka' ? 'the kafka.sasl settings' : 'the URL, its authSource and authMechanism'})` : hint,
    code: err instanceof FlowkitError ? err.code : 'CANNOT_CONNECT',
  })
}

function hostPort(broker: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(broker)
  if (m === null) throw new CliError(EXIT.usage, `kafka broker ${JSON.stringify(broker)} must be host:port`)
  const port = Number(m[2])
  if (!(port >= 1 && port <= 65535)) throw new CliError(EXIT.usage, `kafka broker ${JSON.stringify(broker)}: the port must be 1 to 65535`)
  return { host: m[1] as string, port }
}

/**
 * An ApiVersions request (v0, correlation id 0x464b, client id "flowkit-probe"): every Kafka broker
 * answers it before any authentication. A listener that takes the connection but never answers (a
 * hung broker, a proxy with no backend) is told from a broker this way.
 */
const API_VERSIONS_V0 = (() => {
  const clientId = Buffer.from('flowkit-probe')
  const body = Buffer.alloc(10 + clientId.length)
  body.writeInt16BE(18, 0) // api key: ApiVersions
  body.writeInt16BE(0, 2) // version 0
  body.writeInt32BE(0x464b, 4) // correlation id
  body.writeInt16BE(clientId.length, 8)
  clientId.copy(body, 10)
  const size = Buffer.alloc(4)
  size.writeInt32BE(body.length, 0)
  return Buffer.concat([size, body])
})()

/**
 * Whether `broker` answers within `ms`: a Kafka response to ApiVersions over plain TCP, or (TLS:
 * the handshake is the bus's) an accepted connection.
 */
function probe(broker: string, ms: number, tls: boolean): Promise<void> {
  const { host, port } = hostPort(broker)
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host, port })
    let got = Buffer.alloc(0)
    const done = (err: Error | null): void => {
      clearTimeout(timer)
      socket.destroy()
      if (err === null) resolve()
      else reject(err)
    }
    const timer = setTimeout(() => done(new Error(`${broker}: no answer within ${ms / 1000} s${got.length === 0 && !tls ? ' (the connection was taken, but no Kafka response came)' : ''}`)), ms)
    socket.once('connect', () => {
      if (tls) done(null)
      else socket.write(API_VERSIONS_V0)
    })
    socket.on('data', (chunk: Buffer) => {
      got = Buffer.concat([got, chunk])
      if (got.length < 8) return
      // size, then the correlation id of the request: a Kafka response.
      done(got.readInt32BE(4) === 0x464b ? null : new Error(`${broker}: the server there does not speak the Kafka protocol`))
    })
    socket.once('end', () => done(new Error(`${broker}: the connection was closed without a Kafka response`)))
    socket.once('error', (err) => done(new Error(`${broker}: ${err.message}`)))
  })
}

/** Checks that at least one broker accepts a connection within the deadline. */
export async function checkKafka(s: Settings): Promise<void> {
  const brokers = requireBrokers(s)
  // A malformed address is the operator's input, not a connection failure (exit 2, not 3).
  for (const b of brokers) hostPort(b)
  try {
    const tls = s.kafka['tls'] !== undefined && s.kafka['tls'] !== false
    await unlessInterrupted(Promise.any(brokers.map((b) => probe(b, s.connectTimeoutMs, tls))), 'Kafka')
  } catch (err) {
    if (err instanceof CliError) throw err
    const reasons = err instanceof AggregateError ? err.errors.map((e: unknown) => (e instanceof Error ? e.message : String(e))) : [String(err)]
    throw new CliError(EXIT.connect, `cannot connect to Kafka: ${reasons.join('; ')}`, { hint: KAFKA_HINT })
  }
}

/** Opens the Kafka bus after checking a broker answers. */
export async function openBus(s: Settings, logger?: Logger): Promise<Bus> {
  const brokers = requireBrokers(s)
  await checkKafka(s)
  const { KafkaBus } = await import('../adapters/lazy.ts')
  try {
    return new KafkaBus({ ...(s.kafka as object), brokers, ...(logger === undefined ? {} : { logger }) })
  } catch (err) {
    throw new CliError(EXIT.usage, `Kafka settings: ${firstLine(err instanceof Error ? err.message : String(err))}`, { cause: err })
  }
}

export { KAFKA_HINT, MONGO_HINT }

/** The database a store of these settings uses: the configured name, else the URL's path, else `flowkit`. */
export function databaseName(s: Settings): string {
  if (s.mongo.dbName !== undefined) return s.mongo.dbName
  try {
    const path = new URL(s.mongo.url ?? '').pathname.replace(/^\//, '')
    return path === '' ? 'flowkit' : decodeURIComponent(path)
  } catch {
    return 'flowkit'
  }
}

/** `database … at …, brokers …` for a ready line (the URL without its credentials). */
export function deploymentText(s: Settings): string {
  return `database ${databaseName(s)} at ${redactUrl(s.mongo.url ?? '')}, brokers ${(s.brokers ?? []).join(',')}`
}
