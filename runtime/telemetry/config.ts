/**
 * Where telemetry goes and how it is batched, from two sources: the `exporter` section of
 * periscope.yaml (validated by `telemetryConfigSchema`) and the standard OTEL_* environment
 * variables. The environment wins, as the OpenTelemetry specification expects, so a DaemonSet can
 * point a shared config at its node's Collector.
 *
 * Resolution never throws for a bad environment: a runtime that cannot export must still run. Each
 * problem becomes a message naming the variable, the cause and the fix, and the affected signal
 * falls back to the embedded store so its data is kept.
 */
import { z } from 'zod'

export const SIGNALS = ['traces', 'metrics', 'logs', 'profiles'] as const
export type Signal = (typeof SIGNALS)[number]

export type OtlpProtocol = 'http/protobuf' | 'grpc'

const positiveInt = z.number().int().positive()

const regexString = z.string().refine(
  (source) => {
    try {
      new RegExp(source)
      return true
    } catch {
      return false
    }
  },
  { message: 'not a valid regular expression (JavaScript syntax)' },
)

const serviceNameRuleSchema = z
  .strictObject({
    /** Regular expression tested against the executable path. */
    executable: regexString.optional(),
    /** Regular expression tested against the full command line. */
    commandLine: regexString.optional(),
    serviceName: z.string().min(1),
  })
  .refine((rule) => rule.executable !== undefined || rule.commandLine !== undefined, {
    message: 'a service name rule needs `executable` or `commandLine` to match on',
  })

/** The `exporter` section of periscope.yaml. Every field is optional. */
export const telemetryConfigSchema = z.strictObject({
  /** OTLP base URL, e.g. http://collector:4318 (HTTP) or http://collector:4317 (gRPC). */
  endpoint: z.string().optional(),
  protocol: z.enum(['http/protobuf', 'grpc']).optional(),
  headers: z.record(z.string(), z.string()).optional(),
  /** Per-signal full URLs, like OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT. */
  endpoints: z
    .strictObject({
      traces: z.string().optional(),
      metrics: z.string().optional(),
      logs: z.string().optional(),
      profiles: z.string().optional(),
    })
    .optional(),
  serviceName: z.string().min(1).optional(),
  resourceAttributes: z.record(z.string(), z.string()).optional(),
  sampling: z
    .strictObject({
      ratio: z.number().min(0).max(1).default(1),
      /** Keep every span whose status is error, whatever the ratio says. */
      keepErrors: z.boolean().default(true),
    })
    .prefault({}),
  batch: z
    .strictObject({
      maxSize: positiveInt.max(100_000).default(512),
      intervalMs: positiveInt.default(1000),
      /** Batches of one signal sent at once, so the next is serialised while the destination answers. */
      maxInFlight: positiveInt.max(64).default(4),
    })
    .prefault({}),
  /** Queue limits per signal. Beyond them the oldest item is dropped and counted. */
  queue: z
    .strictObject({
      spans: positiveInt.default(8192),
      logs: positiveInt.default(8192),
      /** Metric collections (one per interval). Counters are cumulative, so a later one supersedes. */
      metrics: positiveInt.default(32),
      /** Profile collections (one per interval: a profile per process and type), whatever the number of processes. */
      profiles: positiveInt.default(32),
    })
    .prefault({}),
  retry: z
    .strictObject({
      initialBackoffMs: positiveInt.default(500),
      maxBackoffMs: positiveInt.default(30_000),
    })
    .prefault({}),
  exportTimeoutMs: positiveInt.default(10_000),
  metrics: z.strictObject({ intervalMs: positiveInt.default(10_000) }).prefault({}),
  profiles: z
    .strictObject({
      intervalMs: positiveInt.default(10_000),
      /** Distinct stacks kept per profile before samples are dropped and counted. */
      maxStacks: positiveInt.default(20_000),
      /** Also write gzipped pprof under dataDir/profiles when exporting over OTLP. */
      writePprof: z.boolean().default(false),
    })
    .prefault({}),
  dataDir: z.string().min(1).default('./periscope-data'),
  rotation: z
    .strictObject({
      maxBytes: positiveInt.default(64 * 1024 * 1024),
      /** Rotated files kept per signal, besides the live one. */
      maxFiles: z.number().int().min(0).default(5),
    })
    .prefault({}),
  prometheus: z
    .strictObject({
      /** Default: on when metrics go to the embedded store, off when they go over OTLP. */
      enabled: z.boolean().optional(),
      host: z.string().default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(9464),
    })
    .prefault({}),
  processes: z
    .strictObject({
      /** Distinct traced-process resources kept; the least recently used is forgotten beyond it. */
      maxResources: positiveInt.default(1024),
      serviceNames: z.array(serviceNameRuleSchema).default([]),
    })
    .prefault({}),
})

export type TelemetryConfigInput = z.input<typeof telemetryConfigSchema>
export type TelemetryConfig = z.output<typeof telemetryConfigSchema>

/** Parses the `exporter` section, with an error that names each bad field. */
export function parseTelemetryConfig(raw: unknown): TelemetryConfig {
  const result = telemetryConfigSchema.safeParse(raw ?? {})
  if (result.success) return result.data
  const lines = result.error.issues.map((issue) => {
    const at = issue.path.length > 0 ? `exporter.${issue.path.join('.')}` : 'exporter'
    return `  ${at}: ${issue.message}`
  })
  throw new Error(`invalid exporter section in periscope.yaml:\n${lines.join('\n')}\nFix these fields; every field is optional and has a default.`)
}

export type SignalTarget =
  | { kind: 'otlp'; protocol: OtlpProtocol; url: string; headers: Record<string, string> }
  | { kind: 'embedded' }

export interface ResolvedTelemetrySettings {
  config: TelemetryConfig
  targets: Record<Signal, SignalTarget>
  serviceName: string | undefined
  /** From OTEL_RESOURCE_ATTRIBUTES, then the config file (the environment wins). */
  resourceAttributes: Record<string, string>
  prometheus: { enabled: boolean; host: string; port: number }
  /** Human-readable problems found while resolving; each names cause and fix. */
  problems: string[]
}

type Env = Record<string, string | undefined>

const SIGNAL_PATHS: Record<Signal, string> = {
  traces: 'v1/traces',
  metrics: 'v1/metrics',
  logs: 'v1/logs',
  // the Collector (v0.129) serves the development profiles signal here
  profiles: 'v1development/profiles',
}

function envOf(env: Env, name: string): string | undefined {
  const value = env[name]?.trim()
  return value === undefined || value === '' ? undefined : value
}

/** Validates an OTLP URL; returns a problem message instead of throwing. */
export function checkOtlpUrl(source: string, value: string): { url: string } | { problem: string } {
  let parsed: URL
  try {
    parsed = new URL(value)
  } catch {
    return {
      problem: `${source}="${value}" is not a valid URL; use a full URL such as http://collector:4318 (OTLP/HTTP) or http://collector:4317 (gRPC)`,
    }
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    return {
      problem: `${source}="${value}" uses scheme "${parsed.protocol.replace(/:$/, '')}", which OTLP does not support; use http:// or https://`,
    }
  }
  if (parsed.hostname === '') {
    return { problem: `${source}="${value}" has no host; use a URL such as http://collector:4318` }
  }
  return { url: parsed.href }
}

/**
 * Parses a W3C-baggage-like `key=value,key2=value2` list, as used by OTEL_RESOURCE_ATTRIBUTES and
 * OTEL_EXPORTER_OTLP_HEADERS. Values are percent-decoded. Malformed entries are skipped and
 * reported; the good ones are kept.
 */
export function parseKeyValueList(source: string, value: string): { values: Record<string, string>; problems: string[] } {
  const values: Record<string, string> = {}
  const problems: string[] = []
  for (const rawEntry of value.split(',')) {
    const entry = rawEntry.trim()
    if (entry === '') continue
    const eq = entry.indexOf('=')
    if (eq <= 0) {
      problems.push(
        `${source}: entry "${entry}" is not key=value; it was ignored. Write comma-separated key=value pairs, e.g. ${source}=deployment.environment.name=prod,team=sre`,
      )
      continue
    }
    const key = entry.slice(0, eq).trim()
    const rawValue = entry.slice(eq + 1).trim()
    let decoded: string
    try {
      decoded = decodeURIComponent(rawValue)
    } catch {
      problems.push(
        `${source}: value of "${key}" ("${rawValue}") has a malformed percent-escape; it was ignored. Percent-encode ',', '=' and '%' in values (e.g. %2C)`,
      )
      continue
    }
    if (!/^[\x21-\x7e]+$/.test(key)) {
      problems.push(`${source}: key "${key}" must be printable ASCII without spaces; it was ignored`)
      continue
    }
    values[key] = decoded
  }
  return { values, problems }
}

function parseProtocol(source: string, value: string | undefined, problems: string[]): OtlpProtocol | undefined {
  if (value === undefined) return undefined
  if (value === 'http/protobuf' || value === 'grpc') return value
  problems.push(
    `${source}="${value}" is not supported; use "http/protobuf" (the default) or "grpc". Using http/protobuf`,
  )
  return 'http/protobuf'
}

/** Resolves the config section and environment into per-signal targets. Never throws. */
export function resolveTelemetrySettings(config: TelemetryConfig, env: Env): ResolvedTelemetrySettings {
  const problems: string[] = []

  const baseProtocol =
    parseProtocol('OTEL_EXPORTER_OTLP_PROTOCOL', envOf(env, 'OTEL_EXPORTER_OTLP_PROTOCOL'), problems) ??
    config.protocol ??
    'http/protobuf'

  const baseHeaders: Record<string, string> = { ...config.headers }
  const headersEnv = envOf(env, 'OTEL_EXPORTER_OTLP_HEADERS')
  if (headersEnv !== undefined) {
    const parsed = parseKeyValueList('OTEL_EXPORTER_OTLP_HEADERS', headersEnv)
    Object.assign(baseHeaders, parsed.values)
    problems.push(...parsed.problems)
  }

  const baseEndpointEnv = envOf(env, 'OTEL_EXPORTER_OTLP_ENDPOINT')
  const baseEndpoint = baseEndpointEnv ?? config.endpoint
  const baseSource = baseEndpointEnv !== undefined ? 'OTEL_EXPORTER_OTLP_ENDPOINT' : 'exporter.endpoint'

  const targets = {} as Record<Signal, SignalTarget>
  for (const signal of SIGNALS) {
    const upper = signal.toUpperCase()
    const protocol =
      parseProtocol(`OTEL_EXPORTER_OTLP_${upper}_PROTOCOL`, envOf(env, `OTEL_EXPORTER_OTLP_${upper}_PROTOCOL`), problems) ??
      baseProtocol
    const headers = { ...baseHeaders }
    const signalHeaders = envOf(env, `OTEL_EXPORTER_OTLP_${upper}_HEADERS`)
    if (signalHeaders !== undefined) {
      const parsed = parseKeyValueList(`OTEL_EXPORTER_OTLP_${upper}_HEADERS`, signalHeaders)
      Object.assign(headers, parsed.values)
      problems.push(...parsed.problems)
    }

    // a per-signal endpoint is used as is; the base endpoint gets the signal's path (HTTP only)
    const signalEnvName = `OTEL_EXPORTER_OTLP_${upper}_ENDPOINT`
    const signalEndpoint = envOf(env, signalEnvName) ?? config.endpoints?.[signal]
    const signalSource = envOf(env, signalEnvName) !== undefined ? signalEnvName : `exporter.endpoints.${signal}`
    let target: SignalTarget = { kind: 'embedded' }
    if (signalEndpoint !== undefined) {
      const checked = checkOtlpUrl(signalSource, signalEndpoint)
      if ('problem' in checked) problems.push(`${checked.problem}. Until then ${signal} go to the embedded store`)
      else target = { kind: 'otlp', protocol, url: checked.url, headers }
    } else if (baseEndpoint !== undefined) {
      const checked = checkOtlpUrl(baseSource, baseEndpoint)
      if ('problem' in checked) {
        // one message for the base endpoint, not one per signal
        if (signal === 'traces') problems.push(`${checked.problem}. Until then every signal goes to the embedded store`)
      } else {
        const url = protocol === 'grpc' ? checked.url : `${checked.url.replace(/\/+$/, '')}/${SIGNAL_PATHS[signal]}`
        target = { kind: 'otlp', protocol, url, headers }
      }
    }
    targets[signal] = target
  }

  const resourceAttributes: Record<string, string> = { ...config.resourceAttributes }
  const resourceEnv = envOf(env, 'OTEL_RESOURCE_ATTRIBUTES')
  if (resourceEnv !== undefined) {
    const parsed = parseKeyValueList('OTEL_RESOURCE_ATTRIBUTES', resourceEnv)
    Object.assign(resourceAttributes, parsed.values)
    problems.push(...parsed.problems)
  }

  const serviceName = envOf(env, 'OTEL_SERVICE_NAME') ?? config.serviceName ?? resourceAttributes['service.name']

  return {
    config,
    targets,
    serviceName,
    resourceAttributes,
    prometheus: {
      enabled: config.prometheus.enabled ?? targets.metrics.kind === 'embedded',
      host: config.prometheus.host,
      port: config.prometheus.port,
    },
    problems,
  }
}
