/**
 * A config the instance could not work with is refused when the Coordinator or Worker is built,
 * naming the key — not accepted and then failing every createTask, failing start() with a topic
 * error, or silently doing nothing (a per-type limit of "two").
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Coordinator, MemoryBus, MemoryStore, Worker } from 'flowkit'
import { MIN_MESSAGE_BYTES } from '../../src/config.ts'
import { START_VARS_INLINE_MAX } from '../../src/coordinator/submit.ts'

const bus = new MemoryBus()
const store = new MemoryStore()
const handlers = { t: { async processBatch() {} } }
const coordinator = (config: unknown) => new Coordinator({ bus, store, config: config as never })
const worker = (config: unknown, h: unknown = handlers) => new Worker({ bus, store, handlers: h as never, config: config as never })

test('coordinator config: a maxMessageBytes too small for any START is refused at construction', () => {
  assert.throws(() => coordinator({ maxMessageBytes: 1000 }), { code: 'CONFIG_INVALID', message: /"maxMessageBytes" must be at least 327,680/ })
})

test('worker config: a maxMessageBytes under the coordinator\'s smallest is refused at construction (every run\'s status events were refused and its START handed back for ever)', () => {
  assert.throws(() => worker({ maxMessageBytes: 1000 }), { code: 'CONFIG_INVALID', message: /worker config: "maxMessageBytes" must be at least 327,680 .*got 1,000/ })
  worker({ maxMessageBytes: 327_680 }) // valid
  // The shared minimum is the room a START keeps for its variables, and a modest io.
  assert.equal(MIN_MESSAGE_BYTES, START_VARS_INLINE_MAX + 64 * 1024)
})

test('config: null is no value of a key whose default is not null (a null groupPrefix named the consumer group "null…"); ids and metricsPort take it', () => {
  assert.throws(() => worker({ groupPrefix: null }), { code: 'CONFIG_INVALID', message: /worker config: "groupPrefix" must be string, got null/ })
  assert.throws(() => worker({ worker_version: null }), /"worker_version" must be string, got null/)
  assert.throws(() => worker({ strictInputAdapters: null }), /"strictInputAdapters" must be boolean, got null/)
  assert.throws(() => coordinator({ worker_liveness_sec: null }), /"worker_liveness_sec" must be number, got null/)
  assert.throws(() => coordinator({ requireKnownTypes: null }), /"requireKnownTypes" must be boolean, got null/)
  coordinator({ coordinatorId: null, metricsPort: null }) // valid
  worker({ workerId: null, metrics_port: null }) // valid
})

test('coordinator config: partitions must be whole numbers >= 1, named (not a topic error at start)', () => {
  assert.throws(() => coordinator({ taskPartitions: 0 }), /"taskPartitions" must be an integer >= 1, got 0/)
  assert.throws(() => coordinator({ task_partitions: 2.5 }), /"taskPartitions" must be an integer >= 1, got 2.5/)
  assert.throws(() => coordinator({ topicPartitions: 1.5 }), /"topicPartitions" must be an integer >= 1/)
  assert.throws(() => worker({ taskPartitions: 0 }), /worker config: "taskPartitions" must be an integer >= 1/)
  assert.throws(() => worker({ topicSignals: '' }), /worker config: "topicSignals" must be a non-empty topic name, got an empty string/)
})

test('coordinator config: limits and counts must be integers, per-type limits numbers', () => {
  assert.throws(() => coordinator({ maxRunningNodes: 1.5 }), /"maxRunningNodes" must be an integer >= 0, got 1.5/)
  assert.throws(() => coordinator({ maxRunningByType: { t: 'two' } }), /"maxRunningByType" must map worker types to integers >= 0 \(0: no limit\), got "t": "two"/)
  assert.throws(() => coordinator({ maxRunningByType: { t: -1 } }), /"maxRunningByType"/)
  assert.throws(() => coordinator({ defaultRetryMax: 2.5 }), /"defaultRetryMax" must be an integer/)
  coordinator({ maxRunningNodes: 0, maxRunningByType: { t: 2, u: 0 } }) // valid
})

test('coordinator config: ids, names and lists of the wrong type are refused, naming the key', () => {
  assert.throws(() => coordinator({ coordinatorId: 5 }), /"coordinatorId" must be a non-empty string or null, got number/)
  assert.throws(() => coordinator({ coordinatorId: '' }), /"coordinatorId" must be a non-empty string or null, got an empty string/)
  assert.throws(() => coordinator({ groupId: '' }), /"groupId" must be a non-empty string/)
  assert.throws(() => coordinator({ topicTasks: '' }), /"topicTasks" must be a non-empty topic name/)
  assert.throws(() => coordinator({ workerTypes: ['a', 3] }), /"workerTypes" must be an array of non-empty strings/)
  assert.throws(() => coordinator([]), /coordinator config must be an object of settings, got array/)
  coordinator(null) // no config: the defaults
  coordinator({ coordinatorId: 'c-1', groupId: 'g' })
})

test('worker config: workerId, roles and handler role names are checked at construction', () => {
  assert.throws(() => worker({ workerId: 5 }), /worker config: "workerId" must be a string or null, got number/)
  assert.throws(() => worker({ roles: 't' }), /"roles" must be array, got string/)
  assert.throws(() => worker({ roles: [''] }), /"roles" must be an array of non-empty strings/)
  assert.throws(() => worker({}, { 'a/b': handlers.t }), /worker handler "a\/b": a role is a node type, 1 to 128 characters/)
  assert.throws(() => worker('x'), /worker config must be an object of settings, got string/)
  worker({ workerId: 'w-1', roles: ['t'] })
})

test('config: one setting given in both spellings: the later key wins, as with object spread', async () => {
  const { resolveConfig, COORDINATOR_DEFAULTS } = await import('flowkit')
  // {...a seed-format file, override}: the override comes later and wins.
  assert.equal(resolveConfig(COORDINATOR_DEFAULTS, { lease_ttl_sec: 20, leaseTtlSec: 10 }).leaseTtlSec, 10)
  assert.equal(resolveConfig(COORDINATOR_DEFAULTS, { leaseTtlSec: 10, lease_ttl_sec: 20 }).leaseTtlSec, 20)
})
