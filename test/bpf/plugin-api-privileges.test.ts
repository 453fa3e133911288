/**
 * ctx.attach runs after Periscope dropped privileges (runtime/privileges.ts): as nobody with
 * CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_DAC_READ_SEARCH. The kernel then refuses a classic
 * uprobe: libbpf 1.1 makes one with a perf_event_open of the uprobe PMU, which wants
 * CAP_SYS_ADMIN whatever CAP_PERFMON says. A uprobe_multi link (BPF_LINK_CREATE with
 * BPF_TRACE_UPROBE_MULTI, Linux 6.6) attaches with CAP_BPF and CAP_PERFMON, for a program loaded
 * with that expected attach type, at a file offset found in the ELF in user space; the object
 * library loads its run-time uprobes that way when the kernel has them. The binaries sit in a
 * directory only root may enter.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { test } from 'node:test'
import { probeAttach } from '../../runtime/bpf/features.ts'
import { compileFixture, requireFeature, root } from './kernel.ts'
import { plugin } from './plugin-api-fixture.ts'

const fixture = compileFixture('plugin-api')

/** A temp directory only root may enter, removed after `fn`. */
async function inRootOnlyDirectory<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'periscope-uprobe-root-only-'))
  try {
    assert.equal(statSync(dir).mode & 0o777, 0o700, 'only root may enter the binary\'s directory')
    return await fn(dir)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

function buildTarget(dir: string): string {
  const binary = join(dir, 'uprobe-target')
  execFileSync('cc', ['-O2', '-g', '-o', binary, join(root, 'test/bpf/fixtures/uprobe-target.c')])
  return binary
}

/** Builds the target in a root-only directory and runs the fixture on it; its JSON result. */
function attachAfterDrop(mode: 'classic' | 'uprobe_multi') {
  return inRootOnlyDirectory(async (dir) => JSON.parse(execFileSync(process.execPath,
    [join(root, 'test/bpf/fixtures/uprobe-after-drop.ts'), fixture, buildTarget(dir), join(dir, 'data'), mode], { encoding: 'utf8' })) as
    { dropped: boolean; uid: string; attach: string; calls: number; returns: number; targetExit: number })
}

test('after the drop a classic uprobe (uprobe PMU) is refused by the kernel, not for a binary in a root-only directory seeming missing', async (t) => {
  if (!requireFeature(t, 'uprobe', await probeAttach('uprobe'))) return
  const result = await attachAfterDrop('classic')
  assert.equal(result.dropped, true)
  assert.equal(result.uid, '65534')
  assert.match(result.attach, /^EACCES: attach on_call to uprobe \/tmp\/periscope-uprobe-root-only-\w+\/uprobe-target:periscope_target: /)
})

test('after the drop a uprobe and a uretprobe attach as uprobe_multi links to a binary in a root-only directory and count every call', async (t) => {
  if (!requireFeature(t, 'uprobe_multi', await probeAttach('uprobe_multi'))) return
  const result = await attachAfterDrop('uprobe_multi')
  assert.equal(result.dropped, true)
  assert.equal(result.uid, '65534')
  assert.equal(result.attach, 'ok')
  assert.equal(result.targetExit, 0)
  assert.deepEqual([result.calls, result.returns], [3, 3], 'the target\'s 3 calls and 3 returns were counted')
})

/** Runs the target as root to make `calls` calls; resolves with its pid once it exited. */
function runTarget(binary: string, calls: number): Promise<number> {
  const child = spawn(binary, [String(calls)], { stdio: ['pipe', 'ignore', 'inherit'] })
  child.stdin.end('go\n')
  return new Promise((resolve, reject) => child.on('exit', (code) => (code === 0 ? resolve(child.pid!) : reject(new Error(`uprobe target exited ${code}`)))))
}

const bpftoolLinkIds = (): number[] => (JSON.parse(execFileSync('bpftool', ['-j', 'link', 'list']).toString()) as { id: number }[]).map((l) => l.id)

const tlsProbes = [['ssl_write', 'SSL_write'], ['ssl_read', 'SSL_read'], ['ssl_write_ex', 'SSL_write_ex'], ['ssl_read_ex', 'SSL_read_ex']]
  .flatMap(([program, symbol]) => [[program!, symbol!, false], [`${program}_ret`, symbol!, true]] as const)

interface Held { uprobes: number[]; links: { object: string; id: number; program: string; attach: string }[] }

test('ctx.attach after the drop: a plugin added later attaches to a binary built after the drop, and sockdata\'s TLS programs to libssl; each call counts once; unloading detaches every link', async (t) => {
  if (!requireFeature(t, 'uprobe_multi', await probeAttach('uprobe_multi'))) return
  const plugins = mkdtempSync(join(tmpdir(), 'periscope-plugins-root-only-'))
  t.after(() => rmSync(plugins, { recursive: true, force: true }))
  await inRootOnlyDirectory(async (dir) => {
    const child = spawn(process.execPath, [join(root, 'test/bpf/fixtures/ctx-attach-after-drop.ts'), fixture, plugins, join(dir, 'data')], { stdio: ['pipe', 'pipe', 'inherit'] })
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve))
    t.after(() => child.kill())
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
    const ask = async (command?: string) => {
      if (command !== undefined) child.stdin.write(`${command}\n`)
      const { value, done } = await lines.next()
      assert.ok(!done, `the fixture ended before answering ${command ?? 'its start'}`)
      return JSON.parse(value as string)
    }

    const started = await ask()
    assert.deepEqual([started.dropped, started.uid, started.capabilities], [true, 65534, ['CAP_DAC_READ_SEARCH', 'CAP_NET_ADMIN', 'CAP_PERFMON', 'CAP_BPF']])

    // keeps pluginapi open when the attacher goes, so its counts can be read after the detach
    writeFileSync(join(plugins, 'holder.ts'), plugin('holder', ['pluginapi'], ''))
    assert.equal((await ask('loaded holder')).event, 'loaded')

    // the binary exists only from now on, and the plugin arrives after the drop
    const binary = buildTarget(dir)
    const libssl = realpathSync('/usr/lib/x86_64-linux-gnu/libssl.so.3')
    const attach = (program: string, file: string, symbol: string, retprobe: boolean) =>
      `(await ctx.attach({ program: '${program}', uprobe: { binary: ${JSON.stringify(file)}, symbol: '${symbol}', retprobe: ${retprobe} } })).id`
    writeFileSync(join(plugins, 'attacher.ts'), plugin('attacher', ['pluginapi', 'sockdata'], `
    const entry = ${attach('pluginapi:on_call', binary, 'periscope_target', false)}
    const exit = ${attach('pluginapi:on_return', binary, 'periscope_target', true)}
    const tls = []
    ${tlsProbes.map(([program, symbol, retprobe]) => `tls.push(${attach(`sockdata:${program}`, libssl, symbol, retprobe)})`).join('\n    ')}
    const missing = await codeOf(ctx.attach({ program: 'pluginapi:on_call', uprobe: { binary: ${JSON.stringify(binary)}, symbol: 'no_such_function' } }))
    ctx.emit.log({ body: 'attached', attributes: { entry, exit, tls: JSON.stringify(tls), missing } })`))

    const loaded = await ask('loaded attacher')
    assert.equal(loaded.event, 'loaded', JSON.stringify(loaded.failure))
    const { entry, exit, tls, missing } = loaded.logs[0].attributes as { entry: number; exit: number; tls: string; missing: string }
    assert.equal(missing, `ENOSYMBOL ENOSYMBOL: ctx.attach(pluginapi:on_call on ${binary}:no_such_function): ${binary} has no function symbol no_such_function`)
    const tlsIds = JSON.parse(tls) as number[]
    const held = loaded as Held
    assert.deepEqual(held.uprobes, Array(10).fill(1), 'ten links, one hold each')
    assert.deepEqual(held.links.map((l) => [l.object, l.id, l.program, l.attach]).sort(), [
      ['pluginapi', entry, 'on_call', `uprobe_multi ${binary}:periscope_target`],
      ['pluginapi', exit, 'on_return', `uretprobe_multi ${binary}:periscope_target`],
      ...tlsProbes.map(([program, symbol, retprobe], i) => ['sockdata', tlsIds[i], program, `${retprobe ? 'uretprobe_multi' : 'uprobe_multi'} ${libssl}:${symbol}`]),
    ].sort())
    const ids = held.links.map((l) => l.id)
    const listed = bpftoolLinkIds()
    assert.ok(ids.every((id) => listed.includes(id)), 'the kernel lists every link')

    const counted = await runTarget(binary, 3)
    rmSync(join(plugins, 'attacher.ts'))
    const unloaded = await ask('unloaded attacher') as Held
    assert.deepEqual([unloaded.uprobes, unloaded.links], [[], []])
    const left = bpftoolLinkIds()
    assert.deepEqual(ids.filter((id) => left.includes(id)), [], 'unloading the plugin detached every link')
    const after = await runTarget(binary, 2)

    const counts = await ask(`count ${counted} ${after}`)
    assert.deepEqual([counts.calls, counts.returns], [[3, 0], [3, 0]], 'every call and return while attached, none after')
    assert.equal(await exited, 0)
  })
})
