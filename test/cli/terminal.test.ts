/**
 * The live progress display in a real terminal (tmux, a private server): `flowkit dev --graph`
 * draws a per-node table that is redrawn in place — the screen shows `square` running while its
 * handler is held, then the same rows finished, and the summary; exit 0.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { FIXTURES, Tmux, hasTmux, shellCli, shellEnv, tempDir } from './helpers.ts'

describe('live progress in a terminal', { skip: hasTmux() ? false : 'tmux is not installed' }, () => {
  test('flowkit dev --graph redraws its node table in place until the task finished (exit 0)', async () => {
    const gate = join(tempDir(), 'release')
    const tmux = new Tmux()
    try {
      tmux.start(`${shellEnv({ FLOWKIT_TEST_GATE: gate, FLOWKIT_LOG_LEVEL: 'silent' })} ${shellCli(['dev', '--handlers', join(FIXTURES, 'handlers.ts'), '--graph', join(FIXTURES, 'pipeline.json')])}`)
      // While `square` is held: the table shows it running, `source` finished.
      // (`square` streams from `source`'s first batch: held, it stays running at 0 batches while
      // `source` finishes, in either order on the screen.)
      const running = await tmux.waitScreen(/(?=[\s\S]*^\s+square\s+running\s+1\s+0\s+dev-worker\s*$)(?=[\s\S]*^\s+source\s+finished\s+1\s+3\s+dev-worker\s+count=9$)/m)
      assert.match(running, /^task \S+\s+running\s+/m)
      assert.match(running, /^\s+NODE\s+STATUS\s+EPOCH\s+BATCHES\s+WORKER\s+STATS$/m)
      writeFileSync(gate, '')
      const done = await tmux.waitScreen(/EXIT=\d+/)
      assert.match(done, /EXIT=0/)
      assert.match(done, /^\s+square\s+finished\s+1\s+3\s+dev-worker\s+count=9$/m)
      assert.match(done, /^task \S+ finished in /m)
      // Redrawn in place: one table on the screen, not one per update.
      assert.equal(done.match(/^\s+NODE\s+STATUS/gm)?.length, 1, done)
      assert.equal(done.match(/^\s+square\s+/gm)?.length, 1, done)
    } finally {
      tmux.close()
    }
  })
})
