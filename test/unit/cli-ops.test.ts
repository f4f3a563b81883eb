import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { MemoryBus, MemoryStore, Coordinator } from 'flowkit'
import { opsCommand } from '../../src/cli/ops.ts'

test('operator commands list tasks, show a task, and list/retry dead letters', async () => {
  const store = new MemoryStore()
  const bus = new MemoryBus()
  const c = new Coordinator({ bus, store })
  const id = await c.createTask({ graph: { nodes: [{ node_id: 'a', type: 'step' }, { node_id: 'b', type: 'step', depends_on: ['a'] }] } })
  const lines: string[] = []
  const out = (l: string) => lines.push(l)
  assert.equal(await opsCommand(store, ['tasks'], out), 0)
  assert.match(lines.join('\n'), new RegExp(`${id}\\s+queued\\s+queued:2`))
  lines.length = 0
  assert.equal(await opsCommand(store, ['task', id], out), 0)
  assert.match(lines[1] ?? '', /^\s+a\s+step\s+queued\s+epoch=0/)
  assert.equal(await opsCommand(store, ['task', 'nope'], out), 1)
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
