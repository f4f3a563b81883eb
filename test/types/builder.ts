/**
 * Type tests of the graph builder and the graph JSON types, compiled by tsc (never run):
 * `npm run typecheck`, and test/graph/builder.test.ts runs `tsc -p test/types/tsconfig.json`.
 * Each `@ts-expect-error` line must be a compile error: if the types let it through, tsc reports
 * the directive as unused and the check fails.
 */
import type { Coordinator, CreateTaskInput, GraphJson, NodeJson, RoleHandler, RolesOf } from 'flowkit'
import { graph, pullFromArtifacts, rechunk } from 'flowkit'

declare const handler: RoleHandler
declare const coordinator: Coordinator

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false
const assertType = <T extends true>(_: T): void => undefined

// ---------------------------------------------------------------- roles from the Worker's handlers

const handlers = { reader: handler, writer: handler }
assertType<Equal<RolesOf<typeof handlers>, 'reader' | 'writer'>>(true)
assertType<Equal<RolesOf<'a' | 'b'>, 'a' | 'b'>>(true)

const g = graph<typeof handlers>()
g.node('read', 'reader')
g.node('write', 'writer').after('read')
// @ts-expect-error unknown role: not a key of the handlers
g.node('oops', 'writter')
// @ts-expect-error coordinator functions are added with fn(), not node()
g.node('fn', 'coordinator_fn')

const byUnion = graph<'reader' | 'enricher'>()
byUnion.node('e', 'enricher')
// @ts-expect-error unknown role of the union
byUnion.node('w', 'writer')

// handlers typed as the Worker's option (Record<string, RoleHandler>): any role compiles
const loose: Record<string, RoleHandler> = handlers
graph<typeof loose>().node('any', 'whatever')
graph().node('any', 'whatever')

// ---------------------------------------------------------------- method arguments

const n = g.node('n', 'writer')
n.fanIn('any').fanIn('all').fanIn({ count: 2 }).fanIn('count:3')
// @ts-expect-error not a fan_in
n.fanIn('some')
// @ts-expect-error count, not cnt
n.fanIn({ cnt: 2 })
n.retry({ max: 3, backoffSec: 0.5, permanentOn: ['bad_input'] })
// @ts-expect-error backoffSec, not backoff (wrong method argument)
n.retry({ max: 3, backoff: 1 })
// @ts-expect-error max is a number
n.retry({ max: '3' })
n.startWhen('first_batch').startOnFirstBatch()
// @ts-expect-error not a start_when
n.startWhen('first')
n.when({ var: 'a.b', op: 'in', value: ['x', 'y'] })
n.when({ all: [{ var: 'a', op: 'exists' }, { not: { var: 'b', op: 'gt', value: 3 } }] })
// @ts-expect-error op in needs a list
n.when({ var: 'a', op: 'in', value: 'x' })
// @ts-expect-error unknown guard op
n.when({ var: 'a', op: 'like', value: 'x' })
n.input(rechunk('read', 100, { metaListKey: 'rows' })).input(pullFromArtifacts(['read'], { pollMs: 10 }))
// @ts-expect-error size is a number
rechunk('read', '100')
// @ts-expect-error metaListKey, not meta_list_key
rechunk('read', 100, { meta_list_key: 'rows' })
n.onSuccess('read').onFailure('read')

g.edge('read', 'write').edge('read', 'n', { trigger: 'on_batch' }).edge('read', 'n', { mode: 'sync', trigger: 'on_done' })
// @ts-expect-error not a trigger
g.edge('read', 'n', { trigger: 'on_batches' })

// ---------------------------------------------------------------- coordinator functions

g.fn('m', 'merge.generic', { from_nodes: ['read'], target: { key: 'out' } })
g.fn('t', 'metrics.aggregate', { from_nodes: ['read'], metric: 'count', mode: 'mean' })
g.fn('s', 'vars.set', { key: 'a.b', value: 1 })
g.fn('z', 'noop')
g.fn('custom', 'my.registered.fn', { anything: [1, 2] })
// @ts-expect-error merge.generic needs its args
g.fn('m2', 'merge.generic')
// @ts-expect-error from_nodes, not from
g.fn('m3', 'merge.generic', { from: ['read'] })
// @ts-expect-error mode is sum or mean
g.fn('t2', 'metrics.aggregate', { from_nodes: ['read'], mode: 'avg' })
// @ts-expect-error vars.incr needs a key
g.fn('i', 'vars.incr', { by: 2 })

// ---------------------------------------------------------------- what build() gives

const built: GraphJson<'reader' | 'writer'> = g.build()
const input: CreateTaskInput = { graph: built }
void coordinator.createTask(input)
void coordinator.createTask(g.params({ run: 1 }).task({ id: 'my-task' }))

// ---------------------------------------------------------------- raw JSON, typed

const raw: GraphJson<RolesOf<typeof handlers>> = {
  nodes: [
    { node_id: 'read', type: 'reader' },
    { node_id: 'write', type: 'writer', depends_on: ['read'], fan_in: 'count:1', routing: { on_failure: ['read'] } },
    { node_id: 'sum', type: 'coordinator_fn', io: { fn: 'metrics.aggregate', fn_args: { node_id: 'read' } } },
  ],
  edges_ex: [{ from: 'read', to: 'write', mode: 'async', trigger: 'on_batch' }],
}
void raw
// @ts-expect-error unknown role in raw JSON
const badRole: NodeJson<'reader'> = { node_id: 'x', type: 'writer' }
// @ts-expect-error dependsOn is not a field (depends_on is)
const typo: NodeJson = { node_id: 'x', type: 'reader', dependsOn: ['a'] }
// @ts-expect-error not a fan_in
const badFanIn: NodeJson = { node_id: 'x', type: 'reader', fan_in: 'some' }
// @ts-expect-error not a trigger
const badEdge: GraphJson = { nodes: [], edges_ex: [{ from: 'a', to: 'b', trigger: 'onBatch' }] }
void [badRole, typo, badFanIn, badEdge]
