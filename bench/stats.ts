/** Small numeric helpers shared by the benches. */

export type Result = { bench: string; runtime: string } & Record<string, unknown>

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN
  const s = [...values].sort((a, b) => a - b)
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))
  return s[i] as number
}

export const round = (n: number, digits = 1): number => {
  const f = 10 ** digits
  return Math.round(n * f) / f
}

export const rate = (count: number, ms: number): number => round(count / (ms / 1000), 1)

export function latencyFields(prefix: string, ms: number[], digits = 1): Record<string, number> {
  return {
    [`${prefix}_p50_ms`]: round(percentile(ms, 50), digits),
    [`${prefix}_p95_ms`]: round(percentile(ms, 95), digits),
    [`${prefix}_max_ms`]: round(Math.max(...ms), digits),
  }
}

/** Prints one JSON line on stdout (the machine-readable output). */
export function emit(r: Result): Result {
  console.log(JSON.stringify(r))
  return r
}

export function log(msg: string): void {
  process.stderr.write(`bench: ${msg}\n`)
}
