/**
 * The dashboard's vendored browser library: dagre (graph layout, MIT), copied from the
 * `@dagrejs/dagre` dev dependency into src/ui/static/vendor so the package serves it itself (no
 * CDN, no runtime dependency). After upgrading @dagrejs/dagre, refresh the copy:
 *
 *   node --conditions=flowkit-source src/ui/vendor.ts
 *
 * test/ui/vendor.test.ts fails when the copy and the installed package differ.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const VENDOR_DIR = fileURLToPath(new URL('./static/vendor/', import.meta.url))

/** The installed package's ES module build and license, or null when it is not installed. */
export function installedDagre(): { version: string; esm: string; license: string } | null {
  let pkgFile: string
  try {
    pkgFile = createRequire(import.meta.url).resolve('@dagrejs/dagre/package.json')
  } catch {
    return null
  }
  const dist = join(dirname(pkgFile), 'dist')
  const version = (JSON.parse(readFileSync(pkgFile, 'utf8')) as { version: string }).version
  return { version, esm: readFileSync(join(dist, 'dagre.esm.js'), 'utf8'), license: readFileSync(join(dist, 'dagre.esm.js.LEGAL.txt'), 'utf8') }
}

/** The vendored file's text for an installed build: a header, and no source map reference. */
export function vendoredText(version: string, esm: string): string {
  const body = esm.replace(/\n?\/\/# sourceMappingURL=\S+\s*$/, '\n').replace(/\/\*! For license information please see \S+ \*\//, '/*! license: dagre.LICENSE.txt */')
  return `// biome-ignore-all lint: a third-party build, vendored as published\n/*! @dagrejs/dagre ${version} (MIT): vendored by flowkit from node_modules/@dagrejs/dagre/dist/dagre.esm.js; refresh with src/ui/vendor.ts */\n${body}`
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const d = installedDagre()
  if (d === null) {
    console.error('flowkit: @dagrejs/dagre is not installed (npm install)')
    process.exit(1)
  }
  writeFileSync(join(VENDOR_DIR, 'dagre.esm.js'), vendoredText(d.version, d.esm))
  writeFileSync(join(VENDOR_DIR, 'dagre.LICENSE.txt'), d.license)
  console.log(`vendored @dagrejs/dagre ${d.version} into ${VENDOR_DIR}`)
}
