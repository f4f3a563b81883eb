/** The human table at the end of a run and bench/results/latest.json. */
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { dirname } from 'node:path'
import { READ_METHODS, UPDATE_METHODS, isUpdateMethod, isWriteMethod } from './counting.ts'
import type { Options } from './options.ts'
import type { Result } from './stats.ts'

export function machineInfo(): Record<string, unknown> {
  let commit = 'unknown'
  let dirty = false
  try {
    commit = execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() !== ''
  } catch {
    // not a git checkout
  }
  const c = cpus()
  return {
    date: new Date().toISOString(),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    cpus: c.length,
    cpu_model: c[0]?.model ?? 'unknown',
    mem_gb: Math.round(totalmem() / 2 ** 30),
    git_commit: commit,
    src_uncommitted_changes: dirty,
  }
}

const fmt = (v: unknown): string => (v === undefined || v === null ? '-' : String(v))

function rows(results: Result[], comparisons: Record<string, unknown>): string[][] {
  const out: string[][] = []
  for (const r of results) {
    const g = (k: string): string => fmt(r[k])
    switch (r.bench) {
      case 'chain':
        out.push(['chain', `${g('tasks')} tasks × 3`, g('seconds'), `${g('node_runs_per_s')} node runs/s, ${g('tasks_per_s')} tasks/s`, `p50 ${g('task_latency_p50_ms')} ms, p95 ${g('task_latency_p95_ms')} ms`])
        out.push(['  per node run', '', '', `coord store ${g('coord_store_calls_per_node')} (writes ${g('coord_store_writes_per_node')}, updates ${g('coord_doc_updates_per_node')}), worker store ${g('worker_store_calls_per_node')}`, `produce calls coord ${g('coord_produce_calls_per_node')} / worker ${g('worker_produce_calls_per_node')}, records ${g('coord_records_per_node')} / ${g('worker_records_per_node')}`])
        break
      case 'chain_observability':
        out.push(['chain + observability', `${g('tasks')} tasks × 3, ${g('rounds')} rounds`, '', `off ${g('off_node_runs_per_s')}, default ${g('default_node_runs_per_s')}, sampled ${g('sampled_node_runs_per_s')}, all traces ${g('full_node_runs_per_s')} node runs/s`, `overhead (throughput / CPU per node run): default ${g('overhead_default_pct')} / ${g('cpu_overhead_default_pct')} %, sampled ${g('overhead_sampled_pct')} / ${g('cpu_overhead_sampled_pct')} %, all traces ${g('overhead_full_pct')} / ${g('cpu_overhead_full_pct')} %`])
        out.push(['  paired by round', 'median of per-round overheads', '', '', `overhead (throughput / CPU): default ${g('paired_overhead_default_pct')} / ${g('paired_cpu_overhead_default_pct')} %, sampled ${g('paired_overhead_sampled_pct')} / ${g('paired_cpu_overhead_sampled_pct')} %, all traces ${g('paired_overhead_full_pct')} / ${g('paired_cpu_overhead_full_pct')} %`])
        if (r['steady_off_cpu_us_per_node_run'] !== undefined) out.push(['  long-running (chain_steady)', `${g('steady_rounds')} processes per setting`, '', `off ${g('steady_off_node_runs_per_s')}, default ${g('steady_default_node_runs_per_s')}, sampled ${g('steady_sampled_node_runs_per_s')}, all traces ${g('steady_full_node_runs_per_s')} node runs/s`, `overhead (throughput / CPU): default ${g('steady_overhead_default_pct')} / ${g('steady_cpu_overhead_default_pct')} %, sampled ${g('steady_overhead_sampled_pct')} / ${g('steady_cpu_overhead_sampled_pct')} %, all traces ${g('steady_overhead_full_pct')} / ${g('steady_cpu_overhead_full_pct')} %`])
        out.push(['  replayed work', 'µs per node run', '', `default ${g('default_obs_us_per_node_run')}, sampled ${g('sampled_obs_us_per_node_run')}, all traces ${g('full_obs_us_per_node_run')} µs`, `of the CPU per node run off (best ${g('best_off_cpu_us_per_node_run')} µs): default ${g('replay_overhead_default_pct')} %, sampled ${g('replay_overhead_sampled_pct')} %, all traces ${g('replay_overhead_full_pct')} %`])
        out.push(['  best rounds', '', '', `off ${g('best_off_node_runs_per_s')}, default ${g('best_default_node_runs_per_s')}, sampled ${g('best_sampled_node_runs_per_s')}, all traces ${g('best_full_node_runs_per_s')} node runs/s`, `overhead (throughput / CPU): default ${g('best_overhead_default_pct')} / ${g('best_cpu_overhead_default_pct')} %, sampled ${g('best_overhead_sampled_pct')} / ${g('best_cpu_overhead_sampled_pct')} %, all traces ${g('best_overhead_full_pct')} / ${g('best_cpu_overhead_full_pct')} %`])
        break
      case 'chain_steady':
        out.push(['chain_steady', `${g('rounds')} rounds × ${g('tasks_per_round')} tasks × 3`, '', `${g('node_runs_per_s')} node runs/s (median; ${g('node_runs_per_s_min')}–${g('node_runs_per_s_max')}), ${g('cpu_us_per_node_run')} µs CPU per node run`, `one process, ended tasks purged; heap ${g('heap_mb_first')} → ${g('heap_mb_last')} MB`])
        break
      case 'chain_single':
        out.push(['chain_single', `${g('runs')} × one chain`, '', `${g('per_node_p50_ms')} ms per node (p50)`, `p50 ${g('latency_p50_ms')} ms, p95 ${g('latency_p95_ms')} ms`])
        break
      case 'fanout':
        for (const w of r['widths'] as Record<string, unknown>[]) {
          out.push([`fanout`, `width ${fmt(w['width'])} (median of ${fmt(w['tasks'])})`, fmt(w['seconds']), `${fmt(w['node_runs_per_s'])} node runs/s`, `coord store ${fmt(w['coord_store_calls_per_node'])}/node (updates ${fmt(w['coord_doc_updates_per_node'])})`])
        }
        out.push(['  ratio', 'widest / narrowest', '', g('ratio_widest_over_narrowest'), ''])
        break
      case 'streaming':
        out.push(['streaming', `${g('source_batches')} batches × 10`, g('seconds'), `${g('batches_per_s')} batches/s, ${g('items_per_s')} items/s`, `count ${g('consumer_count')} ok=${g('count_ok')}`])
        break
      case 'raw_bus':
        out.push(['raw bus', `${g('round_trips')} round trips`, '', `produce ${g('produce_records_per_s')} rec/s (batches of 100), consumed ${g('produce_to_consumed_records_per_s')} rec/s`, `round trip p50 ${g('round_trip_p50_ms')} ms, p95 ${g('round_trip_p95_ms')} ms`])
        break
      case 'raw_store':
        if (r.runtime === 'memory') out.push(['raw store', `${g('ops')} ops`, '', `createTask ${g('create_task_per_s')}/s, getTask ${g('get_task_per_s')}/s`, `${g('first_update_method')} ${g('first_update_per_s')}/s`])
        else out.push(['raw store', `${g('ops')} ops, coll ${g('collection_size')}`, '', `insertMany ${g('insert_many_docs_per_s')} docs/s, insertOne ${g('insert_one_per_s')}/s`, `updateOne _id ${g('update_one_by_id_per_s')}/s, findOne _id ${g('find_one_by_id_per_s')}/s`])
        break
      case 'bullmq_chain':
        out.push(['bullmq chain', `${g('chains')} flows × 3`, g('seconds'), `${g('jobs_per_s')} jobs/s`, `p50 ${g('flow_latency_p50_ms')} ms, p95 ${g('flow_latency_p95_ms')} ms`])
        break
      case 'chain_vs_bullmq':
        out.push(['chain vs bullmq', `${g('chains')} chains × 3, ${g('rounds')} rounds`, '', `flowkit ${g('flowkit_node_runs_per_s')} node runs/s (${g('flowkit_min')}–${g('flowkit_max')}), bullmq ${g('bullmq_jobs_per_s')} jobs/s (${g('bullmq_min')}–${g('bullmq_max')})`, `medians of fresh processes run in turns (${g('bullmq_runtime')})`])
        out.push(['  ratio', 'flowkit node runs/s ÷ bullmq jobs/s', '', `${fmt(comparisons['flowkit_over_bullmq'])} (median of the rounds' ratios)`, `ratio of the medians ${g('ratio_of_medians')}`])
        break
      case 'coordinators':
        for (const run of r['runs'] as Record<string, unknown>[]) {
          const c = run['cpu'] as Record<string, unknown>
          const pct = (x: Record<string, unknown>, k: string): string => (typeof x[k] === 'number' ? `${Math.round((x[k] as number) * 100)} %` : '-')
          const shares = (x: Record<string, unknown>): string => `store ${pct(x, 'store_cores')}, broker ${pct(x, 'broker_cores')}, coordinators ${pct(x, 'coordinators_cores')}, worker ${pct(x, 'workers_cores')}, bench ${pct(x, 'bench_cores')}, other ${pct(x, 'other_cores')}`
          out.push([`coordinators ${fmt(run['coordinators'])}`, `${fmt(run['tasks'])} tasks × 3`, fmt(run['seconds']), `${fmt(run['node_runs_per_s'])} node runs/s, p50 ${fmt(run['task_latency_p50_ms'])} ms, p95 ${fmt(run['task_latency_p95_ms'])} ms`, `CPU (of one core): ${shares(c)}`])
          out.push(['  idle before', '', '', '', `CPU (of one core): ${shares(run['cpu_idle'] as Record<string, unknown>)}`])
        }
        break
      default:
        out.push([r.bench, '', '', JSON.stringify(r).slice(0, 80), ''])
    }
  }
  return out
}

export function printTable(results: Result[], comparisons: Record<string, unknown>, runtime: string): void {
  const head = ['bench', 'size', 's', 'throughput', 'latency / detail']
  const body = rows(results, comparisons)
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? '').length)))
  const line = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd()
  const err = (s: string): void => {
    process.stderr.write(`${s}\n`)
  }
  err('')
  err(`flowkit bench — runtime ${runtime}`)
  err(line(head))
  err(widths.map((w) => '-'.repeat(w)).join('  '))
  for (const r of body) err(line(r))
  const chain = results.find((r) => r.bench === 'chain')
  if (chain !== undefined) {
    const calls = chain['calls'] as Record<string, Record<string, number>>
    const ms = (chain['call_ms'] ?? {}) as Record<string, Record<string, number>>
    const nodes = chain['node_runs'] as number
    err('')
    err(`chain: calls per method (total, per node run, mean wall ms per call); * = counted as a document update ${UPDATE_METHODS.source}; w = other write (not ${READ_METHODS.source})`)
    for (const [port, m] of Object.entries(calls)) {
      const entries = Object.entries(m)
      if (entries.length === 0) continue
      err(`  ${port}:`)
      for (const [k, v] of entries) {
        const mean = ms[port]?.[k]
        err(`    ${(port.endsWith('store') ? (isUpdateMethod(k) ? '* ' : isWriteMethod(k) ? 'w ' : '  ') : '  ') + k.padEnd(22)} ${String(v).padStart(8)}  ${(v / nodes).toFixed(2).padStart(7)}${mean === undefined ? '' : `  ${mean.toFixed(2).padStart(8)} ms`}`)
      }
    }
  }
}

function readExisting(path: string): Record<string, unknown> {
  if (!existsSync(path)) return {}
  try {
    const v: unknown = JSON.parse(readFileSync(path, 'utf8'))
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {}
  } catch {
    return {}
  }
}

/**
 * Writes the run into `path`, keeping the keys of the file this run does not produce: a run of
 * the usual benches replaces machine, options, results and comparisons and keeps `coordinators`;
 * a `--coordinators` run replaces only `coordinators` (with its own machine and options).
 */
export function writeResults(path: string, o: Options, results: Result[], comparisons: Record<string, unknown>, coordinators: Result | null = null): void {
  mkdirSync(dirname(path), { recursive: true })
  const doc: Record<string, unknown> = readExisting(path)
  if (o.only.length > 0 || o.compare.length > 0) {
    Object.assign(doc, {
      machine: machineInfo(),
      options: { real: o.real, quick: o.quick, only: o.only, compare: o.compare, log_level: o.logLevel, sizes: o.sizes },
      update_methods: UPDATE_METHODS.source,
      read_methods: READ_METHODS.source,
      results,
      comparisons,
    })
  }
  if (coordinators !== null) {
    doc['coordinators'] = { machine: machineInfo(), options: { real: o.real, quick: o.quick, counts: o.coordinators, log_level: o.logLevel }, ...coordinators }
  }
  writeFileSync(path, `${JSON.stringify(doc, null, 2)}\n`)
}
