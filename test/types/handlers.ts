/**
 * RoleHandler's types take what the worker runs (compiled by tsc with test/types/tsconfig.json):
 * a synchronous init, a processBatch or finalize that returns its result without a promise.
 * (They were refused: `Type 'void' is not assignable to type 'Promise<void>'`.)
 */
import type { RoleHandler } from 'flowkit'

export const syncHooks: RoleHandler = {
  init() {},
  processBatch(batch) {
    return { metrics: { n: 1 }, meta: { uid: batch.batch_uid } }
  },
  finalize() {
    return { metrics: { done: 1 } }
  },
}

export const asyncHooks: RoleHandler = {
  async init() {},
  async processBatch() {
    return {}
  },
  async finalize() {},
}
