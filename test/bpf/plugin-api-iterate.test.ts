/** ctx.iterate against the real kernel, with the task iterator of test/bpf/fixtures/plugin-api.bpf.c. */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { afterEach, describe, it } from 'node:test'
import { startHarness, type Harness } from '../plugin-harness.ts'
import { decodersPath, plugin, provider } from './plugin-api-fixture.ts'

let h: Harness | undefined
afterEach(async () => {
  await h?.close()
  h = undefined
})

describe('ctx.iterate', () => {
  it('runs an iterator program of the plugin\'s object, for one process or all, and explains what it cannot run', async () => {
    const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' })
    try {
      h = await startHarness({ provider: provider(), decodersPath })
      const harness = h
      const loaded = harness.nextEvent('loaded', 'walker')
      harness.write('walker.ts', plugin('walker', ['pluginapi'], `
    const all = await ctx.iterate('pluginapi:list_processes')
    ctx.emit.log({ body: [
      await ctx.iterate('pluginapi:list_processes', { pid: ${sleeper.pid} }),
      String(all.split('\\n').includes('${sleeper.pid} sleep')), String(all.split('\\n').some((l) => l.startsWith('${process.pid} '))),
      await codeOf(ctx.iterate('pluginapi:on_call')),
      await codeOf(ctx.iterate('pluginapi:missing')),
      await codeOf(ctx.iterate('pluginapi:list_processes', { pid: -1 })),
      await codeOf(ctx.iterate('exec:handle_exec')),
    ].join('\\n') })`))
      await loaded
      assert.deepEqual((harness.sink.signals('walker').logs[0]!.body as string).split('\n'), [
        `${sleeper.pid} sleep`, '',
        'true', 'true',
        'EINVAL EINVAL: ctx.iterate(\'pluginapi:on_call\'): program \'on_call\' is a \'uprobe\' program, not an iterator; its iterators: list_processes',
        'ENOENT ENOENT: ctx.iterate(\'pluginapi:missing\'): object \'pluginapi\' has no program \'missing\'; its iterators: list_processes',
        'EINVAL EINVAL: ctx.iterate: give (\'<object>:<program>\', { pid?: number })',
        'EACCES EACCES: ctx.iterate(\'exec:handle_exec\'): object \'exec\' is not in this plugin\'s objects; add it to objects: [...]',
      ])
    } finally {
      sleeper.kill()
    }
  })
})
