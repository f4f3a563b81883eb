import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { Writable } from 'node:stream'
import { Coordinator, ErrorCode, FlowkitError, MemoryBus, MemoryStore, createLogger } from 'flowkit'

const VALID = /valid levels: trace, debug, info, warn, error, fatal, silent/

/** A sink that records what is written; `isTTY` makes it look like a terminal. */
function sink(isTTY: boolean): { stream: Writable; text: () => string } {
  const chunks: string[] = []
  const stream = new Writable({
    write(chunk, _e, cb) {
      chunks.push(String(chunk))
      cb()
    },
  })
  if (isTTY) Object.assign(stream, { isTTY: true })
  return { stream, text: () => chunks.join('') }
}

/** Runs `fn` with some FLOWKIT_* variables set (or removed), then restores them. */
function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T): T {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]))
  const apply = (v: Record<string, string | undefined>) => {
    for (const [k, x] of Object.entries(v)) if (x === undefined) delete process.env[k]
    else process.env[k] = x
  }
  apply(vars)
  try {
    return fn()
  } finally {
    apply(saved)
  }
}

test('FLOWKIT_LOG_LEVEL=verbose fails at startup with a clear message listing the valid levels', () => {
  const r = spawnSync(process.execPath, ['--conditions=flowkit-source', 'examples/quickstart.ts'], {
    env: { ...process.env, FLOWKIT_LOG_LEVEL: 'verbose' },
    encoding: 'utf8',
    timeout: 30_000,
  })
  assert.notEqual(r.status, 0)
  assert.match(r.stderr, /flowkit: FLOWKIT_LOG_LEVEL="verbose" is not a log level; valid levels: trace, debug, info, warn, error, fatal, silent/)
  assert.doesNotMatch(r.stderr, /unknown level/, 'not pino\'s own error')
})

test('a bad level is a FlowkitError (CONFIG_INVALID) from new Coordinator(...) and createLogger(...)', () => {
  const isConfig = (re: RegExp) => (err: unknown) => err instanceof FlowkitError && err.code === ErrorCode.Config && re.test(err.message)
  withEnv({ FLOWKIT_LOG_LEVEL: 'verbose' }, () => {
    assert.throws(() => new Coordinator({ bus: new MemoryBus(), store: new MemoryStore() }), isConfig(VALID))
    assert.throws(() => createLogger({ destination: sink(false).stream }), isConfig(/FLOWKIT_LOG_LEVEL="verbose"/))
  })
  assert.throws(() => createLogger({ level: 'loud' as 'info', destination: sink(false).stream }), isConfig(/level="loud" is not a log level; valid levels/))
})

test('FLOWKIT_LOG_LEVEL ignores case and spaces', () => {
  const out = sink(false)
  withEnv({ FLOWKIT_LOG_LEVEL: ' DEBUG ', FLOWKIT_LOG_FORMAT: undefined }, () => createLogger({ destination: out.stream }).debug('x.debugged', { n: 1 }))
  assert.match(out.text(), /"event":"x.debugged"/)
})

test('on a terminal, logs are one readable line per record (level, event, fields), secrets redacted', () => {
  const out = sink(true)
  withEnv({ FLOWKIT_LOG_FORMAT: undefined, NO_COLOR: '1' }, () => {
    const log = createLogger({ level: 'info', destination: out.stream }).child({ component: 'worker' })
    log.debug('hidden.below.level')
    log.info('node.done', { task_id: 't-1', node_id: 'a', count: 3, url: 'mongodb://u:hunter2@db/x' })
    log.warn('node.retried', { error: 'boom twice', stats: { n: 1 } })
  })
  const lines = out.text().trimEnd().split('\n')
  assert.equal(lines.length, 2, out.text())
  assert.match(lines[0] ?? '', /^\d\d:\d\d:\d\d\.\d{3} INFO {2}node\.done component=worker task_id=t-1 node_id=a count=3 url=/)
  assert.match(lines[1] ?? '', /^\d\d:\d\d:\d\d\.\d{3} WARN {2}node\.retried component=worker error="boom twice" stats=\{"n":1\}$/)
  assert.ok(!out.text().includes('hunter2'), out.text())
  assert.ok(!out.text().includes('\x1b['), 'NO_COLOR: no escape codes')
})

test('FLOWKIT_LOG_FORMAT=json keeps JSON on a terminal; pretty forces lines elsewhere; a bad value lists the formats', () => {
  const tty = sink(true)
  withEnv({ FLOWKIT_LOG_FORMAT: 'json' }, () => createLogger({ level: 'info', destination: tty.stream }).info('a.b', { n: 1 }))
  assert.equal(JSON.parse(tty.text()).event, 'a.b')
  const pipe = sink(false)
  withEnv({ FLOWKIT_LOG_FORMAT: 'pretty' }, () => createLogger({ level: 'info', destination: pipe.stream }).info('a.b', { n: 1 }))
  assert.match(pipe.text(), /^\d\d:\d\d:\d\d\.\d{3} INFO {2}a\.b n=1\n$/)
  const plain = sink(false)
  withEnv({ FLOWKIT_LOG_FORMAT: undefined }, () => createLogger({ level: 'info', destination: plain.stream }).info('a.b'))
  assert.equal(JSON.parse(plain.text()).event, 'a.b', 'not a terminal: JSON')
  withEnv({ FLOWKIT_LOG_FORMAT: 'yaml' }, () => {
    assert.throws(() => createLogger({ destination: sink(false).stream }), /FLOWKIT_LOG_FORMAT="yaml" is not a log format; valid formats: json, pretty, auto/)
  })
})

test('a program whose stderr is a pipe logs JSON lines', () => {
  const env: NodeJS.ProcessEnv = { ...process.env, FLOWKIT_LOG_LEVEL: 'info' }
  delete env['NODE_TEST_CONTEXT']
  delete env['FLOWKIT_LOG_FORMAT']
  const code = "import { createLogger } from 'flowkit'; createLogger().info('x.y', { n: 1 })"
  const r = spawnSync(process.execPath, ['--conditions=flowkit-source', '--input-type=module', '-e', code], { env, encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  assert.deepEqual([JSON.parse(r.stderr).event, JSON.parse(r.stderr).n], ['x.y', 1])
})

test('enabled(level) says which records a logger writes, for JSON and pretty, children included', () => {
  const sink = new Writable({ write: (_c, _e, done) => done() })
  for (const format of ['json', 'pretty'] as const) {
    const warn = createLogger({ level: 'warn', format, destination: sink })
    const child = warn.child({ component: 'x' })
    for (const l of [warn, child]) {
      assert.equal(l.enabled?.('debug'), false, format)
      assert.equal(l.enabled?.('info'), false, format)
      assert.equal(l.enabled?.('warn'), true, format)
      assert.equal(l.enabled?.('error'), true, format)
    }
    const debug = createLogger({ level: 'debug', format, destination: sink })
    assert.equal(debug.enabled?.('debug'), true, format)
    const silent = createLogger({ level: 'silent', format, destination: sink })
    assert.equal(silent.enabled?.('error'), false, format)
  }
})
