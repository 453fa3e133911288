import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { writeFileSync, copyFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { BpfError } from '../../runtime/bpf/errors.ts'
import { attachTracepoint, attachUprobe } from '../../runtime/bpf/links.ts'
import { ObjectSpec } from '../../runtime/bpf/object.ts'
import { compileFixture, objectPath, root } from './kernel.ts'
import { scratchDir } from '../peers/scratch-dir.ts'

const scratch = scratchDir('periscope-errors-')

test('a missing object file says so and how to build it', () => {
  assert.throws(() => ObjectSpec.open('/nonexistent/thing.bpf.o'), /BPF object \/nonexistent\/thing\.bpf\.o does not exist; run `npm run build`/)
})

test('a corrupt ELF is refused without crashing', () => {
  const notElf = join(scratch, 'text.bpf.o')
  writeFileSync(notElf, 'definitely not an ELF file')
  assert.throws(() => ObjectSpec.open(notElf), /not an ELF file \(bad magic\)/)
  // a truncated real object keeps the magic but not the rest
  const truncated = join(scratch, 'truncated.bpf.o')
  copyFileSync(objectPath('exec'), truncated)
  writeFileSync(truncated, Buffer.from(new Uint8Array(Buffer.from(spawnSync('head', ['-c', '600', objectPath('exec')]).stdout))))
  assert.throws(() => ObjectSpec.open(truncated), (error: BpfError) => {
    assert.ok(error instanceof BpfError)
    assert.match(error.message, /open BPF object .*truncated\.bpf\.o: bpf_object__open_file/)
    assert.ok(error.errno > 0)
    return true
  })
})

test('a verifier rejection carries the verifier log tail', async () => {
  const spec = ObjectSpec.open(compileFixture('rejected'))
  await assert.rejects(spec.load(), (error: BpfError) => {
    assert.ok(error instanceof BpfError)
    assert.equal(error.code, 'EACCES')
    assert.match(error.op, /bpf_object__load/)
    assert.match(error.message, /load BPF object .*rejected\.bpf\.o/)
    assert.match(error.message, /libbpf log \(tail\)/)
    // the verifier's own words about the bad pointer
    assert.match(error.log, /invalid mem access 'scalar'/)
    assert.match(error.message, /invalid mem access 'scalar'/)
    return true
  })
})

test('unknown program, map and setting names list what exists', async () => {
  const spec = ObjectSpec.open(objectPath('exec'))
  assert.throws(() => spec.setAutoload('handle_nothing', false), /unknown program "handle_nothing" in .*exec\.bpf\.o; it has: handle_exec, handle_exit/)
  assert.throws(() => spec.setMaxEntries('nothing', 1), /unknown map "nothing" .*it has: .*events/)
  assert.throws(() => spec.setSettings({ target_pid: 1 }), /unknown setting "target_pid" .*known settings: target_tgid, min_duration_ns/)
  const object = await spec.load()
  assert.throws(() => attachTracepoint(object, 'handle_none', 'sched', 'sched_process_exec'), /unknown program "handle_none"/)
  object.close()
})

test('attaching to a nonexistent tracepoint or symbol is a clear error', async () => {
  const object = await ObjectSpec.open(objectPath('exec')).load()
  assert.throws(() => attachTracepoint(object, 'handle_exec', 'sched', 'no_such_tracepoint'), /tracepoint sched:no_such_tracepoint does not exist on this kernel/)
  object.close()
  const spec = ObjectSpec.open(objectPath('probes'))
  for (const p of spec.programs()) spec.setAutoload(p.name, p.name === 'probe_uprobe')
  const probes = await spec.load()
  assert.throws(() => attachUprobe(probes, 'probe_uprobe', process.execPath, { symbol: 'no_such_symbol_xyz' }), (error: BpfError) => {
    assert.match(error.message, /attach probe_uprobe to uprobe .*:no_such_symbol_xyz/)
    // the symbol is looked up in user space (runtime/symbols/elf.ts), as for uprobe_multi links
    assert.equal(error.code, 'ENOSYMBOL')
    return true
  })
  assert.throws(() => attachUprobe(probes, 'probe_uprobe', '/no/such/binary', { symbol: 'x' }), /binary \/no\/such\/binary does not exist/)
  probes.close()
})

test('running unprivileged fails with a message that names the missing capability', () => {
  const script = `
    import { ObjectSpec } from ${JSON.stringify(join(root, 'runtime/bpf/object.ts'))}
    try { await ObjectSpec.open(${JSON.stringify(objectPath('exec'))}).load(); console.log('LOADED') }
    catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }`
  // root with an empty capability bounding set has no capabilities after exec, yet can still read the checkout
  const child = spawnSync('setpriv', ['--bounding-set=-all', '--inh-caps=-all', '--', process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8' })
  assert.equal(child.status, 0, child.stderr)
  const result = JSON.parse(child.stdout.trim().split('\n').pop()!)
  assert.equal(result.code, 'EPERM')
  assert.match(result.message, /run as root, or grant CAP_BPF and CAP_PERFMON/)
})
