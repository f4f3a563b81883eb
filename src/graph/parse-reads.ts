/**
 * What a coordinator function reads must have run before it. A function reads the outputs its
 * `fn_args` name (`from_nodes`, `from_node`, metrics.aggregate's `node_id`) once, when it runs —
 * unlike a worker's `pull.from_artifacts`, which waits for its upstreams' batches. So a read node
 * must be one the function depends on (through `depends_on`, `edges`, `edges_ex` or routing,
 * directly or further up), and not one whose first batch starts it (`io.start_when: first_batch`,
 * an `edges_ex` `async` / `on_batch` edge): the function would run before that node ended and
 * merge or count nothing, or its first batches only, and the task would finish with that.
 */
import { ErrorCode } from '../errors.ts'
import { type Context, quote } from './parse-context.ts'
import type { EdgeEx, NodeSpec } from './types.ts'

export function checkFunctionReads(ctx: Context, nodes: readonly NodeSpec[], edgesEx: readonly EdgeEx[]): void {
  const reads = ctx.relations.filter((r) => r.fn === true)
  if (reads.length === 0) return
  // Run-before links, child → parents: depends_on, edges, edges_ex, routing, and a worker's pull
  // of another node's output (its adapter ends once that node completed); not a function's read.
  const parentsOf = new Map<string, Set<string>>()
  for (const r of ctx.relations) {
    if (r.fn === true) continue
    let set = parentsOf.get(r.to)
    if (set === undefined) {
      set = new Set()
      parentsOf.set(r.to, set)
    }
    set.add(r.from)
  }
  const byId = new Map(nodes.map((n) => [n.node_id, n]))
  const ancestors = new Map<string, Set<string>>()
  const ancestorsOf = (id: string): Set<string> => {
    const known = ancestors.get(id)
    if (known !== undefined) return known
    const seen = new Set<string>()
    const stack = [...(parentsOf.get(id) ?? [])]
    while (stack.length > 0) {
      const p = stack.pop() as string
      if (seen.has(p)) continue
      seen.add(p)
      for (const pp of parentsOf.get(p) ?? []) stack.push(pp)
    }
    ancestors.set(id, seen)
    return seen
  }
  for (const r of reads) {
    const label = `coordinator function ${quote(r.to)}`
    if (!ancestorsOf(r.to).has(r.from)) {
      ctx.problems.add(
        ErrorCode.BadField,
        r.path,
        `${label} reads the output of ${quote(r.from)} (${r.via}) but does not depend on it: it would run at once and read nothing, or part of it; add ${quote(r.from)} to its depends_on`,
        { node_id: r.from, referenced_by: r.to },
      )
      continue
    }
    const direct = ctx.relations.some((x) => x.via === undefined && x.from === r.from && x.to === r.to)
    const how =
      direct && byId.get(r.to)?.io.start_when === 'first_batch'
        ? 'io.start_when is "first_batch"'
        : edgesEx.some((e) => e.from === r.from && e.to === r.to && e.mode === 'async' && e.trigger === 'on_batch')
          ? 'an edges_ex async / on_batch edge'
          : null
    if (how !== null) {
      ctx.problems.add(
        ErrorCode.BadField,
        r.path,
        `${label} reads the output of ${quote(r.from)} (${r.via}) once, when it runs, but starts on its first batch (${how}): it would read that batch alone; let it wait for ${quote(r.from)} to end (a ready edge)`,
        { node_id: r.from, referenced_by: r.to },
      )
    }
  }
}
