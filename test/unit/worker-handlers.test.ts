import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, ErrorCode, FlowkitError, MemoryBus, MemoryStore, Worker, type RoleHandler } from 'flowkit'

const ok: RoleHandler = { async processBatch() { return { metrics: { count: 1 } } } }

function workerWith(handlers: unknown, config: Record<string, unknown> = {}): () => Worker {
  return () => new Worker({ bus: new MemoryBus(), store: new MemoryStore(), handlers: handlers as Record<string, RoleHandler>, config })
}

function configError(message: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof FlowkitError, `a FlowkitError, got ${String(err)}`)
    assert.equal(err.code, ErrorCode.Config)
    assert.match(err.message, message)
    return true
  }
}

test('new Worker: a handler without processBatch fails at once, naming the role', () => {
  assert.throws(workerWith({ good: ok, squares: { async *iterBatches() {} } }), configError(/worker handler "squares" has no processBatch method \(got undefined\)/))
  assert.throws(workerWith({ squares: { processBatch: 'run' } }), configError(/worker handler "squares" has no processBatch method \(got string "run"\)/))
})

test('new Worker: a handler that is not an object fails at once, naming the role', () => {
  assert.throws(workerWith({ squares: null }), configError(/worker handler "squares" must be an object with a processBatch method, got null/))
  assert.throws(workerWith({ squares: async () => ({}) }), configError(/worker handler "squares" must be an object .*got a function/))
  class Squares {
    async processBatch(): Promise<void> {}
  }
  assert.throws(workerWith({ squares: Squares }), configError(/worker handler "squares" .*got a class \(pass an instance: new MyHandler\(\)\)/))
  assert.throws(workerWith({ squares: [ok] }), configError(/worker handler "squares" must be an object .*got an array/))
  assert.throws(workerWith({ squares: { processBatch: ok.processBatch, finalize: true } }), configError(/worker handler "squares": finalize must be a function when given, got boolean true/))
})

test('new Worker: a misspelt handler method (finalise, iterBatch) is refused, naming the one meant; a helper of another name, or beside the right one, is not', () => {
  class CsvReader implements RoleHandler {
    async *iterBatch() {
      yield { payload: { row: 1 } }
    }
    async processBatch() {
      return {}
    }
  }
  assert.throws(workerWith({ csv: new CsvReader() }), configError(/worker handler "csv" has a method "iterBatch", which flowkit never calls: did you mean iterBatches\?/))
  assert.throws(workerWith({ csv: { ...ok, async finalise() {} } }), configError(/has a method "finalise", which flowkit never calls: did you mean finalize\?/))
  assert.throws(workerWith({ csv: { ...ok, classifyErrors: () => null } }), configError(/did you mean classifyError\?/))
  // Not near a handler method, or the right one is there too: a helper of the handler's own.
  assert.doesNotThrow(workerWith({ csv: { ...ok, parseRow: () => null, async finalize() {}, async finalise() {} } }))
})

test('new Worker: handlers must be an object of role -> handler, with at least one role', () => {
  assert.throws(workerWith(undefined), configError(/worker: handlers must be an object mapping each role to its handler .*got undefined/))
  assert.throws(workerWith([ok]), configError(/worker: handlers must be an object .*got an array/))
  assert.throws(workerWith({}), configError(/worker needs at least one handler/))
})

test('new Worker: config.roles must name exactly the handlers when given', () => {
  assert.throws(
    workerWith({ numbers: ok, squares: ok }, { roles: ['numbers', 'cubes'] }),
    configError(/worker config: roles \["numbers","cubes"\] do not match the handlers \["numbers","squares"\]: no handler for "cubes"; handlers "squares" not in roles/),
  )
  assert.throws(workerWith({ numbers: ok }, { roles: ['numbers', 'squares'] }), configError(/no handler for "squares"/))
  assert.deepEqual(workerWith({ numbers: ok, squares: ok }, { roles: ['squares', 'numbers'] })().roles, ['numbers', 'squares'])
  assert.deepEqual(workerWith({ numbers: ok }, { roles: [] })().roles, ['numbers'], 'empty roles: every handler is served')
  // a handler instance of a class is an object: accepted
  class Squares implements RoleHandler {
    async processBatch(): Promise<void> {}
  }
  assert.deepEqual(workerWith({ squares: new Squares() })().roles, ['squares'])
})

test('createTask before start() is an error that says to call start()', async () => {
  const coordinator = new Coordinator({ bus: new MemoryBus(), store: new MemoryStore() })
  await assert.rejects(
    coordinator.createTask({ graph: { nodes: [{ node_id: 'a', type: 'numbers' }] } }),
    configError(/createTask: the coordinator is not started \(call start\(\) first\)/),
  )
})
