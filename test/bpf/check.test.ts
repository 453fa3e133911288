import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { release } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { root } from './kernel.ts'

const check = (...args: string[]) => spawnSync(process.execPath, [join(root, 'runtime/cli.ts'), 'check', ...args], { encoding: 'utf8' })

test('periscope check reports this kernel and exits 0 where Periscope can run', () => {
  const result = check()
  assert.equal(result.status, 0, result.stderr)
  assert.match(result.stdout, new RegExp(`kernel\\s+${release().replace(/[.+]/g, '\\$&')}`))
  assert.match(result.stdout, /BTF \(\/sys\/kernel\/btf\/vmlinux\)\s+yes/)
  assert.match(result.stdout, /tracepoint\s+yes/)
  assert.match(result.stdout, new RegExp(`node\\s+${process.versions.node}`))
  assert.match(result.stdout, /libbpf\s+v?1\.\d+/)
  assert.match(result.stdout, /Periscope can run here\./)
})

test('periscope check --json gives the same answers, machine-readable', () => {
  const result = check('--json')
  assert.equal(result.status, 0, result.stderr)
  const report = JSON.parse(result.stdout)
  assert.equal(report.ok, true)
  assert.equal(report.attach.tracepoint.status, 'supported')
  assert.equal(report.mapTypes.ringbuf, 'supported')
  const kprobePlan = report.plans.find((p: { want: string }) => p.want === 'kprobe')
  assert.equal(kprobePlan.use, report.attach.kprobe.status === 'supported' ? 'kprobe' : 'tracepoint')
})

test('an unknown command is refused with usage', () => {
  const result = spawnSync(process.execPath, [join(root, 'runtime/cli.ts'), 'frobnicate'], { encoding: 'utf8' })
  assert.equal(result.status, 2)
  assert.match(result.stderr, /unknown command "frobnicate"/)
  assert.match(result.stderr, /usage: periscope/)
})
