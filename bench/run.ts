/**
 * `npm run bench`: runs every bench/*.bench.ts in turn, each in its own Node process started as
 * ./periscope starts the runtime (scripts/node-env.sh: the same V8 flags and environment), prints
 * each one's output as it comes, then a summary. Exits non-zero when a benchmark missed a target
 * or failed. Name benchmarks to run only those: `npm run bench -- memory exporter-spans`.
 *
 * Benchmarks compete for the machine's two CPUs: run them when nothing else is busy.
 */
import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { loadavg } from 'node:os'
import path from 'node:path'
import { repoRoot } from './common.ts'

interface Outcome {
  name: string
  code: number | null
  seconds: number
  missed: string[]
}

const wanted = process.argv.slice(2)
const benches = readdirSync(path.join(repoRoot, 'bench'))
  .filter((file) => file.endsWith('.bench.ts'))
  .map((file) => file.slice(0, -'.bench.ts'.length))
  .filter((name) => wanted.length === 0 || wanted.includes(name))
  .sort()
const unknown = wanted.filter((name) => !benches.includes(name))
if (unknown.length > 0) {
  console.error(`bench/run.ts: no benchmark named ${unknown.join(', ')}; bench/ has ${readdirSync(path.join(repoRoot, 'bench')).filter((f) => f.endsWith('.bench.ts')).join(', ')}`)
  process.exit(2)
}

function run(name: string): Promise<Outcome> {
  const started = performance.now()
  const script = path.join(repoRoot, 'bench', `${name}.bench.ts`)
  const child = spawn('bash', ['-c', '. "$1" && exec "$2" "${periscope_node_flags[@]}" "$3"', 'bench', path.join(repoRoot, 'scripts/node-env.sh'), process.execPath, script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString()
    process.stdout.write(chunk)
  })
  return new Promise((resolve) => {
    child.once('close', (code) => resolve({
      name,
      code,
      seconds: (performance.now() - started) / 1000,
      missed: output.split('\n').filter((line) => line.includes('MISSED')).map((line) => line.trim()),
    }))
  })
}

console.log(`running ${benches.length} benchmarks: ${benches.join(', ')} (load average ${loadavg().map((l) => l.toFixed(2)).join(' ')})\n`)
const outcomes: Outcome[] = []
for (const name of benches) {
  console.log(`── ${name}`)
  outcomes.push(await run(name))
  console.log()
}

console.log('summary')
for (const o of outcomes) {
  const status = o.code === 0 ? 'ok' : o.missed.length > 0 ? 'target missed' : `failed (exit ${o.code})`
  console.log(`  ${o.name.padEnd(28)} ${status.padEnd(16)} ${o.seconds.toFixed(0).padStart(4)} s`)
  for (const line of o.missed) console.log(`      ${line}`)
}
if (outcomes.some((o) => o.code !== 0)) process.exitCode = 1
