/**
 * Checks of the public verbs' arguments that a plain-JavaScript caller gets wrong: a task id that
 * is not a string (most often the Promise of a createTask that was not awaited) is named as such,
 * instead of "task [object Promise] not found".
 */
import { ErrorCode, FlowkitError } from '../errors.ts'

/** `id` as a task id, or a clear error naming `verb`. */
export function taskIdArg(verb: string, id: unknown): string {
  if (typeof id === 'string') return id
  const thenable = id !== null && typeof id === 'object' && typeof (id as { then?: unknown }).then === 'function'
  const got = thenable ? 'a Promise (is an `await` missing before createTask?)' : id === null ? 'null' : typeof id
  throw new FlowkitError(ErrorCode.InvalidKey, `${verb}: the task id must be a string, got ${got}`)
}

/**
 * `cancelTask`'s options: an object whose `reason`, when given, is a string. A reason passed in
 * place of the options (`cancelTask(id, 'why')`) was ignored without a word.
 */
export function cancelOptionsArg(options: unknown): { reason?: string } {
  if (options === undefined) return {}
  if (options === null || typeof options !== 'object') {
    throw new FlowkitError(ErrorCode.Config, `cancelTask: options must be an object such as { reason: '...' }, got ${options === null ? 'null' : typeof options}`)
  }
  const reason = (options as { reason?: unknown }).reason
  if (reason !== undefined && typeof reason !== 'string') throw new FlowkitError(ErrorCode.Config, `cancelTask: reason must be a string, got ${reason === null ? 'null' : typeof reason}`)
  return options as { reason?: string }
}
