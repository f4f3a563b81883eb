/**
 * Evidence from the process logs of a scenario: how often each warning/error event (and a few
 * informative ones) was logged, and the first lines that are not flowkit log records (a crash's
 * stack trace, a driver's complaint) or that are errors.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'

const INTERESTING_INFO = new Set([
  'event.stale_epoch',
  'task.adopted',
  'coordinator.started',
  'coordinator.acquired',
  'coordinator.released',
  'coordinator.not_owner',
  'worker.started',
  'rel.start_failed',
  'rel.stop_hung',
  'rel.observer_session_error',
])

export interface LogScan {
  events: Record<string, number>
  evidence: string[]
}

export function scanLogs(dir: string, maxEvidence = 12): LogScan {
  const events: Record<string, number> = {}
  const evidence: string[] = []
  if (!existsSync(dir)) return { events, evidence }
  for (const file of readdirSync(dir).sort()) {
    const proc = file.replace(/\.log$/, '')
    for (const line of readFileSync(join(dir, file), 'utf8').split('\n')) {
      if (line.trim() === '') continue
      let rec: Record<string, unknown> | null = null
      try {
        rec = JSON.parse(line) as Record<string, unknown>
      } catch {
        rec = null
      }
      if (rec === null || typeof rec !== 'object') {
        if (evidence.length < maxEvidence) evidence.push(`${proc}: ${line.slice(0, 300)}`)
        continue
      }
      const event = typeof rec['event'] === 'string' ? rec['event'] : null
      if (event === null) continue
      const level = typeof rec['level'] === 'number' ? rec['level'] : 30
      if (level >= 40 || INTERESTING_INFO.has(event) || event.startsWith('rel.')) events[event] = (events[event] ?? 0) + 1
      const planned = line.includes('planned_failure')
      if (!planned && (level >= 50 || event === 'rel.stop_hung' || event === 'rel.start_gave_up') && evidence.length < maxEvidence) {
        evidence.push(`${proc}: ${line.slice(0, 300)}`)
      }
    }
  }
  return { events, evidence }
}
