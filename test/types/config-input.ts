/**
 * Type tests of Coordinator / Worker settings (compiled by test/graph/builder.test.ts): a misspelt
 * or unknown key, or a value of the wrong type, in an object literal is a compile error; camelCase
 * and the seed's snake_case keys both compile.
 */
import { Coordinator, MemoryBus, MemoryStore, Worker } from 'flowkit'
const bus = new MemoryBus(); const store = new MemoryStore()
// @ts-expect-error misspelt
new Worker({ bus, store, handlers: {}, config: { concurency: 2 } })
// @ts-expect-error wrong type
new Worker({ bus, store, handlers: {}, config: { concurrency: '2' } })
// @ts-expect-error unknown key
new Coordinator({ bus, store, config: { retryMax: 5 } })
new Coordinator({ bus, store, config: { lease_ttl_sec: 45, acceptTimeoutSec: 3 } })
new Worker({ bus, store, handlers: {}, config: { hb_interval_sec: 5, concurrency: 2 } })
