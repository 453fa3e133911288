/**
 * The OTLP profiles signal, encoded with protobufjs from the official opentelemetry-proto
 * definitions vendored under ./proto (v1.7.0, the `v1development` profiles that the Collector
 * v0.129 / pdata v1.35 expects: one ProfilesDictionary per request, samples addressing
 * `Profile.location_indices` by start and length).
 *
 * Also the senders for profiles: OTLP over HTTP/protobuf or gRPC, and gzipped pprof files in the
 * embedded store.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Type } from 'protobufjs'
import type { Attributes, AttributeValue } from '@opentelemetry/api'
import type { SignalTarget } from './config.ts'
import type { AggregatedProfile } from './profiles.ts'
import { encodePprof, functionKeyOf, locationKeyOf, mappingKeyOf, mergePerInterval, sampleLabels } from './profiles.ts'
import { grpcMetadata } from './senders.ts'
import type { Sender, SenderContext } from './senders.ts'
import type { FrameInput } from './signals.ts'

const PROTO_DIR = fileURLToPath(new URL('./proto/', import.meta.url))
const SERVICE_PROTO = 'opentelemetry/proto/collector/profiles/v1development/profiles_service.proto'
type OtlpTarget = Extract<SignalTarget, { kind: 'otlp' }>

const GRPC_METHOD = '/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export'

interface ProfileTypes {
  request: Type
  response: Type
}

let types: Promise<ProfileTypes> | undefined

/** protobufjs and the vendored .proto files are loaded only when profiles go over OTLP. */
function loadTypes(): Promise<ProfileTypes> {
  types ??= import('protobufjs').then(({ default: protobuf }) => {
    const root = new protobuf.Root()
    // the .proto files import each other by their path from the repository root
    root.resolvePath = (_origin, target) => join(PROTO_DIR, target)
    root.loadSync(SERVICE_PROTO, { keepCase: false })
    return {
      request: root.lookupType('opentelemetry.proto.collector.profiles.v1development.ExportProfilesServiceRequest'),
      response: root.lookupType('opentelemetry.proto.collector.profiles.v1development.ExportProfilesServiceResponse'),
    }
  })
  return types
}

interface KeyValue {
  key: string
  value: AnyValue
}
type AnyValue =
  | { stringValue: string }
  | { boolValue: boolean }
  | { intValue: number }
  | { doubleValue: number }
  | { arrayValue: { values: AnyValue[] } }

function anyValue(value: AttributeValue | string | number): AnyValue {
  if (Array.isArray(value)) return { arrayValue: { values: value.filter((v) => v !== null && v !== undefined).map((v) => anyValue(v as string | number)) } }
  if (typeof value === 'boolean') return { boolValue: value }
  if (typeof value === 'number') return Number.isInteger(value) ? { intValue: value } : { doubleValue: value }
  return { stringValue: String(value) }
}

function keyValues(attributes: Attributes): KeyValue[] {
  const out: KeyValue[] = []
  for (const [key, value] of Object.entries(attributes)) if (value !== undefined) out.push({ key, value: anyValue(value) })
  return out
}

/** Builds an ExportProfilesServiceRequest (as a protobufjs-ready object) for a batch of profiles. */
export function buildProfilesRequest(profiles: readonly AggregatedProfile[]): Record<string, unknown> {
  const strings = ['']
  const stringIndex = new Map<string, number>([['', 0]])
  const str = (value: string): number => {
    let index = stringIndex.get(value)
    if (index === undefined) {
      index = strings.length
      strings.push(value)
      stringIndex.set(value, index)
    }
    return index
  }
  const attributeTable: KeyValue[] = []
  const attributeIndex = new Map<string, number>()
  const attr = (key: string, value: string | number): number => {
    const id = `${key}\0${typeof value}\0${value}`
    let index = attributeIndex.get(id)
    if (index === undefined) {
      index = attributeTable.length
      attributeTable.push({ key, value: anyValue(value) })
      attributeIndex.set(id, index)
    }
    return index
  }
  const mappingTable: Record<string, unknown>[] = []
  const mappingIndex = new Map<string, number>()
  const functionTable: Record<string, unknown>[] = []
  const functionIndex = new Map<string, number>()
  const locationTable: Record<string, unknown>[] = []
  const locationIndex = new Map<string, number>()

  const mappingOf = (frame: FrameInput): number | undefined => {
    const key = mappingKeyOf(frame)
    if (key === undefined || frame.mapping === undefined) return undefined
    let index = mappingIndex.get(key)
    if (index === undefined) {
      const m = frame.mapping
      index = mappingTable.length
      mappingTable.push({
        memoryStart: m.start ?? 0,
        memoryLimit: m.end ?? 0,
        fileOffset: m.offset ?? 0,
        filenameStrindex: str(m.file),
        attributeIndices: m.buildId === undefined ? [] : [attr('process.executable.build_id.gnu', m.buildId)],
        hasFunctions: frame.function !== undefined,
        hasFilenames: frame.file !== undefined,
        hasLineNumbers: frame.line !== undefined,
      })
      mappingIndex.set(key, index)
    }
    return index
  }
  const functionOf = (frame: FrameInput): number | undefined => {
    const key = functionKeyOf(frame)
    if (key === undefined) return undefined
    let index = functionIndex.get(key)
    if (index === undefined) {
      index = functionTable.length
      const name = str(frame.function ?? '')
      functionTable.push({ nameStrindex: name, systemNameStrindex: name, filenameStrindex: str(frame.file ?? '') })
      functionIndex.set(key, index)
    }
    return index
  }
  const locationOf = (frame: FrameInput): number => {
    const key = locationKeyOf(frame)
    let index = locationIndex.get(key)
    if (index === undefined) {
      index = locationTable.length
      const fn = functionOf(frame)
      locationTable.push({
        mappingIndex: mappingOf(frame),
        address: frame.address,
        line: fn === undefined ? [] : [{ functionIndex: fn, line: frame.line ?? 0 }],
      })
      locationIndex.set(key, index)
    }
    return index
  }

  // group by resource (one per process), then by scope
  const byResource = new Map<string, { resource: Attributes; scopes: Map<string, { scope: AggregatedProfile['scope']; profiles: unknown[] }> }>()
  for (const profile of profiles) {
    const resourceKey = JSON.stringify(profile.resourceAttributes)
    let resourceEntry = byResource.get(resourceKey)
    if (resourceEntry === undefined) byResource.set(resourceKey, (resourceEntry = { resource: profile.resourceAttributes, scopes: new Map() }))
    const scopeKey = `${profile.scope.name}\0${profile.scope.version ?? ''}`
    let scopeEntry = resourceEntry.scopes.get(scopeKey)
    if (scopeEntry === undefined) resourceEntry.scopes.set(scopeKey, (scopeEntry = { scope: profile.scope, profiles: [] }))

    const locationIndices: number[] = []
    const samples = profile.samples.map((sample) => {
      const start = locationIndices.length
      for (const frame of sample.frames) locationIndices.push(locationOf(frame))
      return {
        locationsStartIndex: start,
        locationsLength: sample.frames.length,
        value: sample.values,
        attributeIndices: Object.entries(sampleLabels(profile, sample)).map(([key, value]) => attr(key, value)),
      }
    })
    scopeEntry.profiles.push({
      sampleType: profile.sampleTypes.map(([type, unit]) => ({
        typeStrindex: str(type),
        unitStrindex: str(unit),
        aggregationTemporality: 1, // DELTA: each profile covers its own interval
      })),
      sample: samples,
      locationIndices,
      timeNanos: Math.round(profile.startNs),
      durationNanos: Math.max(0, Math.round(profile.endNs - profile.startNs)),
      periodType:
        profile.periodType === undefined
          ? undefined
          : { typeStrindex: str(profile.periodType[0]), unitStrindex: str(profile.periodType[1]), aggregationTemporality: 1 },
      profileId: randomBytes(16),
    })
  }

  return {
    resourceProfiles: [...byResource.values()].map(({ resource, scopes }) => ({
      resource: { attributes: keyValues(resource) },
      scopeProfiles: [...scopes.values()].map(({ scope, profiles: list }) => ({
        scope: { name: scope.name, version: scope.version ?? '' },
        profiles: list,
      })),
    })),
    dictionary: {
      mappingTable,
      locationTable,
      functionTable,
      stringTable: strings,
      attributeTable,
    },
  }
}

/**
 * buildProfilesRequest's object encoded as it is: its fields already have the proto's types
 * (numbers, Buffers, plain nested objects), so neither protobufjs' verify() nor fromObject() runs,
 * each of which walked or copied the whole request again at every export.
 */
export function encodeProfilesRequest({ request }: ProfileTypes, profiles: readonly AggregatedProfile[]): Uint8Array {
  return request.encode(buildProfilesRequest(profiles)).finish()
}

function checkPartialSuccess({ response }: ProfileTypes, bytes: Uint8Array): void {
  if (bytes.length === 0) return
  const decoded = response.toObject(response.decode(bytes), { longs: Number }) as {
    partialSuccess?: { rejectedProfiles?: number; errorMessage?: string }
  }
  const rejected = decoded.partialSuccess?.rejectedProfiles ?? 0
  if (rejected > 0) {
    // the Collector accepted the request but not all of it; retrying would not help
    throw Object.assign(new Error(`the Collector rejected ${rejected} profile(s): ${decoded.partialSuccess?.errorMessage ?? ''}`), {
      retryable: false,
    })
  }
}

function httpProfileSender(target: OtlpTarget, context: SenderContext, types: ProfileTypes): Sender<AggregatedProfile> {
  return {
    destination: target.url,
    async send(batch) {
      const body = encodeProfilesRequest(types, batch)
      // not AbortSignal.timeout: its timer fires (an abort event and a DOMException) even after the answer came
      const timeout = new AbortController()
      const timer = setTimeout(() => timeout.abort(new Error(`no answer in ${context.exportTimeoutMs} ms`)), context.exportTimeoutMs)
      let response: Response, bytes: Uint8Array
      try {
        response = await fetch(target.url, {
          method: 'POST',
          headers: { ...target.headers, 'content-type': 'application/x-protobuf' },
          body,
          signal: timeout.signal,
        })
        bytes = new Uint8Array(await response.arrayBuffer())
      } finally {
        clearTimeout(timer)
      }
      if (!response.ok) {
        const hint = response.status === 404 ? '; is the Collector started with --feature-gates=service.profilesSupport and a profiles pipeline?' : ''
        throw new Error(`HTTP ${response.status} ${response.statusText}${hint}`)
      }
      checkPartialSuccess(types, bytes)
    },
    shutdown: async () => {},
  }
}

async function grpcProfileSender(target: OtlpTarget, context: SenderContext, types: ProfileTypes): Promise<Sender<AggregatedProfile>> {
  const { Client, credentials } = await import('@grpc/grpc-js')
  const url = new URL(target.url)
  const client = new Client(url.host, url.protocol === 'https:' ? credentials.createSsl() : credentials.createInsecure())
  const metadata = await grpcMetadata(target.headers)
  const identity = (value: Buffer): Buffer => value
  return {
    destination: target.url,
    send(batch) {
      const body = Buffer.from(encodeProfilesRequest(types, batch))
      return new Promise((resolve, reject) => {
        client.makeUnaryRequest(
          GRPC_METHOD,
          identity,
          identity,
          body,
          metadata,
          { deadline: Date.now() + context.exportTimeoutMs },
          (error, response) => {
            if (error) {
              reject(error)
              return
            }
            try {
              checkPartialSuccess(types, response ?? new Uint8Array())
              resolve()
            } catch (partial) {
              reject(partial)
            }
          },
        )
      })
    },
    shutdown: async () => client.close(),
  }
}

/**
 * Writes one file per plugin, profile type and interval, the processes merged (each sample's
 * `pid` and `comm` labels say whose it is): `<dataDir>/profiles/<time>-<sequence>-<plugin>-<type>.pb.gz`,
 * unique and in time order by name. The directory is kept under `maxBytes * (maxFiles + 1)` by
 * deleting the oldest files, the same budget a signal's JSON lines get.
 */
export function pprofFileSender(context: SenderContext): Sender<AggregatedProfile> {
  const dir = join(context.dataDir, 'profiles')
  const budget = context.rotation.maxBytes * (context.rotation.maxFiles + 1)
  let sequence = 0
  const safe = (name: string) => name.replace(/[^A-Za-z0-9_.-]/g, '_')
  return {
    destination: dir,
    async send(batch) {
      await mkdir(dir, { recursive: true })
      for (const profile of mergePerInterval(batch)) {
        const stamp = new Date(profile.startNs / 1e6).toISOString().replace(/:/g, '-').replace(/Z$/, '')
        const name = `${stamp}-${String(sequence++ % 1e6).padStart(6, '0')}-${safe(profile.scope.name)}-${safe(profile.type)}.pb.gz`
        await writeFile(join(dir, name), encodePprof(profile))
      }
      await pruneToBudget(dir, budget)
    },
    shutdown: async () => {},
  }
}

async function pruneToBudget(dir: string, budget: number): Promise<void> {
  const names = (await readdir(dir)).filter((name) => name.endsWith('.pb.gz')).sort().reverse()
  let total = 0
  for (const name of names) {
    const path = join(dir, name)
    total += (await stat(path)).size
    if (total > budget) await rm(path, { force: true })
  }
}

/** Processes per OTLP profiles request: a collection of a busy host is sent in several. */
const PROFILES_PER_REQUEST = 64

/**
 * Sends each interval's profiles PROFILES_PER_REQUEST at a time, taking those sent out of the
 * interval: when a request fails, the queue retries the interval from the first profile not sent.
 */
function inRequests(otlp: Sender<AggregatedProfile>): Sender<AggregatedProfile[]> {
  return {
    destination: otlp.destination,
    async send(intervals) {
      for (const interval of intervals) {
        while (interval.length > 0) {
          const request = interval.slice(0, PROFILES_PER_REQUEST)
          await otlp.send(request)
          interval.splice(0, request.length)
        }
      }
    },
    shutdown: () => otlp.shutdown(),
  }
}

/** Where profiles go, an interval at a time: OTLP (plus pprof files if asked), or pprof files in the embedded store. */
export async function profileSender(target: SignalTarget, context: SenderContext, writePprof: boolean): Promise<Sender<AggregatedProfile[]>> {
  const files = pprofFileSender(context)
  const writeFiles = async (intervals: AggregatedProfile[][]): Promise<void> => {
    for (const interval of intervals) await files.send(interval)
  }
  if (target.kind === 'embedded') return { destination: files.destination, send: writeFiles, shutdown: () => files.shutdown() }
  const types = await loadTypes()
  const otlp = inRequests(target.protocol === 'grpc' ? await grpcProfileSender(target, context, types) : httpProfileSender(target, context, types))
  if (!writePprof) return otlp
  // an interval is retried until the Collector takes it; its pprof file is written only once
  const written = new WeakSet<AggregatedProfile[]>()
  return {
    destination: otlp.destination,
    async send(intervals) {
      const fresh = intervals.filter((interval) => !written.has(interval))
      await writeFiles(fresh)
      for (const interval of fresh) written.add(interval)
      await otlp.send(intervals)
    },
    shutdown: () => otlp.shutdown(),
  }
}
