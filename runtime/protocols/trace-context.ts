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

/** ASCII codes of the hex digits, and the codes of one id being made (a flat string in one call). */
const hexDigits = [48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 97, 98, 99, 100, 101, 102]
const traceIdCodes = new Array<number>(32)
const spanIdCodes = new Array<number>(16)

/**
 * `codes.length` random hex digits; never all zeros, which is an invalid id. Every HTTP request
 * takes two or three ids, so this is table lookups into one String.fromCharCode rather than
 * toString(16), padStart and slices (5 times slower).
 */
function randomHex(codes: number[]): string {
  for (;;) {
    let any = 0
    for (let i = 0; i < codes.length; i += 8) {
      const random = (Math.random() * 0x100000000) >>> 0
      any |= random
      for (let k = 0; k < 8; k++) codes[i + k] = hexDigits[(random >>> (28 - 4 * k)) & 15]!
    }
    if (any !== 0) return String.fromCharCode.apply(null, codes)
  }
}

export function newTraceId(): string {
  return randomHex(traceIdCodes)
}

export function newSpanId(): string {
  return randomHex(spanIdCodes)
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
