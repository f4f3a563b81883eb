/**
 * Produces records with raw bytes (keys, values, headers), bypassing the Bus's string contract:
 * for interoperability tests and tools that must put a record on a topic exactly as another
 * client (or a corrupt producer) would, e.g. a value that is not UTF-8. Not part of the Bus port.
 * The partition is the Java client's for a key, or explicit.
 */
import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls'
import { Producer, compatibilityPartitioner } from '@platformatic/kafka'
import type { MessageToProduce } from '@platformatic/kafka'
import type { KafkaSaslOptions } from './bus.ts'

export interface RawRecord {
  topic: string
  key?: Uint8Array | null
  value: Uint8Array | null
  headers?: Array<[string, Uint8Array]>
  partition?: number
}

export interface RawProduceOptions {
  brokers: string[]
  clientId?: string
  sasl?: KafkaSaslOptions
  tls?: boolean | TlsConnectionOptions
}

/** Sends the records in one request (acks=all) and closes the producer. */
export async function produceRawRecords(options: RawProduceOptions, records: RawRecord[]): Promise<void> {
  const producer = new Producer({
    clientId: options.clientId ?? 'flowkit-raw',
    bootstrapBrokers: options.brokers,
    ...(options.sasl ? { sasl: { ...options.sasl } } : {}),
    ...(options.tls ? { tls: options.tls === true ? {} : options.tls } : {}),
    idempotent: true,
    retries: 3,
    partitioner: compatibilityPartitioner,
  })
  producer.on('error', () => {})
  try {
    const messages: MessageToProduce[] = records.map((r) => {
      const m: MessageToProduce = { topic: r.topic, value: r.value === null ? undefined : Buffer.from(r.value) }
      if (r.key) m.key = Buffer.from(r.key)
      if (r.headers) m.headers = new Map(r.headers.map(([k, v]) => [Buffer.from(k, 'utf8'), Buffer.from(v)]))
      if (r.partition !== undefined) m.partition = r.partition
      return m
    })
    await producer.send({ messages })
  } finally {
    await producer.close().catch(() => {})
  }
}
