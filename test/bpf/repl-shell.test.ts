/**
 * `periscope repl` driven as a user drives it: under tmux (a private server), keys typed, the
 * screen read. One-liners and trace() pipelines attach real tracepoint programs and stop on
 * Ctrl-C; the REPL's kernel links are read from its /proc fd table to see them come and go.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { native } from '../../runtime/bpf/native.ts'
import { openLibraryObject } from '../../runtime/library/index.ts'
import { startHarness } from '../plugin-harness.ts'
import { root, sleep } from './kernel.ts'

try {
  execFileSync('tmux', ['-V'], { stdio: 'ignore' })
} catch {
  throw new Error('these tests drive the REPL in a terminal through tmux, which is missing: apt-get install tmux')
}
const work = mkdtempSync(join(tmpdir(), 'periscope-repl-shell-'))
/**
 * A tmux server per terminal: a server exits with its last session, and a new session started on
 * the same socket while it exits fails ("server exited unexpectedly", seen in CI).
 */
const tmuxSockets: string[] = []
after(() => {
  for (const socket of tmuxSockets) {
    try {
      execFileSync('tmux', ['-L', socket, 'kill-server'], { stdio: 'ignore' })
    } catch {
      // no server left: its REPL already ended
    }
  }
  rmSync(work, { recursive: true, force: true })
})

/** A copy of /bin/true under a name of its own: each run opens ld.so.cache and libc (2 openat). */
const workload = join(work, 'replwl')
copyFileSync('/bin/true', workload)
const runWorkload = (times: number) => {
  for (let i = 0; i < times; i++) execFileSync(workload)
}

const quote = (text: string) => `'${text.replaceAll("'", "'\\''")}'`
let sessions = 0

class Terminal {
  readonly name: string
  readonly pid: number

  /** Starts `periscope repl` in a 200x50 terminal; resolves at its first prompt. */
  static async start(options: { history?: string; socket?: string } = {}): Promise<Terminal> {
    const env = `PERISCOPE_REPL_HISTORY=${quote(options.history ?? join(work, 'history'))}`
    const command = `exec env ${env} ${quote(join(root, 'node_modules/.bin/node'))} ${quote(join(root, 'runtime/cli.ts'))} repl --socket ${quote(options.socket ?? join(work, 'no-runtime', 'admin.sock'))}`
    const name = `repl${++sessions}`
    const socket = `periscope-repl-test-${process.pid}-${sessions}`
    tmuxSockets.push(socket)
    execFileSync('tmux', ['-L', socket, 'new-session', '-d', '-s', name, '-x', '200', '-y', '50', '-c', work, command])
    const terminal = new Terminal(name, socket)
    await terminal.waitFor((screen) => screen.includes('periscope> '), 'the first prompt')
    return terminal
  }

  readonly #socket: string

  constructor(name: string, socket: string) {
    this.name = name
    this.#socket = socket
    this.pid = Number(this.#tmux('display-message', '-p', '-t', this.name, '#{pane_pid}').trim())
  }

  #tmux(...args: string[]): string {
    return execFileSync('tmux', ['-L', this.#socket, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  }

  /** The whole screen, scrollback included, wrapped lines joined. */
  screen(): string {
    return this.#tmux('capture-pane', '-p', '-J', '-S', '-', '-t', this.name)
  }

  prompts(): number {
    return this.screen().split('\n').filter((line) => line.startsWith('periscope> ')).length
  }

  type(text: string): void {
    this.#tmux('send-keys', '-t', this.name, '-l', text)
  }

  press(...keys: string[]): void {
    this.#tmux('send-keys', '-t', this.name, ...keys)
  }

  /** Types `line`, presses Enter, and waits for the next prompt (what the line printed is on screen). */
  async enter(line: string, timeoutMs = 120_000): Promise<string> {
    const before = this.prompts()
    this.type(line)
    this.press('Enter')
    await this.waitFor(() => this.prompts() > before, `the prompt after ${line}`, timeoutMs)
    return this.screen()
  }

  /** BPF links the REPL's process holds open. */
  links(): number {
    const fds = `/proc/${this.pid}/fd`
    return readdirSync(fds).filter((fd) => {
      try {
        return readlinkSync(`${fds}/${fd}`) === 'anon_inode:bpf_link'
      } catch {
        return false
      }
    }).length
  }

  async waitFor(predicate: (screen: string) => boolean, what: string, timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!predicate(this.screen())) {
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; the screen:\n${this.screen()}`)
      await sleep(50)
    }
  }

  alive(): boolean {
    try {
      this.#tmux('has-session', '-t', this.name)
      return true
    } catch {
      return false
    }
  }

  close(): void {
    if (this.alive()) this.#tmux('kill-session', '-t', this.name)
  }
}

/**
 * Runs `line` (which attaches probes) until they are attached, runs the workload, waits for the
 * screen to show that every event arrived (`arrived`), presses Ctrl-C.
 */
async function runUntilCtrlC(terminal: Terminal, line: string, workloadRuns: number, arrived: (printed: string[]) => boolean): Promise<string> {
  const before = terminal.prompts()
  terminal.type(line)
  terminal.press('Enter')
  await waitUntil(() => terminal.links() > 0, `the probes of ${line} to attach`)
  runWorkload(workloadRuns)
  await terminal.waitFor((screen) => arrived(answerTo(screen, line)), `the events of ${line} on the screen`)
  terminal.press('C-c')
  await terminal.waitFor(() => terminal.prompts() > before, `the prompt after Ctrl-C stopped ${line}`)
  await waitUntil(() => terminal.links() === 0, 'the probes to detach after Ctrl-C')
  return terminal.screen()
}

async function waitUntil(condition: () => boolean, what: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(20)
  }
}

/** The lines the REPL printed after `line` was typed, up to the next prompt. */
function answerTo(screen: string, line: string): string[] {
  const lines = screen.split('\n')
  const at = lines.lastIndexOf(`periscope> ${line}`)
  assert.ok(at >= 0, `"${line}" is on the screen:\n${screen}`)
  const end = lines.findIndex((l, i) => i > at && l.startsWith('periscope>'))
  return lines.slice(at + 1, end < 0 ? undefined : end)
}

test('a one-liner runs until Ctrl-C, prints its maps as bpftrace does and detaches; the REPL goes on', async () => {
  const terminal = await Terminal.start()
  try {
    assert.match(terminal.screen(), /no periscope run answers at .*no-runtime\/admin\.sock/)
    const line = 'tracepoint:syscalls:sys_enter_openat /comm == "replwl"/ { printf("open by %s\\n", comm); @opens[comm] = count(); }'
    const opens = (printed: string[]) => printed.filter((l) => l === 'open by replwl').length
    const screen = await runUntilCtrlC(terminal, line, 5, (printed) => opens(printed) === 10)
    assert.deepEqual(answerTo(screen, line).filter((l) => l !== '' && l !== 'open by replwl'), ['Attaching 1 probe...', '@opens[replwl]: 10'])
    assert.deepEqual(answerTo(await terminal.enter('6 * 7'), '6 * 7'), ['42'])
  } finally {
    terminal.close()
  }
})

test('a trace() pipeline runs until Ctrl-C, prints its count table and detaches; the REPL goes on', async () => {
  const terminal = await Terminal.start()
  try {
    const line = "trace('tracepoint:syscalls:sys_enter_openat', { comm: 'replwl' }).count('comm').every('100ms')"
    const screen = await runUntilCtrlC(terminal, line, 3, (printed) => printed.includes('@[replwl]: 6'))
    const tables = answerTo(screen, line).filter((l) => l.startsWith('@'))
    assert.ok(tables.length >= 2 && tables.every((l) => l === '@[replwl]: 6' || /^@\[replwl\]: [1-5]$/.test(l)), `count tables, the last after Ctrl-C:\n${screen}`)
    assert.equal(tables.at(-1), '@[replwl]: 6')
    assert.deepEqual(answerTo(await terminal.enter('"still here"'), '"still here"'), ["'still here'"])

    // lines pasted at once: the second waits for the stream the first runs
    const before = terminal.prompts()
    terminal.press("trace('tracepoint:sched:sched_switch').take(1).map(() => 'first event').print()", 'Enter', "'after it'", 'Enter')
    await terminal.waitFor(() => terminal.prompts() >= before + 2, 'both pasted lines to finish')
    const lines = terminal.screen().split('\n')
    const first = lines.indexOf('first event')
    assert.ok(first > 0 && lines.findLastIndex((l) => l.endsWith("> 'after it'")) > first, `the first line's event before the second line's answer:\n${lines.join('\n')}`)

    // a for await loop: node's REPL gives the prompt back on Ctrl-C, the shell ends the loop
    const loop = "for await (const e of trace('tracepoint:syscalls:sys_enter_openat', { comm: 'replwl' })) console.log('loop saw', e.comm)"
    const afterLoop = await runUntilCtrlC(terminal, loop, 2, (printed) => printed.filter((l) => l === 'loop saw replwl').length === 4)
    assert.deepEqual(answerTo(afterLoop, loop), [...Array(4).fill('loop saw replwl'), 'Uncaught Interrupted: Ctrl-C stopped the line, and the streams it was reading'])
  } finally {
    terminal.close()
  }
})

test('history survives a restart', async () => {
  const history = join(work, 'restart-history')
  const first = await Terminal.start({ history })
  await first.enter('const answer = 41 + 1')
  first.press('C-d')
  await waitUntil(() => !first.alive(), 'the REPL to leave on Ctrl-D')
  assert.equal(readFileSync(history, 'utf8').split('\n')[0], 'const answer = 41 + 1')

  const second = await Terminal.start({ history })
  try {
    second.press('Up')
    await second.waitFor((screen) => screen.split('\n').some((l) => l === 'periscope> const answer = 41 + 1'), 'the previous session\'s line after Up')
  } finally {
    second.close()
  }
})

test('Tab completes tracepoint names, tracepoint fields and the API; .help lists it with examples', async () => {
  const terminal = await Terminal.start()
  const completes = async (typed: string, expected: string) => {
    terminal.type(typed)
    terminal.press('Tab')
    await terminal.waitFor((screen) => screen.split('\n').some((l) => l === `periscope> ${expected}`), `${typed}<Tab> to become ${expected}`)
    terminal.press('C-u')
  }
  try {
    await completes("trace('tracepoint:sched:sched_swi", "trace('tracepoint:sched:sched_switch")
    await completes('sched:sched_process_exe', 'sched:sched_process_exec')
    await completes('tracepoint:syscalls:sys_enter_openat { @[args.filen', 'tracepoint:syscalls:sys_enter_openat { @[args.filename')
    await completes('probe', 'probes')
    await completes('plugin.rel', 'plugin.reload')
    const help = answerTo(await terminal.enter('.help'), '.help')
    assert.equal(help[0], 'Periscope REPL: TypeScript with top-level await, and bpftrace one-liners.')
    assert.ok(help.includes("  trace('tracepoint:syscalls:sys_enter_openat', { comm: 'nginx' }).print()"), `.help shows examples:\n${help.join('\n')}`)
  } finally {
    terminal.close()
  }
})

test('bad input gets a message with a column marker and the REPL stays usable', async () => {
  const terminal = await Terminal.start()
  /** The error line and the marker under the source line, as bpftrace prints them. */
  const located = async (line: string, error: RegExp, marker?: string) => {
    const answer = answerTo(await terminal.enter(line), line)
    assert.match(answer[0], error, `${line}:\n${answer.join('\n')}`)
    const markerAt = answer.findIndex((l) => /^ *~+$/.test(l))
    assert.ok(markerAt > 0, `a ~ marker under the source:\n${answer.join('\n')}`)
    if (marker !== undefined) assert.equal(answer[markerAt], marker, `the marker of ${line}`)
  }
  try {
    await located('tracepoint:sched:no_such_tp { @ = count(); }', /^stdin:1:1-28: ERROR: tracepoint not found: sched:no_such_tp/, '~'.repeat(27))
    await located('tracepoint:sched:sched_switch /nosuch == 1/ { @ = count(); }', /^stdin:1:31-38: ERROR: Unknown identifier: 'nosuch'$/, `${' '.repeat(30)}${'~'.repeat(7)}`)
    await located('tracepoint:sched:sched_switch { @[args->nofield] = count(); }', /^stdin:1:33-48: ERROR: .* does not contain a field named 'nofield'$/, `${' '.repeat(32)}${'~'.repeat(15)}`)
    await located('uprobe:/no/such/binary:main { @ = count(); }', /^stdin:1:1-28: ERROR: uprobe target file '\/no\/such\/binary' does not exist or is not executable$/, '~'.repeat(27))
    await located('tracepoint:sched:sched_switch { @x = ; }', /^stdin:1:38-39: ERROR: syntax error, unexpected ;$/, `${' '.repeat(37)}~`)
    await located("trace('tracepoint:sched:no_such_tp').print()", /^Uncaught BpftraceErrors: repl:1:8-35: ERROR: No tracepoints matched sched:no_such_tp$/, `${' '.repeat(7)}${'~'.repeat(27)}`)
    const syntax = answerTo(await terminal.enter('foo)'), 'foo)')
    assert.deepEqual(syntax.slice(0, 2), ['foo)', '   ^'])
    assert.deepEqual(answerTo(await terminal.enter('1 + 1'), '1 + 1'), ['2'])
  } finally {
    terminal.close()
  }
})

const execCounter = (name: string) => `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: ${JSON.stringify(name)},
  objects: ['exec'],
  setup(ctx) {
    ctx.on('exec:events', () => {})
  },
})
`

test('over the admin socket of a running runtime: plugins, objects, maps, a map dump, plugin load, reload and stats', async () => {
  const h = await startHarness({
    provider: { open: (name, settings) => openLibraryObject(name, { settings, log: () => {} }) },
    decodersPath: join(root, 'bpf/lib/index.types.ts'),
    adminSocket: true,
    plugins: { 'execs.ts': execCounter('execs') },
  })
  const terminal = await Terminal.start({ socket: h.runtime.admin!.path })
  try {
    assert.match(terminal.screen(), /connected to the periscope run at /)
    const plugins = answerTo(await terminal.enter("(await plugins()).map((p) => `${p.name} ${p.status}`)"), "(await plugins()).map((p) => `${p.name} ${p.status}`)")
    assert.deepEqual(plugins, ["[ 'execs running' ]"])
    const objects = answerTo(await terminal.enter('(await objects()).map((o) => o.name)'), '(await objects()).map((o) => o.name)')
    assert.deepEqual(objects, ["[ 'exec' ]"])
    const maps = answerTo(await terminal.enter("(await maps()).map((m) => `${m.map} ${m.type}`).join(', ')"), "(await maps()).map((m) => `${m.map} ${m.type}`).join(', ')")
    assert.deepEqual(maps, ["'exec:exec_start lru_hash, exec:events stream, exec:dropped percpu_array, exec:descendants hash'"])
    // a per-CPU map: one value for each possible CPU
    const zeros = Array(native.versions().possibleCpus).fill('0').join(', ')
    assert.deepEqual(answerTo(await terminal.enter("map('exec:dropped').dump()"), "map('exec:dropped').dump()"), [`[ { key: 0, value: [ ${zeros} ] } ]`])
    const notOpen = answerTo(await terminal.enter("map('sched:proc_stats').dump()"), "map('sched:proc_stats').dump()")
    assert.match(notOpen[0], /^object 'sched' is not open: no plugin uses it.*open objects: exec/)

    const reloaded = "(await plugin.reload('execs')).status"
    assert.deepEqual(answerTo(await terminal.enter(reloaded), reloaded), ["'running'"])
    const stats = "(({ status, reloads }) => ({ status, reloads }))(await plugin.stats('execs'))"
    assert.deepEqual(answerTo(await terminal.enter(stats), stats), ["{ status: 'running', reloads: 1 }"])

    const extra = join(work, 'execs-too.ts')
    writeFileSync(extra, execCounter('execs-too'))
    const load = `(await plugin.load(${JSON.stringify(extra)})).status`
    assert.deepEqual(answerTo(await terminal.enter(load), load), ["'running'"])
    assert.deepEqual(h.runtime.manager.list().map((p) => `${p.name} ${p.status}`).sort(), ['execs running', 'execs-too running'])
    const missing = answerTo(await terminal.enter("plugin.stats('nope')"), "plugin.stats('nope')")
    assert.equal(missing[0], "no plugin named 'nope'; plugins: execs, execs-too")

    // watch re-reads the map at each interval until Ctrl-C
    const watch = "map('exec:dropped').watch('100ms')"
    const before = terminal.prompts()
    terminal.type(watch)
    terminal.press('Enter')
    const dumps = () => terminal.screen().split('\n').filter((l) => / exec:dropped$/.test(l)).length
    await waitUntil(() => dumps() >= 3, 'three reads of the watched map')
    terminal.press('C-c')
    await terminal.waitFor(() => terminal.prompts() > before, 'the prompt after Ctrl-C stopped the watch')
    const answer = answerTo(terminal.screen(), watch)
    assert.match(answer[0], /^\d\d:\d\d:\d\d exec:dropped$/)
    assert.equal(answer[1], `0: [ ${zeros} ]`)
  } finally {
    terminal.close()
    await h.close()
  }
})

test('with no runtime running, plugin.load starts one in the REPL process: plugins(), objects(), links()', async () => {
  const terminal = await Terminal.start()
  try {
    assert.deepEqual(answerTo(await terminal.enter('plugins()'), 'plugins()'), ['[]'])
    const file = join(work, 'in-process.ts')
    writeFileSync(file, execCounter('in-process'))
    const load = `(await plugin.load(${JSON.stringify(file)})).status`
    assert.deepEqual(answerTo(await terminal.enter(load), load), ["'running'"])
    const objects = '(await objects()).map((o) => `${o.name} ${o.users}`)'
    assert.deepEqual(answerTo(await terminal.enter(objects), objects), [`[ 'exec ${file}#1' ]`])
    // the object's links are the REPL process's own
    const links = '(await links()).length'
    const count = Number(answerTo(await terminal.enter(links), links)[0])
    assert.ok(count > 0, 'exec has links')
    assert.equal(terminal.links(), count)
  } finally {
    terminal.close()
  }
})

test('from a pipe: a line with top-level await ends before the next line runs, and one that throws does not hold the next', async () => {
  const child = spawn(join(root, 'node_modules/.bin/node'), [join(root, 'runtime/cli.ts'), 'repl', '--socket', join(work, 'no-runtime', 'admin.sock')], {
    cwd: work, env: { ...process.env, PERISCOPE_REPL_HISTORY: join(work, 'await-history') }, stdio: ['pipe', 'pipe', 'inherit'],
  })
  let printed = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (text: string) => { printed += text })
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)))
  try {
    // a thrown error is printed by node's REPL, which then never answers the line: the next runs all the same
    child.stdin.end("await new Promise((resolve) => setTimeout(() => resolve('awaited'), 300))\n'next'\nthrow new Error('thrown')\n'after it'\nPromise.resolve('promised')\n'last'\n")
    assert.equal(await exited, 0)
    const order = ["'awaited'", "'next'", 'Uncaught Error: thrown', "'after it'", "'promised'", "'last'"].map((answer) => printed.indexOf(answer))
    assert.ok(order.every((at, i) => at >= 0 && (i === 0 || at > order[i - 1]!)), `the answers in the order of the lines:\n${printed}`)
  } finally {
    child.kill('SIGKILL')
  }
})

test('from a pipe: lines run one after another, and SIGINT stops the stream that runs, not the REPL', async () => {
  const child = spawn(join(root, 'node_modules/.bin/node'), [join(root, 'runtime/cli.ts'), 'repl', '--socket', join(work, 'no-runtime', 'admin.sock')], {
    cwd: work, env: { ...process.env, PERISCOPE_REPL_HISTORY: join(work, 'pipe-history') }, stdio: ['pipe', 'pipe', 'inherit'],
  })
  let printed = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (text: string) => { printed += text })
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)))
  try {
    child.stdin.write("trace('tracepoint:syscalls:sys_enter_openat', { comm: 'replwl' }).count('comm').every('50ms')\n'after it'\n")
    const links = () => readdirSync(`/proc/${child.pid}/fd`).filter((fd) => {
      try {
        return readlinkSync(`/proc/${child.pid}/fd/${fd}`) === 'anon_inode:bpf_link'
      } catch {
        return false
      }
    }).length
    await waitUntil(() => links() > 0, 'the stream to attach')
    runWorkload(2)
    await waitUntil(() => printed.includes('@[replwl]: 4'), 'the count of every event')
    assert.ok(!printed.includes("'after it'"), 'the next line waits for the stream')
    child.kill('SIGINT')
    await waitUntil(() => printed.includes("'after it'"), 'the stream to stop and the next line to run')
    await waitUntil(() => links() === 0, 'the stream to detach')
    assert.ok(printed.lastIndexOf('@[replwl]: 4') < printed.indexOf("'after it'"), `the last count before the next line's answer:\n${printed}`)
    child.stdin.end()
    assert.equal(await exited, 0)
  } finally {
    child.kill('SIGKILL')
  }
})
