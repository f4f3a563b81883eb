/**
 * Invariants read from the store once a scenario is over: every submitted task is there and
 * terminal with the status its kind expects, finished tasks have exact metrics, variables and
 * artifacts, and a node's recorded results come from its last epoch (artifacts, counted batches).
 * The journal is scanned for events of an older epoch applied after a newer one was dispatched.
 */
import type { ArtifactDoc, JournalEntry, NodeState, Store, TaskDoc, VersionedTask } from 'flowkit'
import type { Expected, PlannedTask } from './workload.ts'

export const TERMINAL = new Set(['finished', 'failed', 'cancelled'])

export interface TaskVerdict {
  id: string
  kind: string
  status: string | null
  verdict: 'ok' | 'lost' | 'stuck' | 'wrong' | 'unsubmitted'
  problems: string[]
  /** Stale results found on this task (violations of "no stale epoch changes anything"). */
  stale: string[]
  /** Nodes of a terminal task still holding a running lease in the store. */
  liveLeases: string[]
}

export function nodeSummary(t: TaskDoc): string {
  return Object.values(t.nodes)
    .map((n) => `${n.node_id}=${n.status}@${n.attempt_epoch}`)
    .join(' ')
}

function expectStatus(task: PlannedTask): string[] {
  if (task.kind === 'ok') return ['finished']
  if (task.kind === 'fail') return ['failed']
  // Applied by the owner: cancelled. Handed to the owner by another coordinator, or found over:
  // the owner may have finished it first.
  return task.cancelAck === true && task.cancelVia === 'owner' ? ['cancelled'] : ['cancelled', 'finished']
}

function checkExact(t: VersionedTask, exp: Expected, arts: ArtifactDoc[], problems: string[]): void {
  for (const [id, w] of Object.entries(exp.nodes)) {
    const n = t.nodes[id]
    if (n === undefined) {
      problems.push(`${id}: missing`)
      continue
    }
    if (n.status !== 'finished') problems.push(`${id}: ${n.status}, expected finished`)
    if (n.stats['items'] !== w.items || n.stats['sum'] !== w.sum) {
      problems.push(`${id}: stats items=${String(n.stats['items'])} sum=${String(n.stats['sum'])}, expected items=${w.items} sum=${w.sum}`)
    }
    const mine = arts.filter((a) => a.node_id === id)
    const partials = mine.filter((a) => a.status === 'partial').length
    const complete = mine.filter((a) => a.status === 'complete').length
    if (partials !== w.partials) problems.push(`${id}: ${partials} partial artifacts, expected ${w.partials}`)
    if (complete !== 1) problems.push(`${id}: ${complete} complete artifacts, expected 1`)
    const itemsInPartials = mine.filter((a) => a.status === 'partial').reduce((s, a) => s + ((a.meta['items'] as unknown[] | undefined)?.length ?? 0), 0)
    if (itemsInPartials !== w.items) problems.push(`${id}: ${itemsInPartials} items in partial artifacts, expected ${w.items}`)
  }
  const runs = t.coordinator.vars['runs']
  if (runs !== 1) problems.push(`vars.runs=${JSON.stringify(runs)}, expected 1 (vars.incr applied once)`)
  if (t.nodes['count']?.status !== 'finished') problems.push(`count: ${t.nodes['count']?.status}, expected finished`)
}

/** Results of a finished worker node that do not come from its last epoch. */
function staleResults(t: VersionedTask, arts: ArtifactDoc[], nodes: readonly string[]): string[] {
  const out: string[] = []
  for (const id of nodes) {
    const n = t.nodes[id]
    if (n === undefined || n.status !== 'finished') continue
    const last = n.attempt_epoch
    for (const a of arts) {
      if (a.node_id !== id || a.attempt_epoch === last) continue
      out.push(`${id}: ${a.status} artifact ${a.batch_uid ?? '(complete)'} from epoch ${a.attempt_epoch}, node finished at epoch ${last}`)
    }
    for (const [uid, [epoch]] of Object.entries(t.batches?.[id] ?? {})) {
      if (epoch !== last) out.push(`${id}: batch ${uid} counted from epoch ${epoch}, node finished at epoch ${last}`)
    }
  }
  return out
}

const STATUS_LABEL = /^(TASK_ACCEPTED|TASK_HEARTBEAT|TASK_RESUMED|BATCH_OK|BATCH_FAILED|TASK_DONE|TASK_FAILED|CANCELLED) (\S+)@(\d+)/
const DISPATCH_LABEL = /^dispatch (\S+)@(\d+)/

/**
 * Journal scan: in seq order, an event of epoch e applied to a node after the dispatch of a newer
 * epoch, or a batch counted from an older epoch than the newest dispatched one, is a stale change.
 * Returns the violations and how many journal lines were understood (0 = format not recognised).
 */
export function scanJournal(entries: readonly JournalEntry[]): { stale: string[]; understood: number } {
  const stale: string[] = []
  let understood = 0
  const dispatched = new Map<string, number>()
  for (const e of [...entries].sort((a, b) => a.seq - b.seq)) {
    const before = new Map(dispatched)
    for (const [node, uid, epoch] of e.batches ?? []) {
      const newest = before.get(node) ?? 0
      if (epoch < newest) stale.push(`journal seq ${e.seq}: batch ${node}/${uid} of epoch ${epoch} counted after epoch ${newest} was dispatched`)
    }
    for (const line of e.events) {
      const d = DISPATCH_LABEL.exec(line)
      if (d) {
        understood++
        const node = d[1] as string
        dispatched.set(node, Math.max(dispatched.get(node) ?? 0, Number(d[2])))
        continue
      }
      const m = STATUS_LABEL.exec(line)
      if (!m) continue
      understood++
      const node = m[2] as string
      const epoch = Number(m[3])
      const newest = dispatched.get(node) ?? 0
      if (epoch < newest) stale.push(`journal seq ${e.seq}: "${line}" applied after epoch ${newest} was dispatched`)
    }
  }
  return { stale, understood }
}

function liveLeasesOf(t: TaskDoc): string[] {
  if (!TERMINAL.has(t.status)) return []
  return Object.values(t.nodes)
    .filter((n: NodeState) => n.status === 'running' || n.status === 'cancelling')
    .map((n) => `${t.id}/${n.node_id}@${n.attempt_epoch} still ${n.status} (lease ${n.lease.worker_id ?? '?'}) in a ${t.status} task`)
}

export interface StoreCheck {
  verdicts: TaskVerdict[]
  journal: Map<string, JournalEntry[]>
  docs: Map<string, VersionedTask>
  /** Every artifact of every task found in the store (all attempts). */
  artifacts: Map<string, ArtifactDoc[]>
  journalLinesUnderstood: number
}

/** Every artifact of these tasks, by task (default: `Store.listArtifacts` task by task). */
export type ArtifactReader = (taskIds: readonly string[]) => Promise<Map<string, ArtifactDoc[]>>

export async function checkStore(store: Store, tasks: readonly PlannedTask[], exp: Expected, readArtifacts?: ArtifactReader): Promise<StoreCheck> {
  const verdicts: TaskVerdict[] = []
  const docs = new Map<string, VersionedTask>()
  const artifacts = new Map<string, ArtifactDoc[]>()
  const nodes = Object.keys(exp.nodes)
  const journal = new Map<string, JournalEntry[]>()
  const entries = await store.readJournal(tasks.map((t) => t.id))
  for (const e of entries) {
    const list = journal.get(e.task_id)
    if (list === undefined) journal.set(e.task_id, [e])
    else list.push(e)
  }
  // Every task of the scenario's database at once (snapshot + journal, as getTask): one bulk read
  // instead of one per task (FerretDB scans a collection for each lookup).
  const stored = new Map((await store.listTasks()).map((t) => [t.id, t as VersionedTask]))
  const ids = tasks.filter((t) => stored.has(t.id)).map((t) => t.id)
  const allArtifacts = readArtifacts !== undefined ? await readArtifacts(ids) : new Map(await Promise.all(ids.map(async (id) => [id, await store.listArtifacts(id)] as const)))
  let understood = 0
  for (const task of tasks) {
    const doc = stored.get(task.id) ?? null
    const v: TaskVerdict = { id: task.id, kind: task.kind, status: doc?.status ?? null, verdict: 'ok', problems: [], stale: [], liveLeases: [] }
    verdicts.push(v)
    if (doc === null) {
      v.verdict = task.acked ? 'lost' : 'unsubmitted'
      v.problems.push(task.acked ? 'acknowledged by a coordinator but not in the store' : `never acknowledged (${task.lastError ?? 'no attempt'})`)
      continue
    }
    docs.set(task.id, doc)
    const arts = allArtifacts.get(task.id) ?? []
    artifacts.set(task.id, arts)
    const scan = scanJournal(journal.get(task.id) ?? [])
    understood += scan.understood
    v.stale.push(...scan.stale)
    v.liveLeases.push(...liveLeasesOf(doc))
    if (!TERMINAL.has(doc.status)) {
      v.verdict = 'stuck'
      v.problems.push(`still ${doc.status}: ${nodeSummary(doc)}`)
      continue
    }
    v.stale.push(...staleResults(doc, arts, nodes))
    const want = expectStatus(task)
    if (!want.includes(doc.status)) {
      v.verdict = 'wrong'
      v.problems.push(`${doc.status}, expected ${want.join(' or ')}: ${nodeSummary(doc)}${doc.error ? ` (${doc.error})` : ''}`)
      continue
    }
    if (doc.status === 'finished') checkExact(doc, exp, arts, v.problems)
    if (doc.status === 'failed') {
      const f = doc.nodes[exp.failNode]
      if (f?.status !== 'failed' || f.last_error?.reason_code !== 'planned_failure') {
        v.problems.push(`${exp.failNode} ${f?.status} (${f?.last_error?.reason_code ?? 'no error'}), expected failed with planned_failure`)
      }
      for (const n of Object.values(doc.nodes)) {
        if (n.status === 'failed' && n.node_id !== exp.failNode) v.problems.push(`${n.node_id} failed too (${n.last_error?.reason_code ?? '?'})`)
      }
    }
    if (v.problems.length > 0) v.verdict = 'wrong'
  }
  return { verdicts, journal, docs, artifacts, journalLinesUnderstood: understood }
}
