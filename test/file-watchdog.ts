/**
 * A deadline for each test file's process, preloaded into every file `node --test` runs (the test
 * command's `--import`). --test-timeout bounds each test, but not a file's top-level code, and
 * no timer at all fires while the main thread is blocked (a synchronous child process, a native
 * call that never returns): one such hang once held a CI run until the run's own 90-minute limit,
 * which reported no cause, only the files never run. Past the deadline a worker thread, whose loop
 * the main thread cannot block, prints what the file was doing (its threads' and child processes'
 * kernel state) and kills the file and its child processes; the runner reports that file as failed
 * and goes on with the rest.
 *
 * PERISCOPE_TEST_FILE_TIMEOUT_S sets the deadline: by default 900 s, where a whole CI run takes
 * about 20 minutes and its slowest test (10,000 processes under the default plugins) 96 s.
 */
import { Worker } from 'node:worker_threads'

/** How the watchdog thread reads the process tree and ends it (plain JavaScript: it runs as eval). */
const watchdog = `
const { readFileSync, readdirSync, writeSync } = require('node:fs')
const { workerData: { file, seconds } } = require('node:worker_threads')
const read = (path) => { try { return readFileSync(path, 'utf8').trim() } catch { return '?' } }
/** pid -> its parent's pid, for every process now */
function parents() {
  const parent = new Map()
  for (const entry of readdirSync('/proc')) {
    if (!/^\\d+$/.test(entry)) continue
    const stat = read('/proc/' + entry + '/stat')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    parent.set(Number(entry), Number(fields[1]))
  }
  return parent
}
function descendants(root) {
  const parent = parents(), found = []
  let frontier = [root]
  while (frontier.length > 0) {
    const next = []
    for (const [pid, ppid] of parent) if (frontier.includes(ppid)) next.push(pid)
    found.push(...next)
    frontier = next
  }
  return found
}
const describe = (pid) => '  ' + pid + ' ' + read('/proc/' + pid + '/cmdline').replaceAll('\\0', ' ') +
  '\\n    state ' + (read('/proc/' + pid + '/stat').split(') ')[1] ?? '?').split(' ')[0] + ', waiting in ' + read('/proc/' + pid + '/wchan')
setTimeout(() => {
  const children = descendants(process.pid)
  // the main thread's kernel stack says where a blocked call waits; the others, their names
  const threads = readdirSync('/proc/self/task').map((tid) => '  thread ' + tid + ' (' + read('/proc/self/task/' + tid + '/comm') + ') waiting in ' +
    read('/proc/self/task/' + tid + '/wchan') + (Number(tid) === process.pid ? '\\n' + read('/proc/self/task/' + tid + '/stack').replace(/^/gm, '      ') : ''))
  writeSync(2, 'test file watchdog: ' + file + ' still running after ' + seconds + ' s (PERISCOPE_TEST_FILE_TIMEOUT_S); killing it and its ' +
    children.length + ' child processes.\\nIts threads:\\n' + threads.join('\\n') + '\\nIts child processes:\\n' + children.map(describe).join('\\n') + '\\n')
  for (const pid of [...children].reverse()) { try { process.kill(pid, 'SIGKILL') } catch {} }
  process.kill(process.pid, 'SIGKILL')
}, seconds * 1000)
`

// only in the processes that run test files (the runner itself sets this for them), not in the runner
if (process.env.NODE_TEST_CONTEXT?.startsWith('child')) {
  const seconds = Number(process.env.PERISCOPE_TEST_FILE_TIMEOUT_S ?? 900)
  if (!(seconds > 0)) throw new Error(`PERISCOPE_TEST_FILE_TIMEOUT_S must be a positive number of seconds, not '${process.env.PERISCOPE_TEST_FILE_TIMEOUT_S}'`)
  // unref'd: the watchdog never keeps a finished file's process alive
  new Worker(watchdog, { eval: true, workerData: { file: process.argv[1], seconds } }).unref()
}
