/** Usage texts (`flowkit --help`, `flowkit <command> --help`) and the version. */
import { readFileSync } from 'node:fs'

export function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown }
    return typeof pkg.version === 'string' ? pkg.version : 'unknown'
  } catch {
    return 'unknown'
  }
}

const CONNECTION = `connection (commands that reach MongoDB or Kafka):
  -c, --config <file>      JSON config file (also FLOWKIT_CONFIG): mongo, kafka, coordinator, worker sections
  --mongo-url <url>        MongoDB URL (FLOWKIT_MONGO_URL)
  --db <name>              database (FLOWKIT_MONGO_DB; default: the URL's, else "flowkit")
  --brokers <list>         Kafka brokers host:port,... (FLOWKIT_KAFKA_BROKERS)
  --connect-timeout <s>    give up connecting after this many seconds (default 4; FLOWKIT_CONNECT_TIMEOUT_MS)`

const GLOBAL = `global: --json (machine-readable output), --debug (full stacks), -h/--help, --version`

export const MAIN_HELP = `flowkit — async DAGs that stream by batches

usage: flowkit <command> [options]

run:
  dev [--handlers h.ts] [--graph g.json]   coordinator + worker in this process (memory bus + store)
                                           and the web dashboard (http://127.0.0.1:7700/; --no-ui);
                                           no options: the built-in example pipeline (alias: demo)
  coordinator                              the deployment's coordinator on Kafka + MongoDB
  worker --handlers h.ts [--roles a,b]     a worker on Kafka + MongoDB
  ui [--port n] [--host h] [--token t]     the web dashboard for a deployment (its MongoDB + Kafka)

graphs and tasks:
  validate <graph.json>                    check a graph with the real parser
  submit <graph.json> [--watch]            queue a task for the running coordinator
  status <task-id> [--watch]               a task's nodes: status, attempt, batches, worker, stats
  ls [--status s] [--limit n]              tasks (default: the active ones)
  cancel <task-id>                         ask the owning coordinator to cancel a task

operations:
  workers                                  workers that announced themselves
  dlq ls | dlq retry <id> | --all          dead-lettered outbox messages; send them again
  prune --ended-before <age>               delete tasks that ended before an age (7d, 12h, 30m)

older names (still accepted): flowkit tasks [--all] (= ls), flowkit task <id> (= status),
flowkit dead-letters (= dlq ls), flowkit retry-dead-letter <id> (= dlq retry)

${GLOBAL}
exit codes: 0 ok, 1 task failed / invalid graph / refused, 2 usage or config error,
3 cannot connect, 4 not found, 130 interrupted
'flowkit <command> --help' for a command's options; docs/cli.md for everything.`

export const COMMAND_HELP: Record<string, string> = {
  dev: `usage: flowkit dev [--handlers <module>] [--graph <graph.json>] [--params <p.json>] [--concurrency <n>]
                  [--functions <module>] [--config <file>] [--ui-port <n>] [--ui-host <addr>] [--no-ui] [--keep]

Runs a coordinator and a worker in this process on the embedded runtime (memory bus + memory store),
and the web dashboard next to them (its URL is printed; it stops with the runtime).
  --handlers <module>    module that default-exports (or exports \`handlers\`) { role: RoleHandler }
  -g, --graph <file>     submit this graph and show live per-node progress until the task ends
                         (exit 0 finished, 1 failed/cancelled); without it: run until Ctrl-C
  --params <file>        task params (a JSON object)
  --concurrency <n>      worker slots (default 4)
  --functions <module>   extra coordinator functions { name: CoordinatorFn }
  -c, --config <file>    "coordinator" / "worker" sections apply
  --ui-port <n>          dashboard port (default 7700; 0: any free one). When it is in use, dev says
                         so and goes on without the dashboard
  --ui-host <addr>       address to bind (default 127.0.0.1: no login). Any other address needs a
                         token: one is generated and the URL is printed with ?token=
  --no-ui                no dashboard
  --keep                 once the task ended, keep the runtime and its dashboard up until Ctrl-C
With no options: the built-in example pipeline (same as \`flowkit demo\`, \`npm start\`).
${GLOBAL}`,
  ui: `usage: flowkit ui [--port <n>] [--host <addr>] [--token <token>] [--functions <module>]

Serves the web dashboard for a deployment until SIGINT/SIGTERM: tasks, their DAGs and nodes,
workers, dead letters, read from its MongoDB. Starts no coordinator (the deployment runs one): a
cancel or a resubmit goes to it over Kafka (the owners' topic coord.tasks.v1, config
"coordinator.topic_tasks"), a dead-letter retry
is written to the store for its outbox. Task pages follow a task by reading the store.
  -p, --port <n>         TCP port (default 7700; 0: any free one)
  --host <addr>          address to bind (default 127.0.0.1: no login on loopback)
  --token <token>        access token, at least 16 characters (also FLOWKIT_UI_TOKEN); required
                         off loopback: without one a token is generated and printed in the URL
  --functions <module>   coordinator functions the coordinator has besides the built-in ones (for
                         resubmitting tasks that use them)
${CONNECTION}
${GLOBAL}`,
  coordinator: `usage: flowkit coordinator [--functions <module>] [--group-id <id>] [--metrics-port <n>]

Runs a coordinator of the deployment until SIGINT/SIGTERM (one or several: they share the
tasks by partition of the owners' topic, see docs/scaling.md).
  --functions <module>   extra coordinator functions { name: CoordinatorFn }
  --group-id <id>        consumer-group prefix (FLOWKIT_GROUP_ID; config "coordinator.group_id")
  --metrics-port <n>     serve Prometheus metrics on GET /metrics at this port (0: a free one;
                         config "coordinator.metrics_port"; default: none)
Every coordinator serves control requests for the tasks it owns (topic coord.tasks.v1, keyed by
task id): \`flowkit cancel\`, and
\`flowkit submit\`'s request to adopt the task it queued (else adopted at the next sweep,
sweep_interval_sec, default 10 s).
${CONNECTION}
${GLOBAL}`,
  worker: `usage: flowkit worker --handlers <module> [--roles a,b] [--concurrency <n>] [--worker-id <id>] [--metrics-port <n>]

Runs a worker until SIGINT/SIGTERM (running nodes are handed back to the coordinator).
  --handlers <module>    module that default-exports (or exports \`handlers\`) { role: RoleHandler }
  -r, --roles <list>     only these roles of the module (default: all)
  --concurrency <n>      slots (config "worker.concurrency", default 1)
  --worker-id <id>       stable worker id (FLOWKIT_WORKER_ID; default: host + random)
  --metrics-port <n>     serve Prometheus metrics on GET /metrics at this port (0: a free one;
                         config "worker.metrics_port"; default: none)
${CONNECTION}
${GLOBAL}`,
  validate: `usage: flowkit validate <graph.json> [--params <p.json>] [--functions <module>] [--config <file>]

Checks a graph as the coordinator does at submission: prints "ok" (exit 0) or every problem with its
path and code (exit 1). The "coordinator" section of --config sets the limits.
${GLOBAL}`,
  submit: `usage: flowkit submit <graph.json> [--params <p.json>] [--id <task-id>] [--watch] [--interval <ms>] [--functions <module>]

Validates the graph, then writes it to the store as a queued task and asks the running coordinator
to adopt it at once (else it does at its next sweep, sweep_interval_sec). Prints the task id.
  --params <file>        task params (a JSON object)
  --id <task-id>         choose the task id (must be new)
  -w, --watch            follow the task until it ends (exit 0 finished, 1 failed/cancelled)
  --interval <ms>        poll period of --watch (default 500)
  --functions <module>   coordinator functions the coordinator has besides the built-in ones
${CONNECTION}
${GLOBAL}`,
  status: `usage: flowkit status <task-id> [--watch] [--interval <ms>]

A task and its nodes: status, attempt epoch, batches, worker, stats, last error.
  -w, --watch            follow it live until it ends (exit 0 finished, 1 failed/cancelled)
  --interval <ms>        poll period of --watch (default 500)
${CONNECTION}
${GLOBAL}`,
  ls: `usage: flowkit ls [--status <s[,s]>] [--limit <n>] [--all]

Tasks, oldest first. Default: the active ones (queued, running, cancelling).
  -s, --status <list>    queued, running, cancelling, finished, failed, cancelled, active, all
  -a, --all              every status (= --status all)
  -n, --limit <n>        at most n tasks (default 100)
${CONNECTION}
${GLOBAL}`,
  cancel: `usage: flowkit cancel <task-id> [--reason <text>] [--timeout <s>] [--wait]

Asks the coordinator that owns the task to cancel it (a request on the owners' topic
coord.tasks.v1, keyed by task id), then waits until the task is cancelling (--wait: until it ended).
  --reason <text>        recorded as the cancel reason (default "cancelled from the CLI")
  --timeout <s>          give up (exit 1) when no coordinator acted within this time (default 15)
  --wait                 wait until the task ended (cancelled, or failed), not only cancelling
${CONNECTION}
${GLOBAL}`,
  workers: `usage: flowkit workers

Workers that announced themselves: id, status, roles, capacity, version, last seen.
${CONNECTION}
${GLOBAL}`,
  dlq: `usage: flowkit dlq ls [--limit <n>]
       flowkit dlq retry <id>
       flowkit dlq retry --all [--limit <n>]

Dead letters: outbox messages parked after their last send attempt failed. \`retry\` puts one back to
pending; the running coordinator sends it again. \`--all\`: every one (the oldest first, n at most),
except the task starts whose attempts ended (listed: resubmit their tasks).
${CONNECTION}
${GLOBAL}`,
  prune: `usage: flowkit prune --ended-before <age> [--limit <n>]

Deletes the tasks that ended (finished, failed, cancelled) before the age given, with everything
stored for them: journal, artifacts, batch metrics, stream and attempt claims, checkpoints, outbox
rows (their dead letters too). Active
tasks are never touched. A coordinator does the same by itself with \`taskRetentionSec\`.
  --ended-before <age>   7d, 12h, 30m, 90s or a number of seconds (required)
  -n, --limit <n>        delete at most n tasks (oldest first)
${CONNECTION}
${GLOBAL}`,
}
COMMAND_HELP['demo'] = COMMAND_HELP['dev'] as string
