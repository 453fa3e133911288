import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { root, waitFor } from './kernel.ts'
import { withoutShippedPlugins } from '../peers/periscope.ts'

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
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
    await waitFor(() => /running 1 of \d+ plugins/.test(output), 'the runtime to start', 20_000)
    const ours = programsOf(['handle_exec', 'handle_exit']).filter((id) => !before.includes(id))
    assert.equal(ours.length, 2, output)
    execFileSync('/bin/echo', ['run-shutdown-test', signal])
    await new Promise((resolve) => setTimeout(resolve, 300))
    child.kill(signal)
    assert.equal(await exited, 0, output)
    assert.match(output, new RegExp(`${signal}: shutting down`))
    const left = programsOf(['handle_exec', 'handle_exit'])
    assert.deepEqual(ours.filter((id) => left.includes(id)), [], 'no program of this runtime is left in the kernel')
    const logs = execFileSync('cat', [join(dir, 'data', 'logs.jsonl')]).toString()
    assert.match(logs, new RegExp(`seen ${signal}`), 'the exporter flushed the log record emitted just before the signal')
  })
}
