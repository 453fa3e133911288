/**
 * Demangling (runtime/symbols/demangle.ts, batches through c++filt) against `nm -C`: every
 * mangled function of a C++ program with templates built here, of libstdc++, and of Rust programs
 * built here with v0 and legacy mangling, each file's names in one batch, answers in order; the
 * runtime's long-lived c++filt (demangleAllAsync) over node's own functions, batch after batch,
 * and after its child was killed.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { demangle, demangleAll, demangleAllAsync, demanglerMissing, isMangled } from '../../runtime/symbols/demangle.ts'

const work = mkdtempSync(join(tmpdir(), 'periscope-demangle-'))
after(() => rmSync(work, { recursive: true, force: true }))

const CPP_TEMPLATES = `
#include <cstdio>
#include <map>
#include <string>
#include <vector>
namespace shapes {
template <typename T, int N> struct Grid {
  T cells[N];
  __attribute__((noinline)) T sum() const { T s{}; for (int i = 0; i < N; i++) s += cells[i]; return s; }
};
template <typename T> __attribute__((noinline)) T twice(T value) { return value + value; }
namespace { __attribute__((noinline)) int hidden(int x) { return x * 7; } }
struct Point { int x, y; bool operator<(const Point& o) const { return x < o.x; } };
}
int main(int argc, char**) {
  shapes::Grid<double, 4> g{{1, 2, 3, 4}};
  shapes::Grid<long, 2> h{{5, 6}};
  std::map<shapes::Point, std::vector<std::string>> m;
  m[{argc, 2}].push_back("x");
  std::printf("%f %ld %d %s %d\\n", g.sum(), h.sum(), shapes::twice(argc), shapes::twice(std::string("ab")).c_str(), shapes::hidden(argc));
  return (int)m.size() - 1;
}
`

/** (mangled, demangled) of each function symbol `nm` lists in `file`, the dynamic table with `dynamic`. */
function nmFunctions(file: string, dynamic = false): [string, string][] {
  const args = ['--defined-only', ...(dynamic ? ['-D'] : [])]
  const lines = (demangled: boolean): string[] => execFileSync('nm', [...args, ...(demangled ? ['-C'] : []), file], { encoding: 'utf8', maxBuffer: 256 << 20 }).trimEnd().split('\n')
  const raw = lines(false), readable = lines(true)
  assert.equal(raw.length, readable.length)
  return raw.flatMap((line, i) => {
    // nm prints the version of a dynamic symbol after its name (name@@VERSION); the version is not part of the name
    const match = /^[0-9a-f]+ ([TtWwi]) ([^@]*)/.exec(line)
    const other = /^[0-9a-f]+ [TtWwi] ([^@]*)/.exec(readable[i]!)
    return match === null || other === null ? [] : [[match[2]!, other[1]!] as [string, string]]
  })
}

/** rustc from the PATH, else rustup's place (a CI environment may not have ~/.cargo/bin on its PATH). */
function rustc(): string {
  const rustup = join(homedir(), '.cargo/bin/rustc')
  const onPath = spawnSync('rustc', ['--version']).status === 0
  assert.ok(onPath || existsSync(rustup), 'rustc is neither on the PATH nor in ~/.cargo/bin: install Rust (rustup) to build the test\'s Rust programs')
  return onPath ? 'rustc' : rustup
}

/** Each name demangled in one batch equals nm -C's. */
function assertDemangledAsNm(functions: [string, string][]): void {
  assert.deepEqual(demangleAll(functions.map(([mangled]) => mangled)), functions.map(([, expected]) => expected))
  assert.equal(demanglerMissing(), undefined)
}

describe('demangle', () => {
  it('a C++ program with templates, anonymous namespaces and std containers: every function as nm -C prints it', () => {
    const source = join(work, 'templates.cc')
    writeFileSync(source, CPP_TEMPLATES)
    const binary = join(work, 'templates')
    execFileSync('g++', ['-O1', '-o', binary, source])
    const functions = nmFunctions(binary).filter(([name]) => isMangled(name))
    assert.ok(functions.length >= 10, `the program has ${functions.length} mangled functions`)
    assertDemangledAsNm(functions)
    const names = new Set(functions.map(([, name]) => name))
    for (const wanted of ['shapes::Grid<double, 4>::sum() const', 'shapes::Grid<long, 2>::sum() const', 'int shapes::twice<int>(int)', 'shapes::(anonymous namespace)::hidden(int)']) {
      assert.ok(names.has(wanted), `${wanted} among ${[...names].filter((n) => n.startsWith('shapes') || n.includes(' shapes')).join('; ')}`)
    }
  })

  it('libstdc++: every exported C++ function as nm -DC prints it', () => {
    const library = realpathSync('/usr/lib/x86_64-linux-gnu/libstdc++.so.6')
    const functions = nmFunctions(library, true).filter(([name]) => isMangled(name))
    assert.ok(functions.length > 2000, `libstdc++ exports ${functions.length} mangled functions`)
    assertDemangledAsNm(functions)
  })

  for (const scheme of ['v0', 'legacy'] as const) {
    it(`Rust, ${scheme} mangling: every function of a program built here, as nm -C prints it`, () => {
      const source = join(work, 'generic.rs')
      writeFileSync(source, `pub struct Thing<T>(T);
impl<T: std::fmt::Debug> Thing<T> { #[inline(never)] pub fn show(&self) -> String { format!("{:?}", self.0) } }
fn main() { println!("{} {}", Thing(3u8).show(), Thing("x").show()); }
`)
      const binary = join(work, `generic-${scheme}`)
      execFileSync(rustc(), ['-O', ...(scheme === 'v0' ? ['-C', 'symbol-mangling-version=v0'] : []), '-o', binary, source])
      const functions = nmFunctions(binary).filter(([name]) => isMangled(name))
      assert.ok(functions.length > 100, `${functions.length} mangled functions`)
      assertDemangledAsNm(functions)
      const shows = functions.filter(([, name]) => name.includes('Thing') && name.endsWith('::show')).map(([, name]) => name).sort()
      assert.deepEqual(shows, scheme === 'v0' ? ['<generic::Thing<&str>>::show', '<generic::Thing<u8>>::show'] : ['generic::Thing<T>::show', 'generic::Thing<T>::show'])
    })
  }

  it('C names, and mangled-looking names that do not parse, come back unchanged, in order among the others', () => {
    for (const name of ['main', 'SSL_write', '_start', '__libc_start_main', '_Rust_is_not_mangled', '_Z', '_ZN3foo']) assert.equal(demangle(name), name)
    assert.deepEqual(demangleAll(['main', '_Z3foov', '_ZN3foo', '_Z3foov.cold', '_Z3foov', '_Znwm', 'free']),
      ['main', 'foo()', '_ZN3foo', 'foo() [clone .cold]', 'foo()', 'operator new(unsigned long)', 'free'])
  })

  it('the long-lived c++filt: node\'s 100,000 functions in batches as nm -C prints them, batches in flight together answered in order, a killed child replaced', async () => {
    // node's .symtab: names no other test here demangles first (answers are remembered)
    const functions = nmFunctions(realpathSync(process.execPath)).filter(([name]) => isMangled(name))
    assert.ok(functions.length > 50_000, `node has ${functions.length} mangled functions`)
    const batches = Array.from({ length: 5 }, (_, b) => functions.filter((_, i) => i % 5 === b))
    const mangled = (batch: [string, string][]): string[] => batch.map(([name]) => name)
    const readable = (batch: [string, string][]): string[] => batch.map(([, name]) => name)
    // three batches written before any answer came
    const inFlight = await Promise.all(batches.slice(0, 3).map((batch) => demangleAllAsync(mangled(batch))))
    inFlight.forEach((answers, b) => assert.deepEqual(answers, readable(batches[b]!)))
    const children = (): number[] => execFileSync('ps', ['-o', 'pid=,comm=', '--ppid', String(process.pid)], { encoding: 'utf8' })
      .split('\n').filter((line) => line.trim().endsWith('c++filt')).map((line) => Number(line.trim().split(/\s+/)[0]))
    const [child, ...more] = children()
    assert.ok(child !== undefined && more.length === 0, `one c++filt child, found ${children().join(', ')}`)
    assert.deepEqual(await demangleAllAsync(mangled(batches[3]!)), readable(batches[3]!))
    assert.deepEqual(children(), [child], 'the same child answered the next batch')
    process.kill(child, 'SIGKILL')
    await pollChildGone(child)
    assert.deepEqual(await demangleAllAsync(mangled(batches[4]!)), readable(batches[4]!))
    assert.equal(demanglerMissing(), undefined)
  })
})

async function pollChildGone(pid: number): Promise<void> {
  for (const started = Date.now(); Date.now() - started < 10_000; await new Promise((resolve) => setTimeout(resolve, 20))) {
    try {
      process.kill(pid, 0)
    } catch {
      return
    }
  }
  assert.fail(`c++filt ${pid} still runs 10 s after SIGKILL`)
}
