import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { parse, parseAllDocuments } from 'yaml'
import { parseTelemetryConfig, resolveTelemetrySettings, telemetryConfigSchema } from '../../runtime/telemetry/config.ts'

const defaults = parseTelemetryConfig({})

test('no endpoint anywhere: every signal goes to the embedded store and Prometheus is on', () => {
  const settings = resolveTelemetrySettings(defaults, {})
  for (const signal of ['traces', 'metrics', 'logs', 'profiles'] as const) assert.deepEqual(settings.targets[signal], { kind: 'embedded' })
  assert.deepEqual(settings.prometheus, { enabled: true, host: '127.0.0.1', port: 9464 })
  assert.equal(defaults.dataDir, './periscope-data')
  assert.deepEqual(settings.problems, [])
})

test('OTEL_EXPORTER_OTLP_ENDPOINT gets each signal path over HTTP, and is used as is over gRPC', () => {
  const http = resolveTelemetrySettings(defaults, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' })
  assert.deepEqual(http.targets.traces, { kind: 'otlp', protocol: 'http/protobuf', url: 'http://collector:4318/v1/traces', headers: {} })
  assert.equal((http.targets.metrics as { url: string }).url, 'http://collector:4318/v1/metrics')
  assert.equal((http.targets.logs as { url: string }).url, 'http://collector:4318/v1/logs')
  assert.equal((http.targets.profiles as { url: string }).url, 'http://collector:4318/v1development/profiles')
  assert.equal(http.prometheus.enabled, false, 'metrics go to the Collector, so no local scrape endpoint by default')

  const grpc = resolveTelemetrySettings(defaults, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4317', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })
  assert.deepEqual(grpc.targets.logs, { kind: 'otlp', protocol: 'grpc', url: 'http://collector:4317/', headers: {} })
})

test('per-signal endpoints, protocols and headers override the base ones; env wins over the file', () => {
  const config = parseTelemetryConfig({ endpoint: 'http://from-file:4318', headers: { authorization: 'file' }, protocol: 'grpc' })
  const settings = resolveTelemetrySettings(config, {
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://traces.example:443/custom/path',
    OTEL_EXPORTER_OTLP_LOGS_PROTOCOL: 'grpc',
    OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20abc,x-team=sre',
    OTEL_EXPORTER_OTLP_METRICS_HEADERS: 'x-team=metrics',
  })
  assert.deepEqual(settings.targets.traces, {
    kind: 'otlp',
    protocol: 'http/protobuf',
    url: 'https://traces.example/custom/path',
    headers: { authorization: 'Bearer abc', 'x-team': 'sre' },
  })
  assert.deepEqual(settings.targets.metrics, {
    kind: 'otlp',
    protocol: 'http/protobuf',
    url: 'http://from-file:4318/v1/metrics',
    headers: { authorization: 'Bearer abc', 'x-team': 'metrics' },
  })
  assert.deepEqual(settings.targets.logs, {
    kind: 'otlp',
    protocol: 'grpc',
    url: 'http://from-file:4318/',
    headers: { authorization: 'Bearer abc', 'x-team': 'sre' },
  })
  assert.deepEqual(settings.problems, [])
})

test('a bad endpoint URL is reported with cause and fix, and the signals fall back to the embedded store', () => {
  const settings = resolveTelemetrySettings(defaults, { OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' })
  assert.deepEqual(settings.problems, [
    'OTEL_EXPORTER_OTLP_ENDPOINT="collector:4318" uses scheme "collector", which OTLP does not support; use http:// or https://. Until then every signal goes to the embedded store',
  ])
  assert.deepEqual(settings.targets.traces, { kind: 'embedded' })

  const garbage = resolveTelemetrySettings(defaults, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://[::1' })
  assert.deepEqual(garbage.problems, [
    'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://[::1" is not a valid URL; use a full URL such as http://collector:4318 (OTLP/HTTP) or http://collector:4317 (gRPC). Until then traces go to the embedded store',
  ])
  assert.deepEqual(garbage.targets.traces, { kind: 'embedded' })
})

test('an unsupported protocol is reported and http/protobuf is used', () => {
  const settings = resolveTelemetrySettings(defaults, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' })
  assert.deepEqual(settings.problems, ['OTEL_EXPORTER_OTLP_PROTOCOL="http/json" is not supported; use "http/protobuf" (the default) or "grpc". Using http/protobuf'])
  assert.equal((settings.targets.traces as { protocol: string }).protocol, 'http/protobuf')
})

test('malformed OTEL_RESOURCE_ATTRIBUTES: bad entries are reported and skipped, good ones kept', () => {
  const config = parseTelemetryConfig({ resourceAttributes: { 'k8s.cluster.name': 'from-file', team: 'file' } })
  const settings = resolveTelemetrySettings(config, { OTEL_RESOURCE_ATTRIBUTES: 'team=sre,oops,region=eu%2Dwest,=x,bad=%E0%A4%A' })
  assert.deepEqual(settings.resourceAttributes, { 'k8s.cluster.name': 'from-file', team: 'sre', region: 'eu-west' })
  assert.deepEqual(settings.problems, [
    'OTEL_RESOURCE_ATTRIBUTES: entry "oops" is not key=value; it was ignored. Write comma-separated key=value pairs, e.g. OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=prod,team=sre',
    'OTEL_RESOURCE_ATTRIBUTES: entry "=x" is not key=value; it was ignored. Write comma-separated key=value pairs, e.g. OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=prod,team=sre',
    'OTEL_RESOURCE_ATTRIBUTES: value of "bad" ("%E0%A4%A") has a malformed percent-escape; it was ignored. Percent-encode \',\', \'=\' and \'%\' in values (e.g. %2C)',
  ])
})

test('OTEL_SERVICE_NAME wins over the file and over service.name in OTEL_RESOURCE_ATTRIBUTES', () => {
  const config = parseTelemetryConfig({ serviceName: 'file-name' })
  assert.equal(resolveTelemetrySettings(config, { OTEL_SERVICE_NAME: 'env-name', OTEL_RESOURCE_ATTRIBUTES: 'service.name=attr' }).serviceName, 'env-name')
  assert.equal(resolveTelemetrySettings(config, {}).serviceName, 'file-name')
  assert.equal(resolveTelemetrySettings(defaults, { OTEL_RESOURCE_ATTRIBUTES: 'service.name=attr' }).serviceName, 'attr')
})

test('the config section is validated with messages that name each bad field', () => {
  assert.throws(
    () => parseTelemetryConfig({ sampling: { ratio: 2 }, prometheus: { port: 'x' }, batchSize: 3 }),
    (error: Error) => {
      assert.match(error.message, /^invalid exporter section in periscope\.yaml:/)
      assert.match(error.message, /exporter\.sampling\.ratio: Too big: expected number to be <=1/)
      assert.match(error.message, /exporter\.prometheus\.port: Invalid input: expected number, received string/)
      assert.match(error.message, /exporter: Unrecognized key: "batchSize"/)
      return true
    },
  )
  assert.throws(() => parseTelemetryConfig({ processes: { serviceNames: [{ executable: '(', serviceName: 'x' }] } }), /exporter\.processes\.serviceNames\.0\.executable: not a valid regular expression/)
  const parsed = telemetryConfigSchema.parse({ queue: { spans: 10 }, sampling: { ratio: 0.25 } })
  assert.equal(parsed.queue.spans, 10)
  assert.equal(parsed.queue.logs, 8192)
  assert.deepEqual(parsed.sampling, { ratio: 0.25, keepErrors: true })
})

test('the Kubernetes example: its exporter section validates, and the DaemonSet is not privileged', async () => {
  const text = await readFile(new URL('../../examples/kubernetes/periscope-daemonset.yaml', import.meta.url), 'utf8')
  const docs = parseAllDocuments(text).map((doc) => doc.toJSON() as { kind: string; data?: Record<string, string>; spec?: unknown })
  const configMap = docs.find((doc) => doc.kind === 'ConfigMap')
  const periscopeYaml = parse(configMap?.data?.['periscope.yaml'] ?? '') as { exporter: unknown }
  const config = parseTelemetryConfig(periscopeYaml.exporter)
  assert.deepEqual(config.sampling, { ratio: 0.1, keepErrors: true })

  const daemonSet = docs.find((doc) => doc.kind === 'DaemonSet') as unknown as {
    spec: { template: { spec: { hostPID: boolean; containers: { securityContext: { privileged: boolean; capabilities: { add: string[]; drop: string[] } }; volumeMounts: { mountPath: string }[]; env: { name: string; value?: string }[] }[] } } }
  }
  const pod = daemonSet.spec.template.spec
  assert.equal(pod.hostPID, true)
  const [container] = pod.containers
  assert.equal(container.securityContext.privileged, false)
  assert.deepEqual(container.securityContext.capabilities.drop, ['ALL'])
  for (const cap of ['BPF', 'PERFMON', 'NET_ADMIN']) assert.ok(container.securityContext.capabilities.add.includes(cap), cap)
  assert.ok(!container.securityContext.capabilities.add.includes('SYS_ADMIN'))
  assert.deepEqual(
    container.volumeMounts.map((m) => m.mountPath).filter((p) => p.startsWith('/sys')),
    ['/sys/fs/bpf', '/sys/kernel/tracing', '/sys/kernel/debug'],
  )
  const env = Object.fromEntries(container.env.map((e) => [e.name, e.value]))
  const resolved = resolveTelemetrySettings(config, env)
  assert.deepEqual(resolved.problems, [])
  assert.deepEqual(resolved.targets.traces, { kind: 'otlp', protocol: 'grpc', url: 'http://otel-gateway.periscope.svc.cluster.local:4317/', headers: {} })
})
