/**
 * A bench in a fresh process: `node bench/<script> args…`, its results read back: from the results
 * file it wrote (`outFile`: run.ts's `--out`, where the runner completes each result), else its
 * JSON lines on stdout (one per bench: stats.ts emit). What a fresh process measures is what a user's process starts
 * with (no JIT code, no heap of earlier benches); bench/observability.ts and bench/paired.ts run
 * their rounds this way.
 */
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import type { Result } from './stats.ts'

export async function benchInChild(script: string, args: readonly string[], outFile?: string): Promise<Result[]> {
  const path = new URL(`./${script}`, import.meta.url).pathname
  const child = spawn(process.execPath, [...process.execArgv, path, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString()
  })
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString()
  })
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  if (code !== 0) throw new Error(`${script} ${args.join(' ')} exited with ${code}:\n${stderr.slice(-2000)}`)
  if (outFile !== undefined) return (JSON.parse(readFileSync(outFile, 'utf8')) as { results: Result[] }).results
  const results: Result[] = []
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) continue
    try {
      const r = JSON.parse(line) as Result
      if (typeof r.bench === 'string') results.push(r)
    } catch {
      // not a result line
    }
  }
  return results
}

/** The result of bench `name` among `results`, or an error naming what ran. */
export function resultOf(results: readonly Result[], name: string, what: string): Result {
  const r = results.find((x) => x.bench === name)
  if (r === undefined) throw new Error(`${what}: no ${name} result (got ${results.map((x) => x.bench).join(', ') || 'none'})`)
  return r
}
