/**
 * Profile samples from plugins, aggregated per (plugin, profile type, process) over an interval:
 * samples with the same stack and labels are summed, as pprof itself would. Each interval yields
 * one `AggregatedProfile` per key, which then goes out as a gzipped pprof file
 * (`encodePprof`, readable by `go tool pprof`) and/or as the OTLP profiles signal
 * (`profiles-otlp.ts`).
 *
 * Memory is bounded by the number of distinct stacks held across all open profiles; samples with
 * a new stack beyond that limit are dropped and counted.
 */
import { gzipSync } from 'node:zlib'
import {
  Function as PprofFunction,
  Label,
  Line,
  Location,
  Mapping,
  Profile,
  Sample,
  StringTable,
  ValueType,
} from 'pprof-format'
import type { Attributes } from '@opentelemetry/api'
import type { FrameInput, ProcessRef, ProfileSampleInput } from './signals.ts'

export type ValueTypePair = readonly [type: string, unit: string]

interface ProfileTypeSpec {
  sampleTypes: ValueTypePair[]
  periodType?: ValueTypePair
}

/**
 * The profile types Periscope's plugins emit, with the sample types `go tool pprof` knows (the
 * names of Go's own CPU and heap profiles), values in this order; any other type gets `count`
 * values named after it. `go tool pprof` shows the last sample type unless told otherwise: CPU
 * time, and bytes still in use.
 */
export const PROFILE_TYPES: Record<string, ProfileTypeSpec> = {
  cpu: { sampleTypes: [['samples', 'count'], ['cpu', 'nanoseconds']], periodType: ['cpu', 'nanoseconds'] },
  offcpu: { sampleTypes: [['off_cpu', 'nanoseconds']] },
  alloc: { sampleTypes: [['alloc_space', 'bytes'], ['inuse_space', 'bytes']] },
}

export interface AggregatedSample {
  frames: FrameInput[]
  values: number[]
  labels: Record<string, string | number>
}

export interface AggregatedProfile {
  scope: { name: string; version?: string }
  type: string
  process: ProcessRef | undefined
  resourceAttributes: Attributes
  startNs: number
  endNs: number
  sampleTypes: ValueTypePair[]
  periodType: ValueTypePair | undefined
  samples: AggregatedSample[]
}

interface OpenProfile {
  scope: { name: string; version?: string }
  type: string
  process: ProcessRef | undefined
  resourceAttributes: Attributes
  startNs: number
  sampleTypes: ValueTypePair[]
  periodType: ValueTypePair | undefined
  samples: Map<string, AggregatedSample>
}

export class ProfileAggregator {
  private open = new Map<string, OpenProfile>()
  private stacks = 0
  private readonly maxStacks: number
  /** Wall-clock ns. */
  private readonly nowNs: () => number
  /** Where the current interval began: each profile of it spans the interval, as pprof's duration. */
  private intervalStartNs: number
  /** Samples dropped because the distinct-stack limit was reached. */
  droppedSamples = 0
  rejected = 0

  constructor(maxStacks: number, nowNs: () => number = () => Date.now() * 1e6) {
    this.maxStacks = maxStacks
    this.nowNs = nowNs
    this.intervalStartNs = nowNs()
  }

  add(
    scope: { name: string; version?: string },
    samples: readonly ProfileSampleInput[],
    resourceFor: (process: ProcessRef | undefined) => Attributes,
  ): string | undefined {
    let firstProblem: string | undefined
    for (const sample of samples) {
      const problem = this.addOne(scope, sample, resourceFor)
      if (problem !== undefined) {
        this.rejected++
        firstProblem ??= problem
      }
    }
    return firstProblem
  }

  private addOne(
    scope: { name: string; version?: string },
    sample: ProfileSampleInput,
    resourceFor: (process: ProcessRef | undefined) => Attributes,
  ): string | undefined {
    if (typeof sample?.type !== 'string' || sample.type === '') return 'profile sample without a `type`'
    if (!Array.isArray(sample.frames) || sample.frames.length === 0) return `profile sample (${sample.type}): \`frames\` must be a non-empty array, leaf first`
    if (!Array.isArray(sample.values) || sample.values.some((v) => !Number.isFinite(v))) {
      return `profile sample (${sample.type}): \`values\` must be finite numbers`
    }
    for (const frame of sample.frames) {
      if (!Number.isFinite(frame?.address) || frame.address < 0) return `profile sample (${sample.type}): every frame needs a non-negative \`address\``
    }
    const pid = sample.process?.pid
    const key = `${scope.name}\0${scope.version ?? ''}\0${sample.type}\0${pid ?? ''}\0${sample.process?.executablePath ?? ''}`
    let profile = this.open.get(key)
    if (profile === undefined) {
      const spec = PROFILE_TYPES[sample.type]
      const sampleTypes: ValueTypePair[] =
        spec?.sampleTypes ?? sample.values.map((_, i): ValueTypePair => [i === 0 ? sample.type : `${sample.type}_${i}`, 'count'])
      profile = {
        scope,
        type: sample.type,
        process: sample.process,
        resourceAttributes: resourceFor(sample.process),
        startNs: this.intervalStartNs,
        sampleTypes,
        periodType: spec?.periodType,
        samples: new Map(),
      }
      this.open.set(key, profile)
    }
    if (sample.values.length !== profile.sampleTypes.length) {
      return `profile sample (${sample.type}): expected ${profile.sampleTypes.length} value(s) (${profile.sampleTypes.map(([t, u]) => `${t}/${u}`).join(', ')}), got ${sample.values.length}`
    }
    const labels = sample.labels ?? {}
    const stackKey = `${stackKeyOf(sample.frames)}|${JSON.stringify(labels)}`
    const existing = profile.samples.get(stackKey)
    if (existing !== undefined) {
      for (let i = 0; i < existing.values.length; i++) existing.values[i] += sample.values[i]
      return undefined
    }
    if (this.stacks >= this.maxStacks) {
      this.droppedSamples++
      return undefined
    }
    this.stacks++
    profile.samples.set(stackKey, { frames: sample.frames, values: [...sample.values], labels: { ...labels } })
    return undefined
  }

  /** Closes every open profile and returns them; the next samples start new profiles. */
  drain(): AggregatedProfile[] {
    const endNs = this.nowNs()
    const closed: AggregatedProfile[] = []
    for (const profile of this.open.values()) {
      closed.push({
        scope: profile.scope,
        type: profile.type,
        process: profile.process,
        resourceAttributes: profile.resourceAttributes,
        startNs: profile.startNs,
        endNs,
        sampleTypes: profile.sampleTypes,
        periodType: profile.periodType,
        samples: [...profile.samples.values()],
      })
    }
    this.open = new Map()
    this.stacks = 0
    this.intervalStartNs = endNs
    return closed
  }
}

function stackKeyOf(frames: readonly FrameInput[]): string {
  let key = ''
  for (const frame of frames) key += `${frame.address}:${frame.function ?? ''}:${frame.mapping?.file ?? ''};`
  return key
}

/** Dictionary keys for frames, shared by the pprof and OTLP encoders so both dedupe the same way. */
export function functionKeyOf(frame: FrameInput): string | undefined {
  if (frame.function === undefined && frame.file === undefined) return undefined
  return `${frame.function ?? ''}\0${frame.file ?? ''}`
}

export function mappingKeyOf(frame: FrameInput): string | undefined {
  const m = frame.mapping
  if (m === undefined) return undefined
  return `${m.file}\0${m.buildId ?? ''}\0${m.start ?? 0}\0${m.end ?? 0}\0${m.offset ?? 0}`
}

export function locationKeyOf(frame: FrameInput): string {
  return `${frame.address}\0${mappingKeyOf(frame) ?? ''}\0${functionKeyOf(frame) ?? ''}\0${frame.line ?? 0}`
}

/** The labels an OTLP sample carries: the plugin's, plus the process id when known. */
export function sampleLabels(profile: AggregatedProfile, sample: AggregatedSample): Record<string, string | number> {
  const labels: Record<string, string | number> = { ...sample.labels }
  if (profile.process !== undefined && labels.pid === undefined) labels.pid = profile.process.pid
  return labels
}

/**
 * pprof's names for the labels the profilers put on each sample (OpenTelemetry's names in OTLP),
 * short as `go tool pprof -tagfocus=comm=redis-server` or `-tagroot=pid` want them.
 */
const PPROF_LABEL_NAMES: Record<string, string> = { 'process.pid': 'pid', 'thread.id': 'thread', 'thread.name': 'comm' }

/** The labels a pprof sample carries: the plugin's under pprof's names, plus the process id when known. */
export function pprofLabels(profile: AggregatedProfile, sample: AggregatedSample): Record<string, string | number> {
  const labels: Record<string, string | number> = {}
  for (const [key, value] of Object.entries(sample.labels)) labels[PPROF_LABEL_NAMES[key] ?? key] = value
  if (profile.process !== undefined) labels.pid ??= profile.process.pid
  return labels
}

/**
 * What one sample stands for in the period type's unit (CPU nanoseconds per sample at the
 * sampling frequency), from the totals: the plugins emit a count and its weight, not the period.
 * 0 when the profile has no period type, or it is not the weight of a count.
 */
export function samplingPeriod(profile: AggregatedProfile): number {
  const periodType = profile.periodType
  if (periodType === undefined || profile.sampleTypes[0]?.[1] !== 'count') return 0
  const weightAt = profile.sampleTypes.findIndex(([type, unit]) => type === periodType[0] && unit === periodType[1])
  if (weightAt <= 0) return 0
  let count = 0
  let weight = 0
  for (const sample of profile.samples) {
    count += sample.values[0]
    weight += sample.values[weightAt]
  }
  return count > 0 ? Math.round(weight / count) : 0
}

/**
 * One profile of the samples of several (of one type, e.g. each process's CPU profile of an
 * interval), spanning all their intervals: what a whole-host `periscope profile` writes. Each
 * sample keeps its process as labels (pid, and comm when the plugin gave none), since the merged
 * profile has no process of its own.
 */
export function mergeProfiles(profiles: readonly AggregatedProfile[]): AggregatedProfile {
  const [first] = profiles
  if (first === undefined) throw new Error('mergeProfiles: no profile to merge')
  const other = profiles.find((p) => p.type !== first.type)
  if (other !== undefined) throw new Error(`mergeProfiles: profiles of types ${first.type} and ${other.type} cannot be one profile`)
  const samples: AggregatedSample[] = []
  for (const profile of profiles) {
    for (const sample of profile.samples) {
      const labels: Record<string, string | number> = { ...sample.labels }
      if (profile.process !== undefined) {
        labels['process.pid'] ??= profile.process.pid
        const command = profile.process.command
        if (command !== undefined) labels['thread.name'] ??= command
      }
      samples.push({ frames: sample.frames, values: sample.values, labels })
    }
  }
  return {
    ...first,
    process: profiles.length === 1 ? first.process : undefined,
    startNs: Math.min(...profiles.map((p) => p.startNs)),
    endNs: Math.max(...profiles.map((p) => p.endNs)),
    samples,
  }
}

/**
 * The profiles of one drain merged into one per (plugin, type, interval): what a continuous
 * profiler writes as files, each sample keeping its process in its labels (mergeProfiles). Each
 * group keeps the place of its first profile, so the order of intervals is kept.
 */
export function mergePerInterval(profiles: readonly AggregatedProfile[]): AggregatedProfile[] {
  const groups = new Map<string, AggregatedProfile[]>()
  for (const profile of profiles) {
    const types = profile.sampleTypes.map(([type, unit]) => `${type}/${unit}`).join(',')
    const key = `${profile.scope.name}\0${profile.scope.version ?? ''}\0${profile.type}\0${types}\0${profile.startNs}\0${profile.endNs}`
    const group = groups.get(key)
    if (group === undefined) groups.set(key, [profile])
    else group.push(profile)
  }
  return [...groups.values()].map(mergeProfiles)
}

/**
 * The name a frame goes by in a table or a flame graph: its function, else where it is
 * (`libfoo.so+0x1a2b`: the offset in the file, when the mapping says where the file is loaded),
 * else its address.
 */
export function frameName(frame: FrameInput): string {
  if (frame.function !== undefined && frame.function !== '') return frame.function
  const mapping = frame.mapping
  if (mapping !== undefined) {
    const offset = mapping.start === undefined ? frame.address : frame.address - mapping.start + (mapping.offset ?? 0)
    return `${mapping.file.slice(mapping.file.lastIndexOf('/') + 1)}+0x${offset.toString(16)}`
  }
  return `0x${frame.address.toString(16)}`
}

/**
 * Encodes one profile as a gzipped pprof (profile.proto), the format `go tool pprof` reads.
 * A mapping is marked `has_functions` when any of its frames is named, which tells pprof not to
 * look the mapping's file up itself; it carries the build id, so a backend can fetch the right
 * debug file for the frames left unnamed.
 */
export function encodePprof(profile: AggregatedProfile): Uint8Array {
  const strings = new StringTable()
  const functions = new Map<string, PprofFunction>()
  const mappings = new Map<string, Mapping>()
  const locations = new Map<string, Location>()

  const mappingOf = (frame: FrameInput): Mapping | undefined => {
    const key = mappingKeyOf(frame)
    if (key === undefined || frame.mapping === undefined) return undefined
    let mapping = mappings.get(key)
    if (mapping === undefined) {
      const m = frame.mapping
      mapping = new Mapping({
        id: mappings.size + 1,
        memoryStart: m.start ?? 0,
        memoryLimit: m.end ?? 0,
        fileOffset: m.start === undefined ? 0 : m.offset ?? 0,
        filename: strings.dedup(m.file),
        buildId: strings.dedup(m.buildId ?? ''),
      })
      mappings.set(key, mapping)
    }
    // a plugin that knows where a file is loaded but not how far it reaches: up to its last frame
    if (frame.mapping.end === undefined && frame.mapping.start !== undefined && frame.address >= Number(mapping.memoryLimit)) {
      mapping.memoryLimit = frame.address + 1
    }
    if (frame.function !== undefined) mapping.hasFunctions = true
    if (frame.file !== undefined) mapping.hasFilenames = true
    if (frame.line !== undefined) mapping.hasLineNumbers = true
    return mapping
  }
  const functionIdOf = (frame: FrameInput): number => {
    const key = functionKeyOf(frame)
    if (key === undefined) return 0
    let fn = functions.get(key)
    if (fn === undefined) {
      const name = strings.dedup(frame.function ?? '')
      fn = new PprofFunction({ id: functions.size + 1, name, systemName: name, filename: strings.dedup(frame.file ?? '') })
      functions.set(key, fn)
    }
    return Number(fn.id)
  }
  const locationIdOf = (frame: FrameInput): number => {
    const key = locationKeyOf(frame)
    let location = locations.get(key)
    if (location === undefined) {
      const functionId = functionIdOf(frame)
      location = new Location({
        id: locations.size + 1,
        mappingId: mappingOf(frame)?.id ?? 0,
        address: frame.address,
        line: functionId === 0 ? [] : [new Line({ functionId, line: frame.line ?? 0 })],
      })
      locations.set(key, location)
    }
    return Number(location.id)
  }

  // pprof takes the first mapping for the profiled program (its `File:` line)
  const executable = profile.process?.executablePath
  const executableFrame = executable === undefined ? undefined : profile.samples.flatMap((s) => s.frames).find((f) => f.mapping?.file === executable)
  if (executableFrame !== undefined) mappingOf(executableFrame)

  const samples = profile.samples.map(
    (sample) =>
      new Sample({
        locationId: sample.frames.map(locationIdOf),
        value: sample.values,
        label: Object.entries(pprofLabels(profile, sample)).map(([key, value]) =>
          typeof value === 'number'
            ? new Label({ key: strings.dedup(key), num: value })
            : new Label({ key: strings.dedup(key), str: strings.dedup(value) }),
        ),
      }),
  )
  const encoded = new Profile({
    sampleType: profile.sampleTypes.map(([type, unit]) => new ValueType({ type: strings.dedup(type), unit: strings.dedup(unit) })),
    sample: samples,
    mapping: [...mappings.values()],
    location: [...locations.values()],
    function: [...functions.values()],
    stringTable: strings,
    timeNanos: BigInt(Math.round(profile.startNs)),
    durationNanos: BigInt(Math.max(0, Math.round(profile.endNs - profile.startNs))),
    periodType:
      profile.periodType === undefined
        ? undefined
        : new ValueType({ type: strings.dedup(profile.periodType[0]), unit: strings.dedup(profile.periodType[1]) }),
    period: samplingPeriod(profile),
  }).encode()
  return gzipSync(encoded)
}
