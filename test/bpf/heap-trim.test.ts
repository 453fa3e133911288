// The runtime's heap trim (runtime/heap-trim.ts over native/src/heap_trim.cc): memory freed below
// a live allocation of the C heap goes back to the kernel. A child fills its heap with 1 KB
// buffers, frees all but the last 10,000 (so the free memory is below them, where glibc does not
// trim by itself), and reports its heap's RSS (smaps) before and after trimHeap.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { test } from 'node:test'
import { root } from './kernel.ts'

const child = `
import { readFileSync } from 'node:fs'
import { native } from ${JSON.stringify(`${root}/runtime/bpf/native.ts`)}
const heapRss = () => {
  let inHeap = false, kb = 0
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inHeap = line.endsWith('[heap]')
    else if (inHeap && line.startsWith('Rss:')) kb += Number(line.split(/\\s+/)[1])
  }
  return kb * 1024
}
let kept = []
for (let i = 0; i < 60000; i++) kept.push(Buffer.allocUnsafeSlow(1024))
kept = kept.slice(50000)
// the backing stores are freed by a sweeper thread after the collection: wait until the heap's RSS stops changing
let before = heapRss()
for (let settled = 0; settled < 3; ) {
  globalThis.gc()
  await new Promise((resolve) => setTimeout(resolve, 50))
  const now = heapRss()
  settled = now === before ? settled + 1 : 0
  before = now
}
const released = native.trimHeap()
console.log(JSON.stringify({ before, after: heapRss(), released, kept: kept.length }))
`

test('trimHeap gives the pages of freed C heap memory back: 50,000 of 60,000 1 KB buffers freed below the rest, the heap\'s RSS falls by most of their 50 MB', () => {
  const out = JSON.parse(execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', child], { encoding: 'utf8' }))
  assert.equal(out.kept, 10_000)
  assert.equal(out.released, true)
  assert.ok(out.before - out.after > 40e6, `heap RSS ${out.before / 1e6} MB before, ${out.after / 1e6} MB after`)
})

// The trim's first half: buffers that lived through young collections (as a batch waiting in a
// plugin's queue does) and then died are freed by a full collection only, which V8 starts when its
// own heap grows. A child promotes 48 buffers of 1 MB, drops them, and trims.
const promoted = `
import { heapTrimmer } from ${JSON.stringify(`${root}/runtime/heap-trim.ts`)}
import { native } from ${JSON.stringify(`${root}/runtime/bpf/native.ts`)}
const trim = heapTrimmer(native)
const start = process.memoryUsage().external
let buffers = Array.from({ length: 48 }, () => Buffer.alloc(1 << 20, 1))
globalThis.gc({ type: 'minor' })
globalThis.gc({ type: 'minor' })
buffers = undefined
const dead = process.memoryUsage().external
trim()
// the collection's sweep of backing stores is finished by the next young collection, of which a
// running runtime has many a second
globalThis.gc({ type: 'minor' })
let after = process.memoryUsage().external
for (let i = 0; i < 100 && after - start > 8e6; i++) {
  await new Promise((resolve) => setTimeout(resolve, 10))
  after = process.memoryUsage().external
}
console.log(JSON.stringify({ start, dead, after }))
`

test('a trim frees 48 MB of dead buffers that young collections promoted: a full collection starts it, as they grew by more than 8 MB', () => {
  const out = JSON.parse(execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', promoted], { encoding: 'utf8' }))
  assert.ok(out.dead - out.start > 45e6, `the buffers were still counted once dead: ${(out.dead - out.start) / 1e6} MB`)
  assert.ok(out.after - out.start < 8e6, `external memory ${(out.start / 1e6).toFixed(1)} MB at the start, ${(out.dead / 1e6).toFixed(1)} MB with the dead buffers, ${(out.after / 1e6).toFixed(1)} MB after the trim`)
})
