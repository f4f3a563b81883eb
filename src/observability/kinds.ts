/**
 * The kind of a status event from its JSON text, without parsing it: what the coordinator's
 * tracing needs to tell an acceptance from the other events of a batch (the intake parses them
 * later, once).
 */

const KINDS: ReadonlySet<string> = new Set(['TASK_ACCEPTED', 'TASK_HEARTBEAT', 'TASK_RESUMED', 'BATCH_OK', 'BATCH_FAILED', 'TASK_DONE', 'TASK_FAILED', 'CANCELLED'])
const KIND_RE = /"kind"\s*:\s*"([A-Z_]{1,32})"/

/** The status kinds, most frequent first (`"kind":"X"` as flowkit and the seed write it). */
const KIND_LIST = ['BATCH_OK', 'TASK_ACCEPTED', 'TASK_DONE', 'TASK_HEARTBEAT', 'TASK_FAILED', 'BATCH_FAILED', 'CANCELLED', 'TASK_RESUMED'] as const

/** The status kind of an event's JSON text (a constant string), or `other`. */
export function kindOf(value: string): string {
  // A plain search (from the rare `k`: a leading `"` would stop at every quote of the JSON), then
  // the kind compared in place; the pattern for other spellings. Returns the constant string.
  let at = value.indexOf('kind":"')
  while (at > 0 && value.charCodeAt(at - 1) !== 34) at = value.indexOf('kind":"', at + 7)
  if (at > 0) {
    const from = at + 7
    for (const k of KIND_LIST) if (value.startsWith(k, from) && value.charCodeAt(from + k.length) === 34) return k
    return 'other'
  }
  const k = KIND_RE.exec(value)?.[1]
  return k !== undefined && KINDS.has(k) ? k : 'other'
}

/** The status kind of a message: from its object when a bus in memory delivered one (its text is then not made), else from its text. */
export function messageKind(m: { readonly value: string; readonly decoded?: object }): string {
  const d = m.decoded as { payload?: { kind?: unknown } } | undefined
  if (d === undefined) return kindOf(m.value)
  const k = d.payload?.kind
  return typeof k === 'string' && KINDS.has(k) ? k : 'other'
}
