/**
 * Runs and type-checks the TypeScript examples of a doc as programs: each ```ts block is written
 * to a file of its own in a temporary ES-module directory, where `from 'flowkit'` points at this
 * checkout's src/index.ts, and run with this Node like a user's script (a failing `assert`, an
 * exception or a hang fails it). The type check compiles every block with the project's compiler
 * options, `flowkit` mapped to the same source.
 */
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import ts from 'typescript'
import { type CodeBlock, ROOT } from './markdown.ts'

export interface ExampleFile {
  block: CodeBlock
  /** The example as written (imports `flowkit`): what the type check compiles. */
  file: string
  /** The same with `flowkit` as a file URL: what is run. */
  runFile: string
}

const ENTRIES: Record<string, string> = {
  flowkit: 'src/index.ts',
  'flowkit/kafka': 'src/adapters/kafka/index.ts',
  'flowkit/mongo': 'src/adapters/mongo/index.ts',
}

/** Writes each block to `<dir>/<name>-<line>.ts` (and a `.run.ts` twin); `cleanup` removes the directory. */
export function writeExamples(name: string, blocks: CodeBlock[]): { dir: string; files: ExampleFile[]; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `flowkit-doc-${name}-`))
  writeFileSync(join(dir, 'package.json'), '{ "type": "module", "private": true }\n')
  const files = blocks.map((block) => {
    const base = join(dir, `${name}-line${block.line}`)
    const file = `${base}.ts`
    const runFile = `${base}.run.ts`
    writeFileSync(file, block.code)
    const run = block.code.replace(/(from\s+|import\(\s*)(['"])(flowkit(?:\/[a-z]+)?)\2/g, (m, pre: string, q: string, spec: string) => {
      const entry = ENTRIES[spec]
      return entry === undefined ? m : `${pre}${q}${pathToFileURL(join(ROOT, entry)).href}${q}`
    })
    writeFileSync(runFile, run)
    return { block, file, runFile }
  })
  return { dir, files, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

export interface RunResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  ms: number
}

/** Runs one example with this Node (logs silenced); resolves with its exit status and output. */
export function runExample(file: string, timeoutMs = 60_000): Promise<RunResult> {
  const t0 = performance.now()
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--conditions=flowkit-source', file],
      { cwd: ROOT, timeout: timeoutMs, killSignal: 'SIGKILL', env: { ...process.env, FLOWKIT_LOG_LEVEL: 'silent', NODE_TEST_CONTEXT: '' }, maxBuffer: 4 << 20 },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: unknown; signal?: NodeJS.Signals | null }) | null
        resolve({ code: e === null ? 0 : typeof e.code === 'number' ? e.code : null, signal: e?.signal ?? null, stdout, stderr, ms: Math.round(performance.now() - t0) })
      },
    )
  })
}

/** Type-checks the examples (as written) with the project's compiler options; returns the diagnostics as text. */
export function typecheckExamples(files: readonly string[]): string[] {
  const config = ts.readConfigFile(join(ROOT, 'tsconfig.json'), ts.sys.readFile)
  const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, ROOT)
  const options: ts.CompilerOptions = {
    ...parsed.options,
    noEmit: true,
    paths: Object.fromEntries(Object.entries(ENTRIES).map(([spec, entry]) => [spec, [join(ROOT, entry)]])),
  }
  const program = ts.createProgram({ rootNames: [...files], options })
  const wanted = new Set(files)
  // Only the examples' own errors: the sources they import are checked by `npm run typecheck`.
  const diagnostics = ts.getPreEmitDiagnostics(program).filter((d) => d.file === undefined || wanted.has(d.file.fileName))
  return diagnostics.map((d) => {
    const text = ts.flattenDiagnosticMessageText(d.messageText, '\n')
    if (d.file === undefined || d.start === undefined) return text
    const { line, character } = d.file.getLineAndCharacterOfPosition(d.start)
    return `${d.file.fileName}:${line + 1}:${character + 1} ${text}`
  })
}
