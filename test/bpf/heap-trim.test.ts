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
