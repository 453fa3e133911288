/**
 * Bounded-cardinality routes for RED metrics and span names. Periscope sees raw paths, never the
 * server's routing table, so it infers a route: segments that look like identifiers (numbers,
 * UUIDs, long hex or mixed tokens) become `*`, so `/users/123/orders/9f8e…` is `/users/*\/orders/*`.
 * What still varies past `maxRoutes` distinct routes per service collapses to `/*` (still with its
 * method and status), and so does everything of services past `maxServices`; each collapse is
 * counted, so a scan of random paths cannot blow up the metric series or this table.
 */

const numeric = /^\d+$/
const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const hexId = /^[0-9a-f]{8,}$/i
// a token mixing letters and digits, long enough to be an id or a hash rather than a word
const mixedToken = /^(?=.*\d)(?=.*[a-z])[a-z0-9_-]{12,}$/i
const maxSegments = 8

function looksLikeId(segment: string): boolean {
  return numeric.test(segment) || uuid.test(segment) || hexId.test(segment) || mixedToken.test(segment)
}

/** The route pattern of one path (no query): ids replaced by `*`, at most 8 segments then `/**`. */
export function routePattern(path: string): string {
  if (path === '' || path === '/') return '/'
  const segments = path.split('/')
  let out = ''
  let kept = 0
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i]!
    if (segment === '' && i === segments.length - 1) {
      out += '/'
      break
    }
    if (++kept > maxSegments) return `${out}/**`
    out += `/${looksLikeId(segment) ? '*' : segment}`
  }
  return out
}

export class RouteTable {
  readonly #maxRoutes: number
  readonly #maxServices: number
  readonly #routes = new Map<string, Set<string>>()
  /** How many requests got the collapsed route `/*` because their service had too many routes. */
  collapsed = 0

  constructor(maxRoutes: number, maxServices = 1024) {
    this.#maxRoutes = maxRoutes
    this.#maxServices = maxServices
  }

  /** The route of `path` for `service` (any key naming who serves it, e.g. its executable). */
  route(service: string, path: string): string {
    const pattern = routePattern(path)
    let known = this.#routes.get(service)
    if (known === undefined) {
      if (this.#routes.size >= this.#maxServices) {
        this.collapsed++
        return '/*'
      }
      known = new Set()
      this.#routes.set(service, known)
    }
    if (known.has(pattern)) return pattern
    if (known.size >= this.#maxRoutes) {
      this.collapsed++
      return '/*'
    }
    known.add(pattern)
    return pattern
  }

  /** Forgets a service's routes (its process exited). */
  forget(service: string): void {
    this.#routes.delete(service)
  }
}
