/**
 * The processes of `--coordinators`: each coordinator and the worker run in a child process
 * (`node --conditions=flowkit-source bench/<kind>-proc.ts`, the same node binary as the bench)
 * with an IPC channel. Every child started is tracked until it exits: `stopAll` ends them
 * (SIGTERM, SIGKILL after a grace), and on the bench's own exit any one still alive is killed.
 * SIGINT/SIGTERM of the bench abort the run (`aborted`), so its cleanup still runs; a second
 * signal kills the children at once and exits.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { PROC_SPEC_ENV, type ProcNotice, type ProcReply, type ProcSpec } from './proc-common.ts'

const live = new Set<ChildProcess>()
const abort = new AbortController()
let handlersInstalled = false

/** Aborted when the bench process gets SIGINT or SIGTERM. */
export const aborted: AbortSignal = abort.signal

function installHandlers(): void {
  if (handlersInstalled) return
  handlersInstalled = true
  process.on('exit', () => {
    for (const c of live) c.kill('SIGKILL')
  })
  const onSignal = (signal: NodeJS.Signals): void => {
    if (abort.signal.aborted) {
      for (const c of live) c.kill('SIGKILL')
      process.exit(130)
    }
    process.stderr.write(`bench: ${signal}: stopping the coordinator processes (again to kill them)\n`)
    abort.abort(new Error(`interrupted by ${signal}`))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
}

/** Rejects when the bench is interrupted (for Promise.race with a wait). */
export function whenAborted(): Promise<never> {
  return new Promise((_, reject) => {
    if (aborted.aborted) reject(aborted.reason)
    else aborted.addEventListener('abort', () => reject(aborted.reason), { once: true })
  })
}

export class BenchProc {
  readonly spec: ProcSpec
  readonly child: ChildProcess
  readonly exited: Promise<number | null>
  /** Rejects if the child exits before `stop()` was asked (a crash during the run). */
  readonly crashed: Promise<never>
  #stopping = false
  #nextId = 1
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()
  #ready: Promise<void>

  constructor(kind: 'coordinator' | 'worker', spec: ProcSpec, onNotice: (n: ProcNotice) => void = () => undefined) {
    installHandlers()
    this.spec = spec
    const entry = fileURLToPath(new URL(`./${kind}-proc.ts`, import.meta.url))
    // stdout to our stderr: the bench's stdout carries only its JSON lines.
    this.child = spawn(process.execPath, ['--conditions=flowkit-source', entry], {
      env: { ...process.env, [PROC_SPEC_ENV]: JSON.stringify(spec) },
      stdio: ['ignore', 2, 2, 'ipc'],
    })
    live.add(this.child)
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code) => {
        live.delete(this.child)
        for (const p of this.#pending.values()) p.reject(new Error(`${spec.name} exited (${code})`))
        this.#pending.clear()
        resolve(code)
      })
    })
    this.crashed = this.exited.then((code) => {
      throw new Error(`${spec.name} exited with code ${code} during the run`)
    })
    this.crashed.catch(() => undefined)
    let ready!: () => void
    this.#ready = new Promise((resolve) => {
      ready = resolve
    })
    this.child.on('message', (msg: ProcReply | ProcNotice) => {
      if ('id' in msg) {
        const p = this.#pending.get(msg.id)
        this.#pending.delete(msg.id)
        if (msg.ok) p?.resolve(msg.result)
        else p?.reject(new Error(`${spec.name}: ${msg.error}`))
        return
      }
      if ('ready' in msg) ready()
      else onNotice(msg)
    })
  }

  get pid(): number {
    return this.child.pid as number
  }

  /** Resolves once the child's coordinator or worker has started. */
  async ready(timeoutMs: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.spec.name} not started within ${timeoutMs} ms`)), timeoutMs)
    })
    try {
      await Promise.race([this.#ready, this.crashed, late, whenAborted()])
    } finally {
      clearTimeout(timer)
    }
  }

  request<T>(op: string, args?: unknown): Promise<T> {
    if (!this.child.connected) return Promise.reject(new Error(`${this.spec.name} is not connected`))
    const id = this.#nextId++
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject })
      this.child.send({ id, op, args })
    })
  }

  /** SIGTERM (a clean stop of the coordinator or worker), SIGKILL if it has not exited after `graceMs`. */
  async stop(graceMs = 25_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    if (!this.#stopping) {
      this.#stopping = true
      this.child.kill('SIGTERM')
    }
    let timer: ReturnType<typeof setTimeout> | undefined
    const grace = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), graceMs)
    })
    const r = await Promise.race([this.exited, grace])
    clearTimeout(timer)
    if (r === 'late') {
      process.stderr.write(`bench: ${this.spec.name} did not stop within ${graceMs} ms: killed\n`)
      this.child.kill('SIGKILL')
      await this.exited
    }
  }
}

/** Stops the given processes together; never throws. */
export async function stopAll(procs: BenchProc[]): Promise<void> {
  await Promise.all(procs.map((p) => p.stop().catch((err: unknown) => process.stderr.write(`bench: stopping ${p.spec.name}: ${String(err)}\n`))))
}
