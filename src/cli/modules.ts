/**
 * User modules named on the command line: `--handlers ./handlers.ts` (a `Record<role,
 * RoleHandler>`) and `--functions ./fns.ts` (a `Record<name, CoordinatorFn>`). The module
 * default-exports the record, or exports it as `handlers` / `functions`; either may also be a
 * (possibly async) function returning the record. TypeScript modules load through Node's type
 * stripping.
 */
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { spawnSync } from 'node:child_process'
import { pathToFileURL } from 'node:url'
import type { CoordinatorFn } from '../coordinator/functions.ts'
import { errorMessage } from '../errors.ts'
import { NODE_TYPE_PATTERN } from '../graph/parse.ts'
import type { RoleHandler } from '../worker/handler.ts'
import { CliError, EXIT, firstLine } from './errors.ts'

/**
 * The line of the module an import error points at: a type-stripping syntax error or a throw
 * names it in its stack (`/…/handlers.ts:5`); a JavaScript syntax error does not, and
 * `node --check` says where.
 */
function errorLine(err: unknown, abs: string, href: string): string | undefined {
  const stack = err instanceof Error ? (err.stack ?? '') : ''
  for (const name of [href, abs]) {
    const i = stack.indexOf(`${name}:`)
    if (i >= 0) return /^:(\d+)/.exec(stack.slice(i + name.length))?.[1]
  }
  if (!(err instanceof SyntaxError)) return undefined
  const check = spawnSync(process.execPath, ['--check', abs], { encoding: 'utf8', timeout: 10_000 })
  return new RegExp(`^${abs.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:(\\d+)`, 'm').exec(check.stderr ?? '')?.[1]
}

/** The Node versions flowkit supports (package.json `engines`). */
const NODE_RANGE = '22.22+ or 24.6+'

async function load(path: string, named: string, what: string): Promise<Record<string, unknown>> {
  const abs = resolve(path)
  if (!existsSync(abs)) throw new CliError(EXIT.notFound, `${what} module ${path} not found`)
  let mod: Record<string, unknown>
  const href = pathToFileURL(abs).href
  try {
    mod = (await import(href)) as Record<string, unknown>
  } catch (err) {
    const line = errorLine(err, abs, href)
    const at = line === undefined ? '' : ` (line ${line})`
    // A TypeScript module on a Node without type stripping (Node 20): say what to do.
    const noTs = (err as { code?: unknown }).code === 'ERR_UNKNOWN_FILE_EXTENSION' && /\.[cm]?ts$/.test(abs)
    const hint = noTs
      ? `this Node (${process.version}) cannot run TypeScript: use Node ${NODE_RANGE} (type stripping), e.g. through npx or an npm script of a project that pins it, or compile the module to .js`
      : 'run again with --debug for the stack'
    throw new CliError(EXIT.failed, `cannot load ${what} module ${path}${at}: ${firstLine(errorMessage(err))}`, { cause: err, hint })
  }
  let value = mod[named] ?? mod['default']
  if (typeof value === 'function') {
    try {
      value = await (value as () => unknown)()
    } catch (err) {
      throw new CliError(EXIT.failed, `${what} module ${path}: its exported function threw: ${firstLine(errorMessage(err))}`, { cause: err })
    }
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new CliError(EXIT.usage, `${what} module ${path} must default-export (or export as \`${named}\`) an object: { name: ${what === 'handlers' ? 'RoleHandler' : 'CoordinatorFn'} }`)
  }
  return value as Record<string, unknown>
}

/** Loads a handlers module; `roles` keeps only those roles (each must be in the module). */
export async function loadHandlers(path: string, roles?: readonly string[]): Promise<Record<string, RoleHandler>> {
  const all = await load(path, 'handlers', 'handlers')
  for (const [role, h] of Object.entries(all)) {
    if (!NODE_TYPE_PATTERN.test(role)) throw new CliError(EXIT.usage, `handlers module ${path}: role ${JSON.stringify(role)} must match ${NODE_TYPE_PATTERN}`)
    if (h === null || typeof h !== 'object' || typeof (h as { processBatch?: unknown }).processBatch !== 'function') {
      throw new CliError(EXIT.usage, `handlers module ${path}: handler ${JSON.stringify(role)} needs a processBatch(batch, ctx) function`)
    }
  }
  const selected = roles ?? Object.keys(all)
  const missing = selected.filter((r) => !(r in all))
  if (missing.length > 0) {
    throw new CliError(EXIT.usage, `handlers module ${path} has no handler for role${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (it has: ${Object.keys(all).join(', ') || 'none'})`)
  }
  if (selected.length === 0) throw new CliError(EXIT.usage, `handlers module ${path} exports no handler`)
  return Object.fromEntries(selected.map((r) => [r, all[r] as RoleHandler]))
}

/** Loads a coordinator functions module. */
export async function loadFunctions(path: string): Promise<Record<string, CoordinatorFn>> {
  const all = await load(path, 'functions', 'functions')
  for (const [name, fn] of Object.entries(all)) {
    if (typeof fn !== 'function') throw new CliError(EXIT.usage, `functions module ${path}: ${JSON.stringify(name)} is not a function`)
  }
  return all as Record<string, CoordinatorFn>
}
