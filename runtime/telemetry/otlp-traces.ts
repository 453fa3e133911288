/**
 * OTLP `ExportTraceServiceRequest` protobuf encoding of plugin spans, byte for byte what the SDK's
 * `ProtobufTraceSerializer` writes for the same spans (test/unit/telemetry-otlp-traces.test.ts
 * holds it to that), at a fraction of its cost. Under an HTTP load every request is a span or two,
 * and the SDK's serializer was the largest share of the runtime's main thread: it sizes the whole
 * request in a first pass, then builds HrTime pairs, span contexts and id byte arrays per span in
 * the second. Here one pass writes into a buffer reused from batch to batch:
 * - times and ids come from the span's plain fields (ns numbers, hex strings), with no objects;
 * - a nested message reserves one byte for its length and moves its bytes on in the rare case the
 *   length needs more (the SDK's own approach to a second pass);
 * - the `key` part of an attribute, the resource and the instrumentation scope are encoded once and
 *   copied after that: keys repeat on every span, and resources and scopes are shared objects.
 */
import type { Attributes, AttributeValue } from '@opentelemetry/api'
import type { InstrumentationScope } from '@opentelemetry/core'
import type { Resource } from '@opentelemetry/resources'
import type { PluginSpan } from './traces.ts'

const LENGTH_DELIMITED = 2
const VARINT = 0
const FIXED64 = 1
const FIXED32 = 5

// span flags (OTLP): the parent's remoteness is known, and whether it is remote
const SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE = 0x100
const SPAN_FLAGS_CONTEXT_IS_REMOTE = 0x200

/** Encoded attribute keys kept at most; past this, keys are encoded each time. */
const MAX_CACHED_KEYS = 4096

/** A field's key; below field 16 it fits the one byte `Writer.byte` writes. */
const tag = (field: number, wireType: number): number => (field << 3) | wireType

class Writer {
  buf = new Uint8Array(64 * 1024)
  view = new DataView(this.buf.buffer)
  pos = 0

  ensure(bytes: number): void {
    if (this.pos + bytes <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < this.pos + bytes) size *= 2
    const grown = new Uint8Array(size)
    grown.set(this.buf.subarray(0, this.pos))
    this.buf = grown
    this.view = new DataView(grown.buffer)
  }

  byte(value: number): void {
    this.ensure(1)
    this.buf[this.pos++] = value
  }

  /** A varint of a non-negative integer below 2^32. */
  uint32(value: number): void {
    this.ensure(5)
    let v = value >>> 0
    while (v > 0x7f) {
      this.buf[this.pos++] = (v & 0x7f) | 0x80
      v >>>= 7
    }
    this.buf[this.pos++] = v
  }

  /** A varint of an integer within int64 (negative ones in two's complement, 10 bytes). */
  int64(value: number): void {
    if (value >= 0 && value <= 0xffffffff) return this.uint32(value)
    this.ensure(10)
    let low: number
    let high: number
    if (value >= 0) {
      low = value >>> 0
      high = (value / 0x100000000) >>> 0
    } else {
      const abs = Math.abs(value)
      low = ~(abs >>> 0) >>> 0
      high = ~((abs / 0x100000000) >>> 0) >>> 0
      low = (low + 1) >>> 0
      if (low === 0) high = (high + 1) >>> 0
    }
    while (high > 0 || low > 0x7f) {
      this.buf[this.pos++] = (low & 0x7f) | 0x80
      low = ((low >>> 7) | (high << 25)) >>> 0
      high >>>= 7
    }
    this.buf[this.pos++] = low & 0x7f
  }

  fixed32(value: number): void {
    this.ensure(4)
    this.view.setUint32(this.pos, value >>> 0, true)
    this.pos += 4
  }

  /** Nanoseconds since the epoch as fixed64, through the same HrTime the SDK would make (nsToHrTime). */
  timeNs(ns: number): void {
    const seconds = Math.floor(ns / 1e9)
    this.hrTime(seconds, Math.min(999_999_999, Math.max(0, Math.round(ns - seconds * 1e9))))
  }

  /**
   * An HrTime as fixed64 nanoseconds, computed as the SDK's writeHrTimeAsFixed64 does: in 16-bit
   * halves of the seconds, since seconds × 1e9 is past 2^53 and a double would round it.
   */
  hrTime(seconds: number, nanos: number): void {
    const fromLower = (seconds & 0xffff) * 1e9
    const fromUpper = ((seconds / 0x10000) >>> 0) * 1e9
    const low = (fromLower >>> 0) + (((fromUpper & 0xffff) * 0x10000) >>> 0) + nanos
    const high = (Math.floor(fromLower / 0x100000000) + ((fromUpper / 0x10000) >>> 0) + Math.floor(low / 0x100000000)) >>> 0
    this.ensure(8)
    this.view.setUint32(this.pos, low >>> 0, true)
    this.view.setUint32(this.pos + 4, high, true)
    this.pos += 8
  }

  double(value: number): void {
    this.ensure(8)
    this.view.setFloat64(this.pos, value, true)
    this.pos += 8
  }

  /** A length-prefixed string, UTF-8: ASCII is copied as it is checked, in one pass. */
  string(text: string): void {
    const length = text.length
    const start = this.pos
    this.uint32(length)
    this.ensure(length)
    const buf = this.buf
    let at = this.pos
    for (let i = 0; i < length; i++) {
      const code = text.charCodeAt(i)
      if (code > 0x7f) {
        this.pos = start
        return this.bytes(textEncoder.encode(text))
      }
      buf[at++] = code
    }
    this.pos = at
  }

  bytes(bytes: Uint8Array): void {
    this.uint32(bytes.length)
    this.raw(bytes)
  }

  raw(bytes: Uint8Array): void {
    this.ensure(bytes.length)
    this.buf.set(bytes, this.pos)
    this.pos += bytes.length
  }

  /** Lowercase hex digits as a length-prefixed bytes field. */
  hex(text: string): void {
    const length = text.length >>> 1
    this.uint32(length)
    this.ensure(length)
    const buf = this.buf
    let at = this.pos
    for (let i = 0; i < text.length; i += 2) buf[at++] = (HEX_VALUES[text.charCodeAt(i)]! << 4) | HEX_VALUES[text.charCodeAt(i + 1)]!
    this.pos = at
  }

  /** Reserves one byte for the length of a message that starts here; `end` fills it in. */
  begin(): number {
    this.ensure(1)
    return this.pos++
  }

  end(start: number): void {
    const length = this.pos - start - 1
    if (length < 0x80) {
      this.buf[start] = length
      return
    }
    const size = length < 0x4000 ? 2 : length < 0x200000 ? 3 : length < 0x10000000 ? 4 : 5
    this.ensure(size - 1)
    this.buf.copyWithin(start + size, start + 1, this.pos)
    this.pos += size - 1
    let v = length
    let at = start
    while (v > 0x7f) {
      this.buf[at++] = (v & 0x7f) | 0x80
      v >>>= 7
    }
    this.buf[at] = v
  }

  /** The bytes written since `start`, copied out. */
  copy(start: number): Uint8Array {
    return this.buf.slice(start, this.pos)
  }
}

/** The value of each hex digit by character code (ids are checked lowercase hex before they get here). */
const HEX_VALUES = new Uint8Array(128)
for (let i = 0; i < 16; i++) HEX_VALUES['0123456789abcdef'.charCodeAt(i)] = i

const textEncoder = new TextEncoder()

export class OtlpTraceEncoder {
  private readonly writer = new Writer()
  private readonly keys = new Map<string, Uint8Array>()
  private readonly resources = new WeakMap<Resource, Uint8Array>()
  private readonly scopes = new WeakMap<InstrumentationScope, Uint8Array>()

  /** One ExportTraceServiceRequest, spans grouped by resource, then by scope, in order of appearance. */
  encode(spans: readonly PluginSpan[]): Uint8Array {
    const groups = new Map<Resource, Map<InstrumentationScope, PluginSpan[]>>()
    for (const span of spans) {
      let scopes = groups.get(span.resource)
      if (scopes === undefined) groups.set(span.resource, (scopes = new Map()))
      let list = scopes.get(span.instrumentationScope)
      if (list === undefined) scopes.set(span.instrumentationScope, (list = []))
      list.push(span)
    }
    const w = this.writer
    w.pos = 0
    for (const [resource, scopes] of groups) {
      w.byte(tag(1, LENGTH_DELIMITED))
      const resourceSpans = w.begin()
      w.raw(this.resource(resource))
      for (const [scope, list] of scopes) {
        w.byte(tag(2, LENGTH_DELIMITED))
        const scopeSpans = w.begin()
        w.raw(this.scope(scope))
        for (const span of list) this.span(span)
        if (scope.schemaUrl) {
          w.byte(tag(3, LENGTH_DELIMITED))
          w.string(scope.schemaUrl)
        }
        w.end(scopeSpans)
      }
      if (resource.schemaUrl) {
        w.byte(tag(3, LENGTH_DELIMITED))
        w.string(resource.schemaUrl)
      }
      w.end(resourceSpans)
    }
    return w.copy(0)
  }

  private span(span: PluginSpan): void {
    const w = this.writer
    w.byte(tag(2, LENGTH_DELIMITED))
    const start = w.begin()
    w.byte(tag(1, LENGTH_DELIMITED))
    w.hex(span.traceIdHex)
    w.byte(tag(2, LENGTH_DELIMITED))
    w.hex(span.spanIdHex)
    if (span.parentSpanIdHex !== undefined) {
      w.byte(tag(4, LENGTH_DELIMITED))
      w.hex(span.parentSpanIdHex)
    }
    w.byte(tag(5, LENGTH_DELIMITED))
    w.string(span.name)
    // the API's kinds start at INTERNAL = 0; OTLP's at UNSPECIFIED = 0
    w.byte(tag(6, VARINT))
    w.uint32(span.kind + 1)
    w.byte(tag(7, FIXED64))
    w.timeNs(span.startNs)
    w.byte(tag(8, FIXED64))
    w.timeNs(span.endNs)
    this.attributes(span.attributes, 9)
    w.byte(tag(10, VARINT))
    w.uint32(span.droppedAttributesCount)
    for (const event of span.events) {
      w.byte(tag(11, LENGTH_DELIMITED))
      const eventStart = w.begin()
      w.byte(tag(1, FIXED64))
      w.hrTime(event.time[0], event.time[1])
      w.byte(tag(2, LENGTH_DELIMITED))
      w.string(event.name)
      if (event.attributes !== undefined) this.attributes(event.attributes, 3)
      w.byte(tag(4, VARINT))
      w.uint32(event.droppedAttributesCount ?? 0)
      w.end(eventStart)
    }
    w.byte(tag(12, VARINT))
    w.uint32(span.droppedEventsCount)
    // plugin spans carry no links
    w.byte(tag(14, VARINT))
    w.uint32(0)
    w.byte(tag(15, LENGTH_DELIMITED))
    const status = w.begin()
    if (span.status.message) {
      w.byte(tag(2, LENGTH_DELIMITED))
      w.string(span.status.message)
    }
    w.byte(tag(3, VARINT))
    w.uint32(span.status.code)
    w.end(status)
    // sampled, and whether the parent (from a traceparent) is remote
    w.uint32(tag(16, FIXED32))
    w.fixed32(1 | SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE | (span.parentSpanIdHex === undefined ? 0 : SPAN_FLAGS_CONTEXT_IS_REMOTE))
    w.end(start)
  }

  private attributes(attributes: Attributes, field: number): void {
    const w = this.writer
    for (const key in attributes) {
      if (!Object.hasOwn(attributes, key)) continue
      w.byte(tag(field, LENGTH_DELIMITED))
      const keyValue = w.begin()
      w.raw(this.key(key))
      w.byte(tag(2, LENGTH_DELIMITED))
      const value = w.begin()
      this.anyValue(attributes[key])
      w.end(value)
      w.end(keyValue)
    }
  }

  /** `KeyValue.key` with its tag and length. */
  private key(key: string): Uint8Array {
    let encoded = this.keys.get(key)
    if (encoded !== undefined) return encoded
    const w = this.writer
    const start = w.pos
    w.byte(tag(1, LENGTH_DELIMITED))
    w.string(key)
    encoded = w.copy(start)
    w.pos = start
    if (this.keys.size < MAX_CACHED_KEYS) this.keys.set(key, encoded)
    return encoded
  }

  private anyValue(value: AttributeValue | undefined | null): void {
    const w = this.writer
    switch (typeof value) {
      case 'string':
        w.byte(tag(1, LENGTH_DELIMITED))
        w.string(value)
        return
      case 'boolean':
        w.byte(tag(2, VARINT))
        w.byte(value ? 1 : 0)
        return
      case 'number':
        if (Number.isInteger(value) && value >= -(2 ** 63) && value < 2 ** 63) {
          w.byte(tag(3, VARINT))
          w.int64(value)
        } else {
          w.byte(tag(4, FIXED64))
          w.double(value)
        }
        return
    }
    if (Array.isArray(value)) {
      w.byte(tag(5, LENGTH_DELIMITED))
      const array = w.begin()
      for (const item of value) {
        w.byte(tag(1, LENGTH_DELIMITED))
        const itemStart = w.begin()
        this.anyValue(item)
        w.end(itemStart)
      }
      w.end(array)
    }
    // null and undefined (kept in event attributes) are an empty AnyValue, as the SDK writes them
  }

  /** `ResourceSpans.resource` with its tag and length, encoded once per (immutable) resource. */
  private resource(resource: Resource): Uint8Array {
    let encoded = this.resources.get(resource)
    if (encoded !== undefined) return encoded
    encoded = this.encodedAside(() => {
      const w = this.writer
      w.byte(tag(1, LENGTH_DELIMITED))
      const start = w.begin()
      this.attributes(resource.attributes, 1)
      w.byte(tag(2, VARINT))
      w.uint32(0)
      w.end(start)
    })
    // attributes still being detected would change; such a resource is encoded every time
    if (resource.asyncAttributesPending !== true) this.resources.set(resource, encoded)
    return encoded
  }

  /** `ScopeSpans.scope` with its tag and length. */
  private scope(scope: InstrumentationScope): Uint8Array {
    let encoded = this.scopes.get(scope)
    if (encoded !== undefined) return encoded
    encoded = this.encodedAside(() => {
      const w = this.writer
      w.byte(tag(1, LENGTH_DELIMITED))
      const start = w.begin()
      w.byte(tag(1, LENGTH_DELIMITED))
      w.string(scope.name)
      if (scope.version) {
        w.byte(tag(2, LENGTH_DELIMITED))
        w.string(scope.version)
      }
      w.end(start)
    })
    this.scopes.set(scope, encoded)
    return encoded
  }

  /** Runs `write` at the end of the buffer and takes what it wrote back out. */
  private encodedAside(write: () => void): Uint8Array {
    const w = this.writer
    const start = w.pos
    write()
    const encoded = w.copy(start)
    w.pos = start
    return encoded
  }
}
