/**
 * The shape of periscope.yaml. The `receiver` block follows the seed's `receivers.ebpf` block
 * (traces, metrics, logs, profiles, resource_limits); `plugins` holds per-plugin settings;
 * `exporter` belongs to the telemetry exporter. Every object is strict, so a misspelt key is an
 * error naming its path rather than a setting silently ignored.
 */
import { z } from 'zod'
import { parseDuration } from '../plugins/duration.ts'
import { telemetryConfigSchema } from '../telemetry/config.ts'

const duration = z
  .union([z.string(), z.number()])
  .transform((value, ctx) => {
    const ms = parseDuration(value)
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `'${value}' is not a duration; write it like 100ms, 10s or 1m` })
      return z.NEVER
    }
    return ms
  })

const percent = z
  .union([z.string(), z.number()])
  .transform((value, ctx) => {
    const match = typeof value === 'number' ? [String(value), String(value)] : /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(value)
    const n = match === null ? NaN : Number(match[1])
    if (!(n >= 0 && n <= 100)) {
      ctx.addIssue({ code: 'custom', message: `'${value}' is not a percentage; write it like 1% or 0.5%` })
      return z.NEVER
    }
    return n
  })

export const resourceLimitsSchema = z.strictObject({
  /** Heap limit of each plugin's isolate. */
  max_memory_mb: z.number().int().min(8).max(4096).optional(),
  /** Share of one CPU a plugin may use per second; beyond it, batches are dropped and counted. */
  max_cpu_percent: z.number().gt(0).max(100).optional(),
  /** Records per second a plugin accepts; beyond it, batches are dropped and counted. */
  max_events_per_second: z.number().int().positive().optional(),
  /** Wall time one batch may take inside a plugin before it is stopped as looping. */
  batch_budget: duration.optional(),
  /** Wall time an async setup() or ctx.every callback may take to settle before the plugin is stopped. */
  call_deadline: duration.optional(),
})

const filterSchema = z.strictObject({
  min_duration: duration.optional(),
  /** A comparison against the response status: ">=400", "500", "<300". */
  http_status: z.string().regex(/^\s*(>=|<=|>|<|==)?\s*\d{3}\s*$/, 'write a status comparison like ">=400"').optional(),
  http_methods: z.array(z.string().regex(/^[A-Z]+$/, 'methods are upper case, like GET')).optional(),
  exclude_internal_traffic: z.boolean().optional(),
})

/** The seed's receiver block (`receivers: ebpf:`), without the Collector-only `endpoint`. */
export const receiverSchema = z.strictObject({
  traces: z.strictObject({
    protocols: z.array(z.enum(['http', 'https', 'grpc', 'mysql', 'postgresql', 'redis', 'kafka'])).optional(),
    /** The seed writes filters as a list of one-key maps (`- min_duration: 100ms`); both forms are accepted. */
    filters: z.preprocess((f) => (f === undefined || Array.isArray(f) ? f : [f]), z.array(filterSchema).optional())
      .transform((f) => (f === undefined ? undefined : Object.assign({}, ...f) as z.infer<typeof filterSchema>)),
    sampling: percent.optional(),
  }).optional(),
  metrics: z.strictObject({
    tcp_connections: z.boolean().optional(),
    tcp_retransmits: z.boolean().optional(),
    file_io: z.boolean().optional(),
    syscalls: z.boolean().optional(),
    memory: z.boolean().optional(),
    red: z.boolean().optional(),
    collect_interval: duration.optional(),
  }).optional(),
  logs: z.strictObject({
    security_audit: z.boolean().optional(),
    syscalls: z.boolean().optional(),
    audit_rules: z.array(z.enum(['execve', 'unlink', 'setuid', 'connect'])).optional(),
  }).optional(),
  profiles: z.strictObject({
    cpu_sampling_rate: z.number().int().positive().max(1000).optional(),
    collect_interval: duration.optional(),
    /** Empty means every process. */
    target_pids: z.array(z.number().int().positive()).optional(),
    off_cpu: z.boolean().optional(),
  }).optional(),
  resource_limits: resourceLimitsSchema.optional(),
})

const configValue: z.ZodType<unknown> = z.lazy(() =>
  z.union([z.string(), z.number(), z.boolean(), z.null(), z.array(configValue), z.record(z.string(), configValue)]))

export const pluginSettingsSchema = z.strictObject({
  enabled: z.boolean().optional(),
  /** Overrides the plugin's `config` defaults, key by key. */
  config: z.record(z.string(), configValue).optional(),
  /** Only these processes, for plugins that honour it (passed in ctx.config.target_pids). */
  target_pids: z.array(z.number().int().positive()).optional(),
  /**
   * Only processes in these cgroup v2 directories or below them, for plugins that honour it
   * (resolved to cgroup ids at start, passed in ctx.config.target_cgroup_ids).
   */
  target_cgroups: z.array(z.string().startsWith('/', "write the cgroup directory's absolute path, like /sys/fs/cgroup/system.slice/nginx.service")).optional(),
  resource_limits: resourceLimitsSchema.optional(),
})

export const configSchema = z.strictObject({
  /** Extra plugin directories, besides plugins/ and each --plugins. */
  plugin_dirs: z.array(z.string()).optional(),
  receiver: receiverSchema.optional(),
  /** Per plugin, by the plugin's `name`. */
  plugins: z.record(z.string(), pluginSettingsSchema).optional(),
  /** Load-time settings of library objects (`.rodata` globals), by object name. */
  objects: z.record(z.string(), z.record(z.string(), z.union([z.number(), z.boolean()]))).optional(),
  admin: z.strictObject({
    /** Unix socket path; default /run/periscope/admin.sock as root, else under $XDG_RUNTIME_DIR or /tmp. */
    socket: z.string().optional(),
  }).optional(),
  /** The telemetry exporter's settings (runtime/telemetry/config.ts). */
  exporter: telemetryConfigSchema.optional(),
  self_metrics: z.strictObject({
    /**
     * periscope.bpf.program.run.count and run.time, from the kernel's BPF stats, which Periscope
     * turns on while it runs (default true). They cost every BPF program run on the host two clock
     * reads: false leaves them as they are (on only if the kernel.bpf_stats_enabled sysctl is 1).
     */
    bpf_program_stats: z.boolean().optional(),
  }).optional(),
})

export type PeriscopeConfig = z.infer<typeof configSchema>
export type ResourceLimits = z.infer<typeof resourceLimitsSchema>
