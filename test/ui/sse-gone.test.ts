/**
 * The dashboard's live streams are opened after a store read: a client that left meanwhile had
 * its close event fire before the stream listened for it, and stayed subscribed for ever (every
 * broadcast written to a dead response, its task watch polling the store). And a body too large
 * (413) was answered on a kept-alive connection whose next request was then read from the middle
 * of the unread body.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, request, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { connect } from 'node:net'
import { MAX_UNSENT, SseStream } from '../../src/ui/live.ts'
import { startUi } from './harness.ts'

test('a stream opened for a client that already left is closed from the start: nothing written, onClose called at once', async () => {
  let opened: { sse: SseStream; res: ServerResponse } | null = null
  let received!: () => void
  const got = new Promise<void>((r) => {
    received = r
  })
  const server = createServer((req, res) => {
    // As the server does: something asynchronous first (the store read), then the stream.
    req.socket.once('close', () => {
      opened = { sse: new SseStream(res), res }
    })
    received()
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  try {
    const { port } = server.address() as AddressInfo
    const s = connect(port, '127.0.0.1')
    s.write('GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
    // The client leaves once the server has the request (not after a fixed delay: on a loaded
    // machine the request could be read after the socket closed, and never seen).
    await got
    s.destroy()
    const deadline = Date.now() + 5000
    while (opened === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
    const o = opened as { sse: SseStream; res: ServerResponse } | null
    assert.ok(o !== null, 'the stream was opened after the client left')
    assert.equal(o.sse.closed, true)
    assert.equal(o.res.headersSent, false, 'nothing written to the dead response')
    let called = false
    o.sse.onClose(() => {
      called = true
    })
    assert.equal(called, true)
  } finally {
    server.closeAllConnections()
    await new Promise((r) => server.close(r))
  }
})

test('a request body over the limit is answered 413 with Connection: close (the unread rest never reaches the next request)', async () => {
  const ui = await startUi()
  try {
    const url = new URL('/api/tasks', ui.dashboard.url)
    const res = await new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
      const req = request(url, { method: 'POST', headers: { 'x-flowkit-dashboard': '1', 'content-type': 'application/json' } }, (r) => {
        r.resume()
        r.on('end', () => resolve({ status: r.statusCode ?? 0, connection: r.headers.connection }))
      })
      req.on('error', reject)
      req.end(Buffer.alloc(5 * 1024 * 1024, 32))
    })
    assert.equal(res.status, 413)
    assert.equal(res.connection, 'close')
    assert.equal((await fetch(new URL('/api/tasks', ui.dashboard.url))).status, 200)
  } finally {
    await ui.stop()
  }
})

test('a stream whose client reads nothing is closed once its unsent events pass MAX_UNSENT (they do not pile up in the server)', async () => {
  let opened: SseStream | null = null
  const server = createServer((_req, res) => {
    opened = new SseStream(res)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const s = connect((server.address() as AddressInfo).port, '127.0.0.1')
  try {
    s.write('GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
    s.pause() // a client that never reads
    const deadline = Date.now() + 5000
    while (opened === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
    const sse = opened as SseStream | null
    assert.ok(sse !== null)
    let closedCalled = false
    sse.onClose(() => {
      closedCalled = true
    })
    const event = { blob: 'x'.repeat(64 * 1024) }
    let sent = 0
    // Far more than the limit and what the sockets of both ends can hold on loopback.
    while (!sse.closed && sent < 256 * 1024 * 1024) {
      sse.send('progress', event)
      sent += 64 * 1024
      if (sent % (4 * 1024 * 1024) === 0) await new Promise((r) => setImmediate(r))
    }
    assert.equal(sse.closed, true, `still open after ${sent} bytes`)
    assert.equal(closedCalled, true)
    assert.ok(sent > MAX_UNSENT, `closed after ${sent} bytes`)
  } finally {
    s.destroy()
    server.closeAllConnections()
    await new Promise((r) => server.close(r))
  }
})
