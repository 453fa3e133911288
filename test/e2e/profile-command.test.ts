// `periscope profile` on the real kernel with the shipped cpu-profile plugin: a C burner built here
// without frame pointers (80% of its work in compute_hot, 20% in compute_warm) is profiled for a
// few seconds, by pid and as part of the whole host. The top table names its hot function, the
// pprof loads in `go tool pprof -top` and names it, and the flame graph page, opened in headless
// Chromium, draws compute_hot over half the graph's width above main (a screenshot is taken; set
// PERISCOPE_KEEP_SCREENSHOT=DIR to keep it).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { pollUntil } from '../peers/poll.ts'

const run = promisify(execFile)
const ROOT = resolve(import.meta.dirname, '../..')
const NODE = join(ROOT, 'node_modules/.bin/node')
const GO = process.env.GO ?? '/usr/local/go/bin/go'
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium'

const BURNER_C = `#include <stdint.h>
volatile uint64_t sink;
__attribute__((noinline)) void compute_hot(void) { for (int i = 0; i < 4000000; i++) sink += i * 7; }
__attribute__((noinline)) void compute_warm(void) { for (int i = 0; i < 1000000; i++) sink += i * 7; }
int main(void) { for (;;) { compute_hot(); compute_warm(); } }
`

interface Row { flat: string; flatShare: number; cum: string; cumShare: number; function: string; module: string }

/** The top table's rows: flat, flat%, sum%, cum, cum%, function, module. */
function tableRows(stdout: string): Row[] {
  const lines = stdout.split('\n')
  const header = lines.findIndex((line) => /^\s*flat\s+flat%\s+sum%\s+cum\s+cum%\s+function\s+module$/.test(line))
  assert.notEqual(header, -1, `no top table in:\n${stdout}`)
  const rows: Row[] = []
  for (const line of lines.slice(header + 1)) {
    const match = /^\s*(\S+)\s+([\d.]+)%\s+[\d.]+%\s+(\S+)\s+([\d.]+)%\s+(.+?)\s{2,}(\S+)$/.exec(line)
    if (match === null) break
    rows.push({ flat: match[1], flatShare: Number(match[2]), cum: match[3], cumShare: Number(match[4]), function: match[5], module: match[6] })
  }
  return rows
}

async function startBurner(dir: string): Promise<ChildProcess> {
  await writeFile(join(dir, 'burner.c'), BURNER_C)
  await run('cc', ['-O2', '-fomit-frame-pointer', '-o', join(dir, 'burner'), join(dir, 'burner.c')])
  const burner = spawn(join(dir, 'burner'), [], { stdio: 'ignore' })
  // running: it has used CPU time of its own (utime, in clock ticks)
  await pollUntil(() => Number(readFileSync(`/proc/${burner.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[11]) > 0, {
    what: 'the burner to run', timeoutMs: 30_000, intervalMs: 10,
  })
  return burner
}

async function profile(args: string[]): Promise<{ stdout: string; pprof: string; html: string }> {
  const { stdout } = await run(NODE, [join(ROOT, 'runtime/cli.ts'), 'profile', ...args], { timeout: 240_000, maxBuffer: 16 << 20 })
  const pprof = /^pprof:\s+(\S+\.pb\.gz)\s/m.exec(stdout)?.[1]
  const html = /^flame graph:\s+(\S+\.html)\s/m.exec(stdout)?.[1]
  assert.ok(pprof !== undefined && html !== undefined, `the run says where its files are:\n${stdout}`)
  return { stdout, pprof, html }
}

const pprofTop = async (...args: string[]): Promise<string> => (await run(GO, ['tool', 'pprof', '-top', ...args], { timeout: 120_000 })).stdout

/**
 * Opens the page in headless Chromium and, over the DevTools protocol, waits until d3-flame-graph
 * has drawn it (its transitions run on animation frames, which `--dump-dom` never gives), reads
 * each frame's label and on-screen width, and takes a screenshot.
 */
async function drawInChromium(html: string, dir: string): Promise<{ frames: { name: string; width: number }[]; screenshot: Buffer }> {
  // TMPDIR: Chromium makes its singleton socket's directory there, and one killed leaves it behind
  const chromium = spawn(CHROMIUM, [
    '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', `--user-data-dir=${join(dir, 'chromium-profile')}`,
    '--window-size=1200,600', '--remote-debugging-port=0', 'about:blank',
  ], { stdio: ['ignore', 'ignore', 'pipe'], detached: true, env: { ...process.env, TMPDIR: dir } })
  const exited = new Promise((resolve) => chromium.once('exit', resolve))
  try {
    let stderr = ''
    chromium.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    await pollUntil(() => /DevTools listening on ws:\/\/[^/]+/.test(stderr), {
      what: 'Chromium to listen for DevTools', timeoutMs: 60_000, intervalMs: 20, details: () => stderr,
      failed: () => (chromium.exitCode !== null ? `chromium exited with ${chromium.exitCode}` : undefined),
    })
    const host = /DevTools listening on ws:\/\/([^/]+)/.exec(stderr)![1]
    const target = await (await fetch(`http://${host}/json/new`, { method: 'PUT' })).json() as { webSocketDebuggerUrl: string }
    const page = await devtools(target.webSocketDebuggerUrl)
    try {
      await page.send('Emulation.setDeviceMetricsOverride', { width: 1200, height: 600, deviceScaleFactor: 1, mobile: false })
      await page.send('Page.navigate', { url: `file://${html}` })
      // drawn: every transition over, so each label has its text and each rectangle its width
      const frames = await page.evaluate(`new Promise((resolve) => {
        const read = () => [...document.querySelectorAll('g.frame')].map((g) => ({
          name: g.querySelector('.d3-flame-graph-label')?.textContent ?? '',
          width: g.querySelector('rect').getBoundingClientRect().width,
        }))
        const poll = () => {
          const frames = read()
          const all = frames.find((f) => f.name === 'all')
          if (location.protocol === 'file:' && all !== undefined && all.width > 1000) resolve(frames)
          else setTimeout(poll, 50)
        }
        poll()
      })`) as { name: string; width: number }[]
      const { data } = await page.send('Page.captureScreenshot', { format: 'png' }) as { data: string }
      return { frames, screenshot: Buffer.from(data, 'base64') }
    } finally {
      page.close()
    }
  } finally {
    // its whole process group: the renderer and GPU processes write into the profile directory
    // too, and outlived the browser process
    try {
      process.kill(-chromium.pid!, 'SIGKILL')
    } catch {
      chromium.kill('SIGKILL')
    }
    await exited
  }
}

/** A DevTools protocol session on one page: commands by id over its WebSocket. */
async function devtools(url: string): Promise<{ send(method: string, params?: object): Promise<unknown>; evaluate(expression: string): Promise<unknown>; close(): void }> {
  const socket = new WebSocket(url)
  await new Promise((resolve, reject) => { socket.onopen = resolve; socket.onerror = () => reject(new Error(`cannot reach ${url}`)) })
  let nextId = 1
  const pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>()
  socket.onmessage = (event) => {
    const message = JSON.parse(String(event.data)) as { id?: number; result?: unknown; error?: { message: string } }
    const waiter = message.id === undefined ? undefined : pending.get(message.id)
    if (waiter === undefined) return
    pending.delete(message.id!)
    if (message.error !== undefined) waiter.reject(new Error(message.error.message))
    else waiter.resolve(message.result)
  }
  const send = (method: string, params: object = {}): Promise<unknown> => new Promise((resolve, reject) => {
    const id = nextId++
    pending.set(id, { resolve, reject })
    socket.send(JSON.stringify({ id, method, params }))
  })
  return {
    send,
    /** Evaluates in the page's current document; again in the next one when a navigation replaces it meanwhile. */
    async evaluate(expression) {
      for (let attempt = 1; ; attempt++) {
        try {
          const result = await send('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true, timeout: 60_000 }) as { result: { value: unknown }; exceptionDetails?: { text: string } }
          if (result.exceptionDetails !== undefined) throw new Error(`in the page: ${result.exceptionDetails.text}`)
          return result.result.value
        } catch (error) {
          if (attempt >= 20 || !/Execution context was destroyed|Cannot find context/.test((error as Error).message)) throw error
        }
      }
    },
    close: () => socket.close(),
  }
}

test('periscope profile --pid: the burner\'s hot function tops the table, the pprof and the flame graph drawn by Chromium', { timeout: 600_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'periscope-profile-e2e-'))
  let burner: ChildProcess | undefined
  // the burner first: a burner left running keeps this file's process, and the whole run, alive
  t.after(() => { burner?.kill('SIGKILL') })
  t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 10 }))
  burner = await startBurner(dir)
  const out = join(dir, 'out')

  const { stdout, pprof, html } = await profile(['--pid', String(burner.pid), '--seconds', '3', '--top', '10', '--out', out])
  t.diagnostic(stdout)
  const progress = new RegExp(`^sampling pid ${burner.pid} \\(burner\\) at 99 Hz: 3\\.0/3 s, (\\d+) samples, collecting…$`, 'm').exec(stdout)
  assert.ok(progress !== null, stdout)
  // at 99 Hz for 3 s, even with the other core's work sharing its CPU
  assert.ok(Number(progress[1]) >= 50, `samples read: ${progress[1]}`)
  assert.match(stdout, /^\d+ samples in 3 s at 99 Hz; /m)

  const rows = tableRows(stdout)
  assert.deepEqual([rows[0].function, rows[0].module], ['compute_hot', 'burner'])
  const warm = rows.find((r) => r.function === 'compute_warm')
  assert.ok(warm !== undefined && warm.module === 'burner', stdout)
  // 4,000,000 and 1,000,000 iterations of the same loop; the CPU runs them at somewhat different
  // speeds (perf record gives about 68/29 here), so only the order and a wide band are checked
  const share = rows[0].flatShare / (rows[0].flatShare + warm.flatShare)
  assert.ok(share > 0.55 && share < 0.95, `compute_hot's share of the two: ${share.toFixed(2)}`)
  // the stacks are whole without frame pointers: main holds (nearly) everything
  const main = rows.find((r) => r.function === 'main')
  assert.ok(main !== undefined && main.cumShare >= 90, stdout)

  const top = await pprofTop(pprof)
  assert.match(top, /^File: burner$/m)
  assert.match(top, /^Type: cpu$/m)
  assert.match(top, /^Duration: 3s, /m)
  const firstFunction = /^\s+\S+\s+[\d.]+%\s+[\d.]+%\s+\S+\s+[\d.]+%\s+(\S+)$/m.exec(top)?.[1]
  assert.equal(firstFunction, 'compute_hot', top)

  const { frames, screenshot } = await drawInChromium(html, dir)
  const all = frames.find((f) => f.name === 'all')
  const hot = frames.find((f) => f.name === 'compute_hot')
  assert.ok(all !== undefined && hot !== undefined, `frames drawn: ${frames.map((f) => f.name).join(', ')}`)
  assert.ok(frames.some((f) => f.name === 'main' && f.width >= 0.9 * all.width), 'main spans (nearly) the whole graph')
  assert.ok(hot.width > 0.5 * all.width, `compute_hot is ${hot.width} of ${all.width} px`)
  assert.equal(screenshot.subarray(1, 4).toString(), 'PNG')
  assert.deepEqual([screenshot.readUInt32BE(16), screenshot.readUInt32BE(20)], [1200, 600])
  if (process.env.PERISCOPE_KEEP_SCREENSHOT !== undefined) {
    await mkdir(process.env.PERISCOPE_KEEP_SCREENSHOT, { recursive: true })
    await writeFile(join(process.env.PERISCOPE_KEEP_SCREENSHOT, 'profile-flamegraph.png'), screenshot)
  }
})

test('periscope profile without --pid: the whole host, the burner one process among the others', { timeout: 600_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'periscope-profile-e2e-'))
  let burner: ChildProcess | undefined
  // the burner first: a burner left running keeps this file's process, and the whole run, alive
  t.after(() => { burner?.kill('SIGKILL') })
  t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 10 }))
  burner = await startBurner(dir)

  const { stdout, pprof, html } = await profile(['--seconds', '2', '--frequency', '49', '--out', join(dir, 'out')])
  assert.match(stdout, /^sampling the whole host \(.+\) at 49 Hz: 2\.0\/2 s, \d+ samples, collecting…$/m)
  assert.match(pprof, /\/periscope-cpu-host-\d{8}-\d{6}\.pb\.gz$/)
  // the burner's own samples, picked out by their pid label
  const burnerTop = await pprofTop(`-tagfocus=pid=${burner.pid}`, pprof)
  const firstFunction = /^\s+\S+\s+[\d.]+%\s+[\d.]+%\s+\S+\s+[\d.]+%\s+(\S+)$/m.exec(burnerTop)?.[1]
  assert.equal(firstFunction, 'compute_hot', burnerTop)
  // in the flame graph, each process's stacks stand on a frame of their own
  const page = await readFile(html, 'utf8')
  const tree = JSON.parse(/<script id="profile-data" type="application\/json">(.*?)<\/script>/s.exec(page)![1]!).tree as { children: { name: string; children: { name: string }[] }[] }
  const burnerNode = tree.children.find((c) => c.name === `burner [${burner.pid}]`)
  assert.ok(burnerNode !== undefined, `processes: ${tree.children.map((c) => c.name).join(', ')}`)
  assert.deepEqual(burnerNode.children.map((c) => c.name), ['_start'])
})
