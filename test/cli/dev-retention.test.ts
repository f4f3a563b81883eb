/**
 * `flowkit dev` keeps everything in its own memory: it deletes a task a day after it ended unless
 * its config sets `task_retention_sec` (a soak audit found a `dev` runtime without retention
 * growing by about 19 KB per task, for as long as it ran).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLogger } from 'flowkit'
import { DEV_TASK_RETENTION_SEC, startEmbedded } from '../../src/cli/dev.ts'
import { resolveSettings } from '../../src/cli/settings.ts'

test('flowkit dev purges ended tasks a day after their end by default; the config wins', async () => {
  for (const [coordinator, want] of [[{}, DEV_TASK_RETENTION_SEC], [{ taskRetentionSec: 60 }, 60], [{ taskRetentionSec: 0 }, 0]] as const) {
    const s = { ...resolveSettings({ values: {}, positionals: [] } as never, {}), coordinator: { ...coordinator } }
    const e = await startEmbedded(s, { step: { async processBatch() { return {} } } }, {}, 1, new MemoryLogger())
    try {
      assert.equal(e.coordinator.config.taskRetentionSec, want, JSON.stringify(coordinator))
    } finally {
      await e.stop()
    }
  }
  assert.equal(DEV_TASK_RETENTION_SEC, 86_400)
})
