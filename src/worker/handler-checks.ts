/**
 * The handlers a Worker is given, checked when it is constructed (worker.ts) rather than when the
 * first command comes, each mistake with a message that says what to write instead.
 */
import { ErrorCode, FlowkitError } from '../errors.ts'
import { NODE_TYPE_PATTERN, closest } from '../graph/parse-context.ts'

/** Handler methods besides processBatch: each is optional, but a function when present. */
const OPTIONAL_HANDLER_METHODS = ['init', 'loadInput', 'iterBatches', 'finalize', 'classifyError'] as const
const HANDLER_METHODS: readonly string[] = ['processBatch', ...OPTIONAL_HANDLER_METHODS]

/** The method names of a handler: its own and its classes' (Object's aside). */
function methodNames(h: object): string[] {
  const out = new Set<string>()
  for (let o: object | null = h; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o) as object | null) {
    for (const k of Object.getOwnPropertyNames(o)) if (k !== 'constructor') out.add(k)
  }
  return [...out]
}

/**
 * A method named like a handler method flowkit calls but misspelt (`finalise`, `iterBatch`), while
 * the right one is absent, is refused: it would never be called (no finalize, one batch of the
 * node's input instead of the handler's), and TypeScript's `implements` does not flag an extra
 * method.
 */
function checkNearMisses(name: string, h: object): void {
  const present = h as Record<string, unknown>
  for (const k of methodNames(h)) {
    if (HANDLER_METHODS.includes(k)) continue
    const meant = closest(k, HANDLER_METHODS)
    if (meant !== null && present[meant] === undefined) {
      throw new FlowkitError({ code: ErrorCode.Config, message: `${name} has a method ${JSON.stringify(k)}, which flowkit never calls: did you mean ${meant}?` })
    }
  }
}

function describe(v: unknown): string {
  if (v === null || v === undefined) return String(v)
  if (Array.isArray(v)) return 'an array'
  if (typeof v === 'function') return v.toString().startsWith('class') ? 'a class (pass an instance: new MyHandler())' : 'a function'
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`
}

/**
 * Checks the handlers at `new Worker(...)` rather than when the first command comes: each role's
 * handler must be an object with a `processBatch` method (other methods, when given, functions),
 * and a non-empty `config.roles` must name exactly the handlers' roles. Returns the roles.
 */
export function checkHandlers(handlers: unknown, configRoles: readonly string[]): string[] {
  const example = 'e.g. handlers: { squares: { async processBatch(batch, ctx) { … } } }'
  if (handlers === null || typeof handlers !== 'object' || Array.isArray(handlers)) {
    throw new FlowkitError({ code: ErrorCode.Config, message: `worker: handlers must be an object mapping each role to its handler (${example}), got ${describe(handlers)}` })
  }
  const roles = Object.keys(handlers)
  if (roles.length === 0) throw new FlowkitError({ code: ErrorCode.Config, message: `worker needs at least one handler (${example})` })
  for (const role of roles) {
    const h: unknown = (handlers as Record<string, unknown>)[role]
    const name = `worker handler ${JSON.stringify(role)}`
    if (!NODE_TYPE_PATTERN.test(role)) {
      // No graph could name it: a node's type is 1 to 128 of A-Z a-z 0-9 _ . - (and so is a topic's part).
      throw new FlowkitError({ code: ErrorCode.Config, message: `${name}: a role is a node type, 1 to 128 characters of A-Z a-z 0-9 _ . - (no graph could name this one)` })
    }
    if (h === null || typeof h !== 'object' || Array.isArray(h)) {
      throw new FlowkitError({ code: ErrorCode.Config, message: `${name} must be an object with a processBatch method, got ${describe(h)}` })
    }
    const methods = h as Record<string, unknown>
    if (typeof methods['processBatch'] !== 'function') {
      throw new FlowkitError({
        code: ErrorCode.Config,
        message: `${name} has no processBatch method (got ${describe(methods['processBatch'])}): every handler needs async processBatch(batch, ctx)`,
      })
    }
    for (const m of OPTIONAL_HANDLER_METHODS) {
      if (methods[m] !== undefined && typeof methods[m] !== 'function') {
        throw new FlowkitError({ code: ErrorCode.Config, message: `${name}: ${m} must be a function when given, got ${describe(methods[m])}` })
      }
    }
    checkNearMisses(name, h)
  }
  if (configRoles.length > 0) {
    const noHandler = configRoles.filter((r) => !roles.includes(r))
    const notListed = roles.filter((r) => !configRoles.includes(r))
    if (noHandler.length > 0 || notListed.length > 0) {
      const parts = [
        ...(noHandler.length > 0 ? [`no handler for ${noHandler.map((r) => JSON.stringify(r)).join(', ')}`] : []),
        ...(notListed.length > 0 ? [`handlers ${notListed.map((r) => JSON.stringify(r)).join(', ')} not in roles`] : []),
      ]
      throw new FlowkitError({
        code: ErrorCode.Config,
        message: `worker config: roles ${JSON.stringify(configRoles)} do not match the handlers ${JSON.stringify(roles)}: ${parts.join('; ')} (leave roles empty to serve every handler's role)`,
      })
    }
  }
  return roles
}
