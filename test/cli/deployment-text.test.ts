/**
 * What the CLI says about a deployment (src/cli/connect.ts): the database of the ready lines is the
 * one the store uses (the configured name, else the URL's path, else `flowkit`), the URL without
 * its credentials; a malformed broker address is a usage error (exit 2), not "cannot connect".
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { checkKafka, connectError, databaseName, deploymentText } from '../../src/cli/connect.ts'
import { CliError } from '../../src/cli/errors.ts'
import { resolveSettings } from '../../src/cli/settings.ts'

const settings = (url: string, dbName?: string) => {
  const s = resolveSettings({ values: {}, positionals: [] } as never)
  return { ...s, mongo: { ...s.mongo, url, ...(dbName === undefined ? {} : { dbName }) }, brokers: ['k:9092'] }
}

test('the ready lines name the database the store uses, and the URL without credentials', () => {
  assert.equal(databaseName(settings('mongodb://u:p@h:27017/orders?directConnection=true')), 'orders')
  assert.equal(databaseName(settings('mongodb://h:27017/?directConnection=true')), 'flowkit')
  assert.equal(databaseName(settings('mongodb://h:27017')), 'flowkit')
  assert.equal(databaseName(settings('mongodb://h:27017/orders', 'other')), 'other')
  const text = deploymentText(settings('mongodb://admin:S3cret@h:27017/orders'))
  assert.match(text, /^database orders at mongodb:\/\/\*\*\*@h:27017\/orders, brokers k:9092$/)
})

test('a malformed broker address is exit 2 with what is wrong, before any connection', async () => {
  for (const [b, re] of [['localhost', /must be host:port/], ['127.0.0.1:99999', /the port must be 1 to 65535/]] as const) {
    await assert.rejects(checkKafka({ ...settings('mongodb://h/x'), brokers: [b] }), (err: unknown) => err instanceof CliError && err.exitCode === 2 && re.test(err.message))
  }
})

test('a refused login is told apart from a server that does not answer (hint)', () => {
  const refused = connectError(new Error('Unsupported authentication mechanism "SCRAM-SHA-1"'), 'MongoDB', 'mongodb://***@h/x', 'is MongoDB running?')
  assert.equal(refused.exitCode, 3)
  assert.match(refused.hint ?? '', /refused the login: check the user, password and mechanism/)
  const down = connectError(new Error('connect ECONNREFUSED 127.0.0.1:1'), 'MongoDB', 'mongodb://h/x', 'is MongoDB running?')
  assert.equal(down.hint, 'is MongoDB running?')
})
