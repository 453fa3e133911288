/**
 * Symbolisation (issue 12): the time to symbolise a 1,000-stack profile, cold (a new Symbolizer:
 * kallsyms, every file's function table, perf maps, one c++filt run) and warm (the same
 * Symbolizer again, as at the next collection).
 *
 * The stacks are real: `perf record -g` samples three busy processes until it has 1,000 stacks
 * (kernel and user frames, frame-pointer call chains): Node running a JavaScript loop with
 * --perf-basic-prof (its 120 MB binary has 105,000 functions; JIT frames through the perf map),
 * Python 3 running a loop, and a C++ program with templates making syscalls. The processes run
 * on while the stacks are symbolised. Page cache is warm in both cases (the files were just run).
 * Reports stacks, frames, distinct files, the share of frames named, and milliseconds cold and
 * warm (median of 5 rounds each). No target is set yet: the figures go into the design notes.
 *
 *   node_modules/.bin/node bench/symbolize.bench.ts
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Symbolizer, type StackRequest } from '../runtime/symbols/symbolizer.ts'
import { median, waitFor } from './common.ts'

const STACKS = 1000
const ROUNDS = 5
const KERNEL_HALF = 0xffff_8000_0000_0000n

const work = mkdtempSync(join(tmpdir(), 'periscope-symbolize-bench-'))
const children: ChildProcess[] = []

function cleanUp(): void {
  for (const child of children) child.kill('SIGKILL')
  for (const child of children) rmSync(`/tmp/perf-${child.pid}.map`, { force: true })
  rmSync(work, { recursive: true, force: true })
}

interface Stack { pid: number; user: bigint[]; kernel: bigint[] }

function startWorkloads(): ChildProcess[] {
  const cpp = join(work, 'templates')
  writeFileSync(`${cpp}.cc`, `
#include <map>
#include <string>
#include <unistd.h>
template <typename K> __attribute__((noinline)) size_t churn(std::map<K, std::string>& m, K k) { m[k] = std::to_string(k); if (m.size() > 1000) m.clear(); return m.size(); }
int main() { std::map<long, std::string> m; for (long i = 0;; i++) { churn(m, i); if (i % 64 == 0) getppid(); } }
`)
  execFileSync('g++', ['-O2', '-fno-omit-frame-pointer', '-o', cpp, `${cpp}.cc`])
  const commands: [string, string[]][] = [
    [process.execPath, ['--perf-basic-prof', '-e', 'function work(n) { const a = []; for (let i = 0; i < n; i++) a.push({ i, s: String(i) }); return a.length } for (;;) work(10000)']],
    ['python3', ['-c', 'import json\nwhile True: json.dumps([{"i": i} for i in range(1000)])']],
    [cpp, []],
  ]
  // in the work directory, which goes at the end: Node with --perf-basic-prof writes a V8 log where it runs
  return commands.map(([command, args]) => {
    const child = spawn(command, args, { stdio: 'ignore', cwd: work })
    children.push(child)
    return child
  })
}

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(fields[11]) + Number(fields[12])
}

/** Records call chains of `pids` until they have used enough CPU for STACKS samples, and reads them back. */
async function recordStacks(pids: number[]): Promise<Stack[]> {
  const data = join(work, 'perf.data')
  const perf = spawn('perf', ['record', '-q', '-g', '-e', 'task-clock', '-c', '2000000', '-p', pids.join(','), '-o', data], { stdio: 'ignore' })
  const started = pids.reduce((sum, pid) => sum + cpuTicks(pid), 0)
  // 2 ms a sample, 10 ms a tick: 5 samples a tick; twice that, as perf loses some at start and stop
  await waitFor(() => pids.reduce((sum, pid) => sum + cpuTicks(pid), 0) - started >= (STACKS / 5) * 2, 'the workloads to run under perf', 120_000)
  const exited = new Promise((resolve) => perf.once('exit', resolve))
  perf.kill('SIGINT')
  await exited
  const script = execFileSync('perf', ['script', '-i', data, '-F', 'pid,ip,dso'], { encoding: 'utf8', maxBuffer: 512 << 20, stdio: ['ignore', 'pipe', 'ignore'] })
  const absolute = absoluteAddresses(pids)
  const stacks: Stack[] = []
  let current: Stack | undefined
  for (const line of script.split('\n')) {
    const header = /^\s*(\d+)\s*$/.exec(line)
    if (header !== null) {
      current = { pid: Number(header[1]), user: [], kernel: [] }
      stacks.push(current)
      continue
    }
    const frame = /^\s+([0-9a-f]+) \((.*)\)$/.exec(line)
    if (frame === null || current === undefined) continue
    const ip = absolute(current.pid, BigInt(`0x${frame[1]}`), frame[2]!)
    ;(ip >= KERNEL_HALF ? current.kernel : current.user).push(ip)
  }
  return stacks.filter((s) => s.user.length + s.kernel.length > 0).slice(0, STACKS)
}

/**
 * perf script prints a call chain's frames in files as offsets into the file: back to the
 * process's addresses through its mappings of that file (read now, while the processes run).
 * Kernel frames, JIT frames (perf maps) and unknown ones are printed as they are.
 */
function absoluteAddresses(pids: number[]): (pid: number, ip: bigint, dso: string) => bigint {
  const maps = new Map(pids.map((pid) => [pid, readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').flatMap((line) => {
    const match = /^([0-9a-f]+)-([0-9a-f]+) \S+ ([0-9a-f]+) \S+ \d+\s+(\/.*)$/.exec(line)
    return match === null ? [] : [{ start: BigInt(`0x${match[1]}`), end: BigInt(`0x${match[2]}`), offset: BigInt(`0x${match[3]}`), path: match[4]! }]
  })]))
  return (pid, ip, dso) => {
    if (!dso.startsWith('/') || dso.endsWith('.map')) return ip
    const mapping = maps.get(pid)?.find((m) => m.path === dso && ip >= m.offset && ip < m.offset + (m.end - m.start))
    return mapping === undefined ? ip : ip - mapping.offset + mapping.start
  }
}

function symbolizeProfile(symbolizer: Symbolizer, stacks: Stack[]): { frames: number; named: number } {
  const requests: StackRequest[] = stacks.map((s) => ({ pid: s.pid, addresses: s.user }))
  let frames = 0, named = 0
  for (const stack of symbolizer.symbolize(requests)) {
    for (const frame of stack) {
      frames++
      if (frame.function !== undefined) named++
    }
  }
  for (const stack of stacks) {
    for (const frame of symbolizer.symbolizeKernel(stack.kernel)) {
      frames++
      if (frame.function !== undefined) named++
    }
  }
  return { frames, named }
}

try {
  const workloads = startWorkloads()
  const pids = workloads.map((child) => child.pid!)
  await waitFor(() => existsSync(`/tmp/perf-${pids[0]}.map`), 'node to write its perf map')
  const stacks = await recordStacks(pids)
  if (stacks.length < STACKS) throw new Error(`perf recorded ${stacks.length} stacks, wanted ${STACKS}: the machine may be too loaded; run again`)
  const cold: number[] = [], warm: number[] = []
  let counts = { frames: 0, named: 0 }
  let files = 0
  for (let round = 0; round < ROUNDS; round++) {
    const symbolizer = new Symbolizer()
    let start = performance.now()
    counts = symbolizeProfile(symbolizer, stacks)
    cold.push(performance.now() - start)
    start = performance.now()
    symbolizeProfile(symbolizer, stacks)
    warm.push(performance.now() - start)
    files = symbolizer.stats().files
  }
  const users = stacks.reduce((sum, s) => sum + s.user.length, 0), kernels = stacks.reduce((sum, s) => sum + s.kernel.length, 0)
  console.log(`profile: ${stacks.length} stacks from ${pids.length} processes (node, python3, a C++ program), ${users} user + ${kernels} kernel frames, ${files} files`)
  console.log(`named: ${counts.named} of ${counts.frames} frames (${((100 * counts.named) / counts.frames).toFixed(1)}%)`)
  console.log(`cold: ${median(cold).toFixed(1)} ms (median of ${ROUNDS}; rounds ${cold.map((t) => t.toFixed(0)).join(', ')})`)
  console.log(`warm: ${median(warm).toFixed(1)} ms (median of ${ROUNDS}; ${((1000 * median(warm)) / counts.frames).toFixed(2)} µs a frame)`)
} finally {
  cleanUp()
}
