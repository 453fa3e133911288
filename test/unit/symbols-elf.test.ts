/**
 * ELF symbolisation pieces (runtime/symbols/elf.ts) against binutils as the oracle: every
 * function `readelf` lists is found at its address (start and last byte) in the function table, build
 * ids equal `readelf -n`'s, `.gnu_debuglink` equals `readelf -p`'s, and a stripped binary's
 * separate debug file is found by build id and by debuglink (with its CRC checked); a stripped Go
 * binary's functions come from .gopclntab, at the addresses `go tool nm` gives its unstripped twin.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { ElfFile, openDebugFile } from '../../runtime/symbols/elf.ts'
import { goFixture, goTool } from '../bpf/go-fixture.ts'

const work = mkdtempSync(join(tmpdir(), 'periscope-symbols-elf-'))
after(() => rmSync(work, { recursive: true, force: true }))

interface ElfFunction { address: number; size: number; name: string }

/** Defined functions (FUNC and IFUNC) with their sizes, as readelf lists them; names without their version. */
function readelfFunctions(file: string, table: '--syms' | '--dyn-syms' = '--syms'): ElfFunction[] {
  const out = execFileSync('readelf', ['-W', table, file], { encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'ignore'] })
  return out.split('\n').flatMap((line) => {
    const match = /^\s*\d+: ([0-9a-f]+)\s+(\d+)\s+(?:FUNC|IFUNC)\s+\w+\s+\w+\s+(\d+)\s+([^@\s]+)/.exec(line)
    return match === null || parseInt(match[1]!, 16) === 0 ? [] : [{ address: parseInt(match[1]!, 16), size: Number(match[2]), name: match[4]! }]
  })
}

function readelfBuildId(file: string): string {
  return /Build ID: ([0-9a-f]+)/.exec(execFileSync('readelf', ['-n', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }))![1]!
}

function withElf<T>(path: string, use: (elf: ElfFile) => T): T {
  const elf = ElfFile.open(path)
  try {
    return use(elf)
  } finally {
    elf.close()
  }
}

/** Every readelf function is found at its first byte (by that name or an alias at the same address) and at its last. */
function assertTableMatchesNm(file: string, functions: ElfFunction[]): void {
  const namesAt = new Map<number, Set<string>>()
  for (const f of functions) namesAt.set(f.address, (namesAt.get(f.address) ?? new Set()).add(f.name))
  withElf(file, (elf) => {
    const table = elf.functionTable()
    for (const f of functions) {
      for (const address of f.size > 0 ? [f.address, f.address + f.size - 1] : [f.address]) {
        const index = table.indexOf(address)
        assert.ok(index >= 0, `${f.name} (0x${f.address.toString(16)}): 0x${address.toString(16)} found`)
        const start = table.start(index)
        // a function nested in another (a local label with a size) may win: it starts later, within
        assert.ok(start >= f.address && start <= address, `0x${address.toString(16)} of ${f.name} in ${table.name(index)} at 0x${start.toString(16)}`)
        if (start === f.address) assert.ok(namesAt.get(start)!.has(table.name(index)), `${table.name(index)} is one of ${[...namesAt.get(start)!].join(', ')}`)
      }
    }
  })
}

describe('ELF function tables', () => {
  it('libc.so.6 (.dynsym only, as Debian ships it): every exported function at readelf\'s address; of aliases, the default version', () => {
    const libc = realpathSync('/usr/lib/x86_64-linux-gnu/libc.so.6')
    const functions = readelfFunctions(libc, '--dyn-syms')
    assert.ok(functions.length > 2000, `${functions.length} functions`)
    assertTableMatchesNm(libc, functions)
    withElf(libc, (elf) => {
      assert.equal(elf.hasSymtab(), false)
      const table = elf.functionTable()
      // free's aliases: __libc_free (more underscores) and cfree@GLIBC_2.2.5 (an old, hidden version)
      // a weak alias yields to a strong one, as in perf: getpid is weak, __getpid global
      for (const [name, chosen] of [['malloc', 'malloc'], ['free', 'free'], ['getpid', '__getpid']]) {
        const f = functions.find((candidate) => candidate.name === name)!
        assert.equal(table.name(table.indexOf(f.address + 1)), chosen)
      }
      const free = functions.find((f) => f.name === 'free')!
      assert.deepEqual(functions.filter((f) => f.address === free.address).map((f) => f.name).sort(), ['__libc_free', 'cfree', 'free'])
    })
  })

  it('a program with .symtab: static and global functions; a non-PIE and a PIE build', () => {
    const source = join(work, 'prog.c')
    writeFileSync(source, `#include <stdio.h>
static __attribute__((noinline)) int helper(int x) { return x * 3 + 1; }
__attribute__((noinline)) int compute(int x) { return helper(x) + helper(x + 1); }
int main(int argc, char **argv) { printf("%d\\n", compute(argc)); return 0; }
`)
    for (const pie of [true, false]) {
      const binary = join(work, pie ? 'prog-pie' : 'prog-nopie')
      execFileSync('cc', ['-O2', pie ? '-fPIE' : '-fno-PIE', pie ? '-pie' : '-no-pie', '-o', binary, source])
      const functions = readelfFunctions(binary)
      assert.ok(functions.some((f) => f.name === 'helper') && functions.some((f) => f.name === 'compute'))
      assertTableMatchesNm(binary, functions)
      withElf(binary, (elf) => {
        assert.equal(elf.buildId(), readelfBuildId(binary))
        const text = elf.section('.text')!
        // the virtual address of a file offset, through the program headers
        assert.equal(elf.addressOfFileOffset(Number(text.offset) + 16), Number(text.address) + 16)
        // a non-PIE executable is mapped where it was linked: bias 0
        if (!pie) assert.equal(elf.loadBias(0x401000n, 0x1000n), 0n)
        else assert.equal(elf.loadBias(0x5555_5555_5000n, 0x1000n), 0x5555_5555_4000n)
      })
    }
  })
})

describe('string tables left on disk (the symbolizer\'s tables)', () => {
  it('node\'s functions have the names the in-memory table gives them, after its file is deleted too; release() closes the file', () => {
    // a copy of node, deleted once the tables are built: the profiled process may outlive its file
    const copy = join(work, 'node-copy')
    copyFileSync(realpathSync(process.execPath), copy)
    const inMemory = withElf(copy, (elf) => elf.functionTable())
    const openFiles = () => readdirSync('/proc/self/fd').length
    const filesBefore = openFiles()
    const onDisk = withElf(copy, (elf) => elf.functionTable({ namesOnDisk: true }))
    // .symtab's and .dynsym's string tables are both over the 1 MiB at which they stay on disk
    assert.equal(openFiles(), filesBefore + 2, 'one descriptor per string table left on disk')
    rmSync(copy)
    assert.equal(onDisk.size, inMemory.size)
    assert.ok(onDisk.size > 50_000, `node has ${onDisk.size} functions`)
    let longest = ''
    for (let i = 0; i < onDisk.size; i++) {
      const name = onDisk.name(i)
      assert.equal(name, inMemory.name(i), `function ${i} at ${onDisk.start(i).toString(16)}`)
      if (name.length > longest.length) longest = name
    }
    // names past the first read's 256 bytes are read on to their end
    assert.ok(longest.length > 512, `the longest name is ${longest.length} bytes`)
    onDisk.release()
    assert.equal(openFiles(), filesBefore)
  })
})

describe('Go binaries stripped of their symbol tables', () => {
  it('every text symbol go tool nm lists in the twin with symbols is named from .gopclntab, PIE or not', async () => {
    const builds = await goFixture()
    for (const [twin, stripped] of [['plain', 'stripped'], ['pie', 'pieStripped']] as const) {
      const nm = (await goTool('nm', '-sort', 'address', builds[twin])).split('\n').flatMap((line) => {
        const match = /^\s*([0-9a-f]+)\s+[Tt]\s+(.+)$/.exec(line)
        // Go functions only (package.name): not cgo's C functions (_cgo_…, crosscall2), which only
        // the symbol table names, nor markers (`net(.text)`, go:buildid, runtime.text and etext)
        const go = match !== null && match[2]!.includes('.') && !/^(_|x_cgo|crosscall)|\(\.text(\.unlikely)?\)$|^go:|^runtime\.e?text$/.test(match[2]!)
        return go ? [{ address: parseInt(match[1]!, 16), name: match[2]!.replace(/\.abi0$/, '') }] : []
      })
      assert.ok(nm.length > 3000, `${nm.length} text symbols`)
      withElf(builds[stripped], (elf) => {
        assert.equal(elf.hasSymtab(), false)
        const table = elf.functionTable()
        const namesAt = new Map<number, Set<string>>()
        for (const symbol of nm) namesAt.set(symbol.address, (namesAt.get(symbol.address) ?? new Set()).add(symbol.name))
        for (const symbol of nm) {
          const index = table.indexOf(symbol.address + 1)
          // the symbol table spells compiler-generated names' `·` as `.`
          assert.ok(index >= 0 && namesAt.get(symbol.address)!.has(table.name(index).replaceAll('·', '.')), `${stripped}: ${symbol.name} at 0x${symbol.address.toString(16)} named ${index < 0 ? 'nothing' : table.name(index)}`)
        }
        assert.equal(table.name(table.indexOf(nm.find((symbol) => symbol.name === 'main.main')!.address)), 'main.main')
      })
    }
  })
})

describe('build ids and debug files', () => {
  it('build ids of libc, redis-server and node equal readelf -n\'s; debuglinks equal readelf -p\'s', () => {
    for (const file of [realpathSync('/usr/lib/x86_64-linux-gnu/libc.so.6'), '/usr/bin/redis-server', process.execPath]) {
      withElf(file, (elf) => {
        assert.equal(elf.buildId(), readelfBuildId(file), file)
        const dump = execFileSync('readelf', ['-p', '.gnu_debuglink', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
        const expected = /\]\s+(\S+\.debug)/.exec(dump)?.[1]
        assert.equal(elf.debugLink()?.file, expected, file)
      })
    }
  })

  it('a stripped binary\'s debug file: found by build id under a debug directory, and by .gnu_debuglink next to it; a wrong CRC is refused', () => {
    const source = join(work, 'stripped.c')
    writeFileSync(source, `static __attribute__((noinline)) int only_in_symtab(int x) { return x ^ 0x5a; }
int main(int argc, char **argv) { return only_in_symtab(argc); }
`)
    const binary = join(work, 'stripped')
    execFileSync('cc', ['-O2', '-g', '-o', binary, source])
    const debugFile = join(work, 'stripped.debug')
    execFileSync('objcopy', ['--only-keep-debug', binary, debugFile])
    execFileSync('strip', ['--strip-all', binary])
    execFileSync('objcopy', [`--add-gnu-debuglink=${debugFile}`, binary])
    const buildId = readelfBuildId(binary)
    const debugRoot = join(work, 'debug')
    mkdirSync(join(debugRoot, '.build-id', buildId.slice(0, 2)), { recursive: true })
    copyFileSync(debugFile, join(debugRoot, '.build-id', buildId.slice(0, 2), `${buildId.slice(2)}.debug`))
    withElf(binary, (elf) => {
      assert.equal(elf.hasSymtab(), false)
      assert.equal(elf.functionTable().size, 0, 'a stripped PIE with no exports has no function of its own')
      for (const [how, directories] of [['build id', [debugRoot]], ['debuglink', []]] as const) {
        const debug = openDebugFile(elf, binary, directories)
        assert.ok(debug !== undefined, `found by ${how}`)
        try {
          assert.equal(debug.buildId(), buildId)
          const table = debug.functionTable()
          const expected = readelfFunctions(debugFile).find((f) => f.name === 'only_in_symtab')!
          assert.equal(table.name(table.indexOf(expected.address + 2)), 'only_in_symtab')
        } finally {
          debug.close()
        }
      }
      // the debuglink's CRC no longer matches a changed debug file; no build-id directory either
      writeFileSync(debugFile, Buffer.concat([Buffer.from(execFileSync('cat', [debugFile])), Buffer.from([0])]))
      assert.equal(openDebugFile(elf, binary, []), undefined)
    })
  })
})
