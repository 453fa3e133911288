/**
 * `periscope run` drops capabilities on every thread once its objects are loaded, and keeps
 * working with what it kept: events still flow, and a hot-added plugin still loads its object.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { connectAdmin } from '../../runtime/admin/client.ts'
import { root, waitFor } from './kernel.ts'

const bpfPerfmon = (1n << 39n) | (1n << 38n)

/** CapEff and CapBnd of every thread of `pid`, read by the kernel's accounting, not the runtime's. */
function threadCapabilities(pid: number): { tid: string; name: string; effective: bigint; bounding: bigint }[] {
  return readdirSync(`/proc/${pid}/task`).flatMap((tid) => {
    let text: string
    try {
      text = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8')
    } catch {
      return [] // the thread exited between listing and reading
    }
    const field = (name: string) => /^(\S+):\s*(.*)$/m.exec(text.split('\n').find((l) => l.startsWith(`${name}:`)) ?? '')?.[2] ?? ''
    return [{ tid, name: field('Name'), effective: BigInt(`0x${field('CapEff')}`), bounding: BigInt(`0x${field('CapBnd')}`) }]
  })
}

const hex = (mask: bigint) => mask.toString(16).padStart(16, '0')

test('periscope run keeps only CAP_BPF and CAP_PERFMON on every thread, and still works', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'periscope-privileges-'))
  const socket = join(dir, 'admin.sock')
  writeFileSync(join(dir, 'execs.ts'), `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'privileges-execs',
  objects: ['exec'],
  setup(ctx) {
    ctx.on('exec:events', (ev) => { if (ev.kind === 1 && ev.args[1] === 'privileges-test') ctx.log.info('saw exec ' + ev.args[2]) })
  },
})
`)
  writeFileSync(join(dir, 'periscope.yaml'), `admin:\n  socket: ${socket}\nexporter:\n  dataDir: ${join(dir, 'data')}\n  prometheus:\n    enabled: false\n`)
  const child = spawn(process.execPath, [join(root, 'runtime/cli.ts'), 'run', '--plugins', dir, '--config', join(dir, 'periscope.yaml')], {
    cwd: dir, env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: '' },
  })
  let output = ''
  child.stdout.on('data', (d) => { output += d })
  child.stderr.on('data', (d) => { output += d })
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  try {
    await waitFor(() => /running 1 of \d+ plugins/.test(output), 'the runtime to start', 20_000)
    assert.match(output, /dropped .*CAP_SYS_ADMIN.*; keeping CAP_PERFMON, CAP_BPF/, output)

    const threads = threadCapabilities(child.pid!)
    for (const thread of threads) t.diagnostic(`${thread.tid} ${thread.name}: CapEff ${hex(thread.effective)} CapBnd ${hex(thread.bounding)}`)
    const wrong = threads.filter((t) => t.effective !== bpfPerfmon || t.bounding !== bpfPerfmon)
      .map((t) => `${t.tid} ${t.name}: CapEff ${hex(t.effective)} CapBnd ${hex(t.bounding)}`)
    assert.ok(threads.length > 4, `the runtime has its V8, libuv and isolate threads (${threads.length} found)`)
    assert.deepEqual(wrong, [], `every thread holds exactly CAP_BPF|CAP_PERFMON (${hex(bpfPerfmon)})`)

    // events still reach the plugin after the drop
    execFileSync('/bin/echo', ['privileges-test', 'after-drop'])
    await waitFor(() => /saw exec after-drop/.test(output), 'the exec event to reach the plugin', 5000)

    // a plugin added now loads a new object with only CAP_BPF and CAP_PERFMON
    writeFileSync(join(dir, 'loopgen.ts'), `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'privileges-loopgen',
  objects: ['loopgen'],
  setup(ctx) { ctx.on('loopgen:events', () => {}) },
})
`)
    await waitFor(() => /plugin privileges-loopgen: loaded/.test(output), 'the hot-added loopgen plugin to load', 10_000)
    const admin = await connectAdmin(socket)
    try {
      const objects = await admin.request<{ name: string; users: string[] }[]>('objects')
      const users = objects.find((o) => o.name === 'loopgen')?.users ?? []
      assert.ok(users.length === 1 && users[0]!.includes('loopgen.ts'), `the loopgen object is open for the new plugin: ${JSON.stringify(objects)}`)
      const plugins = await admin.request<{ name: string; status: string }[]>('plugins')
      assert.equal(plugins.find((p) => p.name === 'privileges-loopgen')?.status, 'running', output)
    } finally {
      admin.close()
    }
    // threads started since (for the new isolate) inherit the reduced sets
    const later = threadCapabilities(child.pid!).filter((t) => t.effective !== bpfPerfmon || t.bounding !== bpfPerfmon)
    assert.deepEqual(later.map((t) => t.tid), [], 'no thread regained capabilities')
  } finally {
    child.kill('SIGTERM')
    const code = await exited
    rmSync(dir, { recursive: true, force: true })
    assert.equal(code, 0, output)
  }
})
