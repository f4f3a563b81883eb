/**
 * A test file whose process does not end after its last test (a stop that never returns, a socket
 * or timer left open) used to hold the whole pass until the runner's 20-minute watchdog killed it,
 * with nothing said about where. This guard, armed after the file's last test, waits
 * EXIT_GRACE_MS for the process to end by itself; if it has not, it prints what is still open
 * (runtimes not stopped and the step each stop is in, the last warnings their loggers got — among
 * them the `coordinator.stop_slow` / `worker.stop_slow` of a stop that hangs — and the kinds of
 * live handles) and ends the process with exit code 1, so the file fails, named, and the pass
 * goes on.
 */
import { createHook } from 'node:async_hooks'
import { after } from 'node:test'
import { MemoryLogger } from 'flowkit'
import { type LogFields, eventsObserved } from '../../src/log.ts'

const EXIT_GRACE_MS = Number(process.env['FLOWKIT_TEST_EXIT_GRACE_MS'] ?? 30_000)

/**
 * Keeps warnings and errors only (`enabled` says so, so nothing else is decorated or kept): the
 * logger a runtime gets when its test gives none. While the events channel is read, every record
 * goes through (kept and published), as with the default logger.
 */
export class WarningsLogger extends MemoryLogger {
  enabled(level: string): boolean {
    return level === 'warn' || level === 'error'
  }
  protected override write(level: 'debug' | 'info' | 'warn' | 'error', event: string, fields?: LogFields): void {
    if (this.enabled(level) || eventsObserved()) super.write(level, event, fields)
  }
}

interface Tracked {
  step: string
  logger: MemoryLogger
}

/** What each live runtime is doing (e.g. "running", "stopping: worker 1 of 2"), by name. */
const live = new Map<string, Tracked>()
let seq = 0

/**
 * Registers a runtime and the logger it uses; the returned function records its step (`null` =
 * stopped: forget it).
 */
export function trackRuntime(what: string, logger: MemoryLogger): (step: string | null) => void {
  const name = `${what}#${++seq}`
  live.set(name, { step: 'created', logger })
  return (step) => {
    if (step === null) live.delete(name)
    else live.set(name, { step, logger })
  }
}

/** The last warnings and errors of the live runtimes' loggers. */
function lastWarnings(): string[] {
  const lines: string[] = []
  for (const logger of new Set([...live.values()].map((t) => t.logger))) {
    for (const r of logger.records) {
      if (r.level === 'warn' || r.level === 'error') lines.push(`${r.level} ${r.event} ${JSON.stringify(r.fields).slice(0, 300)}`)
    }
  }
  return lines.slice(-40)
}

/**
 * With FLOWKIT_TEST_TRACE_TIMERS=1: where each live timer was created (a stack per Timeout, kept
 * until it is destroyed), printed by the guard. Off by default: a stack per timer is slow.
 */
const timerStacks = new Map<number, string>()
if (process.env['FLOWKIT_TEST_TRACE_TIMERS'] === '1') {
  createHook({
    init(id, type) {
      if (type === 'Timeout') timerStacks.set(id, (new Error().stack ?? '').split('\n').slice(2, 12).join('\n      '))
    },
    destroy(id) {
      timerStacks.delete(id)
    },
  }).enable()
}

let armed = false

/** Arms the guard for the current test file (idempotent; runtime.ts calls it on import). */
export function armExitGuard(): void {
  if (armed) return
  armed = true
  after(() => {
    const timer = setTimeout(() => {
      const file = process.argv[1] ?? '(unknown file)'
      const runtimes = [...live].map(([name, t]) => `${name}: ${t.step}`)
      const recent = lastWarnings()
      const handles = process.getActiveResourcesInfo().filter((h) => h !== 'TTYWrap')
      process.stderr.write(
        `\nexit guard: ${file} has not ended ${EXIT_GRACE_MS / 1000} s after its last test.\n` +
          `  runtimes not stopped: ${runtimes.length > 0 ? runtimes.join('; ') : 'none'}\n` +
          `  live handles: ${handles.join(', ') || 'none'}\n` +
          `  last warnings (${recent.length}):\n${recent.map((r) => `    ${r}`).join('\n')}\n` +
          (timerStacks.size > 0 ? `  timers still alive, created at:\n${[...timerStacks.values()].map((st) => `    -\n      ${st}`).join('\n')}\n` : ''),
      )
      process.exit(1)
    }, EXIT_GRACE_MS)
    timer.unref()
  })
}
