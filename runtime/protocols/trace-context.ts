/**
 * W3C Trace Context for protocol plugins: reading a `traceparent` header and making the ids of
 * spans a plugin builds itself. Pure TypeScript with no imports, so plugins bundle it into their
 * isolate, where `crypto` does not exist: ids come from Math.random, which is enough for trace ids
 * (uniqueness, not secrecy, is what matters; the W3C spec asks for no more).
 */

export interface TraceParent {
  traceId: string
  /** The caller's span: the parent of the span that carries this header. */
  parentSpanId: string
  sampled: boolean
}

const traceparentPattern = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$/
const allZeros = /^0+$/

/**
 * Parses a `traceparent` header value; undefined when it is malformed or uses the invalid all-zero
 * ids or version ff (the spec says to ignore such a header and start a new trace).
 */
export function parseTraceparent(value: string | undefined): TraceParent | undefined {
  if (value === undefined) return undefined
  const match = traceparentPattern.exec(value.trim().toLowerCase())
  if (match === null) return undefined
  const [, version, traceId, parentSpanId, flags] = match as unknown as [string, string, string, string, string]
  if (version === 'ff' || allZeros.test(traceId) || allZeros.test(parentSpanId)) return undefined
  // version 00 has exactly four fields; later versions may append more
  if (version === '00' && value.trim().length !== 55) return undefined
  return { traceId, parentSpanId, sampled: (parseInt(flags, 16) & 1) === 1 }
}

function randomHex(digits: number): string {
  let out = ''
  while (out.length < digits) out += Math.floor(Math.random() * 0x100000000).toString(16).padStart(8, '0')
  out = out.slice(0, digits)
  // an all-zero id is invalid; the odds are 2^-64 but the fix is free
  return allZeros.test(out) ? `${out.slice(0, -1)}1` : out
}

export function newTraceId(): string {
  return randomHex(32)
}

export function newSpanId(): string {
  return randomHex(16)
}

/**
 * Whether a trace is kept by head sampling at `percent`, decided by its trace id, so every span of
 * one trace (from any process Periscope traces) gets the same answer.
 */
export function sampledByTraceId(traceId: string, percent: number): boolean {
  if (percent >= 100) return true
  if (percent <= 0) return false
  // the last 8 hex digits are random in every W3C-compliant id (the first ones may hold a time)
  return parseInt(traceId.slice(-8), 16) / 0x100000000 < percent / 100
}
