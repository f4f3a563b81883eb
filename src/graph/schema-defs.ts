/**
 * The `$defs` of the graph JSON Schema (schema.ts): one definition per object of the format,
 * every field with a description. Patterns and enums come from the parser's own constants.
 */
import { GUARD_MAX_DEPTH, GUARD_OPS } from './guard.ts'
import { DEFAULT_EDGE_MODE, DEFAULT_EDGE_TRIGGER, DEFAULT_RETRY_BACKOFF_SEC, DEFAULT_RETRY_MAX, NODE_TYPE_PATTERN } from './parse-context.ts'
import { EDGE_MODES, EDGE_TRIGGERS } from './parse-edges.ts'
import { COORDINATOR_FN_TYPE, NODE_ID_PATTERN } from './types.ts'
import { INPUT_ADAPTERS, PULL_FROM_ARTIFACTS, PULL_RECHUNK } from '../protocol/input-adapters.ts'

type Schema = Record<string, unknown>

const def = (name: string): Schema => ({ $ref: `#/$defs/${name}` })
const with_ = (description: string, schema: Schema): Schema => ({ description, ...schema })
const ids = (description: string, nullable = true): Schema => ({ description, type: nullable ? ['array', 'null'] : 'array', items: def('nodeId') })
const nonEmptyIds = (description: string): Schema => ({ description, type: 'array', minItems: 1, uniqueItems: true, items: def('nodeId') })
const closed = (description: string, properties: Record<string, Schema>, more: Schema = {}): Schema => ({
  description,
  type: 'object',
  additionalProperties: false,
  properties,
  ...more,
})
/** A JSON Schema conditional `{ if, then, else }` ("then" is the schema keyword, not a thenable). */
function cond(ifSchema: Schema, thenSchema: Schema, elseSchema?: Schema): Schema {
  const out: Schema = { if: ifSchema }
  out['then'] = thenSchema
  if (elseSchema !== undefined) out['else'] = elseSchema
  return out
}
const oneOfRequired = (...sets: string[][]): Schema => ({ anyOf: sets.map((required) => ({ required })) })
const blockSecrets = with_('Refuse values that look like secrets (vars_secret_detected). Default false.', { type: ['boolean', 'null'] })
const blockSensitive = with_("The seed's name of block_secrets.", { type: ['boolean', 'null'] })

/** Segments of a task-variable key path (vars.*): not empty, no ".", no NUL, not starting with "$". */
const VAR_KEY_PATTERN = '^(?!\\$)[^.\\u0000]+(\\.(?!\\$)[^.\\u0000]+)*$'
const GUARD_SEGMENT = '[A-Za-z0-9_-]{1,128}'

/** Built-in coordinator functions and the name of their args definition. */
export const BUILTIN_FN_ARGS: Record<string, string | null> = {
  noop: null,
  'merge.generic': 'mergeGenericArgs',
  'metrics.aggregate': 'metricsAggregateArgs',
  'vars.set': 'varsSetArgs',
  'vars.merge': 'varsMergeArgs',
  'vars.incr': 'varsIncrArgs',
  'vars.unset': 'varsUnsetArgs',
}

const node: Schema = closed(
  'A node: run by the workers of the role named by "type" (batch by batch), or by the coordinator when type is "coordinator_fn".',
  {
    node_id: with_('Unique id of the node: 1 to 128 ASCII letters, digits, "_" or "-".', def('nodeId')),
    type: with_(`The worker role that runs the node (its commands go to the topic cmd.{type}.v1), or "${COORDINATOR_FN_TYPE}" for a function the coordinator runs (io.fn).`, def('nodeType')),
    depends_on: ids('Nodes this one runs after: its parents, together with the sources of edges and edges_ex into it. Default [].'),
    fan_in: {
      description: 'How many parents must be done before the node starts: "all" (default), "any", or "count:N" (N >= 1, at most the number of parents). A parent that fails, is skipped or cancelled can no longer count: when too few are left, the node is skipped.',
      type: ['string', 'null'],
      pattern: '^(all|any|count:(?=[0-9]{1,9}$)0*[1-9][0-9]*)$',
      default: 'all',
      examples: ['all', 'any', 'count:2'],
    },
    io: with_('When the node starts, what input its worker reads, and (coordinator_fn) which function runs.', def('io')),
    retry_policy: with_(`Attempts and backoff for transient failures. Without it a node gets ${DEFAULT_RETRY_MAX} attempts and the coordinator's defaultBackoffSec (1 s); a permanent failure is never retried.`, def('retryPolicy')),
    timeout_sec: {
      description: 'Longest a running attempt may take from its acceptance by a worker (a coordinator function: from its start), in seconds, > 0 and at most 30 days. Past it the attempt is cancelled on its worker and fails with reason "timeout", retried per retry_policy.',
      type: ['number', 'null'],
      exclusiveMinimum: 0,
      maximum: 30 * 24 * 3600,
    },
    routing: with_('Conditional successors: nodes that run only when this one succeeds (on_success) or fails (on_failure), and are skipped otherwise.', def('routing')),
    when: with_('Guard on the task variables (coordinator.vars), evaluated once the node is otherwise ready: when it does not hold, the node is skipped.', def('guard')),
    status: { description: 'Priming field of the Python tests: a submitted graph starts fresh, so only "queued", blank or null.', type: ['string', 'null'], pattern: '^(queued|\\s*)$' },
    attempt_epoch: { description: 'Priming field: only 0 or null.', enum: [0, null] },
    stats: { description: 'Priming field: only {} or null.', type: ['object', 'null'], maxProperties: 0 },
    lease: { description: 'Priming field: only {} or null.', type: ['object', 'null'], maxProperties: 0 },
  },
  {
    required: ['node_id', 'type'],
    ...cond(
      { properties: { type: { const: COORDINATOR_FN_TYPE } }, required: ['type'] },
      { required: ['io'], properties: { io: { type: 'object', required: ['fn'] } } },
      { properties: { io: { properties: { fn: false, fn_args: false } } } },
    ),
  },
)

const io: Schema = {
  ...closed('A node\'s io. input_ref, input_inline and batching go to the worker in the node\'s TASK_START; fn and fn_args are for coordinator_fn nodes.', {
    start_when: {
      description: '"ready" (default): start once the fan_in is met. "first_batch": start as soon as the parents have written a first batch (partial artifact), with fan_in counting a parent that has output as done.',
      enum: ['ready', 'first_batch', null],
      default: 'ready',
    },
    input_inline: with_('Inline input: an input adapter and its args, and any data for the handler.', def('inputInline')),
    input_ref: { description: 'A reference to the input data (a path, a URL, a query…), handed to the handler (loadInput).', type: ['object', 'null'] },
    batching: { description: 'Batching hints handed to the handler.', type: ['object', 'null'] },
    fn: {
      description: `coordinator_fn nodes: the function to run, a built-in (${Object.keys(BUILTIN_FN_ARGS).join(', ')}) or one registered with the coordinator's "functions" option.`,
      type: 'string',
      examples: Object.keys(BUILTIN_FN_ARGS),
    },
    fn_args: { description: 'coordinator_fn nodes: the function\'s arguments (from_nodes / from_node name nodes whose output it reads).', type: ['object', 'null'] },
  }),
  type: ['object', 'null'],
  allOf: Object.entries(BUILTIN_FN_ARGS).flatMap(([fn, args]) =>
    args === null ? [] : [cond({ properties: { fn: { const: fn } }, required: ['fn'] }, { required: ['fn_args'], properties: { fn_args: def(args) } })],
  ),
}

const inputInline: Schema = {
  description: 'Inline input sent to the worker. With input_adapter the worker pulls the input from upstream artifacts; keys other than input_adapter and input_args are data for the handler (RunContext.inputInline).',
  type: ['object', 'null'],
  properties: {
    input_adapter: {
      description: `"${PULL_FROM_ARTIFACTS}": the upstream nodes' batches as they appear; "${PULL_RECHUNK}": the same re-sliced into batches of "size" items. Null or absent: the handler makes its own batches (iterBatches).`,
      enum: [...INPUT_ADAPTERS, null],
    },
    input_args: { description: 'Arguments of the input adapter (see pullArgs and rechunkArgs).', type: ['object', 'null'] },
  },
  allOf: [
    cond({ properties: { input_adapter: { const: PULL_FROM_ARTIFACTS } }, required: ['input_adapter'] }, { required: ['input_args'], properties: { input_args: def('pullArgs') } }),
    cond({ properties: { input_adapter: { const: PULL_RECHUNK } }, required: ['input_adapter'] }, { required: ['input_args'], properties: { input_args: def('rechunkArgs') } }),
  ],
}

const pullProps: Record<string, Schema> = {
  from_nodes: nonEmptyIds('Upstream nodes to read, in this order.'),
  from_node: with_('One upstream node (alias of from_nodes).', def('nodeId')),
  poll_ms: { description: 'How often to look for new upstream batches, in ms (default: the worker config pullPollMsDefault).', type: 'number', minimum: 0 },
}

const guardCompare: Schema = closed(
  'Compares one task variable with a value. A missing variable only satisfies exists:false, ne and nin.',
  {
    var: { description: 'Dotted path of the variable in coordinator.vars, e.g. "routing.sla".', type: 'string', maxLength: 512, pattern: `^${GUARD_SEGMENT}(\\.${GUARD_SEGMENT})*$` },
    op: { description: 'eq (default), ne, in, nin (value is a list), exists (value true/false, default true), gt, gte, lt, lte (a number or a string, compared with a variable of the same type).', enum: [...GUARD_OPS, null], default: 'eq' },
    value: { description: 'The value compared with.' },
  },
  {
    required: ['var'],
    allOf: [
      cond({ properties: { op: { enum: ['in', 'nin'] } }, required: ['op'] }, { required: ['value'], properties: { value: { type: 'array' } } }),
      cond({ properties: { op: { const: 'exists' } }, required: ['op'] }, { properties: { value: { type: 'boolean' } } }),
      cond({ properties: { op: { enum: ['gt', 'gte', 'lt', 'lte'] } }, required: ['op'] }, { required: ['value'], properties: { value: { type: ['number', 'string'] } } }),
    ],
  },
)

/** Every definition of the schema. */
export const GRAPH_SCHEMA_DEFS: Record<string, Schema> = {
  nodeId: { description: 'A node id: 1 to 128 ASCII letters, digits, "_" or "-", not "__proto__".', type: 'string', pattern: NODE_ID_PATTERN.source },
  nodeType: { description: 'A role name (it goes into topic names): 1 to 128 ASCII letters, digits, "_", "." or "-".', type: 'string', pattern: NODE_TYPE_PATTERN.source, examples: [COORDINATOR_FN_TYPE] },
  node,
  io,
  inputInline,
  pullArgs: closed(`Arguments of ${PULL_FROM_ARTIFACTS}: from_nodes (or from_node) and poll_ms.`, pullProps, oneOfRequired(['from_nodes'], ['from_node'])),
  rechunkArgs: closed(
    `Arguments of ${PULL_RECHUNK}: those of ${PULL_FROM_ARTIFACTS}, plus size and meta_list_key.`,
    {
      ...pullProps,
      size: { description: 'Items per batch, an integer >= 1 (the last batch may be shorter).', type: 'integer', minimum: 1 },
      meta_list_key: { description: 'Slice the list found under this key of each upstream batch\'s meta; without it each upstream meta is one item.', type: ['string', 'null'], minLength: 1 },
    },
    { required: ['size'], ...oneOfRequired(['from_nodes'], ['from_node']) },
  ),
  retryPolicy: {
    ...closed('Retry policy. A transient failure (any error but a permanent one) defers the node for backoff_sec and starts it again at a new attempt epoch, until max attempts; then, like a permanent failure, the node fails.', {
      max: { description: `Attempts in all, the first one included: an integer >= 1. Default ${DEFAULT_RETRY_MAX}; at most the coordinator config maxRetryAttempts (100 by default).`, type: ['integer', 'null'], minimum: 1, default: DEFAULT_RETRY_MAX },
      backoff_sec: { description: `Seconds to wait after a transient failure, >= 0, fractions allowed. Default ${DEFAULT_RETRY_BACKOFF_SEC}; at most maxRetryBackoffSec (86400 by default).`, type: ['number', 'null'], minimum: 0, default: DEFAULT_RETRY_BACKOFF_SEC },
      backoff_factor: { description: 'Growth of the delay per failed attempt: the delay before retry n is backoff_sec * backoff_factor^(n-1). From 1 (a fixed delay, the default, as the Python seed) to 100.', type: ['number', 'null'], minimum: 1, maximum: 100, default: 1 },
      backoff_max_sec: { description: 'Cap on the delay, in seconds (0 to maxRetryBackoffSec).', type: ['number', 'null'], minimum: 0 },
      jitter: { description: 'Random spread of each delay as a fraction from 0 to 1 (0.2: ±20 %), so retries of many nodes do not come in waves. Default 0.', type: ['number', 'null'], minimum: 0, maximum: 1, default: 0 },
      permanent_on: { description: 'Reason codes that make a failure permanent (not retried), e.g. "bad_input".', type: ['array', 'null'], items: { type: 'string' } },
    }),
    type: ['object', 'null'],
  },
  routing: {
    ...closed('Conditional successors. A routed node waits for its source and runs only on that outcome, else it is skipped; a node routed from several sources needs every one to match.', {
      on_success: ids('Nodes that run only if this node finishes.'),
      on_failure: ids('Nodes that run only if this node fails. A failed node with on_failure targets does not cancel the task, which can still finish.'),
    }),
    type: ['object', 'null'],
  },
  guard: {
    description: `A declarative guard on task variables: a comparison, or all / any / not of guards (nested at most ${GUARD_MAX_DEPTH} deep).`,
    anyOf: [
      def('guardCompare'),
      closed('Holds when every guard holds.', { all: { description: 'Guards, at least one.', type: 'array', minItems: 1, items: def('guard') } }, { required: ['all'] }),
      closed('Holds when one guard holds.', { any: { description: 'Guards, at least one.', type: 'array', minItems: 1, items: def('guard') } }, { required: ['any'] }),
      closed('Holds when the guard does not.', { not: with_('The guard negated.', def('guard')) }, { required: ['not'] }),
    ],
  },
  guardCompare,
  edge: {
    description: 'A plain edge [from, to]: "to" runs after "from".',
    type: 'array',
    prefixItems: [with_('from: the upstream node id.', def('nodeId')), with_('to: the downstream node id.', def('nodeId'))],
    items: false,
    minItems: 2,
  },
  edgeEx: closed(
    'An extended edge: "to" depends on "from"; with mode "async" and trigger "on_batch" it starts on the first batch of "from".',
    {
      from: with_('The upstream node id.', def('nodeId')),
      to: with_('The downstream node id.', def('nodeId')),
      mode: { description: `"${EDGE_MODES.join('" or "')}"; default "${DEFAULT_EDGE_MODE}". Only async on_batch edges stream.`, enum: [...EDGE_MODES, null], default: DEFAULT_EDGE_MODE },
      trigger: { description: `"on_done" (default "${DEFAULT_EDGE_TRIGGER}"): after "from" finishes, like a plain edge; "on_batch": as soon as "from" has written a batch.`, enum: [...EDGE_TRIGGERS, null], default: DEFAULT_EDGE_TRIGGER },
    },
    { required: ['from', 'to'] },
  ),
  mergeGenericArgs: closed(
    'merge.generic: merges the metas of the upstream artifacts (their partials when they streamed, else their complete artifact) under target.key.',
    {
      from_nodes: nonEmptyIds('Nodes whose output is merged.'),
      from_node: with_('One node whose output is merged (alias of from_nodes).', def('nodeId')),
      target: closed('Where the merged items go.', { key: { description: 'Key of the merged list in this node\'s artifact meta; default "merged".', type: 'string' } }, { type: ['object', 'null'] }),
    },
    oneOfRequired(['from_nodes'], ['from_node']),
  ),
  metricsAggregateArgs: closed(
    'metrics.aggregate: { node_id, mode } sums or averages every numeric metric of one node\'s batches onto its stats; { from_nodes, metric, mode, target_node, target_key } one stat of several nodes.',
    {
      node_id: with_('The node whose batch metrics are aggregated (the seed\'s form).', def('nodeId')),
      from_nodes: nonEmptyIds('Nodes whose stat "metric" is aggregated.'),
      from_node: with_('One node (alias of from_nodes).', def('nodeId')),
      metric: { description: 'The stat aggregated over from_nodes; default "count".', type: 'string' },
      mode: { description: '"sum" (default) or "mean".', enum: ['sum', 'mean', null], default: 'sum' },
      target_node: with_('The node whose stats get the result; default this node.', def('nodeId')),
      target_key: { description: 'The stat name of the result; default "<metric>_<mode>".', type: 'string' },
    },
    oneOfRequired(['node_id'], ['from_nodes'], ['from_node']),
  ),
  varsSetArgs: closed(
    'vars.set: sets task variables, { kv: { "a.b": 1 } } or { key, value } (the seed\'s keyword form, the variables as the arguments, runs too).',
    {
      kv: { description: 'Key paths to values; an object under a key without a dot is set leaf by leaf.', type: 'object' },
      key: with_('One key path.', def('varKey')),
      value: { description: 'The value set at key.' },
      block_secrets: blockSecrets,
      block_sensitive: blockSensitive,
    },
    { anyOf: [{ required: ['kv'], properties: { kv: { description: 'At least one key path.', minProperties: 1 } } }, { required: ['key', 'value'] }] },
  ),
  varsMergeArgs: closed(
    'vars.merge: deep-merges data into the task variables.',
    { data: { description: 'Variables to merge; non-object leaves overwrite.', type: 'object' }, kv: { description: 'The seed\'s name of data.', type: 'object' }, block_secrets: blockSecrets, block_sensitive: blockSensitive },
    { anyOf: [{ required: ['data'] }, { required: ['kv'] }] },
  ),
  varsIncrArgs: closed('vars.incr: adds "by" to the number at key (created at 0).', { key: with_('Key path of the number.', def('varKey')), by: { description: 'Added; default 1, negatives and fractions allowed.', type: 'number' } }, { required: ['key'] }),
  varsUnsetArgs: closed(
    'vars.unset: removes key paths (and the parents left empty).',
    { keys: { description: 'Key paths to remove.', type: 'array', items: def('varKey') }, key: with_('One key path to remove.', def('varKey')) },
    { anyOf: [{ required: ['keys'], properties: { keys: { description: 'At least one key path.', minItems: 1 } } }, { required: ['key'] }] },
  ),
  varKey: { description: 'A task-variable key path: dot-separated segments, none empty or starting with "$".', type: 'string', maxLength: 512, pattern: VAR_KEY_PATTERN },
}
