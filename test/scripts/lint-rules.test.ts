import { test } from 'node:test'
import assert from 'node:assert/strict'
import { checkSource } from '../../scripts/lint-rules.ts'

test('lint rule no-bare-time fires in engine code and not in the clock', () => {
  assert.equal(checkSource('src/coordinator/x.ts', 'const t = Date.now()')[0]?.rule, 'no-bare-time')
  assert.equal(checkSource('src/worker/x.ts', 'const d = new Date()')[0]?.rule, 'no-bare-time')
  assert.deepEqual(checkSource('src/clock.ts', 'return Date.now()'), [])
  assert.deepEqual(checkSource('src/coordinator/x.ts', '// Date.now() in a comment'), [])
})

test('lint rule driver-outside-adapter fires outside the adapter folder only', () => {
  assert.equal(checkSource('src/coordinator/x.ts', "import { MongoClient } from 'mongodb'")[0]?.rule, 'driver-outside-adapter')
  assert.equal(checkSource('src/index.ts', "import { Producer } from '@platformatic/kafka'")[0]?.rule, 'driver-outside-adapter')
  assert.deepEqual(checkSource('src/adapters/mongo/store.ts', "import { MongoClient } from 'mongodb'"), [])
  assert.deepEqual(checkSource('src/adapters/kafka/bus.ts', "import { Consumer } from '@platformatic/kafka'"), [])
})
