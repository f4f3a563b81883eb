/**
 * Small seeded pseudo-random source (mulberry32). Deterministic: the same seed always yields the
 * same sequence, which is what test knobs (chaos on the memory bus, jitter in tests) need.
 * Not for cryptography.
 */
export interface Random {
  readonly seed: number
  /** Uniform float in [0, 1). */
  next(): number
  /** Uniform integer in [min, max] (both inclusive). */
  int(min: number, max: number): number
  /** True with probability `p` (0 → never, 1 → always). Always consumes one draw. */
  chance(p: number): boolean
}

export function createRandom(seed: number): Random {
  const initial = seed >>> 0
  let state = initial
  const next = (): number => {
    state = (state + 0x6d2b79f5) | 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return {
    seed: initial,
    next,
    int(min, max) {
      const lo = Math.ceil(Math.min(min, max))
      const hi = Math.floor(Math.max(min, max))
      return lo + Math.floor(next() * (hi - lo + 1))
    },
    chance(p) {
      return next() < p
    },
  }
}
