/**
 * Redaction of secrets in what protocol plugins export. On by default: a query parameter whose
 * name contains a sensitive word (`access_token`, `api_key`, `password`...) keeps its name and
 * loses its value.
 */

export const defaultSensitiveQueryKeys: readonly string[] = ['token', 'password', 'passwd', 'secret', 'key', 'auth', 'session', 'signature', 'credential']

export const redacted = 'REDACTED'

/**
 * The query string (without `?`) with the values of sensitive keys replaced by REDACTED. Names
 * are compared lower-case by substring, so `X-Api-Key` and `apikey` both match `key`.
 */
export function redactQuery(query: string, sensitive: readonly string[]): string {
  if (query === '') return query
  let changed = false
  const parts = query.split('&')
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!
    const eq = part.indexOf('=')
    if (eq < 0) continue
    const name = safeDecode(part.slice(0, eq)).toLowerCase()
    if (sensitive.some((word) => name.includes(word))) {
      parts[i] = `${part.slice(0, eq)}=${redacted}`
      changed = true
    }
  }
  return changed ? parts.join('&') : query
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text.replaceAll('+', ' '))
  } catch {
    return text
  }
}
