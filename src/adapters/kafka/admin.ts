/** Operator helpers for a Kafka cluster (kept here: only this folder imports the driver). */
import { Admin } from '@platformatic/kafka'

/**
 * Deletes the topics and consumer groups whose name starts with `prefix` (test and bench runs use
 * one prefix each; a broker keeps a file open per partition, so runs that leave theirs behind
 * run it out of file descriptors). Returns how many topics were deleted. An empty prefix is
 * refused: it would name every topic of the cluster.
 */
export async function dropKafkaPrefix(brokers: string[], prefix: string, clientId = 'flowkit-admin'): Promise<number> {
  if (prefix.trim() === '') throw new Error('dropKafkaPrefix: the prefix must not be empty')
  const admin = new Admin({ clientId, bootstrapBrokers: brokers, connectTimeout: 2000, timeout: 10_000, retries: 1 })
  try {
    const topics = (await admin.listTopics()).filter((t) => t.startsWith(prefix))
    if (topics.length > 0) await admin.deleteTopics({ topics })
    const groups = [...(await admin.listGroups()).keys()].filter((g) => g.startsWith(prefix))
    if (groups.length > 0) await admin.deleteGroups({ groups }).catch(() => undefined)
    return topics.length
  } finally {
    await admin.close().catch(() => undefined)
  }
}
