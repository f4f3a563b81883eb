import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { MemoryStore } from '../../src/adapters/memory/store.ts'
import { opsCommand } from '../../src/cli/ops.ts'
import { makeGraph, makeNodeState, makeTaskDoc } from '../helpers/fixtures.ts'

test('operator commands list tasks, show a task, and list/retry dead letters', async () => {
  const store = new MemoryStore()
  const graph = makeGraph()
  graph.nodes = [
    { ...graph.nodes[0]!, node_id: 'a', type: 'step' },
    { ...graph.nodes[1]!, node_id: 'b', type: 'step', depends_on: ['a'] },
  ]
  graph.edges = [['a', 'b']]
  const task = makeTaskDoc({ graph, nodes: { a: makeNodeState('a', 'step'), b: makeNodeState('b', 'step') } })
  const id = task.id
  await store.createTask(task)
  const lines: string[] = []
  const out = (l: string) => lines.push(l)
  assert.equal(await opsCommand(store, ['tasks'], out), 0)
  assert.match(lines.join('\n'), new RegExp(`${id}\\s+queued\\s+queued:2`))
  lines.length = 0
  assert.equal(await opsCommand(store, ['task', id], out), 0)
  assert.match(lines[1] ?? '', /^\s+a\s+step\s+queued\s+epoch=0/)
  assert.equal(await opsCommand(store, ['task', 'nope'], out), 1)
  // what the commands show is the task as it is now: its snapshot with the journal applied
  const running = makeNodeState('a', 'step', { status: 'running', attempt_epoch: 1, lease: { worker_id: 'w1' } })
  await store.appendJournal([{ task_id: id, seq: 1, at_ms: 2, writer: 'c1', events: [], nodes: [running], task: { status: 'running' } }])
  lines.length = 0
  assert.equal(await opsCommand(store, ['tasks'], out), 0)
  assert.match(lines.join('\n'), new RegExp(`${id}\\s+running\\s+running:1 queued:1`))
  lines.length = 0
  assert.equal(await opsCommand(store, ['task', id], out), 0)
  assert.match(lines[1] ?? '', /^\s+a\s+step\s+running\s+epoch=1 worker=w1/)
  await store.outboxEnqueue({ topic: 'cmd.x.v1', key: 'k', value: '{}', dedup_id: 'd' }, 1)
  const [row] = await store.outboxClaimDue(2, 1, 3)
  await store.outboxMarkFailed(row!.id, 12, 'broker down', 4)
  lines.length = 0
  await opsCommand(store, ['dead-letters'], out)
  assert.match(lines[0] ?? '', /attempts=12 error=broker down/)
  assert.equal(await opsCommand(store, ['retry-dead-letter', row!.id], out), 0)
  assert.equal((await store.outboxList({ status: 'pending' })).length, 1)
})

test('flowkit help prints the commands; store commands without FLOWKIT_MONGO_URL fail clearly', () => {
  const help = execFileSync(process.execPath, ['--conditions=flowkit-source', 'src/cli/main.ts', 'help'], { encoding: 'utf8' })
  assert.match(help, /flowkit tasks/)
  const env = { ...process.env }
  delete env['FLOWKIT_MONGO_URL']
  assert.throws(() => execFileSync(process.execPath, ['--conditions=flowkit-source', 'src/cli/main.ts', 'tasks'], { encoding: 'utf8', env, stdio: 'pipe' }), /FLOWKIT_MONGO_URL/)
})
