/**
 * .eh_frame tables (runtime/symbols/eh-frame.ts) against readelf as an independent oracle: for
 * every FDE of libc.so.6 and of Debian's redis-server and nginx, the CFA, rbp and return-address
 * columns of `readelf --debug-dump=frames-interp` equal the table's rows, address for address.
 * Then properties of the lookup (fast-check) against a linear scan of the same rows.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { ElfError, ElfFile } from '../../runtime/symbols/elf.ts'
import { CFA_NONE, CFA_PLT, EhFrameTable, EhFrameTables, parseEhFrame, readelfColumns, RULE_UNDEFINED } from '../../runtime/symbols/eh-frame.ts'

const LIBC = '/lib/x86_64-linux-gnu/libc.so.6'
const DEBIAN_BINARIES = [LIBC, '/usr/bin/redis-server', '/usr/sbin/nginx']

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
      }
      assert.equal(mismatches, 0)
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

  it('the cache builds a file once and stays within its row bound', () => {
    const tables = new EhFrameTables({ maxRows: table.rowCount + 10 })
    const first = tables.get(LIBC)
    assert.equal(tables.get(LIBC), first, 'the same lookup the second time')
    assert.equal(tables.rows, table.rowCount)
    tables.get('/usr/bin/redis-server')
    assert.equal(tables.size, 1, 'libc gave way to redis-server: both do not fit')
    assert.ok(tables.rows <= tables.maxRows + readTable('/usr/bin/redis-server').rowCount)
    const none = tables.get('/etc/hostname')
    assert.equal(none.table, undefined)
    assert.match((none as { reason: string }).reason, /not an ELF file/)
  })
})
