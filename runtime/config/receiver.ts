/**
 * The seed-shaped `receiver` block turned into settings of the shipped plugins. The block is the
 * product's switchboard (which protocols are traced, filters, sampling, RED metrics); the plugins
 * only ever see their own `ctx.config`, so a user plugin that replaces a shipped one reads the
 * same keys. `plugins.<name>.config` in periscope.yaml still wins key by key.
 */
import type { PeriscopeConfig } from './schema.ts'

type Receiver = NonNullable<PeriscopeConfig['receiver']>

/** Config keys the HTTP plugin reads from the receiver block (plugins/http.ts documents each). */
export interface HttpReceiverSettings {
  enabled: boolean
  config: {
    https?: boolean
    go_tls?: boolean
    min_duration_ms?: number
    http_status?: string
    http_methods?: string[]
    sampling_percent?: number
    red_metrics?: boolean
  }
}

function httpSettings(receiver: Receiver): HttpReceiverSettings {
  const traces = receiver.traces
  const protocols = traces?.protocols
  const config: HttpReceiverSettings['config'] = {}
  // with no protocols list every protocol is on, as with no receiver block at all
  if (protocols !== undefined) config.https = config.go_tls = protocols.includes('https')
  const filters = traces?.filters
  if (filters?.min_duration !== undefined) config.min_duration_ms = filters.min_duration
  if (filters?.http_status !== undefined) config.http_status = filters.http_status.replaceAll(' ', '')
  if (filters?.http_methods !== undefined) config.http_methods = filters.http_methods
  if (traces?.sampling !== undefined) config.sampling_percent = traces.sampling
  if (receiver.metrics?.red !== undefined) config.red_metrics = receiver.metrics.red
  const enabled = protocols === undefined || protocols.includes('http') || protocols.includes('https')
  return { enabled, config }
}

/** Config keys every database and messaging plugin reads from the receiver block (plugins/redis.ts documents each). */
export interface ClientReceiverSettings {
  enabled: boolean
  config: {
    min_duration_ms?: number
    sampling_percent?: number
    metrics?: boolean
  }
}

/** The receiver's protocol names of the database and messaging plugins, by plugin name. */
const clientPlugins = { redis: 'redis', postgres: 'postgresql', mysql: 'mysql', kafka: 'kafka' } as const

function clientSettings(receiver: Receiver, protocol: string): ClientReceiverSettings {
  const traces = receiver.traces
  const config: ClientReceiverSettings['config'] = {}
  if (traces?.filters?.min_duration !== undefined) config.min_duration_ms = traces.filters.min_duration
  if (traces?.sampling !== undefined) config.sampling_percent = traces.sampling
  // `red` switches the request-duration histograms, which these plugins' operation durations are too
  if (receiver.metrics?.red !== undefined) config.metrics = receiver.metrics.red
  return { enabled: traces?.protocols === undefined || traces.protocols.includes(protocol as never), config }
}

/**
 * Config keys the HTTP/2 plugin reads from the receiver block (plugins/http2.ts documents each):
 * the http plugin's, with `metrics` for `red_metrics`, and which kinds of stream it traces.
 */
export interface Http2ReceiverSettings {
  enabled: boolean
  config: Omit<HttpReceiverSettings['config'], 'red_metrics'> & { grpc?: boolean; http?: boolean; metrics?: boolean }
}

/**
 * gRPC is HTTP/2; plain HTTP/2 follows `http`. TLS (OpenSSL and Go's) follows `https`, and
 * `grpc` too: gRPC mostly runs inside TLS, and naming it means tracing it.
 */
function http2Settings(receiver: Receiver): Http2ReceiverSettings {
  const protocols = receiver.traces?.protocols
  const { red_metrics, ...shared } = httpSettings(receiver).config
  const config: Http2ReceiverSettings['config'] = { ...shared }
  if (red_metrics !== undefined) config.metrics = red_metrics
  if (protocols !== undefined) {
    config.grpc = protocols.includes('grpc')
    config.http = protocols.includes('http') || protocols.includes('https')
    config.https = config.go_tls = shared.https === true || config.grpc
  }
  const enabled = protocols === undefined || ['grpc', 'http', 'https'].some((p) => protocols.includes(p as never))
  return { enabled, config }
}

type PluginSettings = { enabled: boolean; config: Record<string, unknown> }

/**
 * The kernel-metric and audit plugins, from `receiver.metrics` and `receiver.logs`. The seed's
 * defaults: TCP, file I/O, processes and the security audit log on; syscall counts, the per-pid
 * syscall log and allocation statistics off (they cost the most), so these are not even loaded
 * until a key or `plugins.<name>.enabled` turns them on.
 */
function kernelSettings(receiver: Receiver): Record<string, PluginSettings> {
  const metrics = receiver.metrics ?? {}
  const logs = receiver.logs ?? {}
  const interval = metrics.collect_interval === undefined ? {} : { collect_interval_ms: metrics.collect_interval }
  const tcp = { connections: metrics.tcp_connections ?? true, retransmits: metrics.tcp_retransmits ?? true }
  const audit: Record<string, unknown> = {}
  if (logs.audit_rules !== undefined) audit.events = logs.audit_rules.flatMap((rule) => auditEvents[rule])
  return {
    tcp: { enabled: tcp.connections || tcp.retransmits, config: { ...interval, ...tcp } },
    'file-io': { enabled: metrics.file_io ?? true, config: { ...interval } },
    processes: { enabled: true, config: { ...interval } },
    syscalls: { enabled: metrics.syscalls ?? false, config: { ...interval } },
    allocations: { enabled: metrics.memory ?? false, config: { ...interval } },
    audit: { enabled: logs.security_audit ?? true, config: audit },
    'syscall-log': { enabled: logs.syscalls ?? false, config: {} },
  }
}

/**
 * The seed's `audit_rules` names → the audit plugin's `events` (plugins/audit.ts documents each):
 * a file's deletion goes with its rename (the "deletion and rename"), an outbound connect
 * with the inbound accept.
 */
const auditEvents: Record<NonNullable<NonNullable<Receiver['logs']>['audit_rules']>[number], string[]> = {
  execve: ['execve'],
  unlink: ['unlink', 'rename'],
  setuid: ['setuid'],
  connect: ['connect', 'accept'],
}

/**
 * The profilers, from `receiver.profiles`: CPU profiles on (19 Hz unless `cpu_sampling_rate`
 * says otherwise), off-CPU profiles only with `off_cpu: true`, allocation profiles only with
 * `plugins.alloc-profile.enabled` (the block has no key for them). `target_pids` and
 * `collect_interval` apply to all three (plugins/cpu-profile.ts documents each key).
 */
function profileSettings(receiver: Receiver): Record<string, PluginSettings> {
  const profiles = receiver.profiles ?? {}
  const shared: Record<string, unknown> = {}
  if (profiles.collect_interval !== undefined) shared.collect_interval_ms = profiles.collect_interval
  if (profiles.target_pids !== undefined) shared.target_pids = profiles.target_pids
  const cpu = { ...shared, ...(profiles.cpu_sampling_rate === undefined ? {} : { frequency: profiles.cpu_sampling_rate }) }
  return {
    'cpu-profile': { enabled: true, config: cpu },
    'offcpu-profile': { enabled: profiles.off_cpu ?? false, config: shared },
    'alloc-profile': { enabled: false, config: shared },
  }
}

/**
 * Settings per shipped plugin derived from the receiver block. Without a block, only the
 * defaults that differ from "loaded, with the plugin's own config": the costly plugins are off.
 */
export function shippedPluginSettings(config: PeriscopeConfig): Record<string, PluginSettings> {
  const receiver = config.receiver
  const settings = { ...kernelSettings(receiver ?? {}), ...profileSettings(receiver ?? {}) }
  if (receiver === undefined) return settings
  settings.http = httpSettings(receiver)
  settings.http2 = http2Settings(receiver)
  for (const [plugin, protocol] of Object.entries(clientPlugins)) settings[plugin] = clientSettings(receiver, protocol)
  return settings
}
