/**
 * Where the CLI's settings come from, strongest first: flags, `FLOWKIT_*` environment, the config
 * file (`--config` or FLOWKIT_CONFIG), defaults. The config file is one JSON object:
 *
 *   { "mongo": { "url", "db", "collection_prefix" },
 *     "kafka": { "brokers", "client_id", "sasl": { "mechanism", "username", "password" }, "tls", ... },
 *     "coordinator": { coordinator config, snake_case or camelCase (configs/coordinator.default.json) },
 *     "worker": { worker config (configs/worker.default.json) } }
 */
import { existsSync, readFileSync } from 'node:fs'
import { flag, type Parsed, str } from './args.ts'
import { errorMessage } from '../errors.ts'
import { CliError, EXIT, redactUrl } from './errors.ts'
import { whereJsonBreaks } from '../util/json-syntax.ts'
import { closest, didYouMean } from '../graph/parse-context.ts'
import { withoutBom } from '../util/text.ts'

export interface MongoSettings {
  url: string | undefined
  dbName: string | undefined
  collectionPrefix: string | undefined
}

export interface Settings {
  configPath: string | undefined
  mongo: MongoSettings
  /** KafkaBus options (camelCase) without brokers; brokers separately. */
  kafka: Record<string, unknown>
  brokers: string[] | undefined
  coordinator: Record<string, unknown>
  worker: Record<string, unknown>
  /** How long a command waits to reach MongoDB or Kafka before exit 3. */
  connectTimeoutMs: number
  json: boolean
  debug: boolean
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 4000

function camel(key: string): string {
  return key.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase())
}

function section(file: Record<string, unknown>, name: string, path: string): Record<string, unknown> {
  const v = file[name]
  if (v === undefined || v === null) return {}
  if (typeof v !== 'object' || Array.isArray(v)) throw new CliError(EXIT.usage, `config file ${path}: "${name}" must be an object`)
  return v as Record<string, unknown>
}

const SECTIONS = ['mongo', 'kafka', 'coordinator', 'worker']
const MONGO_KEYS = ['url', 'db', 'db_name', 'dbName', 'collection_prefix', 'collectionPrefix']

/** A near miss of a section (`cordinator`) would drop every setting in it without a word. */
function checkFileKeys(file: Record<string, unknown>, path: string): void {
  for (const k of Object.keys(file)) {
    if (SECTIONS.includes(k)) continue
    const near = closest(k, SECTIONS)
    if (near !== null) throw new CliError(EXIT.usage, `config file ${path}: unknown section "${k}" (did you mean "${near}"?); its settings would be ignored`)
  }
}

export function readConfigFile(path: string): Record<string, unknown> {
  if (!existsSync(path)) throw new CliError(EXIT.notFound, `config file ${path} not found`, { hint: 'check --config / FLOWKIT_CONFIG' })
  let parsed: unknown
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new CliError(EXIT.usage, `config file ${path} cannot be read: ${(err as { code?: string }).code ?? errorMessage(err)}`, { hint: 'check --config / FLOWKIT_CONFIG' })
  }
  text = withoutBom(text)
  try {
    parsed = JSON.parse(text)
  } catch {
    // Where, never what: V8's message quotes the text around the error, and a config file holds
    // secrets (a SASL password, a connection string) that a cut quote slips past redaction.
    throw new CliError(EXIT.usage, `config file ${path} is not valid JSON${whereJsonBreaks(text)} (its text is not shown: it may hold secrets)`)
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new CliError(EXIT.usage, `config file ${path} must hold a JSON object`)
  return parsed as Record<string, unknown>
}

function splitBrokers(v: unknown): string[] | undefined {
  if (v === undefined || v === null || v === '') return undefined
  const items = typeof v === 'string' ? v.split(',') : Array.isArray(v) ? v.map(String) : null
  if (items === null) throw new CliError(EXIT.usage, 'kafka brokers must be a "host:port,host:port" string or an array')
  const list = items.map((s) => s.trim()).filter((s) => s !== '')
  return list.length === 0 ? undefined : list
}

function strOf(v: unknown, what: string): string | undefined {
  if (v === undefined || v === null || v === '') return undefined
  if (typeof v !== 'string') throw new CliError(EXIT.usage, `${what} must be a string`)
  return v
}

/** Resolves the settings of one invocation. */
export function resolveSettings(p: Parsed, env: NodeJS.ProcessEnv = process.env): Settings {
  const configPath = str(p, 'config') ?? (env['FLOWKIT_CONFIG'] || undefined)
  const file = configPath === undefined ? {} : readConfigFile(configPath)
  const fileLabel = configPath ?? ''
  checkFileKeys(file, fileLabel)
  const mongoFile = section(file, 'mongo', fileLabel)
  for (const k of Object.keys(mongoFile)) {
    // A closed section: an unknown key (`uri`) would leave the setting it meant unset.
    if (!MONGO_KEYS.includes(k)) throw new CliError(EXIT.usage, `config file ${fileLabel}: unknown key "mongo.${k}"${didYouMean(k, MONGO_KEYS)}; "mongo" takes url, db, collection_prefix`)
  }
  const kafkaFile = section(file, 'kafka', fileLabel)
  const kafka: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(kafkaFile)) if (k !== 'brokers') kafka[camel(k)] = v
  const mechanism = env['FLOWKIT_KAFKA_SASL_MECHANISM']
  if (mechanism) {
    kafka['sasl'] = { mechanism, username: env['FLOWKIT_KAFKA_USERNAME'] ?? '', password: env['FLOWKIT_KAFKA_PASSWORD'] ?? '' }
  }
  const tls = env['FLOWKIT_KAFKA_TLS']
  if (tls === '1' || tls === 'true') kafka['tls'] = true
  let connectTimeoutMs = DEFAULT_CONNECT_TIMEOUT_MS
  const flagTimeout = str(p, 'connect-timeout')
  const envTimeout = env['FLOWKIT_CONNECT_TIMEOUT_MS'] || undefined
  if (flagTimeout !== undefined) {
    const n = Number(flagTimeout)
    if (flagTimeout.trim() === '' || !Number.isFinite(n) || n <= 0) throw new CliError(EXIT.usage, `--connect-timeout must be a positive number of seconds, got ${JSON.stringify(flagTimeout)}`)
    connectTimeoutMs = Math.max(100, Math.round(n * 1000))
  } else if (envTimeout !== undefined) {
    const n = Number(envTimeout)
    if (!Number.isFinite(n) || n <= 0) throw new CliError(EXIT.usage, `FLOWKIT_CONNECT_TIMEOUT_MS must be a positive number of milliseconds, got ${JSON.stringify(envTimeout)}`)
    connectTimeoutMs = Math.max(100, Math.round(n))
  }
  // A flag given empty is a mistake, not "use the environment" (flags win over it).
  for (const flagName of ['brokers', 'mongo-url'] as const) {
    const v = str(p, flagName)
    if (v !== undefined && v.trim() === '') throw new CliError(EXIT.usage, `--${flagName} is empty`)
  }
  const coordinator = { ...section(file, 'coordinator', fileLabel) }
  if (env['FLOWKIT_GROUP_ID']) coordinator['groupId'] = env['FLOWKIT_GROUP_ID']
  const worker = { ...section(file, 'worker', fileLabel) }
  if (env['FLOWKIT_WORKER_ID']) worker['workerId'] = env['FLOWKIT_WORKER_ID']
  return {
    configPath,
    mongo: {
      url: str(p, 'mongo-url') ?? (env['FLOWKIT_MONGO_URL'] || undefined) ?? strOf(mongoFile['url'], 'mongo.url'),
      dbName: str(p, 'db') ?? (env['FLOWKIT_MONGO_DB'] || undefined) ?? strOf(mongoFile['db'] ?? mongoFile['db_name'] ?? mongoFile['dbName'], 'mongo.db'),
      collectionPrefix: strOf(mongoFile['collection_prefix'] ?? mongoFile['collectionPrefix'], 'mongo.collection_prefix'),
    },
    kafka,
    brokers: splitBrokers(str(p, 'brokers')) ?? splitBrokers(env['FLOWKIT_KAFKA_BROKERS']) ?? splitBrokers(kafkaFile['brokers']),
    coordinator,
    worker,
    connectTimeoutMs,
    json: flag(p, 'json'),
    debug: flag(p, 'debug'),
  }
}

/** The MongoDB URL, or a usage error naming every way to give it. */
export function requireMongoUrl(s: Settings): string {
  if (s.mongo.url !== undefined) return s.mongo.url
  throw new CliError(EXIT.usage, 'no MongoDB to use: set FLOWKIT_MONGO_URL (or --mongo-url, or "mongo.url" in the --config file)', {
    hint: "e.g. FLOWKIT_MONGO_URL='mongodb://127.0.0.1:27017/flowkit?directConnection=true'",
  })
}

export function requireBrokers(s: Settings): string[] {
  if (s.brokers !== undefined) return s.brokers
  throw new CliError(EXIT.usage, 'no Kafka to use: set FLOWKIT_KAFKA_BROKERS (or --brokers, or "kafka.brokers" in the --config file)', {
    hint: 'e.g. FLOWKIT_KAFKA_BROKERS=127.0.0.1:9092',
  })
}

/** The store's address for messages: URL without credentials, and the database. */
export function mongoAddress(s: Settings): string {
  const url = s.mongo.url === undefined ? '(unset)' : redactUrl(s.mongo.url)
  return s.mongo.dbName === undefined ? url : `${url} (database ${s.mongo.dbName})`
}
