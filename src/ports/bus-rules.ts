/**
 * What every Bus accepts, checked the same way by every adapter so the memory bus fails exactly
 * like Kafka: Kafka's legal topic names, string values, string-or-null keys, string headers.
 */
import { ErrorCode, FlowkitError } from '../errors.ts'
import { type BusRecord, isTextLater } from './bus.ts'

const TOPIC_NAME = /^[a-zA-Z0-9._-]{1,249}$/

export function checkTopicName(name: unknown): void {
  if (typeof name !== 'string' || !TOPIC_NAME.test(name) || name === '.' || name === '..') {
    throw new FlowkitError(ErrorCode.Config, `invalid topic name ${JSON.stringify(name)} (allowed: [a-zA-Z0-9._-], 1-249 chars)`)
  }
}

export function checkRecord(record: BusRecord): void {
  if (record === null || typeof record !== 'object') {
    throw new FlowkitError(ErrorCode.BadMessage, 'produce: record must be an object')
  }
  // A record whose text is made on first read (encodedLater) has a string value by construction.
  if (!isTextLater(record) && typeof record.value !== 'string') {
    throw new FlowkitError(ErrorCode.BadMessage, `produce: value must be a string (topic ${record.topic})`)
  }
  if (record.key !== null && typeof record.key !== 'string') {
    throw new FlowkitError(ErrorCode.BadMessage, `produce: key must be a string or null (topic ${record.topic})`)
  }
  if (record.headers !== undefined) {
    if (record.headers === null || typeof record.headers !== 'object') {
      throw new FlowkitError(ErrorCode.BadMessage, 'produce: headers must be an object of strings')
    }
    for (const name in record.headers) {
      if (Object.hasOwn(record.headers, name) && typeof record.headers[name] !== 'string') {
        throw new FlowkitError(ErrorCode.BadMessage, `produce: header ${name} must be a string`)
      }
    }
  }
  if (!validTopics.has(record.topic)) {
    checkTopicName(record.topic)
    if (validTopics.size >= 10_000) validTopics.clear()
    validTopics.add(record.topic)
  }
}

/** Topic names already found valid (a process sends to a few topics, many times). */
const validTopics = new Set<string>()
