/**
 * Whether a string is well-formed Unicode: no lone UTF-16 surrogate, which cannot be written as
 * UTF-8 (MongoDB stores U+FFFD in its place, so two such keys become one). (String.prototype
 * .isWellFormed, ES2024, beyond the ES2023 library this project compiles against.)
 */
export function isWellFormed(s: string): boolean {
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed()
}

/** The end of a text `clip` cut: how many characters it cut. */
const CUT_MARK = /… \((\d+) more characters cut\)$/

/**
 * Cuts a text to at most `max` characters in all, ending with how many were cut: `…… (91808 more
 * characters cut)`. A text cut before (by a worker, then kept by a coordinator) is cut again
 * from its kept part, and the count adds up: what the original lost, not what the mark did. A
 * surrogate pair is never split. (It kept `max` characters and added the mark after them, and a
 * second cut counted only the first mark's characters.)
 */
export function clip(text: string, max: number): string {
  if (text.length <= max) return text
  const prior = CUT_MARK.exec(text)
  const body = prior === null ? text : text.slice(0, prior.index)
  const before = prior === null ? 0 : Number(prior[1])
  // Room for the mark with the largest count it can carry.
  const markChars = `… ( more characters cut)`.length + String(body.length + before).length
  let keep = Math.max(0, Math.min(body.length, max - markChars))
  const last = body.charCodeAt(keep - 1)
  if (keep > 0 && last >= 0xd800 && last <= 0xdbff) keep--
  return `${body.slice(0, keep)}… (${body.length - keep + before} more characters cut)`
}

/** Longest error text a node keeps (its `last_error`) or a worker sends in a failure event (the rest is cut). */
export const MAX_ERROR_CHARS = 8192

/** `text` without a leading byte order mark (as some editors save UTF-8): not JSON, not the user's mistake. */
export function withoutBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text
}
