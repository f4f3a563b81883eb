/**
 * Names of the input adapters a node may use (`io.input_inline.input_adapter`, docs/protocol.md).
 * Names only: the adapters themselves run in the worker (src/worker/input.ts), while the
 * coordinator needs the names to refuse a graph naming an unknown adapter.
 */

/** Streams the upstream nodes' artifacts as they appear. */
export const PULL_FROM_ARTIFACTS = 'pull.from_artifacts'
/** Like `pull.from_artifacts`, re-sliced into batches of `size` items. */
export const PULL_RECHUNK = 'pull.from_artifacts.rechunk:size'
/** Every known input adapter name. */
export const INPUT_ADAPTERS: ReadonlySet<string> = new Set([PULL_FROM_ARTIFACTS, PULL_RECHUNK])
