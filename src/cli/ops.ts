/**
 * Operator commands over a store (production: MongoDB via FLOWKIT_MONGO_URL): list active tasks,
 * show one task's nodes, list and retry dead-lettered outbox messages. Output is plain text, one
 * line per item, for terminals and scripts.
 */
import { requeueDeadLetter } from '../coordinator/dead-letters.ts'
import type { Store, TaskStatus } from '../ports/store.ts'

const ACTIVE: readonly TaskStatus[] = ['queued', 'running', 'cancelling']

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length)
}

export async function opsCommand(store: Store, argv: string[], out: (line: string) => void, now: () => number = Date.now): Promise<number> {
  const [cmd, arg] = argv
  switch (cmd) {
    case 'tasks': {
      const all = arg === '--all'
      const tasks = await store.listTasks(all ? { limit: 200 } : { statuses: ACTIVE, limit: 200 })
      if (tasks.length === 0) out(all ? 'no tasks' : 'no active tasks')
      for (const t of tasks) {
        const counts = new Map<string, number>()
        for (const n of Object.values(t.nodes)) counts.set(n.status, (counts.get(n.status) ?? 0) + 1)
        const summary = [...counts.entries()].map(([s, c]) => `${s}:${c}`).join(' ')
        out(`${pad(t.id, 38)} ${pad(t.status, 10)} ${summary}`)
      }
      return 0
    }
    case 'task': {
      if (!arg) {
        out('usage: flowkit task <task-id>')
        return 2
      }
      const t = await store.getTask(arg)
      if (t === null) {
        out(`task ${arg} not found`)
        return 1
      }
      out(`${t.id}  ${t.status}${t.error ? `  error: ${t.error}` : ''}`)
      for (const spec of t.graph.nodes) {
        const n = t.nodes[spec.node_id]
        if (!n) continue
        const lease = n.lease.worker_id ? ` worker=${n.lease.worker_id}` : ''
        const err = n.last_error ? ` last_error=${n.last_error.reason_code}` : ''
        const stats = Object.keys(n.stats).length > 0 ? ` stats=${JSON.stringify(n.stats)}` : ''
        out(`  ${pad(spec.node_id, 24)} ${pad(spec.type, 16)} ${pad(n.status, 10)} epoch=${n.attempt_epoch}${lease}${err}${stats}`)
      }
      return 0
    }
    case 'dead-letters': {
      const rows = await store.outboxList({ status: 'failed', limit: 500 })
      if (rows.length === 0) out('no dead letters')
      for (const r of rows) out(`${r.id}  ${pad(r.topic, 28)} key=${r.key ?? '-'} attempts=${r.attempts} error=${r.last_error ?? '-'}`)
      return 0
    }
    case 'retry-dead-letter': {
      if (!arg) {
        out('usage: flowkit retry-dead-letter <outbox-id>')
        return 2
      }
      const ok = await requeueDeadLetter(store, arg, now())
      out(ok ? `requeued ${arg}: a running coordinator sends it` : `${arg} is not a dead letter`)
      return ok ? 0 : 1
    }
    default:
      return -1
  }
}
