/**
 * Runs the real CLI binary (bin/flowkit.js) as a child process, with this Node and the
 * `flowkit-source` condition (so it runs the TypeScript sources). Every wait has a deadline.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { waitFor } from '../helpers/wait.ts'

export const ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const BIN = fileURLToPath(new URL('../../bin/flowkit.js', import.meta.url))
export const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url))
export const NODE_ARGS = ['--conditions=flowkit-source', BIN]

const tempDirs: string[] = []
process.on('exit', () => {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true })
})

/** A fresh temporary directory, removed when the test process exits. */
export function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'flowkit-cli-'))
  tempDirs.push(d)
  return d
}

export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  ms: number
}

/** The environment of a CLI child: this one, without the test runner's marker, plus `extra`. */
export function cliEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, FLOWKIT_LOG_LEVEL: 'silent' }
  delete env['NODE_TEST_CONTEXT']
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k]
    else env[k] = v
  }
  return env
}

/** Runs `flowkit <args>` to its end (killed and rejected past `timeoutMs`). */
export function runCli(args: readonly string[], options: { env?: Record<string, string | undefined>; timeoutMs?: number; cwd?: string } = {}): Promise<CliResult> {
  const timeoutMs = options.timeoutMs ?? 30_000
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...NODE_ARGS, ...args], { cwd: options.cwd ?? ROOT, env: cliEnv(options.env), stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`flowkit ${args.join(' ')}: still running after ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`))
    }, timeoutMs)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, ms: performance.now() - started })
    })
  })
}

/** A long-running `flowkit` child (coordinator, worker, dev): its output so far, waits, signals. */
export class CliProcess {
  readonly child: ChildProcess
  stdout = ''
  stderr = ''
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>

  constructor(args: readonly string[], env: Record<string, string | undefined> = {}) {
    this.child = spawn(process.execPath, [...NODE_ARGS, ...args], { cwd: ROOT, env: cliEnv(env), stdio: ['ignore', 'pipe', 'pipe'] })
    this.child.stdout?.on('data', (d: Buffer) => (this.stdout += d.toString()))
    this.child.stderr?.on('data', (d: Buffer) => (this.stderr += d.toString()))
    this.exited = new Promise((resolve) => this.child.on('close', (code, signal) => resolve({ code, signal })))
  }

  /** Waits until stdout matches. */
  async waitOut(re: RegExp, timeoutMs = 30_000): Promise<void> {
    let ended = false
    void this.exited.then(() => (ended = true))
    await waitFor(() => re.test(this.stdout) || ended, { timeoutMs, intervalMs: 20, message: `stdout never matched ${re}\nstdout: ${this.stdout}\nstderr: ${this.stderr}` })
    if (!re.test(this.stdout)) throw new Error(`exited before stdout matched ${re}\nstdout: ${this.stdout}\nstderr: ${this.stderr}`)
  }

  /** Waits for the process to exit by itself (SIGKILL past the deadline, then rejects). */
  async waitExit(timeoutMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<never>((_r, reject) => {
      timer = setTimeout(() => {
        this.child.kill('SIGKILL')
        reject(new Error(`still running after ${timeoutMs} ms\nstdout: ${this.stdout}\nstderr: ${this.stderr}`))
      }, timeoutMs)
    })
    try {
      return await Promise.race([this.exited, deadline])
    } finally {
      clearTimeout(timer)
    }
  }

  /** Sends `signal` and waits for the exit (SIGKILL past the deadline, then rejects). */
  async stop(signal: NodeJS.Signals = 'SIGINT', timeoutMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }> {
    const started = performance.now()
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal)
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<never>((_r, reject) => {
      timer = setTimeout(() => {
        this.child.kill('SIGKILL')
        reject(new Error(`still running ${timeoutMs} ms after ${signal}\nstdout: ${this.stdout}\nstderr: ${this.stderr}`))
      }, timeoutMs)
    })
    try {
      const r = await Promise.race([this.exited, deadline])
      return { ...r, ms: performance.now() - started }
    } finally {
      clearTimeout(timer)
    }
  }

  /** Kills it if it still runs (cleanup). */
  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL')
  }
}

/** JSON lines of a `--json` stream, each parsed (throws on a line that is not JSON). */
export function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
}

export function hasTmux(): boolean {
  try {
    execFileSync('tmux', ['-V'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/** A tmux server of its own (private socket): a real terminal for a command, read with capture-pane. */
export class Tmux {
  readonly socket = `flowkit-cli-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`
  #run(args: string[]): string {
    return execFileSync('tmux', ['-L', this.socket, ...args], { encoding: 'utf8', env: cliEnv() })
  }
  /**
   * Starts `command` (a shell command line) in a detached 120x40 session; after it ends the pane
   * shows `EXIT=<code>` and stays open.
   */
  start(command: string): void {
    this.#run(['new-session', '-d', '-s', 'cli', '-x', '120', '-y', '40', '-c', ROOT, `${command}; echo EXIT=$?; exec cat`])
  }
  capture(): string {
    return this.#run(['capture-pane', '-p', '-t', 'cli'])
  }
  async waitScreen(re: RegExp, timeoutMs = 30_000): Promise<string> {
    let screen = ''
    await waitFor(
      () => {
        screen = this.capture()
        return re.test(screen)
      },
      { timeoutMs, intervalMs: 50, message: `the terminal never showed ${re}; it shows:\n${screen}` },
    )
    return screen
  }
  close(): void {
    try {
      this.#run(['kill-server'])
    } catch {
      // already gone
    }
  }
}

/** `VAR=value` words for a shell command line (values single-quoted). */
export function shellEnv(env: Record<string, string>): string {
  return Object.entries(env)
    .map(([k, v]) => `${k}='${v.replace(/'/g, `'\\''`)}'`)
    .join(' ')
}

export function shellCli(args: readonly string[]): string {
  return [process.execPath, ...NODE_ARGS, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ')
}
