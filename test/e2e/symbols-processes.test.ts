/**
 * The symbolizer (runtime/symbols/symbolizer.ts) on running processes:
 * - a PIE C++ program with templates prints the addresses of its own functions: each resolves to
 *   the function nm -C names, demangled, at the right offset, with readelf's build id; a copy of
 *   it deleted after it started resolves the same through /proc/<pid>/map_files;
 * - the instruction pointers `perf record` samples from a C program busy in user space, in the
 *   vDSO and in the kernel get the names perf gives them (perf as the independent oracle; objdump
 *   for the PLT, which perf 6.1 leaves unnamed);
 * - Node with --perf-basic-prof and Python 3.12 with -X perf, each running a hot function: their
 *   samples name it through the perf map, as perf does;
 * - process churn: the caches stay within their bounds and empty as the processes exit.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { Symbolizer } from '../../runtime/symbols/symbolizer.ts'
import { pollUntil } from '../peers/poll.ts'

const work = mkdtempSync(join(tmpdir(), 'periscope-symbols-e2e-'))
const children = new Set<ChildProcess>()
const perfMaps = new Set<string>()
function cleanUp(): void {
  for (const child of children) child.kill('SIGKILL')
  for (const map of perfMaps) rmSync(map, { force: true })
  rmSync(work, { recursive: true, force: true })
}
after(cleanUp)
// a runner cut short (its output closed, a signal) skips `after`: the busy programs must not outlive it
process.once('exit', cleanUp)

interface Running { child: ChildProcess; pid: number; lines: string[]; exited: () => string | undefined }

/**
 * Starts a program whose stdout lines are collected; it is killed when the tests end. It runs in
 * the test's work directory, which goes with it: Node with --perf-basic-prof writes a V8 log there.
 */
function start(command: string, args: string[]): Running {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], cwd: work })
  children.add(child)
  const lines: string[] = []
  let pending = '', stderr = ''
  child.stdout!.on('data', (chunk: Buffer) => {
    pending += chunk.toString()
    const parts = pending.split('\n')
    pending = parts.pop()!
    lines.push(...parts)
  })
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  let exit: string | undefined
  child.once('exit', (code, signal) => {
    exit = `${command} exited (${code ?? signal}): ${stderr.slice(-2000)}`
    children.delete(child)
  })
  return { child, pid: child.pid!, lines, exited: () => exit }
}

async function stop(running: Running): Promise<void> {
  if (running.exited() !== undefined) return
  const exited = new Promise((resolve) => running.child.once('exit', resolve))
  running.child.kill('SIGKILL')
  await exited
}

function compile(name: string, source: string, compiler: 'cc' | 'g++', ...flags: string[]): string {
  const file = join(work, `${name}.${compiler === 'cc' ? 'c' : 'cc'}`)
  writeFileSync(file, source)
  const out = join(work, name)
  execFileSync(compiler, ['-O2', '-fPIE', '-pie', ...flags, '-o', out, file])
  return out
}

function readelfBuildId(file: string): string {
  return /Build ID: ([0-9a-f]+)/.exec(execFileSync('readelf', ['-n', file], { encoding: 'utf8' }))![1]!
}

/** Process CPU time in clock ticks (utime + stime of /proc/<pid>/stat). */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(fields[11]) + Number(fields[12])
}

interface PerfSample { pid: number; ip: bigint; symbol: string; dso: string }

/**
 * Samples process `pid` with `perf record` (task-clock, every `periodNs` of its CPU time) until
 * it has used `ticks` more clock ticks of CPU, then reads the samples back with perf's own
 * symbols, while the process still runs.
 */
async function perfSamples(target: Running, ticks: number, periodNs = 1_000_000): Promise<PerfSample[]> {
  const data = join(work, `perf-${target.pid}.data`)
  const perf = start('perf', ['record', '-q', '-e', 'task-clock', '-c', String(periodNs), '-p', String(target.pid), '-o', data])
  const startTicks = cpuTicks(target.pid)
  await pollUntil(() => cpuTicks(target.pid) - startTicks >= ticks, { what: `process ${target.pid} to run ${ticks} ticks under perf`, timeoutMs: 120_000, intervalMs: 50, failed: () => perf.exited() ?? target.exited() })
  const exited = new Promise((resolve) => perf.child.once('exit', resolve))
  perf.child.kill('SIGINT')
  await exited
  const script = execFileSync('perf', ['script', '-i', data, '-F', 'pid,ip,sym,dso'], { encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'ignore'] })
  return script.split('\n').flatMap((line) => {
    const match = /^\s*(\d+)\s+([0-9a-f]+)\s+(.*?)\s+\((.*)\)$/.exec(line)
    return match === null ? [] : [{ pid: Number(match[1]), ip: BigInt(`0x${match[2]}`), symbol: match[3]!, dso: match[4]! }]
  })
}

const FUNCTIONS_PROGRAM = `
#include <cstdio>
#include <string>
#include <unistd.h>
namespace shapes {
template <typename T> __attribute__((noinline)) T twice(T value) { return value + value; }
template <typename T, int N> struct Grid { static __attribute__((noinline)) T fill(T v) { T s{}; for (int i = 0; i < N; i++) s += v; return s; } };
namespace { __attribute__((noinline)) int hidden(int x) { return x * 7; } }
}
static __attribute__((noinline)) int local_helper(int x) { return x ^ 0x55; }
int main(int argc, char**) {
  std::printf("%d %ld %d %d %d\\n", shapes::twice(argc), (long)shapes::Grid<long, 3>::fill(argc), shapes::hidden(argc), local_helper(argc), (int)shapes::twice(std::string("x")).size());
  std::printf("twice<int> %p\\n", (void*)&shapes::twice<int>);
  std::printf("twice<string> %p\\n", (void*)&shapes::twice<std::string>);
  std::printf("Grid<long,3>::fill %p\\n", (void*)&shapes::Grid<long, 3>::fill);
  std::printf("hidden %p\\n", (void*)&shapes::hidden);
  std::printf("local_helper %p\\n", (void*)&local_helper);
  std::printf("getpid %p\\n", (void*)&getpid);
  std::printf("ready\\n");
  std::fflush(stdout);
  char buffer[1];
  return (int)read(0, buffer, 1);
}
`

/** The demangled names the program's functions must get, checked against nm -C below. */
const EXPECTED_NAMES: Record<string, string> = {
  'twice<int>': 'int shapes::twice<int>(int)',
  'twice<string>': 'std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> > shapes::twice<std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> > >(std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >)',
  'Grid<long,3>::fill': 'shapes::Grid<long, 3>::fill(long)',
  hidden: 'shapes::(anonymous namespace)::hidden(int)',
  local_helper: 'local_helper(int)',
  getpid: '__getpid',
}

async function printedAddresses(running: Running): Promise<Map<string, bigint>> {
  await pollUntil(() => running.lines.includes('ready'), { what: 'the program to print its function addresses', timeoutMs: 30_000, failed: running.exited })
  return new Map(running.lines.flatMap((line) => {
    const match = /^(\S+) 0x([0-9a-f]+)$/.exec(line)
    return match === null ? [] : [[match[1]!, BigInt(`0x${match[2]}`)] as [string, bigint]]
  }))
}

function assertResolvesPrintedFunctions(symbolizer: Symbolizer, pid: number, addresses: Map<string, bigint>, binaryPath: string, buildId: string): void {
  const names = Object.keys(EXPECTED_NAMES)
  const [frames] = symbolizer.symbolize([{ pid, addresses: names.flatMap((name) => [addresses.get(name)!, addresses.get(name)! + 3n]), returnAddresses: false }])
  names.forEach((name, i) => {
    for (const [frame, offset] of [[frames![2 * i]!, 0], [frames![2 * i + 1]!, 3]] as const) {
      assert.equal(frame.function, EXPECTED_NAMES[name], `${name} at 0x${frame.address.toString(16)}`)
      assert.equal(frame.functionOffset, offset, name)
      if (name !== 'getpid') assert.deepEqual([frame.module, frame.buildId, frame.origin], [binaryPath, buildId, 'user'], name)
    }
  })
  const libc = frames![names.indexOf('getpid') * 2]!
  assert.match(libc.module, /\/libc\.so\.6$/)
  assert.equal(libc.buildId, readelfBuildId(libc.module))
}

describe('symbolizing running processes', () => {
  it('a PIE C++ program with templates: its functions\' addresses resolve to nm -C\'s names at the right offsets', async () => {
    const binary = compile('functions', FUNCTIONS_PROGRAM, 'g++')
    const demangled = execFileSync('nm', ['-C', binary], { encoding: 'utf8' })
    for (const name of Object.values(EXPECTED_NAMES).filter((n) => n !== '__getpid')) assert.ok(demangled.includes(` ${name}\n`), `nm -C lists ${name}`)
    const running = start(binary, [])
    const addresses = await printedAddresses(running)
    // a PIE is loaded away from its link address: the load bias matters
    assert.ok(addresses.get('hidden')! > 0x5000_0000_0000n, `PIE loaded at 0x${addresses.get('hidden')!.toString(16)}`)
    const symbolizer = new Symbolizer()
    assertResolvesPrintedFunctions(symbolizer, running.pid, addresses, binary, readelfBuildId(binary))
    await stop(running)
  })

  it('a binary deleted after it started resolves through /proc/<pid>/map_files', async () => {
    const built = compile('functions-deleted', FUNCTIONS_PROGRAM, 'g++')
    const copy = join(work, 'deleted-copy')
    copyFileSync(built, copy)
    const buildId = readelfBuildId(copy)
    const running = start(copy, [])
    const addresses = await printedAddresses(running)
    unlinkSync(copy)
    assert.match(readFileSync(`/proc/${running.pid}/maps`, 'utf8'), /deleted-copy \(deleted\)/)
    assertResolvesPrintedFunctions(new Symbolizer(), running.pid, addresses, copy, buildId)
    await stop(running)
  })

  it('perf record\'s samples of a C program busy in user space, the vDSO and the kernel get perf\'s names', async () => {
    const binary = compile('busy', `
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
volatile unsigned long sink;
__attribute__((noinline)) void spin_user(void) { for (int i = 0; i < 200000; i++) sink += (unsigned long)i * i; }
__attribute__((noinline)) void spin_kernel(void) { for (int i = 0; i < 2000; i++) syscall(SYS_getppid); }
__attribute__((noinline)) void spin_vdso(void) { struct timespec t; for (int i = 0; i < 20000; i++) { clock_gettime(CLOCK_MONOTONIC, &t); sink += t.tv_nsec; } }
int main(void) { for (;;) { spin_user(); spin_kernel(); spin_vdso(); } }
`, 'cc')
    const running = start(binary, [])
    const samples = (await perfSamples(running, 100)).filter((s) => s.pid === running.pid)
    // perf 6.1 names no PLT entry of this lazily bound binary (it gives `_init`, the symbol before
    // .plt); objdump labels each entry, so samples in one are held to objdump's name
    const plt = pltEntries(binary), base = loadBase(running.pid, binary)
    const inPlt = (s: PerfSample) => s.dso === binary ? plt.find((entry) => s.ip - base >= entry.start && s.ip - base < entry.end)?.name : undefined
    const frames = await assertAgreesWithPerf(samples, running.pid, (s) => s.dso === binary || s.dso.includes('libc.so') || s.dso === '[vdso]', inPlt)
    const pltFrames = frames.filter((frame, i) => inPlt(samples[i]!) !== undefined)
    assert.ok(pltFrames.length > 0 && pltFrames.every((frame) => frame.function?.endsWith('@plt')), `${pltFrames.length} PLT samples: ${JSON.stringify(pltFrames.slice(0, 3).map((f) => f.function))}`)
    // clock_gettime runs in the vDSO, named from this process's copy of it
    const vdso = frames.filter((frame, i) => samples[i]!.dso === '[vdso]' && samples[i]!.symbol !== '[unknown]')
    assert.ok(vdso.length >= 5 && vdso.every((frame) => frame.module === '[vdso]' && frame.function !== undefined), `${vdso.length} vDSO samples: ${JSON.stringify(vdso.slice(0, 3).map((f) => [f.function, f.module]))}`)
    const kernelSamples = samples.filter((s) => s.dso === '[kernel.kallsyms]' && s.symbol !== '[unknown]')
    assert.ok(kernelSamples.length >= 20, `${kernelSamples.length} kernel samples of ${samples.length}`)
    const symbolizer = new Symbolizer()
    const kernelFrames = symbolizer.symbolizeKernel(kernelSamples.map((s) => s.ip), false)
    const agreeing = kernelFrames.filter((frame, i) => frame.function === kernelSamples[i]!.symbol)
    assert.ok(agreeing.length >= kernelSamples.length * 0.98, `kernel: ${agreeing.length} of ${kernelSamples.length} named as perf names them; first others: ${JSON.stringify(kernelFrames.filter((f, i) => f.function !== kernelSamples[i]!.symbol).slice(0, 3).map((f) => [f.address.toString(16), f.function, kernelSamples[kernelFrames.indexOf(f)]!.symbol]))}`)
    assert.ok(kernelFrames.every((frame) => frame.module === '[kernel.kallsyms]' && frame.origin === 'kernel'))
    await stop(running)
  })

  it('Node with --perf-basic-prof: samples of its hot JavaScript function name it through the perf map', async () => {
    // without inlining, the hot function keeps code of its own; inlined, its samples would be
    // named after its caller, by perf as by Periscope
    const running = start(process.execPath, ['--perf-basic-prof', '--no-turbo-inlining', '-e', `
function hotFunction(n) { let s = 0; for (let i = 0; i < n; i++) s = (s + i * i) % 1000003; return s }
let total = 0
for (;;) total += hotFunction(100000)
`])
    perfMaps.add(`/tmp/perf-${running.pid}.map`)
    await pollUntil(() => existsSync(`/tmp/perf-${running.pid}.map`), { what: 'node to write its perf map', timeoutMs: 30_000, failed: running.exited })
    const samples = (await perfSamples(running, 100)).filter((s) => s.pid === running.pid)
    const named = await assertAgreesWithPerf(samples, running.pid, (s) => s.dso.endsWith(`perf-${running.pid}.map`))
    const hot = named.filter((frame) => frame.function?.includes('hotFunction'))
    assert.ok(hot.length >= samples.length * 0.5, `${hot.length} of ${samples.length} samples in hotFunction`)
    assert.ok(hot.every((frame) => frame.module === '[jit]' && frame.origin === 'jit'))
    await stop(running)
  })

  it('Python 3.12 with -X perf: samples of its hot function name it through the perf map', async (t) => {
    const versions = readdirSync(join(homedir(), '.pyenv/versions')).filter((v) => /^3\.1[2-9]\./.test(v)).sort()
    assert.ok(versions.length > 0, 'pyenv has a Python 3.12 or later')
    const python = join(homedir(), '.pyenv/versions', versions[0]!, 'bin/python')
    t.diagnostic(`python ${versions[0]}`)
    const running = start(python, ['-X', 'perf', '-c', `
def hot_function(n):
    s = 0
    for i in range(n):
        s += (i * i) % 7
    return s
while True:
    hot_function(100000)
`])
    perfMaps.add(`/tmp/perf-${running.pid}.map`)
    await pollUntil(() => existsSync(`/tmp/perf-${running.pid}.map`) && readFileSync(`/tmp/perf-${running.pid}.map`, 'utf8').includes('hot_function'), { what: 'python to write hot_function into its perf map', timeoutMs: 30_000, failed: running.exited })
    const samples = (await perfSamples(running, 100)).filter((s) => s.pid === running.pid)
    // Python's trampoline for a function is a few instructions, so most samples are in the
    // interpreter beneath it: those (python's .symtab) and the trampolines agree with perf
    await assertAgreesWithPerf(samples, running.pid, (s) => s.dso.endsWith(`perf-${running.pid}.map`) || s.dso === python || s.dso.includes('libpython'))
    const trampolines = readFileSync(`/tmp/perf-${running.pid}.map`, 'utf8').split('\n').filter((line) => line.includes('hot_function'))
    const [frames] = new Symbolizer().symbolize([{ pid: running.pid, addresses: trampolines.map((line) => BigInt(`0x${line.split(' ')[0]}`) + 1n), returnAddresses: false }])
    assert.ok(frames!.length > 0)
    for (const frame of frames!) assert.deepEqual([frame.function, frame.functionOffset, frame.module, frame.origin], ['py::hot_function:<string>', 1, '[jit]', 'jit'])
    await stop(running)
  })

  it('process churn: files and processes stay within their bounds, and leave as the processes exit', async () => {
    const symbolizer = new Symbolizer({ maxFiles: 3, maxIdleFiles: 1 })
    const programs = Array.from({ length: 6 }, (_, i) => compile(`churn-${i}`, `
#include <stdio.h>
#include <unistd.h>
__attribute__((noinline)) int variant_${i}(int x) { return x * ${i + 2}; }
int main(int argc, char **argv) { printf("fn %p\\nready\\n", (void*)&variant_${i}); fflush(stdout); char b[1]; return (int)read(0, b, 1) + variant_${i}(argc); }
`, 'cc'))
    const seen: number[] = []
    for (const [i, program] of programs.entries()) {
      const running = start(program, [])
      const addresses = await printedAddresses(running)
      const [frames] = symbolizer.symbolize([{ pid: running.pid, addresses: [addresses.get('fn')!], returnAddresses: false }])
      assert.equal(frames![0]!.function, `variant_${i}`)
      seen.push(symbolizer.stats().files)
      assert.ok(symbolizer.stats().files <= 3, `${symbolizer.stats().files} files cached`)
      await stop(running)
      if (i % 2 === 1) assert.equal(symbolizer.sweep(), 1, 'the exited process leaves at the sweep')
      else symbolizer.processExited(running.pid)
    }
    // 3 at most; the sweeps after the 2nd and 4th processes leave 1 (maxIdleFiles) of the tables
    assert.deepEqual(seen, [1, 2, 2, 3, 2, 3])
    assert.equal(symbolizer.stats().processes, 0)
    assert.equal(symbolizer.stats().filesRead, 6, 'each binary read once')
    // no process maps them any more: the sweep keeps only maxIdleFiles
    symbolizer.sweep()
    assert.equal(symbolizer.stats().files, 1)
  })
})

/**
 * Symbolises every sample's ip in its process and checks that the samples `judged` picks (those
 * perf named from a file or map we also read) get perf's name, or the name `otherOracle` gives
 * where perf's is known wrong; returns all frames.
 */
async function assertAgreesWithPerf(samples: PerfSample[], pid: number, judged: (sample: PerfSample) => boolean, otherOracle: (sample: PerfSample) => string | undefined = () => undefined) {
  assert.ok(samples.length >= 50, `${samples.length} samples`)
  const [frames] = new Symbolizer().symbolize([{ pid, addresses: samples.map((s) => s.ip), returnAddresses: false }])
  const compared = samples.map((s, i) => [s, frames![i]!, otherOracle(s) ?? s.symbol] as const).filter(([s]) => judged(s) && s.symbol !== '[unknown]')
  assert.ok(compared.length >= 20, `${compared.length} samples to compare`)
  const differing = compared.filter(([, frame, expected]) => frame.function !== expected)
  assert.ok(differing.length <= compared.length * 0.02, `${differing.length} of ${compared.length} named otherwise than expected: ${JSON.stringify(differing.slice(0, 4).map(([s, f, expected]) => [s.ip.toString(16), expected, s.dso, f.function, f.module]))}`)
  return frames!
}

/** The PLT entries objdump labels in `binary` (`<name@plt>`), as link-time address ranges. */
function pltEntries(binary: string): { start: bigint; end: bigint; name: string }[] {
  const listing = execFileSync('objdump', ['-d', '-j', '.plt', '-j', '.plt.got', '-j', '.plt.sec', binary], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
  const labels = [...listing.matchAll(/^([0-9a-f]+) <([^>+]+@plt)>:$/gm)].map((m) => ({ start: BigInt(`0x${m[1]}`), name: m[2]! }))
  assert.ok(labels.length > 0, `objdump labels no PLT entry of ${binary}`)
  // an entry is at most 16 bytes, and ends where the next begins
  return labels.map((label, i) => {
    const next = labels[i + 1]?.start ?? label.start + 16n
    return { ...label, end: next - label.start < 16n ? next : label.start + 16n }
  })
}

/** Where `pid` mapped the start of the PIE `binary` (file offset 0, link-time address 0). */
function loadBase(pid: number, binary: string): bigint {
  const line = readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').find((l) => l.endsWith(` ${binary}`) && l.split(/\s+/)[2] === '00000000')
  assert.ok(line !== undefined, `${binary} mapped at offset 0 in process ${pid}`)
  return BigInt(`0x${line.split('-')[0]}`)
}
