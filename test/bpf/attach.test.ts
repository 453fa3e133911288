import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, rmdirSync } from 'node:fs'
import { test } from 'node:test'
import { attachKinds, probeAttach, probeMapType, probeProgramType } from '../../runtime/bpf/features.ts'
import { PERF_COUNT_HW_CPU_CYCLES, PERF_TYPE_HARDWARE, attachCgroup, cgroup2Root, attachPerfEvent, attachRawTracepoint, attachTc, attachTracepoint, attachTracing, attachUprobe, attachKprobe, testRun } from '../../runtime/bpf/links.ts'
import { ObjectSpec } from '../../runtime/bpf/object.ts'
import { objectPath, requireFeature } from './kernel.ts'

/** Loads probes.bpf.o with only `program`. */
async function loadOnly(program: string) {
  const spec = ObjectSpec.open(objectPath('probes'))
  for (const p of spec.programs()) spec.setAutoload(p.name, p.name === program)
  return spec.load()
}

const bpftoolLinkIds = (): number[] => (JSON.parse(execFileSync('bpftool', ['-j', 'link', 'list']).toString()) as { id: number }[]).map((l) => l.id)

test('feature probes match this kernel', async () => {
  const kprobePmu = existsSync('/sys/bus/event_source/devices/kprobe')
  assert.equal((await probeAttach('kprobe')).status, kprobePmu ? 'supported' : 'unsupported')
  for (const kind of ['tracepoint', 'tp_btf', 'raw_tp', 'uprobe', 'perf_event'] as const) {
    assert.equal((await probeAttach(kind)).status, 'supported', kind)
  }
  // this machine family refuses fentry (EPERM as root); elsewhere the answer must still be conclusive
  const fentry = await probeAttach('fentry')
  assert.notEqual(fentry.status, 'failed')
  if (!kprobePmu) assert.equal(fentry.status, 'unsupported')
  assert.equal(probeMapType('ringbuf').status, 'supported')
  assert.equal(probeMapType('perf_event_array').status, 'supported')
  assert.equal(probeProgramType('tracepoint').status, 'supported')
  assert.equal(probeProgramType('definitely_not_a_type').status, 'unsupported')
  for (const kind of attachKinds) assert.notEqual((await probeAttach(kind)).status, 'failed', kind)
})

test('tracepoint: attaches, fires, shows in bpftool, detaches', async () => {
  const object = await loadOnly('probe_tracepoint')
  const link = attachTracepoint(object, 'probe_tracepoint', 'sched', 'sched_process_fork', { cookie: 42n })
  assert.ok(link.id > 0)
  assert.ok(bpftoolLinkIds().includes(link.id))
  assert.equal(link.info().type, 'perf_event')
  assert.equal(link.detach(), true)
  assert.equal(link.detach(), false)
  assert.ok(!bpftoolLinkIds().includes(link.id))
  object.close()
})

test('raw_tp and tp_btf attach', async (t) => {
  for (const [program, attach] of [
    ['probe_raw_tp', (o: Awaited<ReturnType<typeof loadOnly>>) => attachRawTracepoint(o, 'probe_raw_tp', 'sched_process_fork')],
    ['probe_tp_btf', (o: Awaited<ReturnType<typeof loadOnly>>) => attachTracing(o, 'probe_tp_btf')],
  ] as const) {
    if (!requireFeature(t, program, await probeAttach(program === 'probe_raw_tp' ? 'raw_tp' : 'tp_btf'))) return
    const object = await loadOnly(program)
    const link = attach(object)
    assert.ok(link.id > 0, program)
    // tp_btf links are raw tracepoint links too, with a BTF-typed program behind them
    assert.equal(link.info().type, 'raw_tracepoint')
    object.close()
    assert.ok(!bpftoolLinkIds().includes(link.id), 'closing the object detaches its links')
  }
})

test('uprobe by symbol and by offset, with a pid filter', async (t) => {
  if (!requireFeature(t, 'uprobe', await probeAttach('uprobe'))) return
  const object = await loadOnly('probe_uprobe')
  const bySymbol = attachUprobe(object, 'probe_uprobe', process.execPath, { symbol: 'uv_version', pid: process.pid, cookie: 7n })
  assert.ok(bySymbol.id > 0)
  const ret = attachUprobe(object, 'probe_uprobe', process.execPath, { symbol: 'uv_version', retprobe: true })
  assert.ok(ret.id > 0)
  // by offset: the symbol's address turned into a file offset through its LOAD segment
  const symbol = execFileSync('nm', ['-D', '--defined-only', process.execPath], { maxBuffer: 256 << 20 }).toString().split('\n').find((l) => l.endsWith(' uv_version'))
  assert.ok(symbol !== undefined, 'node exports uv_version')
  const address = BigInt(`0x${symbol.split(' ')[0]}`)
  const segment = execFileSync('readelf', ['-lW', process.execPath], { maxBuffer: 16 << 20 }).toString().split('\n')
    .filter((l) => l.trim().startsWith('LOAD'))
    .map((l) => l.trim().split(/\s+/).map((f) => f))
    .map(([, offset, vaddr, , filesz]) => ({ offset: BigInt(offset), vaddr: BigInt(vaddr), size: BigInt(filesz) }))
    .find((s) => address >= s.vaddr && address < s.vaddr + s.size)
  assert.ok(segment !== undefined)
  const byOffset = attachUprobe(object, 'probe_uprobe', process.execPath, { offset: Number(address - segment.vaddr + segment.offset) })
  assert.ok(byOffset.id > 0)
  assert.equal(new Set([bySymbol.id, ret.id, byOffset.id]).size, 3)
  object.close()
})

test('perf_event sampling attaches on every online CPU', async (t) => {
  if (!requireFeature(t, 'perf_event', await probeAttach('perf_event'))) return
  const object = await loadOnly('probe_perf_event')
  const links = attachPerfEvent(object, 'probe_perf_event', { frequency: 99 })
  const online = execFileSync('nproc').toString().trim()
  assert.equal(links.length, Number(online))
  assert.ok(links.every((l) => l.id > 0))
  object.close()
  assert.ok(links.every((l) => !bpftoolLinkIds().includes(l.id)))
})

test('hardware perf events: sampled where the machine has a PMU, a clear error where it has none', async (t) => {
  if (!requireFeature(t, 'perf_event', await probeAttach('perf_event'))) return
  const object = await loadOnly('probe_perf_event')
  if (existsSync('/sys/bus/event_source/devices/cpu')) {
    const links = attachPerfEvent(object, 'probe_perf_event', { type: PERF_TYPE_HARDWARE, config: PERF_COUNT_HW_CPU_CYCLES, period: 1_000_000 })
    assert.ok(links.length > 0 && links.every((l) => l.id > 0))
  } else {
    assert.throws(() => attachPerfEvent(object, 'probe_perf_event', { type: PERF_TYPE_HARDWARE, config: PERF_COUNT_HW_CPU_CYCLES, period: 1_000_000 }),
      /attach probe_perf_event to perf_event type 0 config 0 cpu \d+: perf_event_open/)
  }
  object.close()
})

test('cgroup_skb attaches to a fresh cgroup', async (t) => {
  if (!requireFeature(t, 'cgroup_skb', await probeAttach('cgroup_skb'))) return
  const dir = `${cgroup2Root()}/periscope-test-${process.pid}`
  mkdirSync(dir)
  try {
    const object = await loadOnly('probe_cgroup_skb')
    const link = attachCgroup(object, 'probe_cgroup_skb', dir)
    assert.ok(link.id > 0)
    assert.equal(link.info().type, 'cgroup')
    object.close()
  } finally {
    rmdirSync(dir)
  }
})

test('tc attaches to a dummy interface and detaches', async (t) => {
  if (!requireFeature(t, 'tc', await probeAttach('tc'))) return
  const name = `pscope${process.pid % 100000}`
  const created = spawnSync('ip', ['link', 'add', name, 'type', 'dummy'])
  const iface = created.status === 0 ? name : 'lo'
  try {
    const object = await loadOnly('probe_tc')
    const link = attachTc(object, 'probe_tc', iface, { direction: 'ingress', priority: 7 })
    const filters = execFileSync('tc', ['filter', 'show', 'dev', iface, 'ingress']).toString()
    assert.match(filters, /probe_tc/)
    assert.equal(link.id, 0)
    assert.equal(link.detach(), true)
    assert.doesNotMatch(execFileSync('tc', ['filter', 'show', 'dev', iface, 'ingress']).toString(), /probe_tc/)
    object.close()
  } finally {
    if (iface === name) spawnSync('ip', ['link', 'del', name])
  }
})

test('kprobe and fentry: attach where the kernel allows, a clear error where it does not', async () => {
  const kprobe = await probeAttach('kprobe')
  if (kprobe.status === 'supported') {
    const object = await loadOnly('probe_kprobe')
    assert.ok(attachKprobe(object, 'probe_kprobe', 'do_unlinkat').id > 0)
    object.close()
  } else {
    const object = await loadOnly('probe_kprobe')
    assert.throws(() => attachKprobe(object, 'probe_kprobe', 'do_unlinkat'), (error: Error & { code?: string }) => {
      assert.match(error.message, /attach probe_kprobe to kprobe do_unlinkat/)
      assert.ok(error.code !== undefined)
      return true
    })
    object.close()
  }
  const fentry = await probeAttach('fentry')
  if (fentry.status !== 'supported') {
    await assert.rejects(loadOnly('probe_fentry'), /load BPF object .*probes\.bpf\.o/)
  }
})

test('a syscall program runs on demand (test run) and its records arrive', async () => {
  const spec = ObjectSpec.open(objectPath('loopgen'))
  const object = await spec.load()
  const context = new Uint8Array(8)
  new DataView(context.buffer).setUint32(0, 10, true)
  assert.equal(testRun(object, 'generate', context), 0)
  object.close()
})

