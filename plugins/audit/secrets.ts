/**
 * Masking of secrets in the command lines the audit plugin exports. Pure TypeScript, bundled
 * into the plugin.
 *
 * The arguments are joined with NUL (which no argument can hold) and each pattern runs over the
 * whole line, case-insensitively, so a pattern can see a flag and the value that follows it
 * (`--password\0([^\0]+)`). What the pattern's first capture group matched (the whole match when
 * it has no group) becomes `REDACTED`; the line is then split back into its arguments.
 */

export const redacted = 'REDACTED'

/** The default `secret_patterns`. */
export const defaultSecretPatterns: readonly string[] = [
  // --password=..., DB_PASSWORD=..., --api-key=..., token=... (up to a space: a shell script's
  // other words are not the secret)
  String.raw`(?:^|[\0\s])[^\0\s=]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?)[^\0\s=]*=([^\0\s]+)`,
  // --password VALUE, --token VALUE: the value is the next argument (or word)
  String.raw`(?:^|[\0\s])--?[^\0\s=]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key)[\0\s]+([^\0\s]+)`,
  // HTTP credentials in a header argument (curl -H 'Authorization: Bearer ...'), to the end of the line or quote
  String.raw`(?:authorization|proxy-authorization|x-api-key|cookie)\s*:\s*([^\0\n'"]+)`,
  // the password of a URL (https://user:password@host/)
  String.raw`://[^\0\s/:@]*:([^\0\s/@]+)@`,
]

/** Compiles patterns once; throws naming the pattern that is not a regular expression. */
export function compileSecretPatterns(patterns: readonly string[]): RegExp[] {
  return patterns.map((pattern, i) => {
    if (typeof pattern !== 'string') throw new Error(`audit: secret_patterns[${i}] must be a regular expression as a string; got ${JSON.stringify(pattern)}`)
    try {
      return new RegExp(pattern, 'gid')
    } catch (error) {
      throw new Error(`audit: secret_patterns[${i}] is not a valid regular expression (${(error as Error).message}); write it in JavaScript's syntax`)
    }
  })
}

/** argv with the secrets the patterns find masked; the same array when nothing matched. */
export function maskSecrets(args: readonly string[], patterns: readonly RegExp[]): string[] {
  if (patterns.length === 0 || args.length === 0) return args as string[]
  const line = args.join('\0')
  const spans: [number, number][] = []
  for (const pattern of patterns) {
    pattern.lastIndex = 0
    for (let match = pattern.exec(line); match !== null; match = pattern.exec(line)) {
      const span = match.indices?.[1] ?? match.indices?.[0]
      if (span !== undefined && span[1] > span[0]) spans.push([span[0], span[1]])
      // an empty match would match again at the same place forever
      if (match[0] === '') pattern.lastIndex++
    }
  }
  if (spans.length === 0) return args as string[]
  spans.sort((a, b) => a[0] - b[0])
  let out = ''
  let at = 0
  for (const [start, end] of spans) {
    if (end <= at) continue
    const from = Math.max(start, at)
    // a span that crosses arguments masks each piece, keeping the separators
    out += line.slice(at, from) + line.slice(from, end).split('\0').map(() => redacted).join('\0')
    at = end
  }
  out += line.slice(at)
  return out.split('\0')
}
