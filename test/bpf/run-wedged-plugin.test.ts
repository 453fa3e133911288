/**
 * `periscope run` with plugins whose promises never settle (a ctx.every callback, and a setup()
 * of a plugin being loaded) still shuts down at once on SIGTERM and SIGINT, with its links
 * detached: shutdown stops plugin code instead of waiting for it.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { connectAdmin } from '../../runtime/admin/client.ts'
import type { PluginInfo } from '../../runtime/plugins/manager.ts'
import { root, sleep, waitFor } from './kernel.ts'
import { withoutShippedPlugins } from '../peers/periscope.ts'

async function pollUntil(condition: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(10)
  }
}

const programsOf = (names: string[]): number[] =>
  (JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'list']).toString()) as { id: number; name?: string }[])
    .filter((p) => names.includes(p.name ?? '')).map((p) => p.id)

const execs = `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'execs',
  objects: ['exec'],
  setup(ctx) {
    ctx.on('exec:events', (ev) => { if (ev.kind === 1 && ev.args[1] === 'run-wedged-test') ctx.emit.log({ body: 'seen ' + ev.args[2] }) })
  },
})
`

const hungTimer = `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'hung-timer',
  setup(ctx) {
    ctx.every('10ms', () => new Promise<void>(() => {}))
  },
})
`

const hungSetup = `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'hung-setup',
  objects: ['exec'],
  async setup() {
    await new Promise(() => {})
  },
})
`

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`periscope run with hung plugin promises exits at once on ${signal}, links detached`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'periscope-wedged-'))
    let child: ChildProcess | undefined
    try {
      writeFileSync(join(dir, 'execs.ts'), execs)
      writeFileSync(join(dir, 'hung-timer.ts'), hungTimer)
      writeFileSync(join(dir, 'periscope.yaml'), `admin:\n  socket: ${join(dir, 'admin', 'admin.sock')}\nexporter:\n  dataDir: ${join(dir, 'data')}\n  prometheus:\n    enabled: false\n# only this test's plugins: the shipped ones are not what it checks\nplugins: ${JSON.stringify(withoutShippedPlugins())}\n`)
      const before = programsOf(['handle_exec', 'handle_exit'])
      child = spawn(process.execPath, [join(root, 'runtime/cli.ts'), 'run', '--plugins', dir, '--config', join(dir, 'periscope.yaml')],
        { cwd: dir, env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: '' } })
      let output = ''
      child.stdout!.on('data', (d) => { output += d })
      child.stderr!.on('data', (d) => { output += d })
      const exited = new Promise<number | null>((resolve) => child!.on('close', (code) => resolve(code)))
      await waitFor(() => /running 2 of \d+ plugins/.test(output), 'the runtime to start', 20_000)
      const ours = programsOf(['handle_exec', 'handle_exit']).filter((id) => !before.includes(id))
      assert.equal(ours.length, 2, output)
      // a third plugin whose setup() never settles is loading when the signal comes
      writeFileSync(join(dir, 'hung-setup.ts'), hungSetup)
      execFileSync('/bin/echo', ['run-wedged-test', signal])
      const admin = await connectAdmin(join(dir, 'admin', 'admin.sock'))
      try {
        // its name is known once the bundle ran, and setup() follows: 'starting' from then on
        await pollUntil(async () => (await admin.request<PluginInfo[]>('plugins')).some((p) => p.name === 'hung-setup' && p.status === 'starting'),
          'hung-setup to be in its setup()')
      } finally {
        admin.close()
      }
      const sent = performance.now()
      child.kill(signal)
      const code = await exited
      const took = performance.now() - sent
      assert.equal(code, 0, output)
      assert.ok(took < 3000, `exited ${Math.round(took)} ms after ${signal}, without waiting out the 5 s call deadline\n${output}`)
      assert.match(output, new RegExp(`${signal}: shutting down`))
      assert.doesNotMatch(output, /hung-setup: loaded|hung-setup: .*restart/)
      const left = programsOf(['handle_exec', 'handle_exit'])
      assert.deepEqual(ours.filter((id) => left.includes(id)), [], 'no program of this runtime is left in the kernel')
      const logs = execFileSync('cat', [join(dir, 'data', 'logs.jsonl')]).toString()
      assert.match(logs, new RegExp(`seen ${signal}`), 'the exporter flushed the log record emitted before the signal')
    } finally {
      if (child?.exitCode === null) child.kill('SIGKILL')
      rmSync(dir, { recursive: true, force: true })
    }
  })
}
