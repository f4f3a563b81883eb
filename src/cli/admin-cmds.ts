/**
 * Operator commands on a deployment's store: `workers` (the registry the coordinator keeps from
 * worker announcements), `dlq ls` (outbox messages parked after their last send failed) and
 * `dlq retry <id>` (back to pending: the running coordinator's outbox sends it again), `prune`
 * (deletes ended tasks older than an age, with everything stored for them).
 */
import { requeueDeadLetter, requeueDeadLetters } from '../coordinator/dead-letters.ts'
import { redact, redactText } from '../log.ts'
import type { OutboxRow } from '../ports/store.ts'
import { type Parsed, flag, int, parse, positionals, str } from './args.ts'
import { openStore } from './connect.ts'
import { CliError, EXIT, usageError } from './errors.ts'
import { type CommandBase, ago, isoTime, table } from './output.ts'
import { resolveSettings } from './settings.ts'

export async function workersCommand(argv: readonly string[], base: CommandBase): Promise<number> {
  const p = parse('workers', argv, {}, true)
  positionals('workers', p, [])
  const settings = resolveSettings(p)
  const store = await openStore(settings, 'read')
  try {
    const workers = await store.listWorkers()
    if (base.out.json) {
      base.out.doc(workers)
      return EXIT.ok
    }
    if (workers.length === 0) {
      base.out.line('no workers have announced themselves')
      return EXIT.ok
    }
    const now = Date.now()
    const rows = workers.map((w) => [w.worker_id, w.status, w.roles.join(','), String(w.capacity), w.version, ago(w.last_seen_ms, now)])
    for (const l of table([['WORKER', 'STATUS', 'ROLES', 'CAPACITY', 'VERSION', 'LAST SEEN'], ...rows])) base.out.line(l)
    return EXIT.ok
  } finally {
    await store.close()
  }
}

/** A dead letter as printed: its command and error with secrets masked (as the dashboard does). */
function dlqRow(r: OutboxRow): OutboxRow {
  return { ...r, value: maskedJson(r.value), last_error: r.last_error === null ? null : redactText(r.last_error) }
}

/** JSON text with secrets masked, still JSON (secret-named fields become "***"); other text masked as text. */
function maskedJson(text: string): string {
  try {
    return JSON.stringify(redact(JSON.parse(text)))
  } catch {
    return redactText(text)
  }
}

export async function dlqCommand(argv: readonly string[], base: CommandBase): Promise<number> {
  const sub = argv[0]
  if (sub === undefined || sub.startsWith('-')) throw usageError('dlq: missing subcommand (ls or retry)', 'dlq')
  const rest = argv.slice(1)
  if (sub === 'ls' || sub === 'list') {
    const p = parse('dlq ls', rest, { limit: { type: 'string', short: 'n' } }, true)
    positionals('dlq ls', p, [])
    const limit = int('dlq ls', p, 'limit', 1, 100_000) ?? 500
    const settings = resolveSettings(p)
    const store = await openStore(settings, 'read')
    try {
      const rows = (await store.outboxList({ status: 'failed', limit })).map(dlqRow)
      if (base.out.json) {
        base.out.doc(rows)
        return EXIT.ok
      }
      if (rows.length === 0) {
        base.out.line('no dead letters')
        return EXIT.ok
      }
      const lines = table([['ID', 'TOPIC', 'KEY', 'ATTEMPTS', 'PARKED', 'LAST ERROR'], ...rows.map((r) => [r.id, r.topic, r.key ?? '-', String(r.attempts), isoTime(r.updated_at_ms), r.last_error ?? '-'])])
      for (const l of lines) base.out.line(l)
      return EXIT.ok
    } finally {
      await store.close()
    }
  }
  if (sub === 'retry') {
    const p = parse('dlq retry', rest, { all: { type: 'boolean', short: 'a' }, limit: { type: 'string', short: 'n' } }, true)
    if (flag(p, 'all')) return retryAll(p, base)
    if (p.values['limit'] !== undefined) throw usageError('dlq retry: --limit goes with --all', 'dlq')
    const [id] = positionals('dlq retry', p, ['id']) as [string]
    const settings = resolveSettings(p)
    const store = await openStore(settings, 'write')
    try {
      const ok = await requeueDeadLetter(store, id, Date.now())
      if (!ok) throw new CliError(EXIT.notFound, `no dead letter ${id}`, { hint: 'list them with `flowkit dlq ls` (a retried one is pending again, or sent)' })
      if (base.out.json) base.out.doc({ id, requeued: true })
      else base.out.line(`requeued ${id}: the running coordinator sends it again`)
      return EXIT.ok
    } finally {
      await store.close()
    }
  }
  throw usageError(`dlq: unknown subcommand ${JSON.stringify(sub)} (ls or retry)`, 'dlq')
}

/** `dlq retry --all`: every dead letter back to pending but the STARTs of attempts that ended. */
async function retryAll(p: Parsed, base: CommandBase): Promise<number> {
  positionals('dlq retry --all', p, [])
  const limit = int('dlq retry', p, 'limit', 1, 100_000)
  const store = await openStore(resolveSettings(p), 'write')
  try {
    const r = await requeueDeadLetters(store, Date.now(), limit ?? undefined)
    const stale = r.stale.map((s) => ({ id: s.id, reason: redactText(s.reason) }))
    if (base.out.json) {
      base.out.doc({ requeued: r.requeued, stale })
      return EXIT.ok
    }
    base.out.line(r.requeued.length === 0 && stale.length === 0 ? 'no dead letters' : `requeued ${r.requeued.length}: the running coordinator sends them again`)
    if (stale.length > 0) {
      base.out.line(`not retried ${stale.length} (their attempts ended: resubmit their tasks):`)
      for (const l of table([['ID', 'WHY'], ...stale.map((s) => [s.id, s.reason])])) base.out.line(l)
    }
    return EXIT.ok
  } finally {
    await store.close()
  }
}

const AGE_UNITS_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
/** Tasks deleted per store call. */
const PRUNE_BATCH = 5_000

/** `7d`, `12h`, `30m`, `90s` or a number of seconds, in ms. */
function age(command: string, raw: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([smhd]?)$/.exec(raw.trim())
  const ms = m === null ? Number.NaN : Number(m[1]) * (AGE_UNITS_MS[m[2] || 's'] as number)
  if (!Number.isFinite(ms) || ms <= 0) throw usageError(`${command}: --ended-before must be an age such as 7d, 12h, 30m or 90s, got ${JSON.stringify(raw)}`, command)
  return ms
}

export async function pruneCommand(argv: readonly string[], base: CommandBase): Promise<number> {
  const p = parse('prune', argv, { 'ended-before': { type: 'string' }, limit: { type: 'string', short: 'n' } }, true)
  positionals('prune', p, [])
  const raw = str(p, 'ended-before')
  if (raw === undefined) throw usageError('prune: --ended-before <age> is required (e.g. 7d: tasks that ended more than 7 days ago)', 'prune')
  const cutoff = Date.now() - age('prune', raw)
  const limit = int('prune', p, 'limit', 1) ?? Number.MAX_SAFE_INTEGER
  const settings = resolveSettings(p)
  const store = await openStore(settings, 'write')
  try {
    let tasks = 0
    while (tasks < limit && !base.signal.aborted) {
      const want = Math.min(PRUNE_BATCH, limit - tasks)
      const ids = await store.purgeTasks(cutoff, want)
      tasks += ids.length
      if (ids.length < want) break
    }
    if (base.out.json) base.out.doc({ deleted: tasks, ended_before: isoTime(cutoff) })
    else base.out.line(`deleted ${tasks} task${tasks === 1 ? '' : 's'} that ended before ${isoTime(cutoff)} (with their journal, artifacts, metrics, claims and outbox rows, dead letters included)`)
    return EXIT.ok
  } finally {
    await store.close()
  }
}
