/**
 * The worker roles this coordinator knows are served: from the workers' announces (and the
 * store's workers list at start). A node of a type no live worker serves cannot run: it is shown
 * `waiting_for_worker` in the task view and logged once (`node.no_worker`, naming the type and
 * the known types); `requireKnownTypes` refuses such graphs at createTask.
 */
import type { WorkerInfo } from '../ports/store.ts'

export class LiveRoles {
  readonly #workers = new Map<string, { roles: string[]; online: boolean; seen: number }>()
  readonly #livenessMs: number

  constructor(livenessMs: number) {
    this.#livenessMs = livenessMs
  }

  /** A worker announced itself (online or going offline). */
  seen(w: Pick<WorkerInfo, 'worker_id' | 'roles' | 'status' | 'last_seen_ms'>): void {
    const cur = this.#workers.get(w.worker_id)
    if (cur !== undefined && cur.seen > w.last_seen_ms) return
    this.#workers.set(w.worker_id, { roles: w.roles.length > 0 || cur === undefined ? w.roles : cur.roles, online: w.status === 'online', seen: w.last_seen_ms })
  }

  /** Roles served by a worker online and heard from within the liveness window. */
  known(now: number): Set<string> {
    const out = new Set<string>()
    for (const w of this.#workers.values()) if (w.online && now - w.seen <= this.#livenessMs) for (const r of w.roles) out.add(r)
    return out
  }

  knows(type: string, now: number): boolean {
    for (const w of this.#workers.values()) if (w.online && now - w.seen <= this.#livenessMs && w.roles.includes(type)) return true
    return false
  }
}

/** `requireKnownTypes`: the worker types of a graph that no live worker serves (empty: all served). */
export function unservedTypes(roles: LiveRoles, types: Iterable<string>, now: number): string[] {
  return [...new Set(types)].filter((t) => !roles.knows(t, now)).sort()
}

/** Marks the running nodes of a view that wait for a worker of their type (none announced). */
export function markWaiting<V extends { nodes: { status: string; type: string; accepted_at_ms: number | null; waiting_for_worker?: boolean }[] }>(
  view: V,
  roles: LiveRoles,
  isFnType: (type: string) => boolean,
  now: number,
): V {
  for (const n of view.nodes) {
    if (n.status === 'running' && n.accepted_at_ms === null && !isFnType(n.type) && !roles.knows(n.type, now)) n.waiting_for_worker = true
  }
  return view
}
