import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { connectAdmin } from '../../runtime/admin/client.ts'
import { root, waitFor } from './kernel.ts'
import { withoutShippedPlugins } from '../peers/periscope.ts'
import { attributesOf, flatten } from '../peers/otelcol.ts'

const programsOf = (names: string[]): number[] =>
  (JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'list']).toString()) as { id: number; name?: string }[])
    .filter((p) => names.includes(p.name ?? '')).map((p) => p.id)

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  test(`periscope run shuts down on ${signal}: links detached, data flushed, no program left`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'periscope-run-'))
    t.after(() => rmSync(dir, { recursive: true, force: true }))
    writeFileSync(join(dir, 'execs.ts'), `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'execs',
  objects: ['exec'],
  setup(ctx) {
    ctx.on('exec:events', (ev) => { if (ev.kind === 1 && ev.args[1] === 'run-shutdown-test') ctx.emit.log({ body: 'seen ' + ev.args[2] }) })
  },
})
`)
    writeFileSync(join(dir, 'periscope.yaml'), `admin:\n  socket: ${join(dir, 'admin.sock')}\nexporter:\n  dataDir: ${join(dir, 'data')}\n  prometheus:\n    enabled: false\n# only this test's plugins: the shipped ones are not what it checks\nplugins: ${JSON.stringify(withoutShippedPlugins())}\n`)
    const before = programsOf(['handle_exec', 'handle_exit'])
    const child = spawn(process.execPath, [join(root, 'runtime/cli.ts'), 'run', '--plugins', dir, '--config', join(dir, 'periscope.yaml')], { cwd: dir, env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: '' } })
    t.after(() => { if (child.exitCode === null) child.kill('SIGKILL') })
    let output = ''
    child.stdout.on('data', (d) => { output += d })
    child.stderr.on('data', (d) => { output += d })
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
    await waitFor(() => /running 1 of \d+ plugins/.test(output), 'the runtime to start', 20_000)
    const ours = programsOf(['handle_exec', 'handle_exit']).filter((id) => !before.includes(id))
    assert.equal(ours.length, 2, output)
    execFileSync('/bin/echo', ['run-shutdown-test', signal])
    // no wait: the record is in the kernel's ring, and a clean shutdown hands it to the plugin
    child.kill(signal)
    assert.equal(await exited, 0, output)
    assert.match(output, new RegExp(`${signal}: shutting down`))
    const left = programsOf(['handle_exec', 'handle_exit'])
    assert.deepEqual(ours.filter((id) => left.includes(id)), [], 'no program of this runtime is left in the kernel')
    const logs = execFileSync('cat', [join(dir, 'data', 'logs.jsonl')]).toString()
    assert.match(logs, new RegExp(`seen ${signal}`), 'the exporter flushed the log record emitted just before the signal')
  })
}

test('at shutdown a slow plugin handles what is queued until the drain deadline; the rest is counted as dropped for shutdown', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'periscope-run-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  // 250 ms per marker record: 60 of them take 15 s, past the 3 s drain. A marker reaches the
  // plugin up to 100 ms after its exec (the exec ring wakes its reader only past a backlog, and
  // its idle drain reads every 100 ms), so the plugin must be slower than that for a queue to form
  writeFileSync(join(dir, 'slow.ts'), `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'slow',
  objects: ['exec'],
  setup(ctx) {
    ctx.on('exec:events', (ev) => {
      if (ev.kind !== 1 || ev.args[1] !== 'run-shutdown-drain') return
      const until = Date.now() + 250
      while (Date.now() < until);
      ctx.emit.log({ body: 'handled ' + ev.args[2] })
    })
  },
})
`)
  writeFileSync(join(dir, 'periscope.yaml'), `admin:\n  socket: ${join(dir, 'admin.sock')}\nexporter:\n  dataDir: ${join(dir, 'data')}\n  prometheus:\n    enabled: false\nplugins: ${JSON.stringify({ ...withoutShippedPlugins(), slow: { resource_limits: { max_cpu_percent: 100, batch_budget: '60s', call_deadline: '60s' } } })}\n`)
  const child = spawn(process.execPath, [join(root, 'runtime/cli.ts'), 'run', '--plugins', dir, '--config', join(dir, 'periscope.yaml')], { cwd: dir, env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: '' } })
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  let output = ''
  child.stdout.on('data', (d) => { output += d })
  child.stderr.on('data', (d) => { output += d })
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  await waitFor(() => /running 1 of \d+ plugins/.test(output), 'the runtime to start', 20_000)
  const markers = 60
  // each marker reaches the plugin's queue before the next runs, so each is a batch of its own:
  // a batch the deadline cuts short loses what its call emitted (it is counted as dropped), and
  // markers read in one batch (a loaded machine reads late) would make this test about batching
  const admin = await connectAdmin(join(dir, 'admin.sock'))
  const eventsIn = async () => (await admin.request<{ name: string; stats: { eventsIn: number } }[]>('plugins')).find((p) => p.name === 'slow')!.stats.eventsIn
  try {
    for (let i = 0; i < markers; i++) {
      const before = await eventsIn()
      execFileSync('/bin/echo', ['run-shutdown-drain', String(i)])
      const deadline = Date.now() + 20_000
      while (await eventsIn() === before) {
        if (Date.now() > deadline) throw new Error(`marker ${i} never reached the plugin`)
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
    }
  } finally {
    admin.close()
  }
  const stopAt = performance.now()
  child.kill('SIGTERM')
  assert.equal(await exited, 0, output)
  const tookMs = performance.now() - stopAt
  const handled = readFileSync(join(dir, 'data', 'logs.jsonl'), 'utf8').match(/handled \d+/g) ?? []
  // the first ones, in order, none skipped
  assert.ok(handled.length >= 3 && handled.length < markers, `${handled.length} handled`)
  assert.deepEqual(handled, Array.from({ length: handled.length }, (_, i) => `handled ${i}`))
  const metrics = flatten('metrics', readFileSync(join(dir, 'data', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)))
  const last = (name: string, reason?: string): number => {
    const points = metrics.filter((m) => m.item.name === name).flatMap((m) => ((m.item.sum as { dataPoints: Record<string, unknown>[] } | undefined)?.dataPoints ?? []))
      .filter((p) => attributesOf(p.attributes as never).plugin === 'slow' && (reason === undefined || attributesOf(p.attributes as never).reason === reason))
    const point = points.at(-1)
    return Number(point?.asInt ?? point?.asDouble ?? NaN)
  }
  const dropped = last('periscope.plugin.events.dropped', 'shutdown')
  // every marker was either handled or counted; other processes' execs may add to either
  assert.ok(dropped > 0, `dropped at shutdown: ${dropped}`)
  assert.ok(last('periscope.plugin.events.handled') + dropped >= markers, `handled ${last('periscope.plugin.events.handled')} + dropped ${dropped} < ${markers}`)
  assert.ok(tookMs < 15_000, `shutdown took ${tookMs} ms`)
})
