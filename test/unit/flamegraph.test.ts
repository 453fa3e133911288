// The flame graph page: the merged tree exactly, a page that needs nothing from the network, and
// data that cannot close its <script> element; and the top table's sums. Headless Chromium draws
// it in test/e2e/profile-command.test.ts.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { AggregatedProfile } from '../../runtime/telemetry/profiles.ts'
import { PROFILE_TYPES } from '../../runtime/telemetry/profiles.ts'
import type { FrameInput } from '../../runtime/telemetry/signals.ts'
import { flameGraphHtml, flameTree } from '../../runtime/profiling/flamegraph.ts'
import { formatTopTable, formatValue, topFunctions } from '../../runtime/profiling/top-table.ts'

const BIN = { file: '/opt/burner', buildId: 'b0', start: 0x400000 }
const fn = (name: string, address: number): FrameInput => ({ address, function: name, mapping: BIN })
const KERNEL_TICK: FrameInput = { address: Number(0xffffffff81001000n), function: 'asm_sysvec_apic_timer_interrupt', mapping: { file: '[kernel.kallsyms]' } }
const JIT: FrameInput = { address: 0x7f0000001000, function: 'LazyCompile:*fib /app.js:1', mapping: { file: '[jit]' } }

function cpu(samples: AggregatedProfile['samples']): AggregatedProfile {
  return { scope: { name: 'cpu-profile' }, type: 'cpu', process: { pid: 7, command: 'burner' }, resourceAttributes: {}, startNs: 0, endNs: 1e9, ...PROFILE_TYPES.cpu, periodType: PROFILE_TYPES.cpu.periodType, samples }
}

const PROFILE = cpu([
  { frames: [fn('hot', 0x401100), fn('work', 0x401300), fn('main', 0x401400)], values: [8, 80], labels: {} },
  { frames: [fn('warm', 0x401200), fn('work', 0x401300), fn('main', 0x401400)], values: [2, 20], labels: {} },
  { frames: [KERNEL_TICK, fn('hot', 0x401104), fn('work', 0x401300), fn('main', 0x401400)], values: [1, 10], labels: {} },
  // a recursive stack: fib counts once in cum
  { frames: [JIT, JIT, fn('main', 0x401410)], values: [4, 40], labels: {} },
  { frames: [{ address: 0x401500, mapping: BIN }, fn('main', 0x401400)], values: [0, 0], labels: {} },
])

test('flameTree: stacks merged root first, values summed up the tree, kernel and JIT frames tagged for their colours', () => {
  assert.deepEqual(flameTree(PROFILE), {
    name: 'all', value: 150, children: [{
      name: 'main', value: 150, l: 'user', children: [
        { name: 'work', value: 110, l: 'user', children: [
          { name: 'hot', value: 90, l: 'user', children: [{ name: 'asm_sysvec_apic_timer_interrupt', value: 10, l: 'kernel', children: [] }] },
          { name: 'warm', value: 20, l: 'user', children: [] },
        ] },
        { name: 'LazyCompile:*fib /app.js:1', value: 40, l: 'jit', children: [{ name: 'LazyCompile:*fib /app.js:1', value: 40, l: 'jit', children: [] }] },
      ],
    }],
  })
  // by samples instead of time, and rooted at each process
  const bySamples = flameTree(PROFILE, { valueIndex: 0, byProcess: true })
  assert.equal(bySamples.value, 15)
  assert.deepEqual(bySamples.children.map((c) => [c.name, c.value]), [['burner [7]', 15]])
})

test('topFunctions: flat by leaf, cum once per sample, unnamed frames by module and offset', () => {
  const top = topFunctions(PROFILE)
  assert.equal(top.total, 150)
  assert.equal(top.samples, 15)
  assert.deepEqual(top.rows.map((r) => [r.function, r.module, r.flat, r.cum]), [
    ['hot', 'burner', 80, 90],
    ['LazyCompile:*fib /app.js:1', '[jit]', 40, 40],
    ['warm', 'burner', 20, 20],
    ['asm_sysvec_apic_timer_interrupt', '[kernel.kallsyms]', 10, 10],
    ['main', 'burner', 0, 150],
    ['work', 'burner', 0, 110],
    ['burner+0x1500', 'burner', 0, 0],
  ])
  assert.equal(formatTopTable(top, { rows: 2 }), [
    'Showing 2 of 7 functions, 120ns (80.00%) of 150ns cpu in 15 samples',
    'flat  flat%   sum%  cum   cum%  function                    module',
    '80ns 53.33% 53.33% 90ns 60.00%  hot                         burner',
    '40ns 26.67% 80.00% 40ns 26.67%  LazyCompile:*fib /app.js:1  [jit]',
  ].join('\n'))
  assert.deepEqual([formatValue(1.5e9, 'nanoseconds'), formatValue(340e6, 'nanoseconds'), formatValue(12_340, 'nanoseconds'), formatValue(3 * 2 ** 20, 'bytes'), formatValue(1536, 'bytes'), formatValue(7, 'count')], ['1.5s', '340ms', '12.34us', '3MB', '1.5kB', '7'])
})

test('the page is self-contained: the script, style and data inline, nothing to fetch, data unable to end its element', async () => {
  const hostile = cpu([{ frames: [fn('</script><script>alert(1)</script>', 0x401100), fn('main', 0x401400)], values: [1, 10], labels: {} }])
  const html = await flameGraphHtml(hostile, { title: 'CPU <profile> & "more"', subtitle: '1 s at 99 Hz' })
  assert.match(html, /^<!DOCTYPE html>/)
  assert.match(html, /<title>CPU &#60;profile&#62; &#38; &#34;more&#34;<\/title>/)
  // no external script, stylesheet, image or font: it opens offline
  assert.doesNotMatch(html, /<script[^>]+src=|<link\b|<img\b|@import|url\(/i)
  assert.doesNotMatch(html, /https?:\/\/(?!www\.w3\.org\/)/)
  // d3-flame-graph's code and its stylesheet are in the page
  assert.match(html, /\.d3-flame-graph rect\{stroke:#eee/)
  assert.match(html, /globalThis\.periscopeFlameGraph=\{flamegraph:/)
  // one element of data, which parses back to the tree; the hostile name never closes it
  assert.equal(html.match(/<\/script>/g)!.length, 3)
  const data = JSON.parse(/<script id="profile-data" type="application\/json">(.*?)<\/script>/s.exec(html)![1])
  assert.equal(data.unit, 'nanoseconds')
  assert.equal(data.tree.children[0].children[0].name, '</script><script>alert(1)</script>')
})
