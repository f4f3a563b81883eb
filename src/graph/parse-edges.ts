/**
 * Graph parsing, the relations between nodes: the lenient prescan (known ids, parent counts for
 * fan_in), `edges`, `edges_ex` and cycle detection over the run-before relation.
 */
import { ErrorCode } from '../errors.ts'
import type { EdgeEx, NodeSpec } from './types.ts'
import type { Context, Relation } from './parse-context.ts'
import { DEFAULT_EDGE_MODE, DEFAULT_EDGE_TRIGGER, checkKeys, describe, didYouMean, isAbsent, isObject, quote } from './parse-context.ts'

/** `edges_ex` fields and values: anything else is refused (a typo would silently turn a streaming edge into a plain one). */
export const EDGE_EX_FIELDS = ['from', 'to', 'mode', 'trigger'] as const
export const EDGE_MODES = ['async', 'sync'] as const
export const EDGE_TRIGGERS = ['on_batch', 'on_done'] as const

/** Lenient first pass: which ids exist, and how many distinct parents each node has (routing sources aside). */
export function prescan(ctx: Context, rawNodes: unknown[], rawEdges: unknown, rawEdgesEx: unknown): void {
  for (let i = 0; i < rawNodes.length; i++) {
    const raw: unknown = rawNodes[i]
    if (!isObject(raw) || typeof raw['node_id'] !== 'string') continue
    const id = raw['node_id']
    ctx.knownIds.add(id)
    if (!ctx.firstIndex.has(id)) ctx.firstIndex.set(id, i)
  }
  const parents = new Map<string, Set<string>>()
  const link = (from: unknown, to: unknown): void => {
    if (typeof from !== 'string' || typeof to !== 'string' || from === to) return
    if (!ctx.knownIds.has(from) || !ctx.knownIds.has(to)) return
    let set = parents.get(to)
    if (set === undefined) {
      set = new Set()
      parents.set(to, set)
    }
    set.add(from)
  }
  for (const raw of rawNodes) {
    if (!isObject(raw) || !Array.isArray(raw['depends_on'])) continue
    for (const dep of raw['depends_on']) link(dep, raw['node_id'])
  }
  if (Array.isArray(rawEdges)) {
    for (const e of rawEdges) if (Array.isArray(e) && e.length === 2) link(e[0], e[1])
  }
  if (Array.isArray(rawEdgesEx)) {
    for (const e of rawEdgesEx) if (isObject(e)) link(e['from'], e['to'])
  }
  // A routing source is not a parent of its targets, even when listed in their depends_on (the
  // coordinator's fan-in leaves it out): the counts fan_in is checked against leave it out too.
  for (const raw of rawNodes) {
    if (!isObject(raw) || typeof raw['node_id'] !== 'string' || !isObject(raw['routing'])) continue
    const source = raw['node_id']
    for (const key of ['on_success', 'on_failure']) {
      const targets = raw['routing'][key]
      if (!Array.isArray(targets)) continue
      for (const t of targets) {
        if (typeof t !== 'string' || parents.get(t)?.delete(source) !== true) continue
        const routed = ctx.routedParents.get(t)
        if (routed === undefined) ctx.routedParents.set(t, [source])
        else routed.push(source)
      }
    }
  }
  for (const [id, set] of parents) ctx.parentCounts.set(id, set.size)
}


/** Checks one edge endpoint; returns the id when it names an existing node. */
function endpoint(ctx: Context, v: unknown, path: string, edgeText: () => string): string | null {
  if (typeof v !== 'string') {
    ctx.problems.add(ErrorCode.BadField, path, `must be a node id string, got ${describe(v)}`)
    return null
  }
  if (!ctx.knownIds.has(v)) {
    ctx.problems.add(ErrorCode.UnknownNode, path, `${edgeText()} names unknown node ${quote(v)}`, { node_id: v })
    return null
  }
  return v
}

function edgeLabel(from: unknown, to: unknown): string {
  const end = (x: unknown): string => (typeof x === 'string' ? quote(x) : describe(x))
  return `edge ${end(from)} -> ${end(to)}`
}

export function parseEdges(ctx: Context, v: unknown): [string, string][] {
  const { problems } = ctx
  const out: [string, string][] = []
  if (isAbsent(v)) return out
  if (!Array.isArray(v)) {
    problems.add(ErrorCode.BadField, 'edges', `must be an array of [from, to] pairs, got ${describe(v)}`)
    return out
  }
  v.forEach((e, k) => {
    const p = `edges[${k}]`
    if (!Array.isArray(e) || e.length !== 2) {
      problems.add(ErrorCode.BadField, p, `must be a [from, to] pair of node ids, got ${describe(e)}`)
      return
    }
    const text = (): string => edgeLabel(e[0], e[1])
    const from = endpoint(ctx, e[0], `${p}[0]`, text)
    const to = endpoint(ctx, e[1], `${p}[1]`, text)
    if (from === null || to === null) return
    if (from === to) {
      problems.add(ErrorCode.Cycle, p, `${text()} links a node to itself (cycle: ${from} -> ${from})`, {
        cycle: [from, from],
      })
      return
    }
    out.push([from, to])
    ctx.relations.push({ from, to, path: p })
  })
  return out
}

export function parseEdgesEx(ctx: Context, v: unknown): EdgeEx[] {
  const { problems } = ctx
  const out: EdgeEx[] = []
  if (isAbsent(v)) return out
  if (!Array.isArray(v)) {
    problems.add(
      ErrorCode.BadField,
      'edges_ex',
      `must be an array of {"from", "to", "mode", "trigger"} objects, got ${describe(v)}`,
    )
    return out
  }
  v.forEach((e, k) => {
    const p = `edges_ex[${k}]`
    if (!isObject(e)) {
      problems.add(ErrorCode.BadField, p, `must be an object {"from", "to", "mode"?, "trigger"?}, got ${describe(e)}`)
      return
    }
    const text = (): string => `edges_ex ${edgeLabel(e['from'], e['to'])}`
    checkKeys(ctx, e, p, text(), EDGE_EX_FIELDS)
    const from = endpoint(ctx, e['from'], `${p}.from`, text)
    const to = endpoint(ctx, e['to'], `${p}.to`, text)
    const opt = (key: 'mode' | 'trigger', fallback: string, allowed: readonly string[]): string => {
      const x = e[key]
      if (isAbsent(x)) return fallback
      const expected = `expected ${allowed.map((a) => JSON.stringify(a)).join(' or ')}`
      if (typeof x !== 'string') {
        problems.add(ErrorCode.BadField, `${p}.${key}`, `${key} of ${text()} must be a string, got ${describe(x)}; ${expected}`)
        return fallback
      }
      if (allowed.includes(x)) return x
      problems.add(ErrorCode.BadField, `${p}.${key}`, `unknown ${key} ${quote(x)} of ${text()}${didYouMean(x, allowed)}; ${expected}`, {
        value: x,
        allowed: [...allowed],
      })
      return fallback
    }
    const mode = opt('mode', DEFAULT_EDGE_MODE, EDGE_MODES)
    const trigger = opt('trigger', DEFAULT_EDGE_TRIGGER, EDGE_TRIGGERS)
    if (from === null || to === null) return
    if (from === to) {
      problems.add(ErrorCode.Cycle, p, `${text()} links a node to itself (cycle: ${from} -> ${from})`, {
        cycle: [from, from],
      })
      return
    }
    out.push({ from, to, mode, trigger })
    ctx.relations.push({ from, to, path: p })
  })
  return out
}

/**
 * Depth-first search over the run-before relation, nodes and relations in document order; every
 * back edge is one reported cycle, with the path where its closing relation was declared.
 */
export function findCycles(ctx: Context, nodes: NodeSpec[]): void {
  const adjacency = new Map<string, Relation[]>()
  for (const r of ctx.relations) {
    let list = adjacency.get(r.from)
    if (list === undefined) {
      list = []
      adjacency.set(r.from, list)
    }
    list.push(r)
  }
  const WHITE = 0
  const GRAY = 1
  const BLACK = 2
  const color = new Map<string, number>()
  for (const root of nodes) {
    if (root.node_id === '' || (color.get(root.node_id) ?? WHITE) !== WHITE) continue
    const stack: { id: string; next: number; via: Relation | null }[] = [{ id: root.node_id, next: 0, via: null }]
    color.set(root.node_id, GRAY)
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!
      const out = adjacency.get(top.id) ?? []
      const rel = out[top.next]
      if (rel === undefined) {
        color.set(top.id, BLACK)
        stack.pop()
        continue
      }
      top.next += 1
      const c = color.get(rel.to) ?? WHITE
      if (c === WHITE) {
        color.set(rel.to, GRAY)
        stack.push({ id: rel.to, next: 0, via: rel })
      } else if (c === GRAY) {
        const start = stack.findIndex((f) => f.id === rel.to)
        const cycle = [...stack.slice(start).map((f) => f.id), rel.to]
        const links = [...stack.slice(start + 1).map((f) => f.via as Relation), rel]
        const input = links.find((r) => r.via !== undefined)
        const how =
          input === undefined
            ? ''
            : ` (node ${quote(input.to)} reads the output of ${quote(input.from)} through ${input.via} at ${input.path}, but ${quote(input.from)} runs after it)`
        ctx.problems.add(ErrorCode.Cycle, rel.path, `dependency cycle: ${cycle.join(' -> ')}${how}`, { cycle })
      }
    }
  }
}