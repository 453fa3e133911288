/**
 * Go's function table (runtime/symbols/gopclntab.ts) read from stripped Go binaries, checked
 * against the Go toolchain's own reading of their twins with symbols (`go tool nm -size`): the
 * same code at the same addresses. Every function of the table, its size to the next function,
 * and the function each name finds; as built, as a PIE, and linked by the system linker.
 */
import assert from 'node:assert/strict'
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { ElfFile, functionFileOffset } from '../../runtime/symbols/elf.ts'
import { GoFunctionTable } from '../../runtime/symbols/gopclntab.ts'
import { GO_FIXTURE_TWINS, goFixture, goTool, type GoFixtureBuild } from '../bpf/go-fixture.ts'

interface NmSymbol { address: bigint; size: bigint; name: string }

/** The text symbols `go tool nm -size` lists, by address. */
async function nmText(binary: string): Promise<NmSymbol[]> {
  return (await goTool('nm', '-size', '-sort', 'address', binary)).split('\n').flatMap((line) => {
    const match = /^\s*([0-9a-f]+)\s+(\d+)\s+([Tt])\s+(.+)$/.exec(line)
    return match === null ? [] : [{ address: BigInt(`0x${match[1]}`), size: BigInt(match[2]!), name: match[4]! }]
  })
}

/** The symbol table spells `·` (compiler-generated names) as `.`. */
const symbolSpelling = (name: string): string => name.replaceAll('·', '.')

const withTable = <T>(binary: string, fn: (table: GoFunctionTable, elf: ElfFile) => T): T => {
  const elf = ElfFile.open(binary)
  try {
    return fn(GoFunctionTable.open(elf)!, elf)
  } finally {
    elf.close()
  }
}

const codeOf = (fn: () => unknown): string => {
  try {
    fn()
    return 'ok'
  } catch (error) {
    return `${(error as { code?: string }).code}: ${(error as Error).message}`
  }
}

let builds: Record<GoFixtureBuild, string>
const work = mkdtempSync(join(tmpdir(), 'periscope-gopclntab-'))
before(async () => {
  builds = await goFixture()
})
after(() => rmSync(work, { recursive: true, force: true }))

describe('.gopclntab of stripped Go binaries, against go tool nm of their twins with symbols', () => {
  for (const [twin, stripped] of GO_FIXTURE_TWINS) {
    it(`${stripped}: every function at the address nm gives, sized to the next one, each name finding nm's function`, async () => {
      const nm = await nmText(builds[twin])
      const namesAt = new Map<bigint, NmSymbol[]>()
      for (const s of nm) namesAt.set(s.address, [...(namesAt.get(s.address) ?? []), s])
      const starts = [...namesAt.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
      const byName = new Map(nm.map((s) => [s.name, s]))
      withTable(builds[stripped], (table) => {
        const functions = table.functions()
        assert.ok(functions.length > 3000, `${functions.length} functions`)
        for (const [i, f] of functions.entries()) {
          const here = namesAt.get(f.address) ?? []
          // an assembly function (or an ABI wrapper) is `name.abi0` in the symbol table
          const symbol = here.find((s) => s.name === symbolSpelling(f.name) || s.name === `${symbolSpelling(f.name)}.abi0`)
          assert.ok(symbol !== undefined, `${f.name} at 0x${f.address.toString(16)}: nm has ${here.map((s) => s.name).join(', ') || 'nothing'} there`)
          if (i === functions.length - 1) continue
          const next = starts.find((a) => a > f.address)
          assert.equal(f.address + f.size, next, `${f.name} runs to the next function nm lists`)
          assert.ok(symbol.size <= f.size, `${f.name}: nm's size ${symbol.size} (code without padding) fits in ${f.size}`)
        }
        // a name shared by a function and its ABI wrapper means what the symbol table means by it
        for (const name of new Set(functions.map((f) => f.name))) {
          const expected = byName.get(symbolSpelling(name)) ?? byName.get(`${symbolSpelling(name)}.abi0`)
          assert.equal(table.find(name)?.address, expected?.address, name)
        }
      })
    })
  }

  it('functionSymbol falls back to .gopclntab only when the symbol tables lack the name, for crypto/tls and the fixture\'s own functions', async () => {
    for (const [twin, stripped] of GO_FIXTURE_TWINS) {
      const nm = new Map((await nmText(builds[twin])).map((s) => [s.name, s]))
      for (const name of ['crypto/tls.(*Conn).Write', 'crypto/tls.(*Conn).Read', 'main.classify', 'main.grow']) {
        const withSymbols = withTable(builds[twin], (_, elf) => elf.functionSymbol(name))
        const fromGo = withTable(builds[stripped], (_, elf) => elf.functionSymbol(name))
        assert.equal(withSymbols.table, '.symtab')
        assert.equal(fromGo.table, '.gopclntab')
        assert.equal(fromGo.address, nm.get(name)!.address, `${stripped}: ${name}`)
        assert.equal(fromGo.fileOffset, withSymbols.fileOffset)
        assert.equal(functionFileOffset(builds[stripped], name), withSymbols.fileOffset)
      }
    }
  })

  it('says what it searched for a function Go\'s table lacks', () => {
    assert.equal(codeOf(() => functionFileOffset(builds.stripped, 'main.nothing')),
      `ENOSYMBOL: ${builds.stripped} has no function symbol main.nothing (searched .dynsym and .gopclntab)`)
    assert.equal(codeOf(() => functionFileOffset(builds.plain, 'main.nothing')),
      `ENOSYMBOL: ${builds.plain} has no function symbol main.nothing (searched .dynsym, .symtab and .gopclntab)`)
    // a prefix of a name is not the name
    assert.equal(codeOf(() => functionFileOffset(builds.stripped, 'main.classif')).split(':')[0], 'ENOSYMBOL')
  })
})

describe('.gopclntab formats and damage', () => {
  /** A copy of the stripped build with `patch` applied to its bytes. */
  const patched = (name: string, patch: (bytes: Buffer, gopclntab: bigint) => void): string => {
    const path = join(work, name)
    copyFileSync(builds.stripped, path)
    const bytes = readFileSync(path)
    patch(bytes, withTable(builds.stripped, (_, elf) => elf.section('.gopclntab')!.offset))
    writeFileSync(path, bytes)
    return path
  }

  it('reads the Go 1.18-1.19 magic (0xfffffff0): the layout of the fields read is the same as 1.20\'s but for startLine, after funcID', () => {
    // 1.18's _func has no startLine, so its funcID sits 4 bytes earlier; the fixture has no
    // duplicate name among main's and crypto/tls's functions, so the function ID does not matter
    const go118 = patched('go118', (bytes, at) => bytes.writeUInt32LE(0xfffffff0, Number(at)))
    const expected = withTable(builds.stripped, (table) => table.find('crypto/tls.(*Conn).Write'))
    withTable(go118, (table) => {
      assert.equal(table.version, '1.18')
      assert.deepEqual(table.find('crypto/tls.(*Conn).Write'), expected)
    })
  })

  it('reads the Go 1.16 layout (0xfffffffa: absolute entries, pointer-sized function table): the same functions from the same table laid out as 1.16 did', () => {
    // Go 1.16 is not to be had here to build with; its layout, as Go's debug/gosym reads it:
    // header words nfunc, nfiles, funcnametab, cutab, filetab, pctab, functab offsets (no text
    // start); functab (entry pc, _func offset) pairs of pointers, then the end pc; _func: entry
    // pointer, then nameOff … cuOffset (8 × 4 bytes), funcID, 2 bytes, nfuncdata
    const expected = withTable(builds.stripped, (table) => table.functions())
    const go116 = patched('go116', (bytes, at) => {
      const base = Number(at)
      const word = (i: number) => Number(bytes.readBigUInt64LE(base + 8 + 8 * i))
      const count = word(0), namesAt = word(3), namesEnd = word(4), functionsAt = word(7)
      const textStart = expected[0]!.address - BigInt(bytes.readUInt32LE(base + functionsAt))
      const names = Buffer.from(bytes.subarray(base + namesAt, base + namesEnd))
      const header = 64, table = header + names.byteLength, records = table + (2 * count + 1) * 8
      const out = Buffer.alloc(records + count * 44)
      out.writeUInt32LE(0xfffffffa, 0)
      out.writeUInt8(1, 6)
      out.writeUInt8(8, 7)
      for (const [i, value] of [count, 0, header, table, table, table, table].entries()) out.writeBigUInt64LE(BigInt(value), 8 + 8 * i)
      names.copy(out, header)
      for (let i = 0; i <= count; i++) {
        const entry = textStart + BigInt(bytes.readUInt32LE(base + functionsAt + 8 * i))
        out.writeBigUInt64LE(entry, table + 16 * i)
        if (i === count) break
        const record = records + 44 * i
        out.writeBigUInt64LE(BigInt(record - table), table + 16 * i + 8)
        const source = base + functionsAt + bytes.readUInt32LE(base + functionsAt + 8 * i + 4)
        out.writeBigUInt64LE(entry, record)
        bytes.copy(out, record + 8, source + 4, source + 36) // nameOff … cuOffset
        out.writeUInt8(bytes[source + 40]!, record + 40) // funcID (1.16 has no flag byte)
      }
      assert.ok(out.byteLength <= withTable(builds.stripped, (_, elf) => Number(elf.section('.gopclntab')!.size)), 'the 1.16 table fits where the 1.20 one was')
      out.copy(bytes, base)
    })
    withTable(go116, (table) => {
      assert.equal(table.version, '1.16')
      assert.deepEqual(table.functions(), expected)
      assert.deepEqual(table.find('crypto/tls.(*Conn).Write'), expected.find((f) => f.name === 'crypto/tls.(*Conn).Write'))
    })
  })

  it('refuses tables it does not know, and says why', () => {
    const go12 = patched('go12', (bytes, at) => bytes.writeUInt32LE(0xfffffffb, Number(at)))
    assert.equal(codeOf(() => functionFileOffset(go12, 'main.classify')),
      `EINVAL: ${go12}: its .gopclntab starts with magic 0xfffffffb, not one of Go 1.16 or later (0xfffffffa, 0xfffffff0, 0xfffffff1); binaries of older Go releases are not read`)
    const damaged = patched('damaged', (bytes, at) => bytes.writeBigUInt64LE(1n << 40n, Number(at) + 8))
    assert.equal(codeOf(() => functionFileOffset(damaged, 'main.classify')),
      `EINVAL: ${damaged}: its .gopclntab header gives offsets past the section (${withTable(builds.stripped, (_, elf) => elf.section('.gopclntab')!.size)} bytes); the table is damaged`)
  })

  it('without section headers, finds nothing and says why', () => {
    // e_shoff and e_shnum zeroed: what sstrip-like tools leave
    const headless = patched('headless', (bytes) => {
      bytes.writeBigUInt64LE(0n, 40)
      bytes.writeUInt16LE(0, 60)
    })
    assert.equal(codeOf(() => functionFileOffset(headless, 'main.classify')),
      `ENOSYMBOL: ${headless} has no function symbol main.classify (it has no section headers, so neither its symbol tables nor Go's function table (.gopclntab) can be found; give the file offset instead)`)
  })
})
