/** `--compare bullmq`'s BullMQ side in a fresh process (bench/paired.ts): `node bench/bullmq-proc.ts CHAINS CONCURRENCY`. */
import { bullmqChain } from './bullmq.ts'

const [chains, concurrency] = process.argv.slice(2).map(Number)
if (!Number.isInteger(chains) || !Number.isInteger(concurrency)) throw new Error('usage: bullmq-proc.ts CHAINS CONCURRENCY')
await bullmqChain({ chains: chains as number, concurrency: concurrency as number })
// ioredis may keep a socket alive after close: the result is out.
process.exit(0)
