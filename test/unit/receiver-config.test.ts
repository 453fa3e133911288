import assert from 'node:assert/strict'
import { test } from 'node:test'
import { auditEventNames } from '../../plugins/audit/rules.ts'
import { parseConfigText, pluginSettingsFrom } from '../../runtime/config/index.ts'

/** The kernel-metric and audit plugins' settings with no receiver block (the seed's defaults). */
const kernelDefaults = {
  tcp: { enabled: true, config: { connections: true, retransmits: true } },
  'file-io': { enabled: true, config: {} },
  processes: { enabled: true, config: {} },
  syscalls: { enabled: false, config: {} },
  allocations: { enabled: false, config: {} },
  audit: { enabled: true, config: {} },
  'syscall-log': { enabled: false, config: {} },
  'cpu-profile': { enabled: true, config: {} },
  'offcpu-profile': { enabled: false, config: {} },
  'alloc-profile': { enabled: false, config: {} },
}

test('no receiver block: the tracing plugins keep their own defaults; syscall counts, the syscall log and allocations are off', () => {
  assert.deepEqual(pluginSettingsFrom(parseConfigText('')), kernelDefaults)
})

test('receiver.metrics and receiver.logs switch the kernel-metric and audit plugins; audit_rules become audit events', () => {
  const config = parseConfigText(`
receiver:
  metrics:
    tcp_connections: false
    tcp_retransmits: true
    file_io: false
    syscalls: true
    memory: true
    collect_interval: 5s
  logs:
    security_audit: true
    syscalls: true
    audit_rules: [execve, setuid]
`)
  const { http, http2, redis, postgres, mysql, kafka, ...kernel } = pluginSettingsFrom(config)
  const interval = { collect_interval_ms: 5000 }
  assert.deepEqual(kernel, {
    tcp: { enabled: true, config: { ...interval, connections: false, retransmits: true } },
    'file-io': { enabled: false, config: interval },
    processes: { enabled: true, config: interval },
    syscalls: { enabled: true, config: interval },
    allocations: { enabled: true, config: interval },
    audit: { enabled: true, config: { events: ['execve', 'setuid'] } },
    'syscall-log': { enabled: true, config: {} },
    'cpu-profile': { enabled: true, config: {} },
    'offcpu-profile': { enabled: false, config: {} },
    'alloc-profile': { enabled: false, config: {} },
  })
  const off = pluginSettingsFrom(parseConfigText('receiver:\n  metrics:\n    tcp_connections: false\n    tcp_retransmits: false\n  logs:\n    security_audit: false\n'))
  assert.deepEqual([off.tcp!.enabled, off.audit!.enabled], [false, false])
})

test('plugins.<name>.enabled turns a plugin that is off by default on', () => {
  const config = parseConfigText('plugins:\n  syscalls:\n    enabled: true\n    config:\n      top_n: 5\n')
  assert.deepEqual(pluginSettingsFrom(config).syscalls, { enabled: true, config: { top_n: 5 }, limits: {} })
})

test('receiver.traces filters, sampling and metrics.red become the http plugin config, and the shared keys the database and messaging plugins\' config', () => {
  const config = parseConfigText(`
receiver:
  traces:
    protocols: [http, redis]
    filters:
      - min_duration: 100ms
      - http_status: ">= 400"
      - http_methods: [GET, POST]
    sampling: 10%
  metrics:
    red: false
`)
  assert.deepEqual(pluginSettingsFrom(config), {
    ...kernelDefaults,
    http: {
      enabled: true,
      config: { https: false, go_tls: false, min_duration_ms: 100, http_status: '>=400', http_methods: ['GET', 'POST'], sampling_percent: 10, red_metrics: false },
    },
    http2: {
      enabled: true,
      config: { grpc: false, http: true, https: false, go_tls: false, min_duration_ms: 100, http_status: '>=400', http_methods: ['GET', 'POST'], sampling_percent: 10, metrics: false },
    },
    redis: { enabled: true, config: { min_duration_ms: 100, sampling_percent: 10, metrics: false } },
    postgres: { enabled: false, config: { min_duration_ms: 100, sampling_percent: 10, metrics: false } },
    mysql: { enabled: false, config: { min_duration_ms: 100, sampling_percent: 10, metrics: false } },
    kafka: { enabled: false, config: { min_duration_ms: 100, sampling_percent: 10, metrics: false } },
  })
})

test('every protocol is on without a protocols list; the list names postgresql, mysql, redis and kafka', () => {
  const tracing = ['http', 'http2', 'redis', 'postgres', 'mysql', 'kafka']
  const on = (text: string) => Object.fromEntries(Object.entries(pluginSettingsFrom(parseConfigText(text))).filter(([name]) => tracing.includes(name)).map(([name, s]) => [name, s.enabled]))
  assert.deepEqual(on('receiver:\n  traces:\n    sampling: 50%\n'), { http: true, http2: true, redis: true, postgres: true, mysql: true, kafka: true })
  assert.deepEqual(on('receiver:\n  traces:\n    protocols: [postgresql, kafka]\n'), { http: false, http2: false, redis: false, postgres: true, mysql: false, kafka: true })
})

test('a protocols list without http or https turns the http plugin off', () => {
  const config = parseConfigText('receiver:\n  traces:\n    protocols: [redis]\n')
  assert.equal(pluginSettingsFrom(config).http?.enabled, false)
})

test('grpc turns the http2 plugin on for gRPC only, with TLS; http adds plain HTTP/2', () => {
  const settings = (protocols: string) => pluginSettingsFrom(parseConfigText(`receiver:\n  traces:\n    protocols: [${protocols}]\n`)).http2
  assert.deepEqual(settings('grpc'), { enabled: true, config: { grpc: true, http: false, https: true, go_tls: true } })
  assert.deepEqual(settings('grpc, http'), { enabled: true, config: { grpc: true, http: true, https: true, go_tls: true } })
  assert.deepEqual(settings('http'), { enabled: true, config: { grpc: false, http: true, https: false, go_tls: false } })
  assert.deepEqual(settings('https'), { enabled: true, config: { grpc: false, http: true, https: true, go_tls: true } })
  assert.deepEqual(settings('redis'), { enabled: false, config: { grpc: false, http: false, https: false, go_tls: false } })
})

test('plugins.http wins over the receiver block key by key', () => {
  const config = parseConfigText(`
receiver:
  traces:
    protocols: [https]
    sampling: 50%
plugins:
  http:
    enabled: true
    config:
      sampling_percent: 5
      max_routes: 10
`)
  const http = pluginSettingsFrom(config).http!
  assert.equal(http.enabled, true)
  assert.deepEqual(http.config, { https: true, go_tls: true, sampling_percent: 5, max_routes: 10 })
})

test('every audit_rules name becomes events the audit plugin knows', () => {
  const config = parseConfigText('receiver:\n  logs:\n    audit_rules: [execve, unlink, setuid, connect]\n')
  const events = pluginSettingsFrom(config).audit!.config!.events as string[]
  assert.deepEqual(events, ['execve', 'unlink', 'rename', 'setuid', 'connect', 'accept'])
  assert.deepEqual(events.filter((event) => !(auditEventNames as string[]).includes(event)), [])
})

test('receiver.profiles: CPU profiles on at cpu_sampling_rate, off-CPU profiles on with off_cpu; target_pids and collect_interval for both', () => {
  const settings = pluginSettingsFrom(parseConfigText('receiver:\n  profiles:\n    cpu_sampling_rate: 99\n    collect_interval: 30s\n    target_pids: [42, 43]\n    off_cpu: true\n'))
  const shared = { collect_interval_ms: 30_000, target_pids: [42, 43] }
  assert.deepEqual(settings['cpu-profile'], { enabled: true, config: { ...shared, frequency: 99 } })
  assert.deepEqual(settings['offcpu-profile'], { enabled: true, config: shared })
  // allocation profiles stay off until plugins.alloc-profile.enabled, for these pids then
  assert.deepEqual(settings['alloc-profile'], { enabled: false, config: shared })
  const off = pluginSettingsFrom(parseConfigText('receiver:\n  profiles:\n    off_cpu: false\n'))
  assert.deepEqual([off['cpu-profile'], off['offcpu-profile']], [{ enabled: true, config: {} }, { enabled: false, config: {} }])
  // plugins.<name> still wins key by key
  const overridden = pluginSettingsFrom(parseConfigText('receiver:\n  profiles:\n    cpu_sampling_rate: 99\nplugins:\n  cpu-profile:\n    config:\n      frequency: 49\n'))
  assert.equal(overridden['cpu-profile']?.config?.frequency, 49)
})
