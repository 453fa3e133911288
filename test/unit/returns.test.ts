/**
 * Return instructions of functions (runtime/symbols/returns.ts), checked against the toolchains'
 * own disassemblers: `go tool objdump` (the RET lines) for Go functions, stripped or not, and
 * binutils' objdump for C functions with unusual returns. File offsets are worked out from
 * readelf's section table, not from the reader under test.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { ElfFile } from '../../runtime/symbols/elf.ts'
import { GoFunctionTable } from '../../runtime/symbols/gopclntab.ts'
import { functionReturns, type FunctionReturns } from '../../runtime/symbols/returns.ts'
import { GO_FIXTURE_TWINS, goFixture, goTool, type GoFixtureBuild } from '../bpf/go-fixture.ts'

const work = mkdtempSync(join(tmpdir(), 'periscope-returns-'))
after(() => rmSync(work, { recursive: true, force: true }))

let builds: Record<GoFixtureBuild, string>
before(async () => {
  builds = await goFixture()
})

/** readelf's .text: a virtual address in it to a file offset. */
function textOffset(binary: string): (address: bigint) => number {
  const line = execFileSync('readelf', ['-SW', binary], { encoding: 'utf8' }).split('\n').find((l) => /\]\s+\.text\s/.test(l))!
  const [, address, offset] = /\.text\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)/.exec(line)!
  return (at) => Number(at - BigInt(`0x${address}`) + BigInt(`0x${offset}`))
}

const regexpQuote = (name: string): string => name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/** File offsets of the RET lines `go tool objdump` prints for function `name`. */
async function goObjdumpReturns(binary: string, name: string): Promise<number[]> {
  const listing = await goTool('objdump', '-s', `^${regexpQuote(name)}$`, binary)
  assert.equal(listing.match(/^TEXT /gm)?.length, 1, `objdump lists ${name} once`)
  const toOffset = textOffset(binary)
  return listing.split('\n').flatMap((line) => {
    const match = /^\s+\S+:\d+\s+0x([0-9a-f]+)\s+[0-9a-f]+\s+RET\b/.exec(line)
    return match === null ? [] : [toOffset(BigInt(`0x${match[1]}`))]
  })
}

const codeOf = (fn: () => unknown): string => {
  try {
    fn()
    return 'ok'
  } catch (error) {
    return `${(error as { code?: string }).code}: ${(error as Error).message}`
  }
}

const GO_FUNCTIONS = ['main.classify', 'main.grow', 'crypto/tls.(*Conn).Write', 'crypto/tls.(*Conn).Read']

describe('return instructions of Go functions, against go tool objdump', () => {
  for (const [twin, stripped] of GO_FIXTURE_TWINS) {
    it(`${twin} and ${stripped}: every RET of main's functions and of crypto/tls.(*Conn).Write and Read`, async () => {
      for (const name of GO_FUNCTIONS) {
        const expected = await goObjdumpReturns(builds[twin], name)
        assert.ok(expected.length >= 1, `${name} has RET lines`)
        assert.deepEqual(functionReturns(builds[twin], name).offsets, expected, `${twin}: ${name} (.symtab)`)
        assert.deepEqual(functionReturns(builds[stripped], name).offsets, expected, `${stripped}: ${name} (.gopclntab)`)
      }
      assert.equal((await goObjdumpReturns(builds[twin], 'main.classify')).length, 3, 'classify returns in three places')
    })
  }

  it('remembers a function per file, and reads it again once the file changed', () => {
    const copy = join(work, 'copy')
    copyFileSync(builds.stripped, copy)
    const first = functionReturns(copy, 'main.classify')
    assert.equal(functionReturns(copy, 'main.classify'), first, 'the same answer, not read again')
    writeFileSync(copy, readFileSync(copy))
    // a second later: file times may be as coarse as the kernel's tick
    const later = new Date(Date.now() + 1000)
    utimesSync(copy, later, later)
    const again = functionReturns(copy, 'main.classify')
    assert.notEqual(again, first, 'a rewritten file is read again')
    assert.deepEqual(again.offsets, first.offsets)
  })

  it('remembers 512 functions, the least recently used going first', () => {
    // a file of its own, so that what earlier tests left remembered is older than all of this
    const binary = join(work, 'lru')
    copyFileSync(builds.plain, binary)
    const elf = ElfFile.open(binary)
    // a function and its ABI wrapper share a name: one entry
    const names = new Set(GoFunctionTable.open(elf)!.functions().map((f) => f.name).filter((n) => !n.startsWith('main.')))
    elf.close()
    const remember = (name: string) => {
      try {
        return functionReturns(binary, name)
      } catch {
        return undefined // no return instruction (runtime.goexit, …): not remembered
      }
    }
    const classify = functionReturns(binary, 'main.classify')
    const grow = functionReturns(binary, 'main.grow')
    const fillers: FunctionReturns[] = []
    for (const name of names) {
      if (fillers.length === 510) break
      const found = remember(name)
      if (found !== undefined) fillers.push(found)
    }
    // 512 now; grow is the least recently used of them after classify is used again
    assert.equal(functionReturns(binary, 'main.classify'), classify)
    assert.equal(functionReturns(binary, 'main.grow'), grow, 'all 512 remembered')
    functionReturns(binary, 'main.classifyAll')
    const [oldest] = fillers
    assert.notEqual(functionReturns(binary, oldest!.symbol.name), oldest, 'the 513th pushed out the least recently used')
    assert.equal(functionReturns(binary, 'main.grow'), grow)
  })

  it('is x86-64 only, and says so', () => {
    const arm = join(work, 'arm')
    const bytes = readFileSync(builds.stripped)
    bytes.writeUInt16LE(183, 18) // e_machine EM_AARCH64
    writeFileSync(arm, bytes)
    assert.equal(codeOf(() => functionReturns(arm, 'main.classify')),
      `EINVAL: ${arm} is not x86-64 code (ELF machine 183): uprobes at return instructions are supported on x86-64 only`)
  })
})

describe('return instructions of C functions, against binutils objdump', () => {
  const source = join(work, 'returns.c')
  const binary = join(work, 'returns')
  before(() => {
    writeFileSync(source, `
/* every spelling of a near return, a data byte no x86-64 instruction starts with, and no return */
__asm__(
  ".text\\n"
  ".globl ret_spellings\\n.type ret_spellings,@function\\nret_spellings:\\n"
  "  test %edi, %edi\\n  jz 1f\\n  rep ret\\n1: cmp $1, %edi\\n  jne 2f\\n  ret $8\\n2: .byte 0x66\\n  ret\\n  .byte 0x2e\\n  ret\\n"
  ".size ret_spellings, .-ret_spellings\\n"
  ".globl with_data\\n.type with_data,@function\\nwith_data:\\n  ret\\n  .byte 0x06\\n  ret\\n"
  ".size with_data, .-with_data\\n"
  ".globl never_returns\\n.type never_returns,@function\\nnever_returns:\\n  jmp never_returns\\n"
  ".size never_returns, .-never_returns\\n");
int main(void) { return 0; }
`)
    execFileSync('cc', ['-O2', '-o', binary, source])
  })

  it('finds RET, REP RET, RET imm16 and prefixed RETs where objdump -d puts them', () => {
    const listing = execFileSync('objdump', ['-d', '--no-show-raw-insn', `--disassemble=ret_spellings`, binary], { encoding: 'utf8' })
    const toOffset = textOffset(binary)
    const expected = listing.split('\n').flatMap((line) => {
      const match = /^\s+([0-9a-f]+):\s+(?:\S+\s+)*ret[qw]?\b/.exec(line)
      return match === null ? [] : [toOffset(BigInt(`0x${match[1]}`))]
    })
    assert.equal(expected.length, 4, listing)
    assert.deepEqual(functionReturns(binary, 'ret_spellings').offsets, expected)
  })

  it('refuses a function with bytes that are not instructions, or with no return', () => {
    assert.match(codeOf(() => functionReturns(binary, 'with_data')),
      new RegExp(`^EINVAL: ${regexpQuote(binary)}: function with_data: the bytes at 0x[0-9a-f]+, 1 into it, do not decode as an x86-64 instruction`))
    assert.equal(codeOf(() => functionReturns(binary, 'never_returns')),
      `EINVAL: ${binary}: function never_returns has no return instruction (it never returns, or leaves by a jump to another function); there is nowhere to attach at its returns`)
    assert.equal(codeOf(() => functionReturns(binary, 'no_such_function')),
      `ENOSYMBOL: ${binary} has no function symbol no_such_function (searched .dynsym and .symtab)`)
  })
})
