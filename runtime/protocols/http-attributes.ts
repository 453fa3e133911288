/**
 * What the HTTP/1 and HTTP/2 plugins both do with a parsed request: split its target, parse its
 * Host or :authority, decide whether the exchange failed, and apply the receiver block's status
 * filter. Pure TypeScript, bundled into plugins.
 */

/** The path and query of a request target; an absolute-form target (a proxy's) keeps its path only. */
export function splitTarget(target: string): { path: string; query?: string } {
  let rest = target
  if (!rest.startsWith('/')) {
    const scheme = rest.indexOf('://')
    if (scheme >= 0) {
      const slash = rest.indexOf('/', scheme + 3)
      rest = slash < 0 ? '/' : rest.slice(slash)
    }
  }
  const hash = rest.indexOf('#')
  if (hash >= 0) rest = rest.slice(0, hash)
  const q = rest.indexOf('?')
  return q < 0 ? { path: rest } : { path: rest.slice(0, q), query: rest.slice(q + 1) }
}

/** A Host header or :authority as name and port; a bracketed IPv6 literal loses its brackets. */
export function parseHost(host: string | undefined): { name: string; port?: number } | undefined {
  if (host === undefined || host === '') return undefined
  const match = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(host.trim())
  if (match === null) return undefined
  const name = match[1]!.replace(/^\[|\]$/g, '')
  return match[2] === undefined ? { name } : { name, port: Number(match[2]) }
}

/**
 * The error of an HTTP exchange as the semantic conventions count it: 5xx at either end, 4xx at
 * the client too; without a status, why the response is missing.
 */
export function httpSpanError(side: 'client' | 'server', status: number | undefined, incomplete: 'closed' | 'lost' | undefined): { type: string; message: string } | undefined {
  if (status === undefined) {
    if (incomplete === 'closed') return { type: 'connection_closed', message: 'the connection closed before the response was complete' }
    if (incomplete === 'lost') return { type: 'data_lost', message: 'records of this exchange were lost; its response is unknown' }
    return undefined
  }
  if (status >= 500 || (side === 'client' && status >= 400)) return { type: String(status), message: `HTTP ${status}` }
  return undefined
}

/** ">=400", "500", "<300" as a predicate; undefined for no filter. */
export function statusFilter(text: string): ((status: number) => boolean) | undefined {
  const match = /^(>=|<=|>|<|==)?(\d{3})$/.exec(text.replaceAll(' ', ''))
  if (match === null) return undefined
  const value = Number(match[2])
  switch (match[1]) {
    case '>=': return (s) => s >= value
    case '<=': return (s) => s <= value
    case '>': return (s) => s > value
    case '<': return (s) => s < value
    default: return (s) => s === value
  }
}
