/**
 * The pretty log format (the default on a terminal) escapes control characters in field values:
 * a value from a request (a dead letter's id in a dashboard URL, a node's error text) could carry
 * escape sequences that erase or forge earlier lines, or set the clipboard (OSC 52), of the
 * terminal showing the log. JSON escapes C0 characters but leaves DEL and the C1 range (0x9b is
 * an 8-bit CSI) as they are; those are escaped too.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { formatPretty } from '../../src/log.ts'

test('pretty lines carry no control character from a field value, at any depth; plain values stay as they are', () => {
  const line = formatPretty(
    'info',
    'dashboard.retry_dead_letter',
    { outbox_id: '\u001b[1A\u001b[2K\u001b[31mERROR\u001b]52;c;Y3VybA==\u0007', c1: 'x\u009b31my', del: 'a\u007fb', nested: { e: '\u001b[0m' }, plain: 'abc', n: 3 },
    new Date(0),
  )
  const controls = [...line].filter((ch) => {
    const c = ch.charCodeAt(0)
    return c < 0x20 || (c >= 0x7f && c <= 0x9f)
  })
  assert.deepEqual(controls, [], JSON.stringify(line))
  assert.match(line, /outbox_id="\\u001b\[1A\\u001b\[2K/)
  assert.match(line, /c1="x\\u009b31my"/)
  assert.match(line, /del="a\\u007fb"/)
  assert.match(line, /plain=abc n=3$/)
})
