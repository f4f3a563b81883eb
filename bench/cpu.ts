/**
 * CPU time of processes over a measured window, from /proc (Linux): utime + stime of
 * /proc/<pid>/stat (all threads of the process), and the whole machine's busy time from
 * /proc/stat. Used by `--coordinators` to split the CPU between the store server, the broker, the
 * coordinators and the workers.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

let clkTck: number | null = null

/** Clock ticks per second of the /proc counters (`getconf CLK_TCK`, 100 if unknown). */
export function ticksPerSecond(): number {
  if (clkTck === null) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()) || 100
    } catch {
      clkTck = 100
    }
  }
  return clkTck
}

/** CPU seconds (user + system, all threads) a process has used so far; null when it is gone. */
export function processCpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / ticksPerSecond()
  } catch {
    return null
  }
}

/** CPU seconds the whole machine spent busy (all cores: everything but idle and iowait). */
export function machineBusySeconds(): number | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? ''
    const v = line.trim().split(/\s+/).slice(1).map(Number)
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    const busy = v.slice(0, 8).reduce((a, b) => a + b, 0) - (v[3] ?? 0) - (v[4] ?? 0)
    return busy / ticksPerSecond()
  } catch {
    return null
  }
}

function alive(pid: number): boolean {
  return Number.isInteger(pid) && pid > 0 && existsSync(`/proc/${pid}/stat`)
}

function pidFile(path: string): number | null {
  try {
    const pid = Number(readFileSync(path, 'utf8').trim())
    return alive(pid) ? pid : null
  } catch {
    return null
  }
}

function pgrep(args: string[]): number | null {
  try {
    const pid = Number(execFileSync('pgrep', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n')[0])
    return alive(pid) ? pid : null
  } catch {
    return null
  }
}

/**
 * The pids of the broker and of the store server: the pid files of scripts/services.sh
 * (`$FLOWKIT_RUN_DIR` or <repo>/.run, `kafka/pid` and `mongo/pid`), else the oldest process named
 * `ferretdb` / `mongod` and the oldest whose command line has `kafka.Kafka`. null when not found
 * (the services run elsewhere): their share is then not reported.
 */
export function servicePids(): { broker: number | null; store: number | null } {
  const run = process.env['FLOWKIT_RUN_DIR'] ?? new URL('../.run', import.meta.url).pathname
  return {
    broker: pidFile(join(run, 'kafka', 'pid')) ?? pgrep(['-o', '-f', 'kafka\\.Kafka']),
    store: pidFile(join(run, 'mongo', 'pid')) ?? pgrep(['-o', '-x', 'ferretdb']) ?? pgrep(['-o', '-x', 'mongod']),
  }
}

/** A reading of every tracked process and of the machine, to be subtracted from a later one. */
export interface CpuSample {
  at: number
  pids: Map<number, number | null>
  machine: number | null
}

export function sampleCpu(pids: number[]): CpuSample {
  return { at: performance.now(), pids: new Map(pids.map((p) => [p, processCpuSeconds(p)])), machine: machineBusySeconds() }
}

/** CPU seconds of `pid` between two samples (null if it was not readable in both). */
export function cpuBetween(a: CpuSample, b: CpuSample, pid: number): number | null {
  const x = a.pids.get(pid)
  const y = b.pids.get(pid)
  return x === null || x === undefined || y === null || y === undefined ? null : y - x
}
