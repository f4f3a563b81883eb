/**
 * A dashboard to look at: the embedded runtime with sample tasks in every status (finished,
 * failed, cancelled, running ones that stream), and the dashboard on http://127.0.0.1:7700/.
 *
 *   node --conditions=flowkit-source test/ui/demo.ts                  # serve until Ctrl-C
 *   node --conditions=flowkit-source test/ui/demo.ts --screenshots    # write docs/images/dashboard-*.png and exit
 *
 * Screenshots need Chromium (/usr/bin/chromium, or FLOWKIT_CHROMIUM).
 */
import { join, resolve } from 'node:path'
import { PermanentError, type RoleHandler, createLogger } from 'flowkit'
import { startRuntime } from '../helpers/runtime.ts'
import { waitFor } from '../helpers/wait.ts'
import { startDashboard } from '../../src/ui/server.ts'
import { launchBrowser } from './chromium.ts'
import { sinkHandler, streamHandler } from './harness.ts'

const shots = process.argv.includes('--screenshots')
const root = resolve(import.meta.dirname, '..', '..')

/** Emits `batches` batches forever-ish: one every `everyMs`, the demo's running source. */
function source(batches: number, everyMs: number): RoleHandler {
  return {
    async *iterBatches() {
      for (let i = 0; i < batches; i++) yield { batch_uid: `part-${i}`, payload: { items: [i * 3, i * 3 + 1, i * 3 + 2] } }
    },
    async processBatch(batch, ctx) {
      await ctx.sleep(everyMs)
      const items = batch.payload['items'] as number[]
      return { meta: { items }, metrics: { rows: items.length, bytes: items.length * 512 } }
    },
  }
}

const failing: RoleHandler = {
  async processBatch() {
    throw new PermanentError({ code: 'bad_input', message: 'column "region" missing in orders-2030-01-09.csv' })
  },
}

function pipeline(): Record<string, unknown> {
  const pull = (from: string[]): Record<string, unknown> => ({ input_adapter: 'pull.from_artifacts', input_args: { from_nodes: from, poll_ms: 50 } })
  return {
    nodes: [
      { node_id: 'config', type: 'sink' },
      { node_id: 'ingest', type: 'source', depends_on: ['config'] },
      { node_id: 'enrich', type: 'stream', depends_on: ['ingest'], io: { start_when: 'first_batch', input_inline: pull(['ingest']) } },
      { node_id: 'dedupe', type: 'stream', depends_on: ['ingest'], io: { start_when: 'first_batch', input_inline: pull(['ingest']) } },
      { node_id: 'report', type: 'sink', depends_on: ['enrich', 'dedupe'], routing: { on_success: [], on_failure: ['alert'] } },
      { node_id: 'revenue', type: 'coordinator_fn', depends_on: ['enrich'], io: { fn: 'metrics.aggregate', fn_args: { from_nodes: ['enrich'], metric: 'rows', mode: 'sum' } } },
      { node_id: 'alert', type: 'sink' },
    ],
    edges_ex: [{ from: 'ingest', to: 'enrich', mode: 'async', trigger: 'on_batch' }],
  }
}

const rt = await startRuntime({
  handlers: { source: source(shots ? 400 : 4000, 250), stream: streamHandler(60), sink: sinkHandler(), failing },
  worker: { concurrency: 8, workerId: 'worker-eu-1' },
  logger: createLogger({ level: 'warn' }),
})
await rt.addWorker({ source: source(40, 100), stream: streamHandler(60) }, { concurrency: 4, workerId: 'worker-eu-2' })
const dashboard = await startDashboard({ coordinator: rt.coordinator, store: rt.store, port: shots ? 0 : 7700, logger: createLogger({ level: 'warn' }) })

// History: finished, failed and cancelled tasks, then the running ones.
const quick = { nodes: [{ node_id: 'export', type: 'sink' }, { node_id: 'notify', type: 'sink', depends_on: ['export'] }] }
for (let i = 0; i < 14; i++) await rt.coordinator.waitForTask(await rt.coordinator.createTask({ id: `nightly-export-${String(i + 1).padStart(3, '0')}`, graph: quick, params: { day: i + 1 } }))
for (const day of ['08', '09']) {
  await rt.coordinator.waitForTask(await rt.coordinator.createTask({ id: `orders-import-2030-01-${day}`, graph: { nodes: [{ node_id: 'load_csv', type: 'failing' }, { node_id: 'index', type: 'sink', depends_on: ['load_csv'] }] } }))
}
const stale = await rt.coordinator.createTask({ id: 'backfill-2029-q4', graph: pipeline() })
await waitFor(async () => (await rt.coordinator.getTask(stale))?.status === 'running')
await rt.coordinator.cancelTask(stale, { reason: 'superseded by backfill-2029-q4-v2' })
const running: string[] = []
for (const name of ['sales-daily-2030-01-10', 'sales-hourly-2030-01-10T09']) running.push(await rt.coordinator.createTask({ id: name, graph: pipeline(), params: { region: 'eu', day: '2030-01-10' } }))
running.push(await rt.coordinator.createTask({ id: 'gpu-embeddings-0110', graph: { nodes: [{ node_id: 'embed', type: 'gpu' }] } }))
console.log(`dashboard: ${dashboard.url}`)

if (shots) {
  const out = join(root, 'docs', 'images')
  const browser = await launchBrowser()
  try {
    const page = await browser.context.newPage()
    await page.setViewportSize({ width: 1440, height: 900 })
    await page.goto(dashboard.url)
    await page.locator(`tr[data-task-id="${running[0]}"]`).waitFor()
    await page.locator('.live.on').waitFor()
    await page.screenshot({ path: join(out, 'dashboard-tasks.png') })
    await page.goto(`${dashboard.url}tasks/${running[0]}`)
    await page.locator('svg.dag g.node[data-node-id="enrich"][data-status="running"]').waitFor()
    await page.locator('svg.dag g.node[data-node-id="enrich"] .l3', { hasText: /\/s/ }).waitFor({ timeout: 20_000 })
    await page.click('svg.dag g.node[data-node-id="enrich"]')
    await page.locator('.node-panel h3', { hasText: /^Artifacts/ }).waitFor()
    await page.waitForTimeout(2500) // let a few progress events smooth the batches/s
    await page.screenshot({ path: join(out, 'dashboard-task.png'), fullPage: true })
    await page.locator('.dag-panel').screenshot({ path: join(out, 'dashboard-dag.png') })
    await page.goto(`${dashboard.url}workers`)
    await page.locator('tr[data-worker-id="worker-eu-2"]').waitFor()
    await page.setViewportSize({ width: 1440, height: 420 })
    await page.screenshot({ path: join(out, 'dashboard-workers.png') })
    console.log(`screenshots written to ${out}`)
  } finally {
    await browser.close()
    for (const id of running) await rt.coordinator.cancelTask(id).catch(() => false)
    await dashboard.close()
    await rt.stop()
  }
} else {
  await new Promise<void>((resolveStop) => process.once('SIGINT', () => resolveStop()))
  await dashboard.close()
  await rt.stop()
}
