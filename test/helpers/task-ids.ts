/** Task ids chosen by the owners' partition they fall on (several-coordinator tests). */
import { partitionForKey } from '../../src/util/murmur2.ts'

/** An id starting with `prefix` whose owners' partition is `p` (of `count`). */
export function idOn(prefix: string, p: number, count: number): string {
  for (let i = 0; ; i++) {
    const id = `${prefix}-${p}-${i}`
    if (partitionForKey(id, count) === p) return id
  }
}
