/**
 * Type tests of Coordinator / Worker settings (compiled by test/graph/builder.test.ts): a misspelt
 * or unknown key, or a value of the wrong type, in an object literal is a compile error; camelCase
 * and the seed's snake_case keys both compile. A batch's uid as processBatch receives it is a
 * string; the status constants are values.
 */
import { Coordinator, MemoryBus, MemoryStore, NodeStatus, type RoleHandler, TaskStatus, Worker } from 'flowkit'
const bus = new MemoryBus(); const store = new MemoryStore()
// @ts-expect-error misspelt
new Worker({ bus, store, handlers: {}, config: { concurency: 2 } })
// @ts-expect-error wrong type
new Worker({ bus, store, handlers: {}, config: { concurrency: '2' } })
// @ts-expect-error unknown key
new Coordinator({ bus, store, config: { retryMax: 5 } })
new Coordinator({ bus, store, config: { lease_ttl_sec: 45, acceptTimeoutSec: 3 } })
new Worker({ bus, store, handlers: {}, config: { hb_interval_sec: 5, concurrency: 2 } })

// A batch as processBatch receives it has its uid: it goes to writePartial / earlierPartial as is.
export const passesUid: RoleHandler = {
  async processBatch(batch, ctx) {
    await ctx.artifacts.writePartial(batch.batch_uid, { n: 1 })
    await ctx.earlierPartial(batch.batch_uid)
    return { metrics: { n: 1 } }
  },
}
// The status constants are values.
export const statuses: string[] = [NodeStatus.Finished, TaskStatus.Running]
