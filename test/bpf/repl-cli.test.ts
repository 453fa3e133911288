/**
 * `./periscope -e 'program'` and `./periscope file.bt` as a user runs them, beside Debian's
 * `bpftrace` with the same arguments: the same stdout for a program that ends itself, for one
 * stopped by Ctrl-C (SIGINT) while a held workload ran, in text and `-f json`; the same errors
 * on stderr (a script's name in the location) and exit code 1.
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { root, waitFor } from './kernel.ts'
import { bpftraceVersion, heldCommand } from './repl-bpftrace.ts'

const periscope = join(root, 'periscope')

/** A running command whose stdout and stderr are collected. */
function start(command: string, args: string[]) {
  const child: ChildProcess = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  const exited = once(child, 'close') as Promise<[number | null, NodeJS.Signals | null]>
  return {
    child,
    stdout: () => stdout,
    /** exit code, stdout, and stderr without bpftrace's RLIMIT_MEMLOCK warning on this kernel */
    result: async () => {
      const [code] = await exited
      return { code, stdout, stderr: stderr.split('\n').filter((line) => !line.includes('RLIMIT_MEMLOCK')).join('\n') }
    },
  }
}


test('periscope -e prints what bpftrace -e prints for a program that ends itself, in text and -f json', { timeout: 300_000 }, async () => {
  assert.match(bpftraceVersion(), /v0\.17\./)
  const program = 'BEGIN { printf("start %d %s\\n", 7, "x"); @c["a"] = count(); @c["b"] = count(); @c["b"] = count(); @h = hist(100); @s = stats(5); exit(); } END { printf("end\\n"); }'
  for (const format of [[], ['-f', 'json']]) {
    const [ours, theirs] = await Promise.all([start(periscope, [...format, '-e', program]).result(), start('bpftrace', [...format, '-e', program]).result()])
    assert.deepEqual(ours, theirs)
    assert.equal(ours.code, 0)
  }
})

test('errors print as bpftrace prints them, with the script name for a file, and exit with 1', { timeout: 300_000 }, async () => {
  const directory = mkdtempSync(join(tmpdir(), 'periscope-cli-'))
  try {
    const script = join(directory, 'bad.bt')
    writeFileSync(script, 'BEGIN { @x = 1; }\ntracepoint:syscalls:sys_enter_openat { @[comm] = cnt(); }\n')
    for (const args of [['-e', 'BEGIN { @x = cnt(); }'], [script], ['-e', 'BEGIN { printf("%d\\n"); }']]) {
      const [ours, theirs] = await Promise.all([start(periscope, args).result(), start('bpftrace', args).result()])
      assert.deepEqual(ours, theirs, args.join(' '))
      assert.equal(ours.code, 1)
      assert.match(ours.stderr, /:\d+:\d+-\d+: ERROR: /)
    }
  } finally {
    rmSync(directory, { recursive: true, force: true })
  }
})

test('Ctrl-C ends the program: END runs and the maps print as bpftrace prints them, text and json', { timeout: 300_000 }, async () => {
  for (const format of [[], ['-f', 'json']]) {
    const workload = heldCommand('dd if=/dev/zero of=/dev/null bs=2500 count=40 status=none')
    const program = `BEGIN { printf("ready\\n") } tracepoint:syscalls:sys_exit_read /pid == ${workload.pid} && args->ret > 0/ { @bytes = hist(args->ret); @reads = count(); @l = lhist(args->ret, 0, 5000, 500); @s = stats(args->ret); } tracepoint:sched:sched_process_exit /pid == ${workload.pid}/ { printf("done\\n") } END { printf("bye\\n"); }`
    const runs = [start(periscope, [...format, '-e', program]), start('bpftrace', [...format, '-e', program])]
    try {
      await waitFor(() => runs.every((run) => run.stdout().includes('ready') || run.child.exitCode !== null), 'both tracers attached', 120_000)
      for (const run of runs) assert.equal(run.child.exitCode, null, `${run.child.spawnfile} exited before attaching`)
      await workload.release()
      // the exit comes after every read in the ring buffer: once it printed, they all counted
      await waitFor(() => runs.every((run) => run.stdout().includes('done')), 'both tracers seeing the workload exit', 60_000)
      for (const run of runs) run.child.kill('SIGINT')
      const [ours, theirs] = await Promise.all(runs.map((run) => run.result()))
      assert.deepEqual(ours, theirs)
      assert.equal(ours.code, 0)
      // 40 reads of 2500 bytes (the loader's reads of the libraries come on top)
      if (format.length === 0) assert.match(ours.stdout, /\nbye\n[^]*@l: \n[^]*\[2500, 3000\) +4\d /)
    } finally {
      workload.kill()
      for (const run of runs) run.child.kill('SIGKILL')
    }
  }
})

test('usage errors name the problem and exit with 2', { timeout: 120_000 }, () => {
  const run = spawnSync(periscope, ['-f', 'yaml', '-e', 'BEGIN { exit(); }'], { encoding: 'utf8' })
  assert.equal(run.status, 2)
  assert.match(run.stderr, /^periscope: -f takes text or json, not "yaml"\n\nusage: periscope/)
  const missing = spawnSync(periscope, ['/nonexistent/x.bt'], { encoding: 'utf8' })
  assert.equal(missing.status, 2)
  assert.match(missing.stderr, /^periscope: cannot read the program file \/nonexistent\/x\.bt: ENOENT/)
})

/**
 * Runs `programOf(pid)` (which prints "ready" in BEGIN and exits when the workload does) with
 * periscope and bpftrace on one held workload; returns both outputs.
 */
async function bothOnWorkload(command: string, programOf: (pid: number) => string, format: string[] = []) {
  const workload = heldCommand(command)
  const program = programOf(workload.pid)
  const runs = [start(periscope, [...format, '-e', program]), start('bpftrace', [...format, '-e', program])]
  try {
    await waitFor(() => runs.every((run) => run.stdout().includes('ready') || run.child.exitCode !== null), 'both tracers attached', 120_000)
    for (const run of runs) assert.equal(run.child.exitCode, null, `${run.child.spawnfile} exited before attaching`)
    await workload.release()
    const [ours, theirs] = await Promise.all(runs.map((run) => run.result()))
    return { ours, theirs, pid: workload.pid }
  } finally {
    workload.kill()
    for (const run of runs) run.child.kill('SIGKILL')
  }
}

test('printf per event prints every event as bpftrace does, in text and -f json', { timeout: 300_000 }, async () => {
  for (const format of [[], ['-f', 'json']]) {
    const { ours, theirs } = await bothOnWorkload('dd if=/dev/zero of=/dev/null bs=700 count=25 status=none',
      (pid) => `BEGIN { printf("ready\\n") } tracepoint:syscalls:sys_enter_write /pid == ${pid}/ { printf("%s wrote %d bytes to fd %d\\n", comm, args->count, args->fd); } tracepoint:sched:sched_process_exit /pid == ${pid}/ { exit() }`, format)
    assert.deepEqual(ours, theirs)
    assert.equal(ours.stdout.split(format.length ? '"dd wrote 700 bytes to fd 1\\n"' : 'dd wrote 700 bytes to fd 1\n').length - 1, 25)
  }
})

test('count of openat by file name (str() of a user pointer) counts what bpftrace counts', { timeout: 300_000 }, async () => {
  const { ours, theirs } = await bothOnWorkload('cat /etc/hostname /etc/os-release /etc/hostname /etc/os-release /etc/hostname',
    (pid) => `BEGIN { printf("ready\\n") } tracepoint:syscalls:sys_enter_openat /pid == ${pid}/ { @opens[comm, str(args->filename)] = count(); } tracepoint:sched:sched_process_exit /pid == ${pid}/ { exit() }`)
  // entries of equal counts print in the order of bpftrace's kernel hash map, which nothing
  // outside it can reproduce: the same lines, and in order where the counts differ
  const lines = (output: string) => output.split('\n').sort()
  assert.deepEqual({ ...ours, stdout: lines(ours.stdout) }, { ...theirs, stdout: lines(theirs.stdout) })
  assert.match(ours.stdout, /^Attaching 3 probes\.\.\.\nready\n\n\n(@opens\[cat, [^\]]*\]: 1\n)+@opens\[cat, \/etc\/os-release\]: 2\n@opens\[cat, \/etc\/hostname\]: 3\n$/)
})

test('a reader that goes away (| head) ends the program quietly, as SIGPIPE ends bpftrace (exit 141)', { timeout: 120_000 }, async () => {
  const run = start(periscope, ['-e', 'interval:ms:10 { printf("tick\\n"); }'])
  await waitFor(() => run.stdout().includes('tick\n') || run.child.exitCode !== null, 'the first tick', 60_000)
  run.child.stdout!.destroy()
  const { code, stderr } = await run.result()
  assert.equal(stderr, '')
  assert.equal(code, 141)
})

test('without root the command says what it needs and how to run it, and exits with 1', { timeout: 120_000 }, async () => {
  const node = join(root, 'node_modules/.bin/node')
  const run = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', node, join(root, 'runtime/cli.ts'), '-e', 'tracepoint:syscalls:sys_enter_getppid { @ = count(); }'], { encoding: 'utf8' })
  assert.equal(run.stdout, '')
  assert.equal(run.stderr, "periscope: a bpftrace program loads BPF programs and attaches them to tracepoints and uprobes, which needs CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN and CAP_DAC_READ_SEARCH; this process holds none of them. Run it as root: sudo ./periscope -e '...'\n")
  assert.equal(run.status, 1)
})
