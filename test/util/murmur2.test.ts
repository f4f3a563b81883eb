import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createPartitioner, murmur2, partitionForKey, toPositive } from '../../src/util/murmur2.ts'

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s)

describe('murmur2 (Java-compatible)', () => {
  it('matches Kafka UtilsTest.testMurmur2 vectors', () => {
    // apache/kafka clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java
    const cases: Array<[string, number]> = [
      ['21', -973932308],
      ['foobar', -790332482],
      ['a-little-bit-long-string', -985981536],
      ['a-little-bit-longer-string', -1486304829],
      ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
      ['abc', 479470107],
    ]
    for (const [key, hash] of cases) assert.equal(murmur2(utf8(key)), hash, key)
  })

  it('matches hashes generated with the Java client (every tail length 0-3)', () => {
    // Akka's Murmur2Spec ("expected correct hash values from the kafka murmur2 impl") and KafkaJS's
    // defaultJava/murmur2.spec.js ("Generated with .../defaultJava/Test.java"); librdkafka's
    // rdmurmur2.c unit test has "kafka" → 0xd067cf64.
    const cases: Array<[string, number]> = [
      ['0', 971027396],
      ['1', -1993445489],
      ['12', 126087238],
      ['123', -267702483],
      ['1234', -1614185708],
      ['12345', -1188365604],
      ['128', -326012175],
      ['2187', -1508407203],
      ['16384', -325739742],
      ['100:48069', 1009543857],
      ['kafka', 0xd067cf64 | 0],
    ]
    for (const [key, hash] of cases) assert.equal(murmur2(utf8(key)), hash, key)
  })

  it('hashes the UTF-8 bytes of non-ASCII keys', () => {
    assert.equal(murmur2(utf8('héllo')), murmur2(Uint8Array.from([0x68, 0xc3, 0xa9, 0x6c, 0x6c, 0x6f])))
  })
})

describe('partitionForKey', () => {
  it('is toPositive(murmur2) % partitions, as the Java producer computes it', () => {
    // toPositive clears the sign bit (it is not Math.abs):
    //   "21":     -973932308 & 0x7fffffff = 1173551340 → % 3 = 0, % 4 = 0, % 7 = 1173551340 - 7*167650191 = 3
    //   "foobar": -790332482 & 0x7fffffff = 1357151166 → % 3 = 0, % 4 = 2, % 10 = 6
    //   "abc":     479470107 (positive)              → % 3 = 0, % 4 = 3, % 10 = 7
    //   "1":     -1993445489 & 0x7fffffff =  154038159 → % 3 = 0, % 4 = 3, % 10 = 9
    //   "12":      126087238                          → % 3 = 1, % 4 = 2, % 10 = 8
    //   "kafka":  -798503068 & 0x7fffffff = 1348980580 → % 3 = 1, % 4 = 0, % 10 = 0
    assert.equal(toPositive(-973932308), 1173551340)
    assert.equal(toPositive(-2147483648), 0)
    const cases: Array<[string, number, number]> = [
      ['21', 3, 0],
      ['21', 4, 0],
      ['21', 7, 3],
      ['foobar', 3, 0],
      ['foobar', 4, 2],
      ['foobar', 10, 6],
      ['abc', 3, 0],
      ['abc', 4, 3],
      ['abc', 10, 7],
      ['1', 3, 0],
      ['1', 4, 3],
      ['1', 10, 9],
      ['12', 3, 1],
      ['12', 4, 2],
      ['12', 10, 8],
      ['kafka', 3, 1],
      ['kafka', 4, 0],
      ['kafka', 10, 0],
    ]
    for (const [key, n, partition] of cases) assert.equal(partitionForKey(key, n), partition, `${key} % ${n}`)
  })

  it('differs from the unsigned (>>> 0) variant for negative hashes', () => {
    // "foobar" with 3 partitions: (-790332482 >>> 0) % 3 = 3504634814 % 3 = 2, Java says 0.
    assert.equal((-790332482 >>> 0) % 3, 2)
    assert.equal(partitionForKey('foobar', 3), 0)
  })

  it('hashes ASCII keys from their char codes exactly as from their UTF-8 bytes', () => {
    const enc = new TextEncoder()
    const chars = 'abcXYZ019:-_.~ \u007f\u0000'
    for (let len = 0; len < 40; len++) {
      for (let round = 0; round < 5; round++) {
        let key = ''
        for (let i = 0; i < len; i++) key += chars[(len * 7 + round * 13 + i * 31) % chars.length]
        for (const n of [1, 3, 12, 1000]) assert.equal(partitionForKey(key, n), toPositive(murmur2(enc.encode(key))) % n, JSON.stringify(key))
      }
    }
    for (const key of ['é', 'task-é', 'a\u0080', '日本語キー', 'x\u{1F600}y']) assert.equal(partitionForKey(key, 7), toPositive(murmur2(enc.encode(key))) % 7, key)
  })

  it('rejects a non-positive partition count', () => {
    assert.throws(() => partitionForKey('k', 0), RangeError)
    assert.throws(() => partitionForKey('k', 1.5), RangeError)
  })
})

describe('createPartitioner', () => {
  it('uses murmur2 for keys and per-topic round robin for null keys', () => {
    const partition = createPartitioner()
    assert.equal(partition('t', 'foobar', 4), 2)
    assert.deepEqual(
      [partition('a', null, 3), partition('a', null, 3), partition('b', null, 3), partition('a', null, 3), partition('a', null, 3)],
      [0, 1, 0, 2, 0],
    )
  })
})
