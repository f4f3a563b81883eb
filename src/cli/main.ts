#!/usr/bin/env node
/**
 * flowkit command line (docs/cli.md). This module is the entry point (bin/flowkit.js, `npm start`):
 * it dispatches to the commands, turns every failure into one line on stderr with a hint (the
 * stack only with --debug) and a stable exit code (errors.ts), and turns SIGINT/SIGTERM into an
 * abort signal the commands stop on (a second signal exits at once with 130).
 *
 * Modules: args.ts (parseArgs), settings.ts (config file + FLOWKIT_* + flags), connect.ts
 * (MongoDB/Kafka within a deadline), output.ts / progress.ts (text, tables, live progress, JSON),
 * follow.ts (following a task through the store), modules.ts (handlers / functions modules),
 * dev.ts (embedded runtime, demo), serve.ts (coordinator, worker), dashboard.ts (the web dashboard
 * of dev, and `ui`), remote.ts (the dashboard's coordinator verbs over a deployment's store and
 * owners' topic), graph-cmds.ts (validate,
 * submit), task-cmds.ts (status, ls, cancel), control.ts (cancel requests), admin-cmds.ts
 * (workers, dlq), ops.ts (the older operator commands as a function), help.ts.
 */
import { closest } from '../graph/parse-context.ts'
import { logFormatFor, parseLogLevel } from '../log.ts'
import { CliError, EXIT, toCliError } from './errors.ts'
import { COMMAND_HELP, MAIN_HELP, version } from './help.ts'
import { type CommandBase, type Out, makeOut } from './output.ts'
import { interruptConnectsOn } from './connect.ts'

type Command = (argv: readonly string[], base: CommandBase) => Promise<number>

const COMMANDS: Record<string, () => Promise<Command>> = {
  dev: async () => (await import('./dev.ts')).devCommand,
  demo: async () => {
    const { devCommand } = await import('./dev.ts')
    return (argv, base) => devCommand(argv, base, 'demo')
  },
  coordinator: async () => (await import('./serve.ts')).coordinatorCommand,
  worker: async () => (await import('./serve.ts')).workerCommand,
  ui: async () => (await import('./dashboard.ts')).uiCommand,
  validate: async () => (await import('./graph-cmds.ts')).validateCommand,
  submit: async () => (await import('./graph-cmds.ts')).submitCommand,
  status: async () => (await import('./task-cmds.ts')).statusCommand,
  ls: async () => (await import('./task-cmds.ts')).lsCommand,
  cancel: async () => (await import('./task-cmds.ts')).cancelCommand,
  workers: async () => (await import('./admin-cmds.ts')).workersCommand,
  dlq: async () => (await import('./admin-cmds.ts')).dlqCommand,
  prune: async () => (await import('./admin-cmds.ts')).pruneCommand,
}

/** Older command names, as the new command and its arguments. */
function legacy(cmd: string, rest: readonly string[]): [string, string[]] | null {
  switch (cmd) {
    case 'tasks':
      return ['ls', rest.includes('--all') ? ['--all', ...rest.filter((a) => a !== '--all')] : [...rest]]
    case 'task':
      return ['status', [...rest]]
    case 'dead-letters':
      return ['dlq', ['ls', ...rest]]
    case 'retry-dead-letter':
      return ['dlq', ['retry', ...rest]]
    default:
      return null
  }
}

function wantsHelp(argv: readonly string[]): boolean {
  for (const a of argv) {
    if (a === '--') return false
    if (a === '--help' || a === '-h') return true
  }
  return false
}

export async function run(argv: readonly string[], out: Out, signal: AbortSignal): Promise<number> {
  const first = argv[0]
  if (first === undefined) return (await COMMANDS['dev']!())([], { out, signal })
  if (first === '--version' || first === '-v' || first === 'version') {
    if (out.json || argv.includes('--json')) out.doc({ version: version() })
    else out.line(`flowkit ${version()}`)
    return EXIT.ok
  }
  if (first === '--help' || first === '-h' || first === 'help') {
    const asked = argv[1]
    // An older name (`tasks`) gets the help of the command it stands for.
    const topic = asked === undefined ? undefined : (legacy(asked, [])?.[0] ?? asked)
    if (topic !== undefined && topic !== 'help' && topic !== 'version' && !topic.startsWith('-') && COMMAND_HELP[topic] === undefined) {
      const near = closest(topic, Object.keys(COMMAND_HELP), true)
      throw new CliError(EXIT.usage, `no help for ${JSON.stringify(topic)}: not a command${near === null ? '' : ` (did you mean ${JSON.stringify(near)}?)`}`, { hint: 'see `flowkit --help`' })
    }
    out.line(topic !== undefined && COMMAND_HELP[topic] !== undefined ? COMMAND_HELP[topic] : MAIN_HELP)
    return EXIT.ok
  }
  // Global flags may come before the command: they are passed on to it.
  let i = 0
  while (argv[i] === '--json' || argv[i] === '--debug') i++
  const globals = argv.slice(0, i)
  const cmd0 = argv[i]
  if (cmd0 === undefined) return run(['dev', ...globals], out, signal)
  if (cmd0 === '--version' || cmd0 === '--help' || cmd0 === '-h') return run([cmd0, ...globals, ...argv.slice(i + 1)], out, signal)
  if (cmd0.startsWith('-')) throw new CliError(EXIT.usage, `unknown option ${cmd0} (a command comes first)`, { hint: 'see `flowkit --help`' })
  const [cmd, args] = legacy(cmd0, argv.slice(i + 1)) ?? [cmd0, argv.slice(i + 1)]
  const load = COMMANDS[cmd]
  if (load === undefined) {
    const near = closest(cmd, Object.keys(COMMANDS), true)
    throw new CliError(EXIT.usage, `unknown command ${JSON.stringify(cmd)}${near === null ? '' : ` (did you mean ${JSON.stringify(near)}?)`}`, { hint: 'see `flowkit --help`' })
  }
  if (wantsHelp(args)) {
    out.line(COMMAND_HELP[cmd] ?? MAIN_HELP)
    return EXIT.ok
  }
  return (await load())([...args, ...globals], { out, signal })
}

function report(err: unknown, json: boolean, debug: boolean): number {
  const e = toCliError(err)
  if (json) {
    process.stderr.write(`${JSON.stringify({ error: { code: e.code, message: e.message, hint: e.hint ?? null, exit_code: e.exitCode } })}\n`)
  } else {
    // Library errors may carry the prefix already (`flowkit: FLOWKIT_LOG_LEVEL=…`): once is enough.
    process.stderr.write(`flowkit: ${e.message.replace(/^flowkit: /, '')}\n`)
    if (e.hint !== undefined) process.stderr.write(`  hint: ${e.hint}\n`)
  }
  if (debug) {
    let cur: unknown = err
    for (let depth = 0; cur !== undefined && cur !== null && depth < 5; depth++) {
      process.stderr.write(`${cur instanceof Error ? (cur.stack ?? cur.message) : String(cur)}\n`)
      cur = cur instanceof Error ? cur.cause : undefined
      if (cur !== undefined) process.stderr.write('caused by: ')
    }
  }
  return e.exitCode
}

export async function main(argv: readonly string[]): Promise<number> {
  const before = argv.indexOf('--')
  const flags = before === -1 ? argv : argv.slice(0, before)
  const json = flags.includes('--json')
  const debug = flags.includes('--debug')
  const out = makeOut(json)
  const abort = new AbortController()
  let signals = 0
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++
    if (signals === 1) {
      abort.abort()
      return
    }
    process.stderr.write(`flowkit: ${sig} again: exiting now\n`)
    process.exit(EXIT.interrupted)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  interruptConnectsOn(abort.signal)
  // `flowkit ls | head`: a closed stdout ends the command quietly.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0)
  })
  try {
    // A bad FLOWKIT_LOG_LEVEL stops every command at startup (not only those that log).
    const level = process.env['FLOWKIT_LOG_LEVEL']
    if (level !== undefined && level !== '') parseLogLevel(level, 'FLOWKIT_LOG_LEVEL')
    logFormatFor(process.stderr) // and so does a bad FLOWKIT_LOG_FORMAT
    return await run(argv, out, abort.signal)
  } catch (err) {
    return report(err, json, debug)
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code
  // Anything a command left open (a driver's timer) must not keep a finished command alive.
  setTimeout(() => process.exit(code), 3000).unref()
})
