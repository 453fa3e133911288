/**
 * The plugin API against the real kernel: onLoss counts a forced ring overflow exactly and in its
 * place, wallNs converts a kernel boot-clock time, map claims are refcounted across plugins and
 * reloads with the kernel entry present at every step, drain and per-CPU reads, and ctx.attach
 * shares one kernel link between holders until the last lets go.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, it } from 'node:test'
import { testRun } from '../../runtime/bpf/links.ts'
import { native } from '../../runtime/bpf/native.ts'
import { probeAttach } from '../../runtime/bpf/features.ts'
import { startHarness, type Harness } from '../plugin-harness.ts'
import { requireFeature, root } from './kernel.ts'
import { decodersPath, LOOPGEN_RECORD, plugin, provider, readU64, SMALL_RING, u32, u64 } from './plugin-api-fixture.ts'

let h: Harness | undefined
afterEach(async () => {
  await h?.close()
  h = undefined
})

describe('onLoss on the kernel', () => {
  it('reports a forced ring overflow with the count the kernel dropped, between the records it fell between', async () => {
    const p = provider()
    h = await startHarness({
      provider: p, decodersPath, plugins: {
        'lossy.ts': `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'lossy',
  objects: ['loopgen'],
  setup(ctx) {
    let seen = 0
    let gaps = 0
    let next = 0
    const losses: number[][] = []
    ctx.on('loopgen:events', (ev) => {
      if (ev.seq !== next) gaps++
      next = ev.seq + 1
      seen++
    }, { onLoss: (lost) => { losses.push([seen, lost]) } })
    ctx.every('10ms', () => { ctx.emit.metric({ name: 'seen', kind: 'gauge', value: seen, attributes: { gaps, losses: JSON.stringify(losses) } }) })
  },
})
`,
      },
    })
    const harness = h
    const last = () => harness.sink.signals('lossy').metrics.findLast((m) => m.name === 'seen')
    await harness.waitFor(() => last() !== undefined, 'the plugin to run')
    const loopgen = p.opened.get('loopgen')!
    const generate = (count: number) => {
      const args = new Uint8Array(8) // struct loopgen_args
      new DataView(args.buffer).setUint32(0, count, true)
      testRun(loopgen.object, 'generate', args)
    }
    // the consumer runs on this thread, so nothing leaves the ring during one generate() call
    generate(4000)
    const fit = Math.floor(SMALL_RING / LOOPGEN_RECORD)
    const dropped = loopgen.object.dropped()
    assert.equal(dropped, 4000 - fit, 'the kernel counted every record that did not fit')
    await harness.waitFor(() => last()?.value === fit, `the ${fit} records that fit`)
    generate(10)
    await harness.waitFor(() => last()?.value === fit + 10, 'the records after the overflow')
    // loopgen numbers only the records it reserved, so the loss shows in onLoss alone
    assert.deepEqual(last()!.attributes, { gaps: 0, losses: JSON.stringify([[fit, dropped]]) })
    assert.equal(harness.runtime.bus.listStreams().find((s) => s.topic === 'loopgen:events')!.lost, dropped)
  })
})

describe('ctx.time.wallNs on the kernel', () => {
  it('turns an exec record\'s boot-clock time into the wall time of the exec', async () => {
    h = await startHarness({
      provider: provider(), decodersPath, plugins: {
        'wall.ts': `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'wall',
  objects: ['exec'],
  setup(ctx) {
    ctx.on('exec:events', (ev) => {
      if (ev.kind === 1 && ev.args[1] === 'periscope-wall-test') ctx.emit.log({ body: 'exec', attributes: { wall: ctx.time.wallNs(ev.timestamp_ns) } })
    })
  },
})
`,
      },
    })
    const harness = h
    await harness.waitFor(() => harness.runtime.manager.list().some((p) => p.status === 'running'), 'the plugin to run')
    const before = Date.now()
    spawnSync('/bin/echo', ['periscope-wall-test'])
    const after = Date.now()
    await harness.waitFor(() => harness.sink.signals('wall').logs.length === 1, 'the exec record')
    const wall = harness.sink.signals('wall').logs[0]!.attributes!.wall as number
    // Date.now() truncates to the millisecond
    assert.ok(wall >= before * 1e6 && wall < (after + 1) * 1e6, `exec at ${wall} ns, spawned within [${before}, ${after + 1}) ms`)
  })
})

describe('PluginMap.claim', () => {
  const claimer = (name: string, key: number, value: number, after = '') => plugin(name, ['pluginapi'], `
    await ctx.map('pluginapi:filters').claim(u32(${key}), u64(${value}))
    ${after}`)

  it('holds a kernel entry while any plugin claims it, across plugins and a reload, and deletes it after the last', async () => {
    const p = provider()
    h = await startHarness({ provider: p, decodersPath })
    const harness = h
    const kernel = () => readU64(p.opened.get('pluginapi')?.map('filters').lookup(u32(7)))
    const holders = () => harness.runtime.bus.claims.list().find((c) => c.topic === 'pluginapi:filters' && c.key === '07000000')?.holders.length ?? 0

    let loaded = harness.nextEvent('loaded', 'a')
    harness.write('a.ts', claimer('a', 7, 1))
    await loaded
    assert.equal(kernel(), 1)
    loaded = harness.nextEvent('loaded', 'b')
    harness.write('b.ts', claimer('b', 7, 1))
    await loaded
    assert.deepEqual([kernel(), holders()], [1, 2])

    // from here on the entry must never be missing, whatever reloads and unloads
    let missing = 0
    const watch = setInterval(() => { if (kernel() !== 1) missing++ }, 1)
    try {
      loaded = harness.nextEvent('loaded', 'c')
      harness.write('c.ts', plugin('c', ['pluginapi'], `
    const filters = ctx.map('pluginapi:filters')
    ctx.emit.log({ body: [await codeOf(filters.claim(u32(7), u64(2))), await codeOf(filters.update(u32(7), u64(2))), await codeOf(filters.delete(u32(7)))].join('\\n') })`))
      await loaded
      assert.equal(harness.sink.signals('c').logs[0]!.body, [
        'EBUSY EBUSY: map \'pluginapi:filters\': key 07000000 is claimed by plugin a with value 0100000000000000, not 0200000000000000; plugins that share a key must claim the same value',
        'EBUSY EBUSY: map \'pluginapi:filters\': key 07000000 is claimed by plugin a; claim the same value instead of writing it',
        'EBUSY EBUSY: map \'pluginapi:filters\': key 07000000 is claimed by plugin a; claim the same value instead of writing it',
      ].join('\n'))
      loaded = harness.nextEvent('loaded', 'a')
      harness.write('a.ts', claimer('a', 7, 1, 'ctx.log.info("version 2")'))
      await loaded
      await harness.waitFor(() => holders() === 2, 'the old version of a to let go')
      let unloaded = harness.nextEvent('unloaded', 'a')
      harness.remove('a.ts')
      await unloaded
      assert.deepEqual([kernel(), holders()], [1, 1])
      assert.equal(missing, 0, 'the entry was there at every step')
      unloaded = harness.nextEvent('unloaded', 'b')
      harness.remove('b.ts')
      await unloaded
    } finally {
      clearInterval(watch)
    }
    assert.deepEqual([kernel(), holders()], [undefined, 0], 'deleted once nobody claims it')
  })

  it('lets a new version change its value, and gives the old value back when that version fails to start', async () => {
    const p = provider()
    h = await startHarness({ provider: p, decodersPath })
    const harness = h
    const kernel = () => readU64(p.opened.get('pluginapi')?.map('filters').lookup(u32(9)))
    let loaded = harness.nextEvent('loaded', 'd')
    harness.write('d.ts', claimer('d', 9, 5))
    await loaded
    assert.equal(kernel(), 5)
    loaded = harness.nextEvent('loaded', 'd')
    harness.write('d.ts', claimer('d', 9, 6))
    await loaded
    assert.equal(kernel(), 6)
    const rejected = harness.nextEvent('rejected', 'd')
    harness.write('d.ts', claimer('d', 9, 7, 'throw new Error("broken setup")'))
    await rejected
    assert.equal(kernel(), 6, 'the running version\'s value is back')
  })

  it('zeroes an array entry when its last claim goes', async () => {
    const p = provider()
    // keeps the object open after the claimer unloads, so the entry can be read
    h = await startHarness({ provider: p, decodersPath, plugins: { 'keeper.ts': plugin('keeper', ['pluginapi'], '') } })
    const harness = h
    await harness.waitFor(() => p.opened.has('pluginapi'), 'the object to open')
    const kernel = () => readU64(p.opened.get('pluginapi')!.map('settings').lookup(u32(1)))
    const loaded = harness.nextEvent('loaded', 'e')
    harness.write('e.ts', plugin('e', ['pluginapi'], `await ctx.map('pluginapi:settings').claim(u32(1), u64(42))`))
    await loaded
    assert.equal(kernel(), 42)
    const unloaded = harness.nextEvent('unloaded', 'e')
    harness.remove('e.ts')
    await unloaded
    assert.equal(kernel(), 0)
    assert.deepEqual(harness.runtime.bus.claims.list(), [])
  })
})

describe('PluginMap.drain and per-CPU values', () => {
  it('reads and resets hash and array entries in one call, and splits per-CPU values by CPU', async () => {
    const cpus = native.versions().possibleCpus
    const perCpu = new Uint8Array(8 * cpus)
    for (let cpu = 0; cpu < cpus; cpu++) perCpu[8 * cpu] = 10 + cpu
    const p = provider((object) => {
      object.map('calls').update(u32(77), u64(5))
      object.map('calls').update(u32(78), u64(6))
      object.map('settings').update(u32(2), u64(9))
      object.map('per_cpu_counts').update(u32(1), perCpu)
    })
    h = await startHarness({ provider: p, decodersPath })
    const harness = h
    const loaded = harness.nextEvent('loaded', 'reader')
    harness.write('reader.ts', plugin('reader', ['pluginapi'], `
    const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')
    const show = (entries: [Uint8Array, Uint8Array | Uint8Array[]][]) => entries.map(([k, v]) => hex(k) + '=' + (Array.isArray(v) ? v.map(hex).join(',') : hex(v))).sort().join(' ')
    const calls = ctx.map('pluginapi:calls')
    const settings = ctx.map('pluginapi:settings')
    const counts = ctx.map('pluginapi:per_cpu_counts')
    ctx.emit.log({ body: [
      show(await calls.drain()), show(await calls.entries()),
      show(await settings.drain()), show(await settings.entries()),
      String(counts.perCpu), show(await counts.entriesPerCpu()), (await counts.lookupPerCpu(u32(1)))!.map(hex).join(','),
      await codeOf(counts.entries()), await codeOf(calls.entriesPerCpu()),
      show(await counts.drainPerCpu()), show(await counts.entriesPerCpu()),
    ].join('\\n') })`))
    await loaded
    const perCpuValues = Array.from({ length: cpus }, (_, cpu) => `${(10 + cpu).toString(16).padStart(2, '0')}000000`).join(',')
    assert.equal(harness.sink.signals('reader').logs[0]!.body, [
      '4d000000=0500000000000000 4e000000=0600000000000000', '',
      '00000000=0000000000000000 01000000=0000000000000000 02000000=0900000000000000 03000000=0000000000000000',
      '00000000=0000000000000000 01000000=0000000000000000 02000000=0000000000000000 03000000=0000000000000000',
      'true', `01000000=${perCpuValues}`, perCpuValues,
      'EINVAL EINVAL: map \'pluginapi:per_cpu_counts\' is a per-CPU map: use lookupPerCpu, entriesPerCpu or drainPerCpu, which give each CPU\'s value',
      'EINVAL EINVAL: map \'pluginapi:calls\' is not a per-CPU map: use lookup, entries or drain',
      `01000000=${perCpuValues}`, '',
    ].join('\n'))
  })
})

/** Builds fixtures/uprobe-target.c into a temp dir. */
function buildUprobeTarget(): string {
  const binary = join(mkdtempSync(join(tmpdir(), 'periscope-uprobe-')), 'uprobe-target')
  execFileSync('cc', ['-O2', '-g', '-o', binary, join(root, 'test/bpf/fixtures/uprobe-target.c')])
  return binary
}

/** Runs the target to make `calls` calls of periscope_target; resolves with its pid once it exited. */
function runTarget(binary: string, calls: number): Promise<number> {
  const child = spawn(binary, [String(calls)], { stdio: ['pipe', 'ignore', 'inherit'] })
  child.stdin.end('go\n')
  return new Promise((resolve, reject) => child.on('exit', (code) => (code === 0 ? resolve(child.pid!) : reject(new Error(`uprobe target exited ${code}`)))))
}

const bpftoolLinkIds = (): number[] => (JSON.parse(execFileSync('bpftool', ['-j', 'link', 'list']).toString()) as { id: number }[]).map((l) => l.id)

describe('ctx.attach', () => {
  it('shares one kernel link between holders of the same file and symbol, and detaches it after the last', async (t) => {
    if (!requireFeature(t, 'uprobe', await probeAttach('uprobe'))) return
    const binary = buildUprobeTarget()
    const alias = join(mkdtempSync(join(tmpdir(), 'periscope-uprobe-alias-')), 'same-file')
    symlinkSync(binary, alias)
    const p = provider()
    h = await startHarness({ provider: p, decodersPath })
    const harness = h
    const holder = (name: string, path: string, version = 1) => plugin(name, ['pluginapi'], `
    const entry = await ctx.attach({ program: 'pluginapi:on_call', uprobe: { binary: ${JSON.stringify(path)}, symbol: 'periscope_target' } })
    const exit = await ctx.attach({ program: 'pluginapi:on_return', uprobe: { binary: ${JSON.stringify(path)}, symbol: 'periscope_target', retprobe: true } })
    ctx.emit.log({ body: 'attached', attributes: { entry: entry.id, exit: exit.id, version: ${version} } })`)
    const ids = (name: string) => harness.sink.signals(name).logs.map((l) => [l.attributes!.entry, l.attributes!.exit])
    try {
      let loaded = harness.nextEvent('loaded', 'a')
      harness.write('a.ts', holder('a', binary))
      await loaded
      loaded = harness.nextEvent('loaded', 'b')
      harness.write('b.ts', holder('b', alias))
      await loaded
      const object = p.opened.get('pluginapi')!
      const [[entryId, exitId]] = ids('a') as [[number, number]]
      assert.deepEqual(ids('b'), [[entryId, exitId]], 'the second holder shares the first one\'s links')
      assert.deepEqual(object.links().map((l) => [l.id, l.program]).sort(), [[entryId, 'on_call'], [exitId, 'on_return']].sort())
      assert.deepEqual(harness.runtime.bus.uprobes.list().map((l) => l.holds), [2, 2])
      assert.ok(bpftoolLinkIds().includes(entryId) && bpftoolLinkIds().includes(exitId))

      const pid = await runTarget(binary, 5)
      const calls = () => readU64(object.map('calls').lookup(u32(pid)))
      const returns = () => readU64(object.map('returns').lookup(u32(pid)))
      assert.deepEqual([calls(), returns()], [5, 5], 'each call counted once: one link, not two')

      loaded = harness.nextEvent('loaded', 'a')
      harness.write('a.ts', holder('a', binary, 2))
      await loaded
      await harness.waitFor(() => harness.runtime.bus.uprobes.list().every((l) => l.holds === 2), 'the old version of a to let go')
      assert.deepEqual(ids('a').at(-1), [entryId, exitId], 'a reload keeps the same kernel links')

      let unloaded = harness.nextEvent('unloaded', 'a')
      harness.remove('a.ts')
      await unloaded
      assert.deepEqual(harness.runtime.bus.uprobes.list().map((l) => l.holds), [1, 1])
      assert.ok(bpftoolLinkIds().includes(entryId), 'b still holds the link')
      unloaded = harness.nextEvent('unloaded', 'b')
      harness.remove('b.ts')
      await unloaded
      assert.deepEqual(harness.runtime.bus.uprobes.list(), [])
      const left = bpftoolLinkIds()
      assert.ok(!left.includes(entryId) && !left.includes(exitId), 'the last holder detached both links')
      assert.deepEqual(object.links(), [])
    } finally {
      rmSync(join(binary, '..'), { recursive: true, force: true })
      rmSync(join(alias, '..'), { recursive: true, force: true })
    }
  })

  it('explains what cannot be attached, with a code the plugin can test', async (t) => {
    if (!requireFeature(t, 'uprobe', await probeAttach('uprobe'))) return
    const binary = buildUprobeTarget()
    h = await startHarness({ provider: provider(), decodersPath })
    const harness = h
    const loaded = harness.nextEvent('loaded', 'wrong')
    const attach = (program: string, path: string, symbol: string, retprobe = false) =>
      `await codeOf(ctx.attach({ program: '${program}', uprobe: { binary: ${JSON.stringify(path)}, symbol: '${symbol}', retprobe: ${retprobe} } }))`
    harness.write('wrong.ts', plugin('wrong', ['pluginapi'], `
    const link = await ctx.attach({ program: 'pluginapi:on_call', uprobe: { binary: ${JSON.stringify(binary)}, symbol: 'periscope_target' } })
    await link.detach()
    ctx.emit.log({ body: [
      ${attach('pluginapi:on_call', '/nonexistent/binary', 'periscope_target')},
      ${attach('pluginapi:on_call', binary, 'no_such_function')},
      ${attach('pluginapi:not_a_uprobe', binary, 'periscope_target')},
      ${attach('pluginapi:on_return', binary, 'periscope_target')},
      ${attach('pluginapi:missing', binary, 'periscope_target')},
      ${attach('pluginapi:on_call', 'uprobe-target', 'periscope_target')},
      ${attach('exec:handle_exec', binary, 'periscope_target')},
      await codeOf(link.detach()),
    ].join('\\n') })`))
    await loaded
    const lines = (harness.sink.signals('wrong').logs[0]!.body as string).split('\n')
    const on = (symbol: string, path = binary, program = 'pluginapi:on_call') => `ctx.attach(${program} on ${path}:${symbol})`
    assert.deepEqual(lines.slice(0, 6).map((l) => l.split(' ')[0]), ['ENOENT', 'ENOSYMBOL', 'EINVAL', 'EINVAL', 'ENOENT', 'EINVAL'])
    assert.equal(lines[0], `ENOENT ENOENT: ${on('periscope_target', '/nonexistent/binary')}: binary /nonexistent/binary: it does not exist`)
    assert.equal(lines[1], `ENOSYMBOL ENOSYMBOL: ${on('no_such_function')}: ${binary} has no function symbol no_such_function`)
    assert.equal(lines[2], `EINVAL EINVAL: ${on('periscope_target', binary, 'pluginapi:not_a_uprobe')}: program 'not_a_uprobe' is a 'tracepoint/sched/sched_process_fork' program, not a uprobe; its uprobe programs: on_call, on_return`)
    assert.equal(lines[3], `EINVAL EINVAL: ${on('periscope_target', binary, 'pluginapi:on_return')}: program 'on_return' is a uretprobe program; pass retprobe: true`)
    assert.equal(lines[4], `ENOENT ENOENT: ${on('periscope_target', binary, 'pluginapi:missing')}: object 'pluginapi' has no program 'missing'; its uprobe programs: on_call, on_return`)
    assert.equal(lines[5], `EINVAL EINVAL: ${on('periscope_target', 'uprobe-target')}: give the binary as an absolute path`)
    assert.equal(lines[6], 'EACCES EACCES: ctx.attach(\'exec:handle_exec\'): object \'exec\' is not in this plugin\'s objects; add it to objects: [...]')
    assert.equal(lines[7], 'ok', 'detaching twice does nothing')
    assert.deepEqual(harness.runtime.bus.uprobes.list(), [])
    rmSync(join(binary, '..'), { recursive: true, force: true })
  })
})
