/**
 * JSON Schema (draft 2020-12) of the graph format, the source of schemas/graph.schema.json.
 * test/graph/schema.test.ts checks that the committed file is this object, written by
 * `graphSchemaText()`, and that the schema and `parseGraph` agree on a corpus of graphs;
 * regenerate with `FLOWKIT_WRITE_SCHEMA=1 npx node --conditions=flowkit-source --test test/graph/schema.test.ts`.
 *
 * What the schema cannot see is left to the parser: references between nodes (unknown ids,
 * cycles, duplicate ids), `fan_in: "count:N"` against the parent count, the registered coordinator
 * functions, guard nesting depth and the coordinator's submission limits. The schema is stricter
 * than the parser where the parser leaves things to run time or passes them through: fields
 * outside the format (the parser ignores unknown top-level fields and keeps other node and io
 * fields as is, refusing near misses of known names), input adapter names and args (checked by
 * the worker, `bad_input_adapter` / `bad_input_args`), built-in function args (`bad_fn_args`), and
 * `io.fn` / `io.fn_args` on a worker node (unused). docs/graph-format.md lists the differences.
 */
import { SCHEMA_VERSION } from './parse-context.ts'
import { GRAPH_SCHEMA_DEFS } from './schema-defs.ts'

export const JSON_SCHEMA_DIALECT = 'https://json-schema.org/draft/2020-12/schema'

type Schema = Record<string, unknown>

/** The graph JSON Schema (a fresh object each call). */
export function graphJsonSchema(): Schema {
  const schema: Schema = {
    $schema: JSON_SCHEMA_DIALECT,
    title: 'flowkit task graph',
    description:
      'A flowkit task graph (coordinator.createTask({ graph })), the format shared with the Python flowkit-async. Nodes run after their parents (depends_on, edges, edges_ex) once their fan_in is met; workers of the role named by a node\'s type run it batch by batch, or the coordinator runs a coordinator_fn node. See docs/graph-format.md.',
    type: 'object',
    required: ['nodes'],
    additionalProperties: false,
    properties: {
      $schema: { description: 'Where editors find this schema, e.g. "./node_modules/flowkit/schemas/graph.schema.json"; ignored by flowkit.', type: 'string' },
      schema_version: { description: `Format version; only "${SCHEMA_VERSION}" is supported. Optional.`, enum: [SCHEMA_VERSION, null] },
      nodes: { description: 'The nodes of the graph, at least one; node ids must be unique.', type: 'array', minItems: 1, items: { $ref: '#/$defs/node' } },
      edges: {
        description: 'Plain dependencies [from, to]: "to" runs after "from" (the same as "to" listing "from" in depends_on). Default [].',
        type: ['array', 'null'],
        items: { $ref: '#/$defs/edge' },
      },
      edges_ex: {
        description: 'Extended edges: a dependency with a mode and a trigger; mode "async" with trigger "on_batch" starts "to" on the first batch of "from". Default [].',
        type: ['array', 'null'],
        items: { $ref: '#/$defs/edgeEx' },
      },
    },
    $defs: GRAPH_SCHEMA_DEFS,
  }
  return JSON.parse(JSON.stringify(schema)) as Schema
}

/** The schema file's text: 2-space JSON and a final newline (deterministic). */
export function graphSchemaText(): string {
  return `${JSON.stringify(graphJsonSchema(), null, 2)}\n`
}
