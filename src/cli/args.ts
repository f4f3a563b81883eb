/**
 * Argument parsing on `node:util.parseArgs` (strict: an unknown flag is a usage error). Every
 * command accepts the global flags; commands that reach MongoDB or Kafka add the connection flags.
 */
import { parseArgs } from 'node:util'
import { errorMessage } from '../errors.ts'
import { usageError } from './errors.ts'

type OptionSpec = { type: 'string' | 'boolean'; short?: string; multiple?: boolean }
export type OptionSpecs = Record<string, OptionSpec>

/** Accepted by every command. */
export const GLOBAL_OPTIONS: OptionSpecs = {
  json: { type: 'boolean' },
  debug: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
}

/** Accepted by every command that reaches MongoDB or Kafka. */
export const CONNECTION_OPTIONS: OptionSpecs = {
  config: { type: 'string', short: 'c' },
  'mongo-url': { type: 'string' },
  db: { type: 'string' },
  brokers: { type: 'string' },
  'connect-timeout': { type: 'string' },
}

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>
  positionals: string[]
}

/** Parses `argv` (after the command name) against the command's options; usage errors are exit 2. */
export function parse(command: string, argv: readonly string[], options: OptionSpecs, connection = false): Parsed {
  const all = { ...GLOBAL_OPTIONS, ...(connection ? CONNECTION_OPTIONS : {}), ...options }
  try {
    const r = parseArgs({ args: [...argv], options: all, allowPositionals: true, strict: true })
    return { values: r.values as Parsed['values'], positionals: r.positionals }
  } catch (err) {
    throw usageError(`${command}: ${errorMessage(err).replace(/\. To specify a positional argument.*$/s, '')}`, command)
  }
}

export function str(p: Parsed, name: string): string | undefined {
  const v = p.values[name]
  return typeof v === 'string' ? v : undefined
}

export function flag(p: Parsed, name: string): boolean {
  return p.values[name] === true
}

/** An integer flag within [min, max]; undefined when absent. */
export function int(command: string, p: Parsed, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const raw = str(p, name)
  if (raw === undefined) return undefined
  const n = Number(raw)
  if (!/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw usageError(`${command}: --${name} must be an integer from ${min}${max === Number.MAX_SAFE_INTEGER ? ' up' : ` to ${max}`}, got ${JSON.stringify(raw)}`, command)
  }
  return n
}

/** A positive number of seconds; undefined when absent. */
export function seconds(command: string, p: Parsed, name: string): number | undefined {
  const raw = str(p, name)
  if (raw === undefined) return undefined
  const n = Number(raw)
  if (raw.trim() === '' || !Number.isFinite(n) || n <= 0) throw usageError(`${command}: --${name} must be a positive number of seconds, got ${JSON.stringify(raw)}`, command)
  return n
}

/** A comma-separated list (empty items dropped); undefined when absent. */
export function list(p: Parsed, name: string): string[] | undefined {
  const raw = str(p, name)
  if (raw === undefined) return undefined
  return raw.split(',').map((s) => s.trim()).filter((s) => s !== '')
}

/** Exactly `names.length` positionals (the last ones optional when `optional` is set). */
export function positionals(command: string, p: Parsed, names: readonly string[], optional = 0): string[] {
  const required = names.length - optional
  if (p.positionals.length < required) {
    throw usageError(`${command}: missing ${names.slice(p.positionals.length, required).map((n) => `<${n}>`).join(' ')}`, command)
  }
  if (p.positionals.length > names.length) {
    throw usageError(`${command}: unexpected argument ${JSON.stringify(p.positionals[names.length])}`, command)
  }
  const empty = p.positionals.findIndex((a) => a.trim() === '')
  if (empty >= 0) throw usageError(`${command}: <${names[empty] ?? 'argument'}> is empty`, command)
  return p.positionals
}
