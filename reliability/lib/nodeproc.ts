/**
 * A flowkit process of a scenario (coordinator, worker, observer): `node` on an entry point of
 * reliability/proc/ with its ProcSpec in the environment, an IPC channel for requests, and a log
 * file per process incarnation.
 */
import { join } from 'node:path'
import type { ChildProcess } from 'node:child_process'
import { Supervised } from './process.ts'
import { type IpcReply, type IpcRequest, type ProcSpec, SPEC_ENV } from './spec.ts'

type Op = IpcRequest extends infer R ? (R extends { op: infer O } ? O : never) : never
type Args<O extends Op> = Omit<Extract<IpcRequest, { op: O }>, 'id' | 'op'>

export class NodeProc extends Supervised {
  spec: ProcSpec
  readonly repo: string
  readonly logDir: string
  incarnation = 0
  ready = false
  #nextId = 1
  #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()
  #readyWaiters: (() => void)[] = []

  constructor(spec: ProcSpec, repo: string, logDir: string) {
    super(spec.name)
    this.spec = spec
    this.repo = repo
    this.logDir = logDir
  }

  get logFile(): string {
    return join(this.logDir, `${this.spec.name}.${this.incarnation}.log`)
  }

  start(): ChildProcess {
    this.incarnation++
    this.ready = false
    const child = this.spawnProcess({
      command: process.execPath,
      args: ['--conditions=flowkit-source', join(this.repo, 'reliability', 'proc', `${this.spec.kind}.ts`)],
      cwd: this.repo,
      env: { ...process.env, [SPEC_ENV]: JSON.stringify(this.spec), FLOWKIT_LOG_LEVEL: process.env['FLOWKIT_REL_LOG_LEVEL'] ?? 'info' },
      log: this.logFile,
      ipc: true,
    })
    child.on('message', (msg: IpcReply | { ready: true }) => {
      if ('ready' in msg) {
        this.ready = true
        for (const w of this.#readyWaiters.splice(0)) w()
        return
      }
      const p = this.#pending.get(msg.id)
      if (p === undefined) return
      this.#pending.delete(msg.id)
      if (msg.ok) p.resolve(msg.result)
      else p.reject(Object.assign(new Error(msg.error), { code: msg.code }))
    })
    child.once('exit', () => {
      if (this.child === null || this.child === child) this.ready = false
      for (const [id, p] of this.#pending) {
        this.#pending.delete(id)
        p.reject(new Error(`${this.name} exited`))
      }
    })
    return child
  }

  /** Resolves when the current incarnation said it is ready, false after `timeoutMs`. */
  waitReady(timeoutMs: number): Promise<boolean> {
    if (this.ready) return Promise.resolve(true)
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs)
      this.#readyWaiters.push(() => {
        clearTimeout(timer)
        resolve(true)
      })
    })
  }

  /** Sends a request; rejects when the process exits, is not ready, or does not answer in time. */
  request<O extends Op>(op: O, args: Args<O>, timeoutMs: number): Promise<unknown> {
    const child = this.child
    if (child === null || !this.ready || this.stopped) return Promise.reject(new Error(`${this.name} is not available`))
    const id = this.#nextId++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        reject(new Error(`${this.name}: no answer to ${op} within ${timeoutMs} ms`))
      }, timeoutMs)
      this.#pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer)
          resolve(v)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      })
      try {
        child.send({ id, op, ...args })
      } catch (err) {
        clearTimeout(timer)
        this.#pending.delete(id)
        reject(err instanceof Error ? err : new Error(String(err)))
      }
    })
  }
}
