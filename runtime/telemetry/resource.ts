/**
 * Resources: who produced a signal. Periscope's own data (self-metrics, plugin metrics) carries the
 * runtime's resource. Spans, logs and profiles about a traced process carry that process's
 * resource instead (`process.*`, and a `service.name` derived from its executable), so a backend
 * shows them under the traced service, not under Periscope.
 *
 * Both share the host's attributes, the user's OTEL_RESOURCE_ATTRIBUTES and
 * `collection.method=ebpf`, which tells a backend how the data was obtained.
 */
import { basename } from 'node:path'
import { detectResources, hostDetector, osDetector, resourceFromAttributes } from '@opentelemetry/resources'
import type { Resource } from '@opentelemetry/resources'
import type { Attributes } from '@opentelemetry/api'
import type { ProcessRef } from './signals.ts'
import type { TelemetryConfig } from './config.ts'

const SDK_ATTRIBUTES = {
  'telemetry.sdk.name': 'opentelemetry',
  'telemetry.sdk.language': 'nodejs',
  'telemetry.sdk.version': '2.12.1',
  'telemetry.distro.name': 'periscope',
}

export const COLLECTION_METHOD = { 'collection.method': 'ebpf' }

/** Host and OS attributes, detected once at start-up. */
export async function detectHostAttributes(): Promise<Attributes> {
  const detected = detectResources({ detectors: [hostDetector, osDetector] })
  await detected.waitForAsyncAttributes?.()
  return { ...detected.attributes }
}

export function runtimeResource(
  hostAttributes: Attributes,
  userAttributes: Record<string, string>,
  serviceName: string | undefined,
): Resource {
  return resourceFromAttributes({
    ...SDK_ATTRIBUTES,
    ...hostAttributes,
    'process.pid': process.pid,
    'process.executable.name': basename(process.execPath),
    'process.executable.path': process.execPath,
    'process.runtime.name': 'nodejs',
    'process.runtime.version': process.versions.node,
    ...userAttributes,
    ...COLLECTION_METHOD,
    'service.name': serviceName ?? 'periscope',
  })
}

type ServiceNameRule = TelemetryConfig['processes']['serviceNames'][number]

interface CompiledRule {
  executable: RegExp | undefined
  commandLine: RegExp | undefined
  serviceName: string
}

/**
 * Resources for traced processes, cached by identity (pid plus executable, since pids are reused).
 * The cache is an LRU of bounded size: heavy process churn must not grow memory without limit. An
 * evicted process simply gets its resource rebuilt if it shows up again.
 */
export class ProcessResources<Extra> {
  private readonly cache = new Map<string, { resource: Resource; extra: Extra }>()
  private readonly maxEntries: number
  private readonly shared: Attributes
  private readonly rules: CompiledRule[]
  private readonly makeExtra: (resource: Resource) => Extra

  constructor(
    maxEntries: number,
    hostAttributes: Attributes,
    userAttributes: Record<string, string>,
    rules: ServiceNameRule[],
    makeExtra: (resource: Resource) => Extra,
  ) {
    this.maxEntries = maxEntries
    // the user's service.name names Periscope itself, not the processes it watches
    const { 'service.name': _ignored, ...rest } = userAttributes
    this.shared = { ...SDK_ATTRIBUTES, ...hostAttributes, ...rest, ...COLLECTION_METHOD }
    this.rules = rules.map((rule) => ({
      executable: rule.executable === undefined ? undefined : new RegExp(rule.executable),
      commandLine: rule.commandLine === undefined ? undefined : new RegExp(rule.commandLine),
      serviceName: rule.serviceName,
    }))
    this.makeExtra = makeExtra
  }

  get size(): number {
    return this.cache.size
  }

  get(ref: ProcessRef): { resource: Resource; extra: Extra } {
    const key = `${ref.pid}\0${ref.executablePath ?? ''}\0${ref.command ?? ''}\0${ref.serviceName ?? ''}`
    const hit = this.cache.get(key)
    if (hit !== undefined) {
      // re-insert to mark as most recently used
      this.cache.delete(key)
      this.cache.set(key, hit)
      return hit
    }
    const resource = resourceFromAttributes({ ...this.shared, ...processAttributes(ref, this.serviceNameOf(ref)) })
    const entry = { resource, extra: this.makeExtra(resource) }
    this.cache.set(key, entry)
    if (this.cache.size > this.maxEntries) {
      const oldest = this.cache.keys().next().value
      if (oldest !== undefined) this.cache.delete(oldest)
    }
    return entry
  }

  /**
   * `get` for one batch of items: each process costs one cache lookup per batch rather than one
   * per item, which matters on the span path where a batch holds hundreds of spans.
   */
  batchLookup(): (ref: ProcessRef) => { resource: Resource; extra: Extra } {
    const seen = new Map<number, { ref: ProcessRef; entry: { resource: Resource; extra: Extra } }>()
    return (ref) => {
      const last = seen.get(ref.pid)
      if (
        last !== undefined &&
        last.ref.executablePath === ref.executablePath &&
        last.ref.command === ref.command &&
        last.ref.serviceName === ref.serviceName
      ) {
        return last.entry
      }
      const entry = this.get(ref)
      seen.set(ref.pid, { ref, entry })
      return entry
    }
  }

  /** Rule first, then the plugin's own name for it, then the executable, then the command. */
  serviceNameOf(ref: ProcessRef): string {
    for (const rule of this.rules) {
      if (rule.executable !== undefined && !rule.executable.test(ref.executablePath ?? '')) continue
      if (rule.commandLine !== undefined && !rule.commandLine.test(ref.commandLine ?? '')) continue
      return rule.serviceName
    }
    if (ref.serviceName !== undefined && ref.serviceName !== '') return ref.serviceName
    if (ref.executablePath !== undefined && ref.executablePath !== '') return basename(ref.executablePath)
    if (ref.command !== undefined && ref.command !== '') return ref.command
    return `unknown_service:pid${ref.pid}`
  }
}

function processAttributes(ref: ProcessRef, serviceName: string): Attributes {
  const attributes: Attributes = { 'process.pid': ref.pid, 'service.name': serviceName }
  if (ref.executablePath !== undefined) {
    attributes['process.executable.path'] = ref.executablePath
    attributes['process.executable.name'] = basename(ref.executablePath)
  }
  if (ref.command !== undefined) attributes['process.command'] = ref.command
  if (ref.commandLine !== undefined) attributes['process.command_line'] = ref.commandLine
  return attributes
}
