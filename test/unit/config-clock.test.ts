import { test } from 'node:test'
import assert from 'node:assert/strict'
import { COORDINATOR_DEFAULTS, Coordinator, MemoryBus, MemoryStore, TestClock, WORKER_DEFAULTS, loadConfigFile, resolveConfig, outboxBackoffMs } from 'flowkit'

test('config accepts camelCase and the seed snake_case keys, and loads the JSON config files', () => {
  const c = resolveConfig(COORDINATOR_DEFAULTS, { lease_ttl_sec: 5, schedulerTickSec: 0.5, unknown_key: 1 })
  assert.equal(c.leaseTtlSec, 5)
  assert.equal(c.schedulerTickSec, 0.5)
  const fromFile = resolveConfig(COORDINATOR_DEFAULTS, loadConfigFile('configs/coordinator.default.json'))
  assert.equal(fromFile.topicCmdFmt, 'cmd.{type}.v1')
  assert.equal(fromFile.leaseTtlSec, 45)
  const w = resolveConfig(WORKER_DEFAULTS, loadConfigFile('configs/worker.default.json'))
  assert.equal(w.hbIntervalSec, 20)
  const coord = new Coordinator({ bus: new MemoryBus(), store: new MemoryStore(), config: { heartbeat_soft_sec: 7 } })
  assert.equal(coord.config.heartbeatSoftSec, 7)
})

test('config rejects a known key with a value of the wrong type, naming the key', () => {
  assert.throws(() => resolveConfig(COORDINATOR_DEFAULTS, { lease_ttl_sec: '45' }), /"lease_ttl_sec" must be number/)
  assert.throws(() => resolveConfig(COORDINATOR_DEFAULTS, { leaseTtlSec: Number.NaN }), /finite/)
})

test('settings that would make timers spin are refused at construction, naming the key', () => {
  const bus = new MemoryBus()
  const store = new MemoryStore()
  assert.throws(() => new Coordinator({ bus, store, config: { accept_timeout_sec: 0 } }), /"acceptTimeoutSec" must be > 0/)
  assert.throws(() => new Coordinator({ bus, store, config: { schedulerTickSec: -1 } }), /"schedulerTickSec" must be > 0/)
  assert.throws(() => new Coordinator({ bus, store, config: { cancelGraceSec: -5 } }), /"cancelGraceSec" must be >= 0/)
})

test('TestClock moves only when advanced and wakes sleepers in order', async () => {
  const clock = new TestClock(1000)
  const woke: number[] = []
  void clock.sleep(300).then(() => woke.push(clock.now()))
  void clock.sleep(100).then(() => woke.push(clock.now()))
  assert.equal(clock.now(), 1000)
  await clock.advance(150)
  assert.deepEqual(woke, [1100])
  await clock.advance(200)
  assert.deepEqual(woke, [1100, 1300])
  assert.equal(clock.now(), 1350)
  const ac = new AbortController()
  const p = clock.sleep(10, ac.signal)
  ac.abort()
  await assert.rejects(p)
})

test('S-028/S-032 outbox backoff grows exponentially with jitter and is capped', () => {
  const mid = () => 0.5
  assert.equal(outboxBackoffMs(1, 250, 60_000, mid), 250)
  assert.equal(outboxBackoffMs(2, 250, 60_000, mid), 500)
  assert.equal(outboxBackoffMs(5, 250, 60_000, mid), 4000)
  assert.equal(outboxBackoffMs(30, 250, 60_000, () => 0.999), 60_000)
  assert.ok(outboxBackoffMs(3, 250, 60_000, () => 0) < outboxBackoffMs(3, 250, 60_000, () => 0.99))
})

test('real adapters take their address from the environment only through fromEnv, and accept common spellings', async () => {
  const { KafkaBus, MongoStore } = await import('flowkit')
  assert.throws(() => KafkaBus.fromEnv({}, {}), /FLOWKIT_KAFKA_BROKERS is not set/)
  assert.throws(() => MongoStore.fromEnv({}, {}), /FLOWKIT_MONGO_URL is not set/)
  const bus = KafkaBus.fromEnv({}, { FLOWKIT_KAFKA_BROKERS: '127.0.0.1:1, 127.0.0.1:2' })
  await bus.close()
  const store = new MongoStore({ uri: 'mongodb://127.0.0.1:1/app' })
  assert.equal(store.dbName, 'app')
  await store.close()
  const clock = new TestClock(0)
  await clock.tick(5)
  assert.equal(clock.now(), 5)
})

test('config: a near miss of a known setting is refused with a hint; unrelated keys are left alone', () => {
  assert.throws(() => resolveConfig(WORKER_DEFAULTS, { concurency: 4 }, 'worker config'), /unknown setting "concurency" \(did you mean "concurrency"\?\)/)
  assert.throws(() => resolveConfig(COORDINATOR_DEFAULTS, { maxRunningNode: 4 }, 'coordinator config'), /did you mean "maxRunningNodes"/)
  assert.throws(() => resolveConfig(COORDINATOR_DEFAULTS, { scheduler_tik_sec: 1 }, 'coordinator config'), /unknown setting "scheduler_tik_sec" \(did you mean "scheduler_tick_sec"\?\)/)
  // snake_case of a known key is the key; a seed config file's other settings are not ours to judge.
  assert.equal(resolveConfig(WORKER_DEFAULTS, { lease_ttl_sec: 5, kafka_bootstrap: 'x' }, 'worker config').leaseTtlSec, 5)
})

test('loadConfigFile: a file: URL (the package defaults beside flowkit), and a clear CONFIG_INVALID error for a missing file or bad JSON', async () => {
  const { mkdtempSync, writeFileSync } = await import('node:fs')
  const { join } = await import('node:path')
  const { tmpdir } = await import('node:os')
  const { ErrorCode, FlowkitError } = await import('flowkit')
  const fromUrl = loadConfigFile(new URL('../configs/coordinator.default.json', import.meta.resolve('flowkit')))
  assert.deepEqual(fromUrl, loadConfigFile('configs/coordinator.default.json'))
  const isConfig = (re: RegExp) => (err: unknown) => err instanceof FlowkitError && err.code === ErrorCode.Config && re.test(err.message)
  assert.throws(() => loadConfigFile('no/such/config.json'), isConfig(/config file no\/such\/config\.json not found \(a relative path is read from the working directory/))
  const dir = mkdtempSync(join(tmpdir(), 'flowkit-cfg-'))
  writeFileSync(join(dir, 'bad.json'), '{\n  "sasl_password": S3cr3t"\n}')
  assert.throws(() => loadConfigFile(join(dir, 'bad.json')), isConfig(/is not valid JSON at line 2, column 20: a value should be here/))
  assert.throws(() => loadConfigFile(join(dir, 'bad.json')), (err: Error) => !err.message.includes('S3cr3t'))
})

test('SystemClock sleeps longer than setTimeout can wait (about 24.8 days) in steps: no TimeoutOverflowWarning, no wake-up after 1 ms', async () => {
  const { SystemClock } = await import('flowkit')
  const warnings: string[] = []
  const onWarning = (w: Error): void => void warnings.push(w.name)
  process.on('warning', onWarning)
  const abort = new AbortController()
  let woke = false
  try {
    // A task deadline of 30 days (the limit) is one such sleep of the coordinator's timers.
    const slept = new SystemClock().sleep(30 * 86_400_000, abort.signal).then(
      () => {
        woke = true
      },
      () => undefined,
    )
    await new Promise((r) => setTimeout(r, 50))
    assert.equal(woke, false, 'still asleep')
    abort.abort()
    await slept
    await new Promise((r) => setImmediate(r))
    assert.deepEqual(warnings.filter((w) => w === 'TimeoutOverflowWarning'), [])
  } finally {
    process.off('warning', onWarning)
  }
})
