/** periscope.yaml: the seed's receiver block parses; unknown keys and wrong types name their path. */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, it } from 'node:test'
import { ConfigError, limitsFrom, parseConfigText, pluginSettingsFrom } from '../../runtime/config/index.ts'
import { main } from '../../runtime/run.ts'

const seedLike = `
receiver:
  traces:
    protocols: [http, grpc, mysql, redis]
    filters:
      - min_duration: 100ms
      - http_status: ">=400"
    sampling: 1%
  metrics:
    tcp_connections: true
    tcp_retransmits: true
    file_io: true
    syscalls: false
  logs:
    security_audit: true
    syscalls: false
    audit_rules: [execve, unlink, setuid]
  profiles:
    cpu_sampling_rate: 100
    collect_interval: 60s
    target_pids: []
  resource_limits:
    max_memory_mb: 500
    max_cpu_percent: 5
    max_events_per_second: 10000
plugins:
  http:
    config: { methods: [GET, POST] }
    resource_limits: { max_memory_mb: 32 }
objects:
  exec: { min_duration_ns: 1000 }
exporter:
  endpoint: http://collector:4318
`

function problems(text: string): string[] {
  try {
    parseConfigText(text, 'periscope.yaml')
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`)
    assert.match(error.message, /^periscope\.yaml is not a valid Periscope config:/)
    return error.problems
  }
  assert.fail('the config was accepted')
}

describe('periscope.yaml', () => {
  it("accepts the seed's receiver block and normalises it", () => {
    const config = parseConfigText(seedLike)
    assert.deepEqual(config.receiver!.traces!.filters, { min_duration: 100, http_status: '>=400' })
    assert.equal(config.receiver!.traces!.sampling, 1)
    assert.equal(config.receiver!.profiles!.collect_interval, 60_000)
    assert.deepEqual(limitsFrom(config.receiver!.resource_limits), { memoryMb: 500, maxCpuPercent: 5, maxEventsPerSecond: 10000 })
    // the receiver block's trace settings reach the http plugin; plugins.http adds its own keys
    assert.deepEqual(pluginSettingsFrom(config).http, {
      enabled: true,
      config: { https: false, go_tls: false, min_duration_ms: 100, http_status: '>=400', sampling_percent: 1, methods: ['GET', 'POST'] },
      limits: { memoryMb: 32 },
    })
  })

  it('rejects an unknown key, naming its path', () => {
    assert.deepEqual(problems('receiver:\n  profiles:\n    cpu_samplng_rate: 100\n'), ['receiver.profiles.cpu_samplng_rate: unknown key'])
    assert.deepEqual(problems('plugin_dir: [x]\n'), ['plugin_dir: unknown key'])
  })

  it('rejects a wrong type, naming its path', () => {
    const [problem] = problems('plugins:\n  http:\n    resource_limits:\n      max_memory_mb: lots\n')
    assert.match(problem!, /^plugins\.http\.resource_limits\.max_memory_mb: .*expected number, received string/i)
    assert.match(problems('receiver:\n  traces:\n    filters:\n      - min_duration: soon\n')[0]!,
      /^receiver\.traces\.filters\.0\.min_duration: 'soon' is not a duration/)
    assert.match(problems('receiver:\n  logs:\n    audit_rules: [execve, reboot]\n')[0]!, /^receiver\.logs\.audit_rules\.1: /)
  })

  it('rejects text that is not YAML', () => {
    assert.match(problems('a: [1, 2\n')[0]!, /^not valid YAML/)
  })

  it('makes `periscope run` exit 2 with the path in the message', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'periscope-config-'))
    const errors: string[] = []
    const original = console.error
    console.error = (message: string) => { errors.push(message) }
    try {
      const file = path.join(dir, 'periscope.yaml')
      writeFileSync(file, 'receiver:\n  resource_limits:\n    max_cpu_percent: "five"\n')
      assert.equal(await main(['--config', file]), 2)
      assert.match(errors.join('\n'), /receiver\.resource_limits\.max_cpu_percent: /)
    } finally {
      console.error = original
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
