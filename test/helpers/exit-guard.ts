/**
 * A test file whose process does not end after its last test (a stop that never returns, a socket
 * or timer left open) used to hold the whole pass until the runner's 20-minute watchdog killed it,
 * with nothing said about where. This guard, armed after the file's last test, waits
 * EXIT_GRACE_MS for the process to end by itself; if it has not, it prints what is still open
 * (runtimes not stopped and the step each stop is in, the last warnings their loggers got — among
 * them the `coordinator.stop_slow` / `worker.stop_slow` of a stop that hangs — and the kinds of
 * live handles) and ends the process, so the pass goes on: with exit code 1 (the file fails,
 * named) when a runtime is stuck or anything but timers is open; with 0 when every runtime stopped
 * and only timers are left (a timer outliving the stops: reported in the output, the file's
 * tests stand).
 */
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
 * With FLOWKIT_TEST_TRACE_TIMERS=1: where each live timer of 100 ms or more was created (the global
 * setTimeout/setInterval wrapped to keep a stack until the timer fires or is cleared), printed by
 * the guard. Off by default: a stack per timer costs CPU.
 */
const timerStacks = new Map<unknown, string>()
if (process.env['FLOWKIT_TEST_TRACE_TIMERS'] === '1') {
  const stackHere = (): string => (new Error().stack ?? '').split('\n').slice(3, 13).join('\n      ')
  const origTimeout = globalThis.setTimeout
  const origInterval = globalThis.setInterval
  const origClearTimeout = globalThis.clearTimeout
  const origClearInterval = globalThis.clearInterval
  globalThis.setTimeout = ((fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    if (typeof fn !== 'function' || !((ms ?? 0) >= 100)) return origTimeout(fn, ms, ...args)
    const stack = stackHere()
    const t = origTimeout(
      (...a: unknown[]) => {
        timerStacks.delete(t)
        fn(...a)
      },
      ms,
      ...args,
    )
    timerStacks.set(t, `setTimeout ${ms} ms\n      ${stack}`)
    return t
  }) as typeof setTimeout
  globalThis.setInterval = ((fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    const t = origInterval(fn, ms, ...args)
    if ((ms ?? 0) >= 100) timerStacks.set(t, `setInterval ${ms} ms\n      ${stackHere()}`)
    return t
  }) as typeof setInterval
  globalThis.clearTimeout = ((t?: Parameters<typeof clearTimeout>[0]) => {
    timerStacks.delete(t)
    origClearTimeout(t)
  }) as typeof clearTimeout
  globalThis.clearInterval = ((t?: Parameters<typeof clearInterval>[0]) => {
    timerStacks.delete(t)
    origClearInterval(t)
  }) as typeof clearInterval
}

/** Stacks of the traced timers still alive and holding the process (unref'd ones are left out). */
function liveTimerStacks(): string[] {
  const out: string[] = []
  for (const [t, st] of timerStacks) {
    const h = t as { hasRef?: () => boolean }
    if (typeof h.hasRef !== 'function' || h.hasRef()) out.push(st)
  }
  return out
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
      const stacks = liveTimerStacks()
      const handles = process.getActiveResourcesInfo().filter((h) => h !== 'TTYWrap')
      // Every runtime stopped and nothing open but timers (and the runner's pipes): a timer that
      // outlives the stops. Reported, not failed: the file's tests passed and nothing is stuck.
      // With timers traced, only the Kafka client's own (its consumer heartbeat can outlive a close:
      // docs/real-services.md) are let pass; a timer of flowkit's or a test's still fails the file.
      const timersOnly =
        runtimes.length === 0 &&
        handles.every((h) => h === 'Timeout' || h === 'Immediate' || h === 'PipeWrap') &&
        stacks.every((st) => st.split('\n')[1]?.includes('@platformatic/kafka') === true)
      process.stderr.write(
        `\nexit guard: ${file} has not ended ${EXIT_GRACE_MS / 1000} s after its last test${timersOnly ? ' (only timers left: reported, not failed)' : ''}.\n` +
          `  runtimes not stopped: ${runtimes.length > 0 ? runtimes.join('; ') : 'none'}\n` +
          `  live handles: ${handles.join(', ') || 'none'}\n` +
          `  last warnings (${recent.length}):\n${recent.map((r) => `    ${r}`).join('\n')}\n` +
          (stacks.length > 0 ? `  timers still alive, created at:\n${stacks.map((st) => `    - ${st}`).join('\n')}\n` : ''),
      )
      process.exit(timersOnly ? 0 : 1)
    }, EXIT_GRACE_MS)
    timer.unref()
  })
}
