import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'

const root = resolve(import.meta.dirname, '..', '..')
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const readme = readFileSync(join(root, 'README.md'), 'utf8')

test('package: an Apache-2.0 LICENSE file matches package.json "license"', () => {
  assert.equal(pkg.license, 'Apache-2.0')
  const license = readFileSync(join(root, 'LICENSE'), 'utf8')
  assert.match(license, /^\s*Apache License\s+Version 2\.0, January 2004\s+http:\/\/www\.apache\.org\/licenses\//)
  assert.match(license, /TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION/)
  assert.match(license, /END OF TERMS AND CONDITIONS/)
})

test('package: repository, homepage, bugs and keywords point at the project', () => {
  assert.deepEqual(pkg.repository, { type: 'git', url: 'git+https://github.com/flowkit-ts/flowkit.git' })
  assert.equal(pkg.homepage, 'https://github.com/flowkit-ts/flowkit#readme')
  assert.deepEqual(pkg.bugs, { url: 'https://github.com/flowkit-ts/flowkit/issues' })
  assert.ok(Array.isArray(pkg.keywords) && pkg.keywords.includes('dag') && pkg.keywords.includes('kafka'))
  assert.equal(pkg.type, 'module')
})

test('package: engines names Node 22 and 24 (what runs), and this Node satisfies it', () => {
  assert.equal(pkg.engines.node, '^22.22.0 || ^24.6.0')
  const [major, minor] = process.versions.node.split('.').map(Number)
  const floor: Record<number, number> = { 22: 22, 24: 6 }
  assert.ok(major !== undefined && minor !== undefined && floor[major] !== undefined && minor >= (floor[major] ?? 0), `Node ${process.versions.node} is in engines`)
  assert.match(pkg.devDependencies.node, /^\^24\./, 'the pinned dev Node is a supported one')
})

test('package: the drivers are optional peer dependencies, kept as dev dependencies for the tests', () => {
  for (const driver of ['@platformatic/kafka', 'mongodb']) {
    assert.equal(pkg.dependencies[driver], undefined, `${driver} is not a dependency`)
    assert.equal(typeof pkg.peerDependencies[driver], 'string', `${driver} is a peer dependency`)
    assert.deepEqual(pkg.peerDependenciesMeta[driver], { optional: true }, `${driver} is optional`)
    assert.equal(pkg.devDependencies[driver], pkg.peerDependencies[driver], `${driver} is installed for the tests, same range`)
  }
})

test('README: says ESM-only, the Node versions, and which driver to install for what', () => {
  const requirements = /^## Requirements\n([\s\S]*?)^## /m.exec(readme)?.[1] ?? ''
  assert.match(requirements, /ESM-only/)
  assert.match(requirements, /Node\.js 22 \(22\.22 or later\) or 24 \(24\.6 or later\)/)
  assert.match(requirements, /`@platformatic\/kafka` only if you use `KafkaBus`, `mongodb` only if you use `MongoStore`/)
  assert.match(readme, /^npm pkg set type=module$/m, 'the Quickstart makes its project an ES module')
})
