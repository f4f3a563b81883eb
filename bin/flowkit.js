#!/usr/bin/env node
// flowkit CLI entry: runs the built CLI (dist/, made by `npm run build` / on install).
import('../dist/cli/main.js').catch((err) => {
  console.error('flowkit: could not load dist/cli/main.js — run `npm run build` first.', err?.message ?? err)
  process.exitCode = 1
})
