// `periscope profile` without the kernel: its command line and errors, and a run of the runtime
// with a stand-in for the cpu-profile plugin (same config and output), from the plugin's samples
// to the top table, the pprof (read back by go tool pprof) and the flame graph page.
// test/e2e/profile-command.test.ts runs the real plugin on a real program.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { main, parseProfileArgs, profile } from '../../runtime/profiling/profile-command.ts'
import { cpuProfileFixturePlugin } from '../plugin-fixtures/cpu-profile-fixture.ts'
import { SyntheticProvider } from '../plugin-fixtures/synthetic.ts'
import { fixtureDecoders } from '../plugin-harness.ts'

const GO = process.env.GO ?? '/usr/local/go/bin/go'

test('the command line: defaults, and each bad value named with what to pass instead', () => {
  assert.deepEqual(parseProfileArgs([]), { pid: undefined, seconds: 10, frequency: 99, top: 20, out: '.' })
  assert.deepEqual(parseProfileArgs(['--pid', '42', '--seconds', '2.5', '-F', '19', '--top', '5', '--out', '/tmp/x']), { pid: 42, seconds: 2.5, frequency: 19, top: 5, out: '/tmp/x' })
  assert.equal(parseProfileArgs(['--help']), 'help')
  const problems: [string[], RegExp][] = [
    [['--pid', 'nginx'], /^--pid "nginx" is not a number$/],
    [['--pid=-3'], /^--pid "-3" must be a whole number from 1 to 4194304 \(a process id; see `ps -e`\)$/],
    [['--seconds', '0'], /^--seconds "0" must be above 0 and at most 86400 \(how long to sample, e\.g\. --seconds 30\)$/],
    [['--seconds', ''], /^--seconds "" is not a number$/],
    [['--frequency', '5000'], /^--frequency "5000" must be a whole number from 1 to 1000 \(samples per second per CPU; 99 is usual, 19 is what `periscope run` takes\)$/],
    [['--top', '2.5'], /^--top "2\.5" must be a whole number from 1 to 100000 \(rows of the table\)$/],
    [['--pdi', '3'], /Unknown option '--pdi'/],
  ]
  for (const [argv, message] of problems) assert.throws(() => parseProfileArgs(argv), { message }, argv.join(' '))
})

test('a pid that does not exist and an output directory that cannot be written stop the command before it samples, saying why', async (t) => {
  const errors: string[] = []
  t.mock.method(console, 'error', (text: string) => errors.push(text))
  // pid_max is at most 2^22: this one cannot exist
  assert.equal(await main(['--pid', '4194304', '--seconds', '1']), 2)
  assert.match(errors[0], /^periscope profile: --pid 4194304: no such process \(\/proc\/4194304 does not exist\); pass the id of a running process \(see `ps -e`\), or leave --pid out to profile the whole host\n/)
  const dir = await mkdtemp(join(tmpdir(), 'periscope-profile-unit-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, 'a-file'), '')
  assert.equal(await main(['--pid', String(process.pid), '--out', join(dir, 'a-file', 'out')]), 2)
  assert.equal(errors[1], `periscope profile: --out ${join(dir, 'a-file', 'out')}: cannot write there (ENOTDIR); pass a directory you can write to\n(periscope profile --help tells every option)`)
})

async function runFixture(t: { after(fn: () => Promise<void>): void }, pid: number | undefined) {
  const out = await mkdtemp(join(tmpdir(), 'periscope-profile-unit-'))
  t.after(() => rm(out, { recursive: true, force: true }))
  let output = ''
  const code = await profile({ pid, seconds: 0.5, frequency: 100, top: 3, out: out }, {
    provider: new SyntheticProvider(),
    pluginSource: cpuProfileFixturePlugin(),
    decodersPath: fixtureDecoders,
    write: (text) => (output += text),
    redraw: false,
    now: () => new Date('2026-12-01T01:02:03Z'),
  })
  return { code, output, out }
}

test('a profile of one process: progress, the top table, and where the pprof and the flame graph are', async (t) => {
  const { code, output, out } = await runFixture(t, process.pid)
  assert.equal(code, 0, output)
  const comm = (await readFile(`/proc/${process.pid}/comm`, 'utf8')).trim()
  const stem = `periscope-cpu-${process.pid}-20261201-010203`
  assert.deepEqual((await readdir(out)).sort(), [`${stem}.html`, `${stem}.pb.gz`])
  assert.equal(output, [
    `sampling pid ${process.pid} (${comm}) at 100 Hz: 0.0/0.5 s, 0 samples`,
    `sampling pid ${process.pid} (${comm}) at 100 Hz: 0.5/0.5 s, 0 samples, collecting…`,
    '50 samples in 0.5 s at 100 Hz; every stack complete',
    '',
    'Showing 3 of 4 functions, 500ms (100.00%) of 500ms cpu in 50 samples',
    ' flat  flat%    sum%   cum    cum%  function   module',
    '400ms 80.00%  80.00% 400ms  80.00%  hot_loop   burner',
    '100ms 20.00% 100.00% 100ms  20.00%  warm_loop  burner',
    '    0  0.00% 100.00% 500ms 100.00%  main       burner',
    '',
    `pprof:       ${join(out, `${stem}.pb.gz`)}   (go tool pprof -http=: ${join(out, `${stem}.pb.gz`).replace(`${process.cwd()}/`, '')})`,
    `flame graph: ${join(out, `${stem}.html`)}   (open it in a browser; it works offline)`,
    '',
  ].join('\n'))

  const { stdout } = await promisify(execFile)(GO, ['tool', 'pprof', '-top', join(out, `${stem}.pb.gz`)], { env: { ...process.env, HOME: process.env.HOME ?? tmpdir() } })
  assert.match(stdout, /^\s+400ms\s+80\.00%\s+80\.00%\s+400ms\s+80\.00%\s+hot_loop$/m)
  // the profile spans the run, whenever the plugin handed its samples over
  assert.match(stdout, /^Duration: 500ms, Total samples = 500ms \(\s*100%\)$/m)
  const html = await readFile(join(out, `${stem}.html`), 'utf8')
  assert.match(html, new RegExp(`<title>CPU profile of pid ${process.pid} \\(${comm}\\)</title>`))
  assert.match(html, /2026-12-01 01:02:03 UTC · 50 samples in 0\.5 s at 100 Hz; every stack complete/)
})

test('a profile of the whole host: one pprof of every process, the flame graph rooted at each process', async (t) => {
  const { code, output, out } = await runFixture(t, undefined)
  assert.equal(code, 0, output)
  assert.match(output, /^sampling the whole host \(.+\) at 100 Hz: 0\.5\/0\.5 s, 0 samples, collecting…$/m)
  assert.match(output, /^Showing 3 of 4 functions, 1s \(100\.00%\) of 1s cpu in 100 samples$/m)
  const files = await readdir(out)
  const html = await readFile(join(out, files.find((f) => f.endsWith('.html'))!), 'utf8')
  const tree = JSON.parse(/<script id="profile-data" type="application\/json">(.*?)<\/script>/s.exec(html)![1]).tree
  assert.deepEqual(tree.children.map((c: { name: string; value: number }) => [c.name, c.value]), [['alpha [4194401]', 5e8], ['beta [4194402]', 5e8]])
  assert.equal(tree.children[0].children[0].name, 'main')
})
