/**
 * Function symbols to file offsets (runtime/symbols/elf.ts), checked against readelf as an
 * independent oracle: its symbol value, less the address of the section holding the symbol, plus
 * that section's file offset (what libbpf 1.1 computes for a classic uprobe), whereas the reader
 * goes through the program headers, as the kernel maps the file.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { ElfFile, functionFileOffset } from '../../runtime/symbols/elf.ts'

const root = fileURLToPath(new URL('../../', import.meta.url))
const work = mkdtempSync(join(tmpdir(), 'periscope-elf-'))
after(() => rmSync(work, { recursive: true, force: true }))

interface ReadelfSymbol { value: bigint; type: string; bind: string; section: number; name: string }

function readelfSymbols(path: string, table: '--dyn-syms' | '--syms'): ReadelfSymbol[] {
  return execFileSync('readelf', ['-W', table, path], { encoding: 'utf8' }).split('\n').flatMap((line) => {
    const match = /^\s*\d+: ([0-9a-f]+)\s+\d+\s+(\w+)\s+(\w+)\s+\w+\s+(\w+)\s+(\S+)/.exec(line)
    // UND: undefined here (imported), section 0
    return match === null ? [] : [{ value: BigInt(`0x${match[1]}`), type: match[2]!, bind: match[3]!, section: match[4] === 'UND' ? 0 : Number(match[4]), name: match[5]! }]
  })
}

/** Section index -> [address, file offset], from readelf -S. */
function readelfSections(path: string): Map<number, [bigint, bigint]> {
  const sections = new Map<number, [bigint, bigint]>()
  for (const line of execFileSync('readelf', ['-SW', path], { encoding: 'utf8' }).split('\n')) {
    const match = /^\s*\[\s*(\d+)\]\s+\S+\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)/.exec(line)
    if (match !== null) sections.set(Number(match[1]), [BigInt(`0x${match[2]}`), BigInt(`0x${match[3]}`)])
  }
  return sections
}

/** readelf's answer for the one defined FUNC symbol spelled `spelled` in `table`. */
function oracle(path: string, spelled: string, table: '--dyn-syms' | '--syms' = '--dyn-syms'): number {
  const found = readelfSymbols(path, table).filter((s) => s.name === spelled && s.type === 'FUNC' && s.section !== 0)
  assert.equal(found.length, 1, `readelf finds ${spelled} once in ${path}`)
  const [address, offset] = readelfSections(path).get(found[0]!.section)!
  return Number(found[0]!.value - address + offset)
}

function compile(name: string, source: string, ...flags: string[]): string {
  const file = join(work, `${name}.c`)
  writeFileSync(file, source)
  const out = join(work, name)
  execFileSync('cc', ['-O2', '-g', ...flags, '-o', out, file])
  return out
}

const codeOf = (fn: () => unknown): string => {
  try {
    fn()
    return 'ok'
  } catch (error) {
    return `${(error as { code?: string }).code}: ${(error as Error).message}`
  }
}

describe('function file offsets', () => {
  it('libssl.so.3: SSL_write, SSL_read and their _ex forms at readelf\'s offsets', () => {
    const libssl = realpathSync('/usr/lib/x86_64-linux-gnu/libssl.so.3')
    for (const symbol of ['SSL_write', 'SSL_read', 'SSL_write_ex', 'SSL_read_ex']) {
      assert.equal(functionFileOffset(libssl, symbol), oracle(libssl, `${symbol}@@OPENSSL_3.0.0`), symbol)
    }
    // a shared object's data segment starts a page past its file offset: the conversion matters
    const elf = ElfFile.open(libssl)
    try {
      const symbol = elf.functionSymbol('SSL_write')
      assert.deepEqual([symbol.name, symbol.binding], ['SSL_write', 'global'])
    } finally {
      elf.close()
    }
  })

  it('the uprobe test target, as a position-independent and as a fixed-address executable', () => {
    const source = join(root, 'test/bpf/fixtures/uprobe-target.c')
    for (const flags of [['-pie', '-fPIE'], ['-no-pie', '-fno-PIE']]) {
      const binary = join(work, `uprobe-target${flags[0]}`)
      execFileSync('cc', ['-O2', '-g', ...flags, '-o', binary, source])
      const offset = functionFileOffset(binary, 'periscope_target')
      assert.equal(offset, oracle(binary, 'periscope_target', '--syms'), flags[0])
      // the fixed-address binary's symbol value is far from its file offset (0x401000 vs 0x1000)
      if (flags[0] === '-no-pie') assert.ok(readelfSymbols(binary, '--syms').find((s) => s.name === 'periscope_target')!.value > 0x400000n)
    }
  })

  it('a function only a stripped binary\'s .dynsym keeps is found; one it lost is ENOSYMBOL, naming what was searched', () => {
    const binary = compile('exported', 'int __attribute__((noinline)) exported(int n) { return n + 1; }\nstatic int __attribute__((noinline)) hidden(int n) { __asm__ volatile("" : "+r"(n)); return n * 2; }\nint main(int c, char **v) { return exported(c) + hidden(c); }\n', '-rdynamic')
    const stripped = `${binary}-stripped`
    execFileSync('strip', ['-o', stripped, binary])
    assert.equal(functionFileOffset(stripped, 'exported'), oracle(stripped, 'exported'))
    assert.equal(functionFileOffset(binary, 'hidden'), oracle(binary, 'hidden', '--syms'))
    assert.equal(codeOf(() => functionFileOffset(stripped, 'hidden')), `ENOSYMBOL: ${stripped} has no function symbol hidden (searched .dynsym)`)
    assert.equal(codeOf(() => functionFileOffset(binary, 'exporte')), `ENOSYMBOL: ${binary} has no function symbol exporte (searched .dynsym and .symtab)`, 'a prefix is not a match')
  })

  it('an imported function (undefined in this file, as SSL_write is in nginx) is not a definition', () => {
    const binary = compile('imports', '#include <stdio.h>\nint main(void) { return puts("x"); }\n')
    assert.ok(readelfSymbols(binary, '--dyn-syms').some((s) => s.name.startsWith('puts@') && s.section === 0 && s.type === 'FUNC'))
    assert.equal(codeOf(() => functionFileOffset(binary, 'puts')), `ENOSYMBOL: ${binary} has no function symbol puts (searched .dynsym and .symtab)`)
  })

  it('versioned symbols: a bare name finds the default version, name@@VERSION and name@VERSION name one', () => {
    const file = join(work, 'versioned.c')
    writeFileSync(file, '__asm__(".symver foo_old, foo@VER_1");\n__asm__(".symver foo_new, foo@@VER_2");\nint foo_old(int n) { return n + 1; }\nint foo_new(int n) { return n + 2; }\n')
    writeFileSync(join(work, 'versioned.map'), 'VER_1 { local: *; };\nVER_2 { global: foo; } VER_1;\n')
    const library = join(work, 'libversioned.so')
    execFileSync('cc', ['-O2', '-shared', '-fPIC', `-Wl,--version-script=${join(work, 'versioned.map')}`, '-o', library, file])
    const newer = oracle(library, 'foo_new', '--syms'), older = oracle(library, 'foo_old', '--syms')
    assert.notEqual(newer, older)
    assert.equal(functionFileOffset(library, 'foo'), newer)
    assert.equal(functionFileOffset(library, 'foo@@VER_2'), newer)
    assert.equal(functionFileOffset(library, 'foo@VER_1'), older)
  })

  it('two different functions of one name are refused, not guessed', () => {
    const helper = (factor: number) => `static __attribute__((noinline)) int helper(int n) { __asm__ volatile("" : "+r"(n)); return n * ${factor}; }\n`
    writeFileSync(join(work, 'twice-a.c'), `${helper(3)}int one(int n) { return helper(n); }\n`)
    writeFileSync(join(work, 'twice-b.c'), `${helper(5)}int one(int n);\nint main(int c, char **v) { return one(c) + helper(c); }\n`)
    const binary = join(work, 'twice')
    execFileSync('cc', ['-O2', '-o', binary, join(work, 'twice-a.c'), join(work, 'twice-b.c')])
    assert.equal(readelfSymbols(binary, '--syms').filter((s) => s.name === 'helper').length, 2)
    assert.match(codeOf(() => functionFileOffset(binary, 'helper')), new RegExp(`^EINVAL: ${binary}: function helper is defined twice, at 0x[0-9a-f]+ and 0x[0-9a-f]+; give the file offset instead of the symbol$`))
  })

  it('what is not an ELF file says so (scripts, text, a file shorter than an ELF header)', () => {
    const script = join(work, 'script.sh')
    writeFileSync(script, '#!/bin/sh\necho this is a script, long enough for an ELF header\n')
    const tiny = join(work, 'tiny')
    writeFileSync(tiny, '#!/bin/sh\n')
    assert.equal(codeOf(() => functionFileOffset(script, 'main')), `ENOEXEC: ${script} is not an ELF file (no ELF magic)`)
    assert.match(codeOf(() => functionFileOffset(tiny, 'main')), /^ENOEXEC: .*tiny: the ELF identification \(16 bytes at 0\) ends past the end of the file \(10 bytes\); it is not an ELF file$/)
  })
})
