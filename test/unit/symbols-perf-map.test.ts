/**
 * Perf maps (runtime/symbols/perf-map.ts) and /proc/<pid>/maps parsing (mappings.ts) on files of
 * the formats Node, Python and the kernel write: lookups inside and at the edges of each piece of
 * code, lines appended between reads (a line cut in two by a read included), overlapping code
 * (the later line wins), a truncated file, and a map owned by another user refused.
 */
import assert from 'node:assert/strict'
import { appendFileSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { ProcessMappings } from '../../runtime/symbols/mappings.ts'
import { PerfMap } from '../../runtime/symbols/perf-map.ts'

const work = mkdtempSync(join(tmpdir(), 'periscope-perf-map-'))
after(() => rmSync(work, { recursive: true, force: true }))

describe('perf maps', () => {
  it('Node\'s and Python\'s lines: names with spaces, with and without 0x, edges of each range', () => {
    const path = join(work, 'basic.map')
    writeFileSync(path, [
      '7fc6b7580000 3f8 Builtin:DeoptimizationEntry_Eager',
      '0x7fc6b7581000 0x40 LazyCompile:*hot /app/main.js:3:13',
      '7fc6b7590000 b py::compute:/app/main.py',
      'garbage line',
      '',
    ].join('\n'))
    const map = PerfMap.at(path)
    assert.equal(map.refresh(), true)
    assert.equal(map.size, 3)
    assert.deepEqual(map.lookup(0x7fc6b7580000), { name: 'Builtin:DeoptimizationEntry_Eager', offset: 0 })
    assert.deepEqual(map.lookup(0x7fc6b75803f7), { name: 'Builtin:DeoptimizationEntry_Eager', offset: 0x3f7 })
    assert.equal(map.lookup(0x7fc6b75803f8), undefined)
    assert.deepEqual(map.lookup(0x7fc6b7581010), { name: 'LazyCompile:*hot /app/main.js:3:13', offset: 0x10 })
    assert.deepEqual(map.lookup(0x7fc6b759000a), { name: 'py::compute:/app/main.py', offset: 10 })
    assert.equal(map.lookup(0x7fc6b759000b), undefined)
    assert.equal(map.refresh(), false)
  })

  it('lines appended between reads, one cut in two; code moved over older code; a truncated file read again', () => {
    const path = join(work, 'growing.map')
    writeFileSync(path, '1000 100 first\n2000 10')
    const map = PerfMap.at(path)
    map.refresh()
    assert.deepEqual(map.lookup(0x1050), { name: 'first', offset: 0x50 })
    assert.equal(map.lookup(0x2005), undefined, 'a line without its end is not taken yet')
    appendFileSync(path, '0 second\n1040 20 newer\n')
    assert.equal(map.refresh(), true)
    assert.deepEqual(map.lookup(0x2005), { name: 'second', offset: 5 })
    // the newer code inside the older range wins where both hold the address; the older holds the rest
    assert.deepEqual(map.lookup(0x1045), { name: 'newer', offset: 5 })
    assert.deepEqual(map.lookup(0x1070), { name: 'first', offset: 0x70 })
    writeFileSync(path, '5000 10 fresh\n')
    map.refresh()
    assert.deepEqual([map.size, map.lookup(0x5001)?.name, map.lookup(0x1050)], [1, 'fresh', undefined])
  })

  it('a process\'s map is taken only when its user or root owns it', () => {
    const procRoot = join(work, 'proc')
    const pid = 4242
    mkdirSync(join(procRoot, String(pid), 'root', 'tmp'), { recursive: true })
    writeFileSync(join(procRoot, String(pid), 'status'), `Name:\tnode\nNSpid:\t${pid}\t7\n`)
    // inside its pid namespace the process is pid 7: its map is /tmp/perf-7.map in its root
    const mapPath = join(procRoot, String(pid), 'root', 'tmp', 'perf-7.map')
    writeFileSync(mapPath, '1000 10 jitted\n')
    const map = PerfMap.of(pid, procRoot)
    assert.ok(map !== undefined)
    map.refresh()
    assert.equal(map.lookup(0x1001)?.name, 'jitted')
    // a map planted by another user (uid 12345) while the process runs as root
    chownSync(mapPath, 12345, 12345)
    assert.equal(PerfMap.of(pid, procRoot), undefined)
  })
})

describe('process mappings', () => {
  it('executable mappings of a maps file: files, deleted files, anonymous JIT code, the vDSO; lookups by address', () => {
    const maps = ProcessMappings.parse(1, [
      '55d0c0a00000-55d0c0a22000 r--p 00000000 fe:01 1234567                    /usr/bin/redis-server',
      '55d0c0a22000-55d0c0b2c000 r-xp 00022000 fe:01 1234567                    /usr/bin/redis-server',
      '7f0000000000-7f0000010000 rwxp 00000000 00:00 0 ',
      '7f1000001000-7f1000002000 r-xp 00001000 fe:01 99                         /tmp/gone (deleted)',
      '7ffd5a1f0000-7ffd5a1f2000 r-xp 00000000 00:00 0                          [vdso]',
      'ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]',
    ].join('\n'))
    assert.deepEqual(maps.mappings.map((m) => [m.kind, m.path, m.deleted]), [
      ['file', '/usr/bin/redis-server', false], ['anonymous', '', false], ['file', '/tmp/gone', true], ['vdso', '[vdso]', false], ['vsyscall', '[vsyscall]', false],
    ])
    const text = maps.find(0x55d0c0a22010n)!
    assert.deepEqual([text.offset, text.inode, text.device], [0x22000n, 1234567, 'fe:01'])
    assert.equal(maps.find(0x55d0c0a00010n), undefined, 'the read-only part is not executable')
    assert.equal(maps.find(0x55d0c0b2c000n), undefined, 'the end is exclusive')
    assert.equal(maps.find(0x7f1000001fffn)?.path, '/tmp/gone')
    assert.equal(maps.filePath(maps.find(0x7f1000001000n)!), '/proc/1/map_files/7f1000001000-7f1000002000')
  })
})
