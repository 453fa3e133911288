/**
 * .eh_frame tables (runtime/symbols/eh-frame.ts) against readelf as an independent oracle: for
 * every FDE of libc.so.6 and of Debian's redis-server and nginx, the CFA, rbp and return-address
 * columns of `readelf --debug-dump=frames-interp` equal the whole table's rows, address for
 * address, and the lazy per-FDE lookup, reading the section from disk, gives readelf's row at
 * every row address. Then properties of
 * the lookup (fast-check): against a linear scan of the rows, and the lazy lookup (by
 * .eh_frame_hdr, or by an index of FDE headers, with a small row cache) against the whole table
 * at random addresses of libc, redis-server and node.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdtempSync, readdirSync, realpathSync, rmSync, symlinkSync, truncateSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { setTimeout } from 'node:timers/promises'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import fc from 'fast-check'
import { ElfError, ElfFile } from '../../runtime/symbols/elf.ts'
import { CFA_NONE, CFA_PLT, EhFrameTable, EhFrameTables, LazyEhFrameTable, parseEhFrame, readelfColumns, RULE_UNDEFINED, unwindRow, type UnwindTable } from '../../runtime/symbols/eh-frame.ts'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

const LIBC = '/lib/x86_64-linux-gnu/libc.so.6'
const DEBIAN_BINARIES = [LIBC, '/usr/bin/redis-server', '/usr/sbin/nginx']
/** The node binary running the tests (node_modules/.bin/node is a link to it): half a million rows. */
const NODE = realpathSync(process.execPath)

interface Row { pc: number; cfa: string; rbp: string; ra: string }
interface ReadelfFde { start: number; end: number; cie: string; rows: Row[] }

/** readelf's interpreted frames: each FDE's rows, and each CIE's initial row (what an FDE without instructions means). */
function readelfFrames(path: string): { fdes: ReadelfFde[]; cies: Map<string, Row[]> } {
  const run = spawnSync('readelf', ['--debug-dump=frames-interp', path], { encoding: 'utf8', maxBuffer: 1 << 28 })
  // readelf exits 1 on libc.so.6 after printing all of .eh_frame (it warns about nothing on stderr)
  assert.ok(run.stdout.includes('Contents of the .eh_frame section'), `readelf printed no .eh_frame for ${path}: ${run.stderr}`)
  const fdes: ReadelfFde[] = []
  const cies = new Map<string, Row[]>()
  let rows: Row[] = []
  let columns: string[] = []
  for (const line of run.stdout.split('\n')) {
    let match = /^([0-9a-f]{8}) \S+ \S+ CIE/.exec(line)
    if (match !== null) {
      rows = []
      cies.set(match[1]!, rows)
      continue
    }
    match = /^\S+ \S+ \S+ FDE cie=([0-9a-f]+) pc=([0-9a-f]+)\.\.([0-9a-f]+)/.exec(line)
    if (match !== null) {
      rows = []
      fdes.push({ cie: match[1]!, start: parseInt(match[2]!, 16), end: parseInt(match[3]!, 16), rows })
      continue
    }
    if (/^\s+LOC\s+CFA/.test(line)) {
      columns = line.trim().split(/\s+/).slice(2)
      continue
    }
    match = /^([0-9a-f]{16}) (.*)$/.exec(line)
    if (match === null) continue
    // a rule "in another register" prints as "r9 (r9)", with a space
    const [cfa, ...values] = match[2]!.trim().match(/r\d+ \([^)]*\)|\S+/g)!
    const column = (name: string) => (columns.includes(name) ? values[columns.indexOf(name)]! : 'u')
    rows.push({ pc: parseInt(match[1]!, 16), cfa: cfa!, rbp: column('rbp'), ra: column('ra') })
  }
  return { fdes, cies }
}

/**
 * The rows an unwinder sees in [start, end): readelf prints a row at every advance even when only
 * another register's rule changed, and may print two at one address; the last at an address holds,
 * and a row equal to the one before adds nothing.
 */
function normalise(rows: Row[], start: number, end: number): Row[] {
  const out: Row[] = []
  for (const row of rows) {
    if (row.pc >= end) continue
    const at = { ...row, pc: Math.max(row.pc, start) }
    if (out.at(-1)?.pc === at.pc) out.pop()
    const last = out.at(-1)
    if (last !== undefined && last.cfa === at.cfa && last.rbp === at.rbp && last.ra === at.ra) continue
    out.push(at)
  }
  return out
}

function readLazyTable(path: string, options: { maxCachedRows?: number; onDiskFrom?: number } = {}): LazyEhFrameTable {
  const elf = ElfFile.open(path)
  try {
    const table = LazyEhFrameTable.read(elf, options)
    assert.ok(table !== undefined, `${path} has an .eh_frame`)
    return table
  } finally {
    elf.close()
  }
}

/** The same file's lazy table indexed by walking its FDE headers, as for a file without .eh_frame_hdr. */
function readLazyTableWithoutHeader(path: string, maxCachedRows: number): LazyEhFrameTable {
  const elf = ElfFile.open(path)
  try {
    const section = elf.section('.eh_frame')!, text = elf.section('.text')!
    const bytes = elf.read(section.offset, section.size, 'the .eh_frame section')
    return new LazyEhFrameTable(bytes, Number(section.address), undefined, 0, Number(text.address - text.offset), path, { maxCachedRows })
  } finally {
    elf.close()
  }
}

/** The row covering `pc` without its start address (the whole table merges equal rows across FDEs), or null. */
function rowAt(table: UnwindTable, pc: number): Omit<ReturnType<typeof unwindRow>, 'pc'> | null {
  const index = table.find(pc)
  if (index < 0) return null
  const { pc: _start, ...columns } = unwindRow(table, index)
  return columns
}

function readTable(path: string): EhFrameTable {
  const elf = ElfFile.open(path)
  try {
    const table = EhFrameTable.read(elf)
    assert.ok(table !== undefined, `${path} has an .eh_frame`)
    return table
  } finally {
    elf.close()
  }
}

describe('.eh_frame tables equal readelf --debug-dump=frames-interp', () => {
  for (const path of DEBIAN_BINARIES) {
    it(`every FDE of ${path}`, { skip: existsSync(path) ? false : `${path} is not installed (apt-get install redis-server nginx)` }, () => {
      const table = readTable(path)
      // left on disk, as a large section is: read a window at a time
      const lazy = readLazyTable(path, { maxCachedRows: 512, onDiskFrom: 0 })
      after(() => lazy.close())
      const { fdes, cies } = readelfFrames(path)
      const covered = fdes.filter((f) => f.end > f.start)
      assert.ok(covered.length > 1000, `${path}: readelf lists ${covered.length} FDEs`)
      assert.deepEqual([...table.fdeRanges], covered.map((f) => [f.start, f.end]).sort((a, b) => a[0]! - b[0]!).flat(), 'the same FDE ranges')
      let mismatches = 0
      for (const fde of covered) {
        // readelf prints no row for an FDE without instructions: the CIE's initial row holds throughout
        const expected = fde.rows.length > 0 ? fde.rows : cies.get(fde.cie)!.map((row) => ({ ...row, pc: fde.start }))
        const actual = table.rowsIn(fde.start, fde.end).map((row) => ({ pc: row.pc, ...readelfColumns(row) }))
        const want = normalise(expected, fde.start, fde.end), got = normalise(actual, fde.start, fde.end)
        if (JSON.stringify(want) !== JSON.stringify(got) && mismatches++ < 3) {
          assert.deepEqual(got, want, `${path}: FDE 0x${fde.start.toString(16)}..0x${fde.end.toString(16)}`)
        }
        for (const row of want) {
          const index = lazy.find(row.pc)
          const lazyRow = index < 0 ? undefined : { pc: row.pc, ...readelfColumns(lazy.row(index)) }
          if (JSON.stringify(lazyRow) !== JSON.stringify(row) && mismatches++ < 3) assert.deepEqual(lazyRow, row, `${path}: the lazy lookup at 0x${row.pc.toString(16)}`)
        }
      }
      assert.equal(mismatches, 0)
      assert.equal(lazy.indexedByHeader, true, `${path}: its FDEs found through .eh_frame_hdr`)
      assert.equal(lazy.fdeCount, fdes.length, 'the header indexes every FDE readelf lists')
    })
  }

  it('recognises the lazy-binding PLT expression and the outermost frame', () => {
    const elf = ElfFile.open(LIBC)
    const plt = elf.section('.plt')!
    elf.close()
    const table = readTable(LIBC)
    // the PLT's first 16 bytes push and jump to the resolver; every stub after has the expression
    const stub = table.row(table.find(Number(plt.address) + 16))
    assert.equal(stub.cfaRegister, CFA_PLT)
    assert.equal(stub.cfaOffset, 11)
    // clone3's child marks rip undefined: there is no caller above a thread's first frame
    const { fdes } = readelfFrames(LIBC)
    const outermost = fdes.flatMap((f) => f.rows.filter((r) => r.ra === 'u').map((r) => r.pc))
    assert.ok(outermost.length > 0)
    for (const pc of outermost) assert.equal(table.row(table.find(pc)).raRule, RULE_UNDEFINED, `0x${pc.toString(16)}`)
  })
})

describe('lookup', () => {
  const table = readTable(LIBC)
  const fdes: [number, number][] = []
  for (let i = 0; i < table.fdeRanges.length; i += 2) fdes.push([table.fdeRanges[i]!, table.fdeRanges[i + 1]!])
  const low = fdes[0]![0] - 64, high = fdes.reduce((max, [, end]) => Math.max(max, end), 0) + 64

  it('finds the last row at or before an address, and nothing outside every FDE', () => {
    fc.assert(fc.property(fc.integer({ min: low, max: high }), (pc) => {
      const inside = fdes.some(([start, end]) => pc >= start && pc < end)
      const index = table.find(pc)
      if (!inside) return index === -1
      let linear = -1
      for (let i = 0; i < table.rowCount && table.pcs[i]! <= pc; i++) linear = i
      return index === linear && table.cfaRegister[index] !== CFA_NONE
    }), { numRuns: 2000 })
  })

  it('rows are strictly ascending, and a gap starts only where an FDE ends and no other begins', () => {
    const ends = new Set(fdes.map(([, end]) => end)), starts = new Set(fdes.map(([start]) => start))
    for (let i = 0; i < table.rowCount; i++) {
      if (i > 0) assert.ok(table.pcs[i]! > table.pcs[i - 1]!, `row ${i}`)
      const pc = table.pcs[i]!
      if (table.cfaRegister[i] === CFA_NONE) assert.ok(ends.has(pc) && !starts.has(pc), `gap at 0x${pc.toString(16)}`)
    }
  })

  it('a malformed section is refused with where and why', () => {
    const elf = ElfFile.open(LIBC)
    const section = elf.section('.eh_frame')!
    const bytes = elf.read(section.offset, section.size, 'the .eh_frame section')
    elf.close()
    // cut in the middle of the second entry: its length says it runs past the end
    assert.throws(() => parseEhFrame(bytes.subarray(0, 40), 0, 0, LIBC), (error: unknown) =>
      error instanceof ElfError && error.code === 'EINVAL' && /\.eh_frame at offset 0x18: an entry of \d+ bytes runs past the end of the section/.test(error.message))
  })

  it('the cache reads a file once, knows it again under another path without reopening it, and stays within its byte bound', () => {
    const libc = readLazyTable(LIBC)
    const tables = new EhFrameTables({ maxBytes: libc.byteLength + 10 })
    const first = tables.get(LIBC)
    assert.equal(tables.get(LIBC), first, 'the same lookup the second time')
    assert.equal(tables.bytes, libc.byteLength)
    // another process's map_files link to the same file: same device and inode
    const links = mkdtempSync(join(tmpdir(), 'periscope-eh-frame-'))
    after(() => rmSync(links, { recursive: true, force: true }))
    symlinkSync(LIBC, join(links, 'libc-link'))
    assert.equal(tables.get(join(links, 'libc-link')), first, 'the same lookup through another path')
    tables.get('/usr/bin/redis-server')
    assert.equal(tables.size, 1, 'libc gave way to redis-server: both do not fit')
    assert.equal(tables.bytes, readLazyTable('/usr/bin/redis-server').byteLength)
    const none = tables.get('/etc/hostname')
    assert.equal(none.table, undefined)
    assert.match((none as { reason: string }).reason, /not an ELF file/)
  })
})

describe('a section left on disk', () => {
  const openFds = () => readdirSync('/proc/self/fd').length

  it('holds one descriptor, closed by close(), or once the cache let the table go and nothing holds it', async () => {
    const before = openFds()
    const node = readLazyTable(NODE)
    assert.ok(node.byteLength < 2_000_000, `node's table holds ${node.byteLength} bytes, not its 3.8 MB section`)
    assert.equal(openFds(), before + 1)
    node.close()
    assert.equal(openFds(), before)
    const tables = new EhFrameTables({ maxBytes: 1 })
    let held: LazyEhFrameTable | undefined = tables.get(NODE).table
    tables.get(LIBC)
    assert.equal(tables.size, 1, 'node gave way to libc')
    // as an unwinder's process state may hold it: still readable
    assert.ok(held!.find(held!.fdeStarts[held!.fdeCount >> 1]!) >= 0)
    held = undefined
    for (let i = 0; i < 100 && openFds() > before; i++) {
      gc()
      await setTimeout(10)
    }
    assert.equal(openFds(), before, 'its descriptor was closed once nothing held the table')
  })

  it('a file cut short since is a malformed FDE there, not a crash', () => {
    const dir = mkdtempSync(join(tmpdir(), 'periscope-eh-frame-'))
    after(() => rmSync(dir, { recursive: true, force: true }))
    const copy = join(dir, 'libc.so.6')
    copyFileSync(LIBC, copy)
    const lazy = readLazyTable(copy, { onDiskFrom: 0 })
    after(() => lazy.close())
    const whole = readTable(LIBC)
    const elf = ElfFile.open(LIBC)
    const section = elf.section('.eh_frame')!
    elf.close()
    // the last FDE's bytes are past the cut; the first FDE's rows were read before it
    const first = whole.fdeRanges[0]!, last = whole.fdeRanges[whole.fdeRanges.length - 2]!
    assert.deepEqual(rowAt(lazy, first), rowAt(whole, first))
    truncateSync(copy, Number(section.offset) + 64)
    assert.equal(lazy.find(last), -1)
    assert.equal(lazy.malformedFdes, 1)
    assert.deepEqual(rowAt(lazy, first), rowAt(whole, first), 'rows read before the cut still hold')
  })
})

describe('the lazy lookup equals the whole table', () => {
  for (const path of [LIBC, '/usr/bin/redis-server', NODE]) {
    it(`at random addresses of ${path}`, { skip: existsSync(path) ? false : `${path} is not installed (apt-get install redis-server)` }, () => {
      const whole = readTable(path)
      // small row caches, so that they start over many times during the run
      const byHeader = readLazyTable(path, { maxCachedRows: 256 })
      const byWalk = readLazyTableWithoutHeader(path, 256)
      assert.equal(byHeader.indexedByHeader, true)
      assert.equal(byWalk.indexedByHeader, false)
      assert.deepEqual([...byWalk.fdeStarts], [...whole.fdeRanges.filter((_, i) => i % 2 === 0)], 'the walked index holds every FDE with a range')
      const low = whole.pcs[0]! - 64, high = whole.pcs[whole.rowCount - 1]! + 64
      // row starts and the addresses just before them are where an off-by-one would show
      const edges = fc.integer({ min: 0, max: whole.rowCount - 1 }).chain((i) => fc.constantFrom(whole.pcs[i]!, whole.pcs[i]! - 1))
      fc.assert(fc.property(fc.oneof(fc.integer({ min: low, max: high }), edges), (pc) => {
        const expected = rowAt(whole, pc)
        assert.deepEqual(rowAt(byHeader, pc), expected, `0x${pc.toString(16)} through .eh_frame_hdr`)
        assert.deepEqual(rowAt(byWalk, pc), expected, `0x${pc.toString(16)} through the FDE headers`)
      }), { numRuns: 20_000 })
      assert.ok(byHeader.cachedRows <= 256 + 1024, `the row cache stays near its bound (${byHeader.cachedRows} rows)`)
      assert.equal(byHeader.malformedFdes, 0)
    })
  }
})
