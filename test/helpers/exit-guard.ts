/**
 * A test file whose process does not end after its last test (a stop that never returns, a socket
 * or timer left open) used to hold the whole pass until the runner's 20-minute watchdog killed it,
 * with nothing said about where. This guard, armed after the file's last test, waits
 * EXIT_GRACE_MS for the process to end by itself; if it has not, it prints what is still open
 * (runtimes not stopped and the step each stop is in, the last warnings logged — among them the
 * `coordinator.stop_slow` / `worker.stop_slow` of a stop that hangs — and the kinds of live
 * handles) and ends the
 * process with exit code 1, so the file fails, named, and the pass goes on.
 */
import { subscribe } from 'node:diagnostics_channel'
import { after } from 'node:test'
import { EVENTS_CHANNEL, type FlowkitEventMessage } from 'flowkit'

const EXIT_GRACE_MS = Number(process.env['FLOWKIT_TEST_EXIT_GRACE_MS'] ?? 30_000)

/** What each live runtime is doing (e.g. "running", "stopping: worker 1 of 2"), by name. */
const live = new Map<string, string>()
let seq = 0

/** Registers a runtime; the returned function records its step (`null` = stopped, forget it). */
export function trackRuntime(what: string): (step: string | null) => void {
  const name = `${what}#${++seq}`
  live.set(name, 'running')
  return (step) => {
    if (step === null) live.delete(name)
    else live.set(name, step)
  }
}

/** The last warnings and errors logged in this process (any logger: the events channel). */
const recent: string[] = []
const RECENT_MAX = 40

function remember(message: unknown): void {
  const m = message as FlowkitEventMessage
  if (m.level !== 'warn' && m.level !== 'error') return
  recent.push(`${new Date(m.time).toISOString().slice(11, 23)} ${m.level} ${m.event} ${JSON.stringify(m.fields).slice(0, 300)}`)
  if (recent.length > RECENT_MAX) recent.shift()
}

let armed = false

/** Arms the guard for the current test file (idempotent; runtime.ts calls it on import). */
export function armExitGuard(): void {
  if (armed) return
  armed = true
  subscribe(EVENTS_CHANNEL, remember)
  after(() => {
    const timer = setTimeout(() => {
      const file = process.argv[1] ?? '(unknown file)'
      const runtimes = [...live].map(([name, step]) => `${name}: ${step}`)
      const handles = process.getActiveResourcesInfo().filter((h) => h !== 'TTYWrap')
      process.stderr.write(
        `\nexit guard: ${file} has not ended ${EXIT_GRACE_MS / 1000} s after its last test.\n` +
          `  runtimes not stopped: ${runtimes.length > 0 ? runtimes.join('; ') : 'none'}\n` +
          `  live handles: ${handles.join(', ') || 'none'}\n` +
          `  last warnings (${recent.length}):\n${recent.map((r) => `    ${r}`).join('\n')}\n`,
      )
      process.exit(1)
    }, EXIT_GRACE_MS)
    timer.unref()
  })
}
