#!/usr/bin/env node
// flowkit CLI entry (docs/cli.md). Runs the built CLI (dist/, made by `npm run build` / on
// install); under `node --conditions=flowkit-source` (this repository's development setup, as
// `npm start` and the tests use) it runs the TypeScript sources instead.
let fromSource = false
try {
  fromSource = import.meta.resolve('flowkit').endsWith('/src/index.ts')
} catch {
  fromSource = false
}
const entry = fromSource ? '../src/cli/main.ts' : '../dist/cli/main.js'
import(entry).catch((err) => {
  const missing = err?.code === 'ERR_MODULE_NOT_FOUND' && String(err?.message ?? '').includes(fromSource ? 'main.ts' : 'dist/cli/main.js')
  // The sources are TypeScript: a Node without type stripping (20) cannot run them.
  const noTs = err?.code === 'ERR_UNKNOWN_FILE_EXTENSION'
  console.error(
    missing
      ? `flowkit: cannot load ${entry.slice(3)}: run \`npm run build\` first`
      : noTs
        ? `flowkit: cannot start: this Node (${process.version}) cannot run flowkit's TypeScript sources; use Node 22.22+ or 24.6+ (in this repository: npm start, npm run, or npx node, which use the pinned Node 24)`
        : `flowkit: cannot start: ${err?.message ?? err}`,
  )
  process.exitCode = 1
})
