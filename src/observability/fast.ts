/**
 * Counters and histograms for hot paths, registered in a prom-client Registry (which formats and
 * serves them like its own). prom-client's own `observe`/`inc` validate and hash the labels on every
 * call (about a microsecond); here a child per label set is looked up once (two Map lookups by
 * label value) and an observation is a bucket search and two additions. One or two labels.
 */
import type { Metric, Registry } from 'prom-client'

export interface CounterChild {
  inc(value?: number): void
}
export interface HistogramChild {
  observe(value: number): void
}

interface Value {
  labels: Record<string, string | number>
  value: number
  metricName?: string
}

abstract class FastMetric<C> {
  readonly name: string
  readonly help: string
  readonly aggregator = 'sum'
  abstract readonly type: 'counter' | 'histogram'
  readonly #labelNames: readonly string[]
  #children = new Map<string, C | Map<string, C>>()
  readonly #all: { labels: Record<string, string>; child: C }[] = []

  constructor(registry: Registry, name: string, help: string, labelNames: readonly string[]) {
    if (labelNames.length > 2) throw new Error(`${name}: at most two labels`)
    this.name = name
    this.help = help
    this.#labelNames = labelNames
    registry.registerMetric(this as unknown as Metric)
  }

  protected abstract make(): C
  protected abstract values(labels: Record<string, string>, child: C): Value[]

  /** The child of a label set (label values in the order of the label names). */
  labels(a?: string, b?: string): C {
    const k1 = a ?? ''
    let level = this.#children.get(k1)
    if (this.#labelNames.length < 2) {
      if (level === undefined) {
        level = this.#create([k1])
        this.#children.set(k1, level)
      }
      return level as C
    }
    let inner = level as Map<string, C> | undefined
    if (inner === undefined) {
      inner = new Map()
      this.#children.set(k1, inner)
    }
    const k2 = b ?? ''
    let c = inner.get(k2)
    if (c === undefined) {
      c = this.#create([k1, k2])
      inner.set(k2, c)
    }
    return c
  }

  #create(values: string[]): C {
    const child = this.make()
    const labels: Record<string, string> = {}
    this.#labelNames.forEach((n, i) => {
      labels[n] = values[i] as string
    })
    this.#all.push({ labels, child })
    return child
  }

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Value[] }> {
    const values: Value[] = []
    if (this.#labelNames.length === 0 && this.#all.length === 0) this.labels() // an unlabelled metric shows 0
    for (const { labels, child } of this.#all) values.push(...this.values(labels, child))
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  reset(): void {
    this.#children = new Map()
    this.#all.length = 0
  }
}

class CounterValue implements CounterChild {
  value = 0
  inc(value = 1): void {
    this.value += value
  }
}

export class FastCounter extends FastMetric<CounterValue> {
  readonly type = 'counter'
  protected make(): CounterValue {
    return new CounterValue()
  }
  protected values(labels: Record<string, string>, c: CounterValue): Value[] {
    return [{ labels, value: c.value }]
  }
}

class HistogramValue implements HistogramChild {
  readonly bounds: readonly number[]
  readonly counts: Float64Array
  sum = 0
  count = 0
  constructor(bounds: readonly number[]) {
    this.bounds = bounds
    this.counts = new Float64Array(bounds.length)
  }
  observe(value: number): void {
    if (!Number.isFinite(value)) return
    const b = this.bounds
    let i = 0
    while (i < b.length && value > (b[i] as number)) i++
    if (i < b.length) this.counts[i] = (this.counts[i] as number) + 1
    this.sum += value
    this.count++
  }
}

export class FastHistogram extends FastMetric<HistogramValue> {
  readonly type = 'histogram'
  readonly #bounds: readonly number[]
  constructor(registry: Registry, name: string, help: string, labelNames: readonly string[], buckets: readonly number[]) {
    super(registry, name, help, labelNames)
    this.#bounds = [...buckets].sort((x, y) => x - y)
  }
  protected make(): HistogramValue {
    return new HistogramValue(this.#bounds)
  }
  protected values(labels: Record<string, string>, h: HistogramValue): Value[] {
    const out: Value[] = []
    let acc = 0
    h.bounds.forEach((le, i) => {
      acc += h.counts[i] as number
      out.push({ labels: { ...labels, le }, value: acc, metricName: `${this.name}_bucket` })
    })
    out.push({ labels: { ...labels, le: '+Inf' }, value: h.count, metricName: `${this.name}_bucket` })
    out.push({ labels, value: h.sum, metricName: `${this.name}_sum` })
    out.push({ labels, value: h.count, metricName: `${this.name}_count` })
    return out
  }
}
