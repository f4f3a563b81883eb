/** Builders of valid store documents for tests. */
import { randomUUID } from 'node:crypto'
import type { GraphSpec, NodeSpec } from '../../src/graph/types.ts'
import type { NodeState, TaskDoc } from '../../src/ports/store.ts'

/** A NodeState as a freshly submitted node has it, every field filled. */
export function makeNodeState(nodeId: string, type: string, overrides: Partial<NodeState> = {}): NodeState {
  return {
    node_id: nodeId,
    type,
    status: 'queued',
    attempt_epoch: 0,
    lease: {},
    stats: {},
    last_error: null,
    failures: 0,
    next_retry_at_ms: null,
    dispatched_at_ms: null,
    accepted_at_ms: null,
    last_event_at_ms: null,
    finished_at_ms: null,
    has_output: false,
    end_reason: null,
    ...overrides,
  }
}

/** A normalised NodeSpec with defaults (fan_in all, no retry policy, no routing). */
export function makeNodeSpec(nodeId: string, type: string, overrides: Partial<NodeSpec> = {}): NodeSpec {
  return {
    node_id: nodeId,
    type,
    depends_on: [],
    fan_in: { kind: 'all' },
    fan_in_raw: 'all',
    io: {},
    retry_policy: null,
    routing: null,
    extra: {},
    ...overrides,
  }
}

/** A minimal two-node graph: `extract` (extractor) → `transform` (processor). */
export function makeGraph(): GraphSpec {
  return {
    schema_version: '1.0',
    nodes: [
      makeNodeSpec('extract', 'extractor'),
      makeNodeSpec('transform', 'processor', { depends_on: ['extract'] }),
    ],
    edges: [['extract', 'transform']],
    edges_ex: [],
  }
}

/**
 * A valid queued TaskDoc (random id) whose nodes match `makeGraph()`: `extract` and `transform`,
 * both queued at epoch 0. `overrides` replace top-level fields wholesale.
 */
export function makeTaskDoc(overrides: Partial<TaskDoc> = {}): TaskDoc {
  const now = overrides.created_at_ms ?? 1_700_000_000_000
  return {
    id: `task-${randomUUID()}`,
    status: 'queued',
    params: {},
    graph: makeGraph(),
    nodes: {
      extract: makeNodeState('extract', 'extractor'),
      transform: makeNodeState('transform', 'processor'),
    },
    coordinator: { vars: {}, cancelled: false, cancel_reason: null },
    result: null,
    error: null,
    created_at_ms: now,
    updated_at_ms: now,
    finished_at_ms: null,
    ...overrides,
  }
}
