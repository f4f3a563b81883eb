/**
 * Output: human text on stdout, or JSON with `--json` (one document, or one event per line for
 * streams); errors and notes on stderr. Small formatting helpers for tables and values.
 */

export interface Out {
  readonly json: boolean
  /** A line of human output (ignored in JSON mode). */
  line(text?: string): void
  /** A JSON document (JSON mode) — one line. */
  doc(value: unknown): void
  /** A note for humans on stderr (both modes: never mixes with JSON on stdout). */
  note(text: string): void
  /** Raw write to stdout (live displays). */
  write(text: string): void
  readonly isTTY: boolean
  readonly columns: number
  readonly rows: number
}

/** What every command receives: its output and the abort signal of SIGINT/SIGTERM. */
export interface CommandBase {
  out: Out
  signal: AbortSignal
}

export interface OutStreams {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number; rows?: number }
  stderr: NodeJS.WritableStream
}

export function makeOut(json: boolean, streams: OutStreams = { stdout: process.stdout, stderr: process.stderr }): Out {
  const { stdout, stderr } = streams
  return {
    json,
    line(text = '') {
      if (!json) stdout.write(`${text}\n`)
    },
    doc(value) {
      stdout.write(`${JSON.stringify(value)}\n`)
    },
    note(text) {
      stderr.write(`${text}\n`)
    },
    write(text) {
      stdout.write(text)
    },
    get isTTY() {
      return stdout.isTTY === true
    },
    // (A terminal that reports 0, as `script` and some container terminals do, gets the default.)
    get columns() {
      return stdout.columns || 120
    },
    get rows() {
      return stdout.rows || 40
    },
  }
}

export function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length)
}

/** Rows as aligned columns (the last column is not padded). */
export function table(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = []
  for (const r of rows) {
    r.forEach((c, i) => {
      widths[i] = Math.max(widths[i] ?? 0, c.length)
    })
  }
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : pad(c, widths[i] ?? 0))).join('  ').trimEnd())
}

function scalar(v: unknown): string {
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : String(Math.round(v * 100) / 100)
  if (typeof v === 'string') return v.length > 24 ? `${v.slice(0, 24)}…` : v
  if (typeof v === 'boolean' || v === null) return String(v)
  const s = JSON.stringify(v) ?? ''
  return s.length > 24 ? `${s.slice(0, 24)}…` : s
}

/** `k=v k=v` of a node's stats, at most `max` characters. */
export function formatStats(stats: Record<string, unknown>, max = 60): string {
  let out = ''
  for (const [k, v] of Object.entries(stats)) {
    const part = `${k}=${scalar(v)}`
    if (out.length + part.length + 1 > max) return out === '' ? `${part.slice(0, max - 1)}…` : `${out} …`
    out = out === '' ? part : `${out} ${part}`
  }
  return out
}

/** `3s ago`, `5m ago`, `2h ago`, `4d ago`. */
export function ago(ms: number, now: number): string {
  const s = Math.max(0, Math.round((now - ms) / 1000))
  if (s < 60) return `${s}s ago`
  if (s < 3600) return `${Math.floor(s / 60)}m ago`
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`
  return `${Math.floor(s / 86400)}d ago`
}

/** `1.2 s`, `340 ms`, `3m 05s`. */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`
  const s = Math.round(ms / 1000)
  return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`
}

export function isoTime(ms: number | null): string {
  return ms === null ? '-' : new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z')
}
