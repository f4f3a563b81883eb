/**
 * The graphs of docs/graph-format.md and the README, written with the typed builder. Compiled by
 * tsc (test/types/tsconfig.json, `npm run typecheck`): every role is checked against `DocRoles`.
 * test/graph/builder.test.ts compares each with the JSON in the docs and runs it.
 */
import { readFileSync } from 'node:fs'
import { type GraphJson, graph, pullFromArtifacts, rechunk } from 'flowkit'

/** The ```json blocks of docs/graph-format.md, each with the name of the `<!-- example: name -->` before it. */
export function docExamples(): { name: string | null; json: unknown }[] {
  const text = readFileSync(new URL('../../docs/graph-format.md', import.meta.url), 'utf8')
  return [...text.matchAll(/(?:<!-- example: ([\w-]+) -->\n)?```json\n([\s\S]*?)```/g)].map((m) => ({ name: m[1] ?? null, json: JSON.parse(m[2] as string) }))
}

/** The roles the doc examples use (the test runs them with one generic handler). */
export type DocRoles = 'reader' | 'writer' | 'enricher' | 'notifier' | 'failing' | 'extractor' | 'processor'

const g = () => graph<DocRoles>()

export const DOC_EXAMPLES: Record<string, () => GraphJson> = {
  minimal: () => {
    const b = g()
    b.node('read', 'reader')
    return b.build()
  },
  'fan-in': () => {
    const b = g()
    for (const region of ['eu', 'us', 'asia']) b.node(region, 'reader')
    b.node('first', 'writer').after('eu', 'us', 'asia').fanIn('any')
    b.node('quorum', 'writer').after('eu', 'us', 'asia').fanIn({ count: 2 })
    b.node('report', 'writer').after('eu', 'us', 'asia')
    return b.build()
  },
  io: () => {
    const b = g()
    b.node('load', 'reader').inputRef({ uri: 's3://bucket/sales.csv' }).inline({ delimiter: ';' }).batching({ batch_size: 500 })
    return b.build()
  },
  pull: () => {
    const b = g()
    b.node('read', 'reader')
    b.node('write', 'writer').after('read').input(pullFromArtifacts('read', { pollMs: 50 }))
    return b.build()
  },
  rechunk: () => {
    const b = g()
    b.node('read', 'reader')
    b.node('enrich', 'enricher').after('read').startOnFirstBatch().input(rechunk('read', 100, { metaListKey: 'rows' }))
    return b.build()
  },
  retry: () => {
    const b = g()
    b.node('call-api', 'writer').retry({ max: 5, backoffSec: 1.5, permanentOn: ['bad_input', 'unauthorized'] })
    return b.build()
  },
  timeout: () => {
    const b = g()
    b.node('call-api', 'writer').timeout(120).retry({ max: 4, backoffSec: 2, backoffFactor: 2, backoffMaxSec: 60, jitter: 0.2 })
    return b.build()
  },
  when: () => {
    const b = g()
    b.fn('tier', 'vars.set', { kv: { 'routing.sla': 'gold' } })
    b.node('express', 'writer').after('tier').when({ var: 'routing.sla', op: 'eq', value: 'gold' })
    b.node('standard', 'writer').after('tier').when({ not: { var: 'routing.sla', op: 'in', value: ['gold', 'silver'] } })
    return b.build()
  },
  routing: () => {
    const b = g()
    b.node('import', 'failing').onSuccess('publish').onFailure('alert')
    b.node('publish', 'writer')
    b.node('alert', 'notifier')
    b.node('report', 'writer').after('import')
    return b.build()
  },
  fallback: () => {
    const b = g()
    b.node('primary', 'failing').onFailure('fallback')
    b.node('fallback', 'reader')
    b.node('join-all', 'writer').after('primary', 'fallback')
    b.node('join-any', 'writer').after('primary', 'fallback').fanIn('any')
    return b.build()
  },
  failure: () => {
    const b = g()
    b.node('import', 'failing')
    b.node('report', 'writer').after('import')
    return b.build()
  },
  edges: () => {
    const b = g()
    b.node('read', 'reader')
    b.node('lookup', 'reader')
    b.node('enrich', 'enricher').input(pullFromArtifacts('read'))
    b.edge('lookup', 'enrich').edge('read', 'enrich', { trigger: 'on_batch' })
    return b.build()
  },
  functions: () => {
    const b = g()
    b.node('read', 'reader')
    b.fn('count', 'vars.incr', { key: 'runs.count', by: 1 }).after('read')
    b.fn('merge', 'merge.generic', { from_nodes: ['read'], target: { key: 'rows' } })
    b.fn('total', 'metrics.aggregate', { from_nodes: ['read'], metric: 'count', mode: 'sum' })
    return b.build()
  },
  vars: () => {
    const b = g()
    b.fn('init', 'vars.merge', { data: { run: { region: 'eu', tries: 0 } } })
    b.fn('cleanup', 'vars.unset', { keys: ['run.tries'] }).after('init')
    b.fn('done', 'noop').after('cleanup')
    return b.build()
  },
  protocol: () => {
    const b = g()
    b.node('extract', 'extractor')
    b.node('transform', 'processor')
      .after('extract')
      .fanIn('all')
      .startOnFirstBatch()
      .input(pullFromArtifacts(['extract'], { pollMs: 50 }))
      .retry({ max: 3, backoffSec: 5, permanentOn: ['bad_input'] })
    b.fn('merge', 'merge.generic', { from_nodes: ['transform'], target: { key: 'out' } })
    b.edge('extract', 'transform').edge('transform', 'merge')
    b.edge('extract', 'transform', { mode: 'async', trigger: 'on_batch' })
    return b.build()
  },
}
