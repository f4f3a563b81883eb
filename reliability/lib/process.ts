/**
 * One supervised OS process of a scenario (a broker, a store, a coordinator, a worker, the
 * observer): spawned in its own process group with its output appended to a log file, signalled by
 * pid only, and watched. An exit the harness did not ask for (no kill/terminate in progress) is a
 * crash: it is counted and reported to `onCrash` (the owner restarts the process).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'

export interface ExitInfo {
  code: number | null
  signal: NodeJS.Signals | null
  expected: boolean
  at: number
}

export interface SpawnSpec {
  command: string
  args: string[]
  cwd: string
  env?: NodeJS.ProcessEnv
  log: string
  /** Open an IPC channel (node processes). */
  ipc?: boolean
}

export class Supervised {
  readonly name: string
  child: ChildProcess | null = null
  pid: number | null = null
  stopped = false
  crashes: ExitInfo[] = []
  exits: ExitInfo[] = []
  onCrash: ((info: ExitInfo) => void) | null = null
  #expectExit = false
  #exited: Promise<ExitInfo> | null = null

  constructor(name: string) {
    this.name = name
  }

  get alive(): boolean {
    return this.child !== null
  }

  spawnProcess(spec: SpawnSpec): ChildProcess {
    if (this.child !== null) throw new Error(`${this.name}: already running (pid ${this.pid})`)
    const fd = openSync(spec.log, 'a')
    const child = spawn(spec.command, spec.args, {
      cwd: spec.cwd,
      env: spec.env ?? process.env,
      detached: true,
      stdio: spec.ipc ? ['ignore', fd, fd, 'ipc'] : ['ignore', fd, fd],
    })
    closeSync(fd)
    this.child = child
    this.pid = child.pid ?? null
    this.stopped = false
    this.#expectExit = false
    this.#exited = new Promise<ExitInfo>((resolve) => {
      child.once('exit', (code, signal) => {
        const info: ExitInfo = { code, signal, expected: this.#expectExit, at: Date.now() }
        this.exits.push(info)
        if (this.child === child) {
          this.child = null
          this.pid = null
          this.stopped = false
        }
        if (!info.expected) {
          this.crashes.push(info)
          this.onCrash?.(info)
        }
        resolve(info)
      })
    })
    child.once('error', () => undefined)
    return child
  }

  /** Resolves when the current process has exited (at once if none runs). */
  exited(): Promise<ExitInfo | null> {
    return this.child === null ? Promise.resolve(null) : (this.#exited as Promise<ExitInfo>)
  }

  #signal(sig: NodeJS.Signals): boolean {
    if (this.pid === null) return false
    try {
      process.kill(this.pid, sig)
      return true
    } catch {
      return false
    }
  }

  /** SIGKILL, then waits for the exit. */
  async kill(): Promise<void> {
    if (this.child === null) return
    this.#expectExit = true
    const done = this.exited()
    this.#signal('SIGKILL')
    await done
  }

  /** SIGTERM (after SIGCONT if paused), SIGKILL after `graceMs`; resolves once it has exited. */
  async terminate(graceMs = 20_000): Promise<ExitInfo | null> {
    if (this.child === null) return null
    this.#expectExit = true
    const done = this.exited()
    if (this.stopped) this.resume()
    this.#signal('SIGTERM')
    let timer: ReturnType<typeof setTimeout> | undefined
    const forced = new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), graceMs)
    })
    const first = await Promise.race([done, forced])
    clearTimeout(timer)
    if (first === 'timeout') {
      this.#signal('SIGKILL')
      const info = await done
      return info === null ? null : { ...info, signal: 'SIGKILL' }
    }
    return first
  }

  pause(): void {
    if (this.#signal('SIGSTOP')) this.stopped = true
  }

  resume(): void {
    if (this.#signal('SIGCONT')) this.stopped = false
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
