/**
 * Task submission: a graph validated and turned into a new task document, and the inserts of one
 * tick sent to the store together (`createTasks`: one round trip for many createTask calls).
 */
import { randomUUID } from 'node:crypto'
import { ErrorCode, FlowkitError, GraphValidationError, errorMessage } from '../errors.ts'
import { parseGraph } from '../graph/parse.ts'
import type { NodeSpec } from '../graph/types.ts'
import type { NodeState, TaskDoc } from '../model/state.ts'
import type { Store } from '../ports/store.ts'
import { INPUT_ADAPTERS } from '../protocol/input-adapters.ts'
import { deepFreeze } from '../ports/store-rules.ts'

export interface CreateTaskInput {
  params?: Record<string, unknown>
  graph: unknown
  /** Optional caller-chosen id (must be unique); a UUID otherwise. */
  id?: string
}

const TASK_ID_PATTERN = /^[A-Za-z0-9_.:-]{1,200}$/

/** Validates a submission (graph as an object or JSON text, params, id) into a queued task. */
export function buildTask(input: CreateTaskInput, options: { coordinatorFns: ReadonlySet<string>; rejectUnknownInputAdapters: boolean }, now: number): TaskDoc {
  let raw = input.graph
  if (typeof raw === 'string') {
    try {
      raw = JSON.parse(raw)
    } catch (err) {
      throw new GraphValidationError(ErrorCode.GraphInvalid, `graph: not valid JSON (${errorMessage(err)})`, 'graph')
    }
  }
  const graph = parseGraph(raw, {
    coordinatorFns: new Set(options.coordinatorFns),
    ...(options.rejectUnknownInputAdapters ? { inputAdapters: INPUT_ADAPTERS } : {}),
  })
  if (input.params !== undefined && (input.params === null || typeof input.params !== 'object' || Array.isArray(input.params))) {
    throw new FlowkitError(ErrorCode.GraphInvalid, 'params must be an object')
  }
  if (input.id !== undefined && !TASK_ID_PATTERN.test(input.id)) {
    throw new FlowkitError(ErrorCode.GraphInvalid, `task id ${JSON.stringify(input.id)} must match ${TASK_ID_PATTERN}`)
  }
  return {
    id: input.id ?? randomUUID(),
    status: 'queued',
    params: input.params ?? {},
    // Immutable from here on (stores may keep it without copying).
    graph: deepFreeze(graph),
    nodes: Object.fromEntries(graph.nodes.map((n) => [n.node_id, newNodeState(n)])),
    coordinator: { vars: {}, cancelled: false, cancel_reason: null },
    result: null,
    error: null,
    created_at_ms: now,
    updated_at_ms: now,
    finished_at_ms: null,
  }
}

export function newNodeState(spec: NodeSpec): NodeState {
  return {
    node_id: spec.node_id,
    type: spec.type,
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
    cancel_deadline_ms: null,
    resends: 0,
  }
}

/** Inserts new tasks, those of one tick together. */
export class TaskInserter {
  readonly #store: Store
  #queue: { task: TaskDoc; resolve: () => void; reject: (err: unknown) => void }[] = []

  constructor(store: Store) {
    this.#store = store
  }

  insert(task: TaskDoc): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ task, resolve, reject })
      if (this.#queue.length === 1) setImmediate(() => void this.#flush())
    })
  }

  async #flush(): Promise<void> {
    const batch = this.#queue.splice(0, 500)
    if (this.#queue.length > 0) setImmediate(() => void this.#flush())
    try {
      const results = await this.#store.createTasks(batch.map((b) => b.task))
      batch.forEach((b, i) => {
        const err = results[i]
        if (err) b.reject(err)
        else b.resolve()
      })
    } catch (err) {
      for (const b of batch) b.reject(err)
    }
  }
}
