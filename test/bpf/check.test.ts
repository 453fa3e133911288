import assert from 'node:assert/strict'
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { existsSync, readdirSync, watch } from 'node:fs'
import { release } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { cgroup2Root } from '../../runtime/bpf/links.ts'
import { root, waitFor } from './kernel.ts'

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
  // what this kernel is known to have, independently of the report: 6.18 with BTF, tc and cgroups,
  // and kprobes exactly when the kprobe PMU exists; the machines without kprobes refuse fentry too
  const kprobes = existsSync('/sys/bus/event_source/devices/kprobe')
  const plans = Object.fromEntries(report.plans.map((p: { want: string; use?: string }) => [p.want, p.use]))
  const { fentry, ...rest } = plans
  assert.deepEqual(rest, {
    kprobe: kprobes ? 'kprobe' : 'tracepoint', tp_btf: 'tp_btf', raw_tp: 'raw_tp', tracepoint: 'tracepoint',
    uprobe: 'uprobe', uprobe_multi: 'uprobe_multi', perf_event: 'perf_event', cgroup_skb: 'cgroup_skb', tc: 'tc',
  })
  if (!kprobes) assert.equal(fentry, 'tracepoint')
  for (const kind of ['tc', 'cgroup_skb', 'tp_btf', 'uprobe', 'uprobe_multi']) assert.deepEqual(report.attach[kind], { status: 'supported' }, kind)
})

test('periscope check leaves the host as it found it: its cgroup probe runs in a cgroup of its own, removed after, and no tc hook is left', async () => {
  const cgroups = cgroup2Root()!
  const qdiscs = execFileSync('tc', ['qdisc', 'show']).toString()
  const rootPrograms = execFileSync('bpftool', ['-j', 'cgroup', 'show', cgroups]).toString()
  const changes: string[] = []
  const watcher = watch(cgroups, (_event, name) => changes.push(String(name)))
  const child = spawn(process.execPath, [join(root, 'runtime/cli.ts'), 'check', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] })
  child.stdout.resume()
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
  const probeCgroup = `periscope-probe-${child.pid}`
  // inotify has queued the child's mkdir and rmdir by now; they arrive on a later turn of the loop
  await waitFor(() => changes.length >= 2, 'the probe cgroup to come and go', 2000).catch(() => {})
  watcher.close()
  assert.equal(code, 0)
  assert.deepEqual(changes, [probeCgroup, probeCgroup], 'the probe created its own cgroup and removed it, and touched no other')
  assert.ok(!readdirSync(cgroups).includes(probeCgroup))
  assert.equal(execFileSync('bpftool', ['-j', 'cgroup', 'show', cgroups]).toString(), rootPrograms, 'no program is attached to the root cgroup')
  assert.equal(execFileSync('tc', ['qdisc', 'show']).toString(), qdiscs, 'no interface of the host got a qdisc')
})

test('an unknown command is refused with usage', () => {
  const result = spawnSync(process.execPath, [join(root, 'runtime/cli.ts'), 'frobnicate'], { encoding: 'utf8' })
  assert.equal(result.status, 2)
  assert.match(result.stderr, /unknown command "frobnicate"/)
  assert.match(result.stderr, /usage: periscope/)
})
