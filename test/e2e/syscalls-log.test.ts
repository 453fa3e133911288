// The syscall-log plugin end to end: a workload (test/bpf/fixtures/syscall-workload.c) starts and
// waits; `periscope run` starts with the plugin switched on and the workload's pid in target_pids,
// exporting to a real Collector; then the workload makes a known sequence of syscalls. Each
// arrives as one log record, in order, with its decoded arguments (the paths copied in the
// kernel, the buffer it wrote never), return value or errno name, and no other process's call is
// logged.
import assert from 'node:assert/strict'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, describe, it } from 'node:test'
import { attributesOf, flatten, startCollector, type Collector } from '../peers/otelcol.ts'
import { startPeriscope, type Periscope } from '../peers/periscope.ts'
import { pollUntil } from '../peers/poll.ts'

type Json = Record<string, unknown>

const root = fileURLToPath(new URL('../../', import.meta.url))
const AT_FDCWD = -100
const O_WRONLY_CREAT_TRUNC = 0o1 | 0o100 | 0o1000

interface SyscallLog {
  body: string
  severity: string
  attributes: Record<string, unknown>
}

function syscallLogs(lines: readonly Json[]): SyscallLog[] {
  return flatten('logs', lines).filter((l) => l.scope.name === 'syscall-log').map(({ item }) => ({
    body: (item.body as Json).stringValue as string, severity: item.severityText as string, attributes: attributesOf(item.attributes),
  }))
}

describe('the syscall log through a real Collector', { timeout: 600_000 }, () => {
  let collector: Collector | undefined
  let periscope: Periscope | undefined
  let workload: ChildProcess | undefined
  const dir = mkdtempSync(join(tmpdir(), 'periscope-syscall-log-'))

  after(async () => {
    workload?.kill()
    await periscope?.stop()
    await collector?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('logs a target\'s known sequence of syscalls, one record each, decoded, and nothing of other processes', async () => {
    const binary = join(dir, 'syscall-workload')
    execFileSync('cc', ['-O2', '-Wall', '-o', binary, join(root, 'test/bpf/fixtures/syscall-workload.c')])
    const child = workload = spawn(binary, ['log', dir])
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
    const pid = child.pid!
    await pollUntil(() => output.includes('ready\n'), { what: 'the workload to start', timeoutMs: 10_000 })

    collector = await startCollector()
    periscope = await startPeriscope({
      endpoint: collector.httpEndpoint,
      shipped: ['syscall-log'],
      ready: /running 1 of \d+ plugins/,
      config: {
        plugins: { 'syscall-log': { enabled: true, config: { target_pids: [pid] } } },
      },
    })
    await periscope.waitForOutput(/plugin syscall-log: logging every syscall of process \d+/, 'the syscall-log plugin to start')
    child.stdin.write('go\n')
    await pollUntil(() => output.includes('done\n'), { what: 'the workload to run', timeoutMs: 30_000 })
    child.stdin.write('go\n')
    assert.equal(await exited, 0)

    const lines = await collector.waitFor('logs', (l) => syscallLogs(l).some((r) => r.attributes['syscall.name'] === 'exit_group'), 30_000)
    const logs = syscallLogs(lines)
    assert.ok(logs.every((r) => r.attributes['process.pid'] === pid && r.attributes['thread.id'] === pid))
    // no buffer the workload wrote is ever read
    assert.ok(logs.every((r) => !JSON.stringify(r).includes('secret-payload')))

    const path = join(dir, 'log-file')
    const first = logs.findIndex((r) => r.attributes['syscall.name'] === 'openat' && r.attributes['syscall.args.filename'] === path)
    assert.ok(first >= 0, `no openat of ${path} among ${logs.map((r) => r.body).join('\n')}`)
    const sequence = logs.slice(first, first + 6)
    const fd = sequence[0]!.attributes['syscall.return'] as number
    assert.ok(fd >= 3)
    assert.deepEqual(sequence.map((r) => r.body), [
      `openat(dfd=${AT_FDCWD}, filename=${JSON.stringify(path)}, flags=${O_WRONLY_CREAT_TRUNC}, mode=0600) = ${fd}`,
      `write(fd=${fd}, buf=${sequence[1]!.attributes['syscall.args.buf']}, count=14) = 14`,
      `close(fd=${fd}) = 0`,
      `openat(dfd=${AT_FDCWD}, filename="/nonexistent/periscope-syscall-log", flags=0, mode=00) = -1 ENOENT`,
      `unlinkat(dfd=${AT_FDCWD}, pathname=${JSON.stringify(path)}, flag=0) = 0`,
      `getppid() = ${process.pid}`,
    ])
    assert.match(sequence[1]!.attributes['syscall.args.buf'] as string, /^0x[0-9a-f]+$/)
    assert.deepEqual(sequence.map((r) => r.severity), ['INFO', 'INFO', 'INFO', 'WARN', 'INFO', 'INFO'])
    const failed = sequence[3]!.attributes
    assert.equal(failed['error.type'], 'ENOENT')
    assert.equal(failed['syscall.return'], -2)
    assert.ok(sequence.every((r) => r.attributes['process.executable.name'] === 'syscall-workloa' && (r.attributes['syscall.duration'] as number) >= 0))
    // exit_group never returns: logged at its entry
    const exit = logs.find((r) => r.attributes['syscall.name'] === 'exit_group')!
    assert.equal(exit.body, 'exit_group(error_code=0) = ?')
    assert.equal(exit.attributes['syscall.return'], undefined)
  })
})
