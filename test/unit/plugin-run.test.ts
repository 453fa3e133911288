/** `periscope run` with an injected provider: loads --plugins, serves the admin socket, stops cleanly. */
import assert from 'node:assert/strict'
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { it } from 'node:test'
import { connectAdmin } from '../../runtime/admin/client.ts'
import { memoryLogger } from '../../runtime/plugins/log.ts'
import { MemorySink } from '../../runtime/plugins/sink.ts'
import { main } from '../../runtime/run.ts'
import { fixtureDecoders } from '../plugin-harness.ts'
import { counterPlugin } from '../plugin-fixtures/sources.ts'
import { SyntheticProvider } from '../plugin-fixtures/synthetic.ts'
import { shippedPluginNames, withoutShippedPlugins } from '../peers/periscope.ts'

it('runs plugins from --plugins and shuts down cleanly on the stop signal', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'periscope-run-'))
  try {
    const plugins = path.join(dir, 'plugins')
    const socket = path.join(dir, 'admin.sock')
    mkdirSync(plugins)
    writeFileSync(path.join(plugins, 'counter.ts'), counterPlugin())
    writeFileSync(path.join(dir, 'periscope.yaml'), `admin:\n  socket: ${socket}\nplugins: ${JSON.stringify({ counter: { resource_limits: { max_memory_mb: 32 } }, ...withoutShippedPlugins() })}\n`)
    const provider = new SyntheticProvider()
    const log = memoryLogger()
    let stop!: (signal: string) => void
    const stopSignal = new Promise<string>((resolve) => { stop = resolve })
    let shutdown = false
    const sink = Object.assign(new MemorySink(), { shutdown: async () => { shutdown = true } })
    const exit = main(['--plugins', plugins, '--config', path.join(dir, 'periscope.yaml')], { provider, sink, log, stopSignal, decodersPath: fixtureDecoders })
    let names: string[] = []
    for (let i = 0; i < 200 && names.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 25))
      if (!existsSync(socket)) continue
      const client = await connectAdmin(socket)
      // the shipped plugins are listed too, turned off by this test's config
      names = (await client.request<{ name?: string; file: string; status: string }[]>('plugins')).map((p) => `${p.name ?? path.basename(p.file)} ${p.status}`)
      client.close()
    }
    let code: number
    try {
      assert.deepEqual(names.sort(), ['counter running', ...shippedPluginNames().map((name) => `${name}.ts disabled`)].sort())
      assert.equal(provider.opened[0]?.closed, false, log.lines.map((l) => l.message).join('\n'))
    } finally {
      stop('SIGTERM')
      code = await exit
    }
    assert.equal(code, 0)
    assert.equal(provider.opened[0]!.closed, true, 'objects are closed (links detached) on shutdown')
    assert.equal(shutdown, true, 'the exporter was flushed')
    assert.equal(existsSync(socket), false, 'the admin socket is removed')
    assert.ok(log.lines.some((l) => /SIGTERM: shutting down/.test(l.message)))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
