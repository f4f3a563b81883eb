/**
 * Whether a string is well-formed Unicode: no lone UTF-16 surrogate, which cannot be written as
 * UTF-8 (MongoDB stores U+FFFD in its place, so two such keys become one). (String.prototype
 * .isWellFormed, ES2024, beyond the ES2023 library this project compiles against.)
 */
export function isWellFormed(s: string): boolean {
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed()
}

/** Cuts a text to `max` characters, saying how much was cut. */
export function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length - max} more characters cut)`
}

/** Longest error text a node keeps (its `last_error`) or a worker sends in a failure event (the rest is cut). */
export const MAX_ERROR_CHARS = 8192

/** `text` without a leading byte order mark (as some editors save UTF-8): not JSON, not the user's mistake. */
export function withoutBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text
}
