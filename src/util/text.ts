/**
 * Whether a string is well-formed Unicode: no lone UTF-16 surrogate, which cannot be written as
 * UTF-8 (MongoDB stores U+FFFD in its place, so two such keys become one). (String.prototype
 * .isWellFormed, ES2024, beyond the ES2023 library this project compiles against.)
 */
export function isWellFormed(s: string): boolean {
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed()
}
