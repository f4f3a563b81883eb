/**
 * The dashboard's browser files (src/ui/static: HTML, CSS, plain ES modules and the vendored
 * layout library), served as they are: no bundler, nothing fetched from a CDN.
 */
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { extname, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { SECURITY_HEADERS } from './http.ts'

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
}

/**
 * Where the files are: next to this module (src/ui/static), or, when this module runs compiled
 * from dist/ui, in the package's src/ui/static (the package ships src).
 */
export function staticRoot(): string {
  const candidates = [new URL('./static/', import.meta.url), new URL('../../src/ui/static/', import.meta.url)]
  for (const c of candidates) {
    const dir = fileURLToPath(c)
    if (existsSync(resolve(dir, 'index.html'))) return resolve(dir)
  }
  throw new Error(`flowkit dashboard: its static files are missing (looked in ${candidates.map((c) => fileURLToPath(c)).join(' and ')})`)
}

export class StaticFiles {
  readonly root: string

  constructor(root = staticRoot()) {
    this.root = root
  }

  /** Serves `rel` (a path under the root, as in the URL); false when there is no such file. */
  /** `status`: the response's status (200; a page the app shows as not found is served with 404, uncached). */
  async serve(req: IncomingMessage, res: ServerResponse, rel: string, status = 200): Promise<boolean> {
    let decoded: string
    try {
      decoded = decodeURIComponent(rel)
    } catch {
      return false
    }
    if (decoded.includes('\0') || decoded.includes('\\') || decoded.split('/').some((s) => s === '..' || s.startsWith('.'))) return false
    const file = resolve(this.root, decoded)
    if (!file.startsWith(this.root + sep)) return false
    const type = TYPES[extname(file)]
    if (type === undefined) return false
    let body: Buffer
    try {
      body = await readFile(file)
    } catch {
      return false
    }
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`
    const headers = { ...SECURITY_HEADERS, 'content-type': type, etag, 'cache-control': 'no-cache' }
    if (status !== 200) {
      res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': type, 'cache-control': 'no-store', 'content-length': body.length })
      res.end(req.method === 'HEAD' ? undefined : body)
      return true
    }
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, headers)
      res.end()
      return true
    }
    res.writeHead(200, { ...headers, 'content-length': body.length })
    res.end(req.method === 'HEAD' ? undefined : body)
    return true
  }
}
