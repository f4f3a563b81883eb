/**
 * Subprocesses for handlers: a child runs in its own process group, so a cancel reaches everything
 * it started. On cancel the group gets SIGTERM, then SIGKILL after the grace period.
 */
import { spawn } from 'node:child_process'
import { CancelledRunError } from './cancel.ts'

export interface SpawnOptions {
  cwd?: string
  env?: NodeJS.ProcessEnv
  /** Text written to the child's stdin, then closed. */
  input?: string
  /** Between SIGTERM and SIGKILL on cancel, ms. Default: the worker's `cancelGraceMs` (ctx.spawn); 5000 when called directly. */
  graceMs?: number
  /** Keep at most this many bytes of stdout and of stderr (the tail). Default 1 MiB. */
  maxOutputBytes?: number
}

export interface SpawnResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/**
 * The last `max` bytes of a stream, kept as it comes: chunks that the newer ones push out of the
 * tail are dropped at once, so a child writing gigabytes holds about `max` bytes (plus one chunk)
 * of the worker's memory, not all it wrote.
 */
class Tail {
  readonly #max: number
  readonly #chunks: Buffer[] = []
  #bytes = 0

  constructor(max: number) {
    this.#max = max
  }

  push(b: Buffer): void {
    this.#chunks.push(b)
    this.#bytes += b.length
    while (this.#chunks.length > 1 && this.#bytes - (this.#chunks[0] as Buffer).length >= this.#max) this.#bytes -= (this.#chunks.shift() as Buffer).length
  }

  text(): string {
    const all = Buffer.concat(this.#chunks)
    return (all.length > this.#max ? all.subarray(all.length - this.#max) : all).toString('utf8')
  }
}

/**
 * The child ended without taking all of its `input` (its stdin was closed: EPIPE) and did not
 * succeed. `result` holds its exit status and output.
 */
export class SpawnInputError extends Error {
  readonly result: SpawnResult
  constructor(message: string, result: SpawnResult, cause: unknown) {
    super(message, { cause })
    this.name = 'SpawnInputError'
    this.result = result
  }
}

/**
 * Runs `command args` (no shell) and resolves with its exit status and output. Rejects with the
 * cancel reason when `signal` aborts (after the process group is gone), or if it cannot start.
 * A child that exits without reading all of its `input` (EPIPE on its stdin) is no crash of the
 * worker: if it succeeded (exit code 0) that is ignored, otherwise the promise rejects with a
 * `SpawnInputError` that says so.
 */
export function spawnInGroup(command: string, args: readonly string[], signal: AbortSignal, options: SpawnOptions = {}): Promise<SpawnResult> {
  const max = options.maxOutputBytes ?? 1 << 20
  const graceMs = options.graceMs ?? 5000
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason ?? new CancelledRunError('cancelled'))
      return
    }
    const child = spawn(command, [...args], {
      cwd: options.cwd,
      env: options.env,
      detached: true, // own process group: -pid reaches the whole tree
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    const out = new Tail(max)
    const err = new Tail(max)
    child.stdout.on('data', (b: Buffer) => out.push(b))
    child.stderr.on('data', (b: Buffer) => err.push(b))
    let killTimer: NodeJS.Timeout | null = null
    const killGroup = (sig: NodeJS.Signals): void => {
      if (child.pid === undefined) return
      try {
        process.kill(-child.pid, sig)
      } catch {
        // already gone
      }
    }
    const onAbort = (): void => {
      killGroup('SIGTERM')
      killTimer = setTimeout(() => killGroup('SIGKILL'), graceMs)
    }
    signal.addEventListener('abort', onAbort, { once: true })
    child.on('error', (e) => {
      signal.removeEventListener('abort', onAbort)
      reject(e)
    })
    // A child may exit (or close its stdin) before it read its input: the write then fails with
    // EPIPE, which must never become an uncaught exception of the worker.
    let stdinError: Error | null = null
    child.stdin.on('error', (e: Error) => {
      stdinError ??= e
    })
    child.on('close', (code, sig) => {
      signal.removeEventListener('abort', onAbort)
      if (killTimer) clearTimeout(killTimer)
      if (signal.aborted) {
        // Make sure nothing of the group survives its leader.
        killGroup('SIGKILL')
        reject(signal.reason ?? new CancelledRunError('cancelled'))
        return
      }
      const result: SpawnResult = { code, signal: sig, stdout: out.text(), stderr: err.text() }
      if (stdinError !== null && code !== 0) {
        const input = options.input ?? ''
        const how = sig !== null ? `was killed by ${sig}` : `exited with code ${code}`
        const errno = (stdinError as { code?: unknown }).code
        reject(
          new SpawnInputError(
            `spawn ${command}: the child ${how} before reading all of its input (${Buffer.byteLength(input)} bytes; stdin: ${typeof errno === 'string' ? errno : stdinError.message})`,
            result,
            stdinError,
          ),
        )
        return
      }
      resolve(result)
    })
    if (options.input !== undefined) child.stdin.end(options.input)
    else child.stdin.end()
  })
}
