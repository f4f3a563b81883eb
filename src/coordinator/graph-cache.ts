/**
 * Parsed graphs of one coordinator, so a DAG submitted again is not parsed, validated and frozen
 * again (most tasks of a deployment share a handful of DAGs). The result is the same frozen graph
 * object for each, which is what lets tasks share their graph plan (graph-plan.ts) and lets the
 * memory store keep the graph without a copy. A coordinator's parse options (its functions and
 * limits) do not change, so the key is the input alone:
 * - graph given as JSON text: the text (texts up to 64 KiB; at most 256, the oldest dropped first);
 * - graph given as an object: the same object again with the same JSON text (a caller that edits
 *   its object between submissions gets it parsed again). Equal texts of two different objects are
 *   not taken as the same graph: an object can hold what JSON text does not show (an `undefined`,
 *   a function, NaN), which parsing must still reject.
 * Invalid graphs are not cached: each submission gets its own precise error.
 */
import type { GraphSpec } from '../graph/types.ts'
import { RecentMap } from '../util/recent.ts'

const MAX_TEXTS = 256
const MAX_TEXT_LENGTH = 64 * 1024

export class GraphCache {
  readonly #byText = new RecentMap<string, GraphSpec>(MAX_TEXTS)
  readonly #byObject = new WeakMap<object, { text: string; graph: GraphSpec }>()

  /** The parsed graph of `raw`, from the cache or from `parse` (whose errors propagate). */
  get(raw: unknown, parse: (raw: unknown) => GraphSpec): GraphSpec {
    if (typeof raw === 'string') {
      const known = this.#byText.get(raw)
      if (known !== undefined) return known
      const graph = parse(raw)
      if (raw.length <= MAX_TEXT_LENGTH) {
        this.#byText.set(raw, graph)
      }
      return graph
    }
    if (raw === null || typeof raw !== 'object') return parse(raw)
    let text: string
    try {
      text = JSON.stringify(raw)
    } catch {
      return parse(raw) // cycles, bigints: parsing says what is wrong
    }
    const known = this.#byObject.get(raw)
    if (known !== undefined && known.text === text) return known.graph
    const graph = parse(raw)
    this.#byObject.set(raw, { text, graph })
    return graph
  }
}
