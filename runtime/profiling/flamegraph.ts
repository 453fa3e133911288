/**
 * A flame graph of a profile as one self-contained HTML file that works offline: the stacks
 * merged into a tree (root at the bottom, callees above their callers, widths by value), drawn by
 * d3-flame-graph, whose script (with the parts of d3 it uses) and style are bundled into the page
 * with the data. Nothing is fetched: the file can be mailed, attached to a ticket, or opened on a
 * machine without network.
 *
 * Frames are coloured by kind as d3-flame-graph does (and perf's flame graphs): kernel orange,
 * JIT green, C++ yellow, other native code red. Clicking a frame zooms into it; the search box highlights every frame
 * whose name matches and gives their share.
 *
 *   await writeFile('cpu.html', await flameGraphHtml(profile, { title: 'CPU: pid 4242 (redis-server)' }))
 */
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { AggregatedProfile, AggregatedSample } from '../telemetry/profiles.ts'
import { frameName } from '../telemetry/profiles.ts'

/** One frame of the tree, in d3-flame-graph's shape: `value` includes the children's. */
export interface FlameNode {
  name: string
  value: number
  /**
   * d3-flame-graph's library type, which picks the colour: 'kernel' orange, 'jit' green, 'user'
   * (native code) red, yellow for a C++ name; none (warm colours) for the root and process frames.
   */
  l?: string
  children: FlameNode[]
}

export interface FlameGraphOptions {
  /** The page's heading, e.g. `CPU profile of pid 4242 (redis-server)`. */
  title: string
  /** A line under it: duration, frequency, samples. */
  subtitle?: string
  /** Which value sets the widths; default the last sample type (pprof's default: CPU time, bytes in use). */
  valueIndex?: number
  /**
   * Start each stack with its process (`redis-server [4242]`), from the samples' labels: for a
   * profile of the whole host, where each process's stacks should stand apart.
   */
  byProcess?: boolean
  /** The names of the processes for `byProcess` (their main thread's); else the samples' thread names. */
  processNames?: ReadonlyMap<number, string>
}

/** Kernel text lives in the upper half of the 64-bit address space. */
const KERNEL_ADDRESSES = 2 ** 63

function kindOf(frame: AggregatedSample['frames'][number]): string {
  if (frame.address >= KERNEL_ADDRESSES) return 'kernel'
  if (frame.mapping?.file === '[jit]') return 'jit'
  return 'user'
}

function processNameOf(sample: AggregatedSample, profile: AggregatedProfile, names: ReadonlyMap<number, string> | undefined): string {
  const pid = sample.labels['process.pid'] ?? profile.process?.pid
  const comm = names?.get(Number(pid)) ?? profile.process?.command ?? sample.labels['thread.name']
  if (pid === undefined) return comm === undefined ? '[unknown process]' : String(comm)
  return comm === undefined ? `[${pid}]` : `${comm} [${pid}]`
}

/** Merges the stacks (leaf first in the profile) into a tree rooted at `root`. */
export function flameTree(profile: AggregatedProfile, options: Pick<FlameGraphOptions, 'valueIndex' | 'byProcess' | 'processNames'> & { root?: string } = {}): FlameNode {
  const valueIndex = options.valueIndex ?? profile.sampleTypes.length - 1
  const root: FlameNode = { name: options.root ?? 'all', value: 0, children: [] }
  const childIndex = new Map<FlameNode, Map<string, FlameNode>>()
  const child = (parent: FlameNode, name: string, kind: string): FlameNode => {
    let byName = childIndex.get(parent)
    if (byName === undefined) childIndex.set(parent, (byName = new Map()))
    const key = `${kind}\0${name}`
    let node = byName.get(key)
    if (node === undefined) {
      node = kind === '' ? { name, value: 0, children: [] } : { name, value: 0, l: kind, children: [] }
      byName.set(key, node)
      parent.children.push(node)
    }
    return node
  }
  for (const sample of profile.samples) {
    const value = sample.values[valueIndex]
    if (!(value > 0)) continue
    root.value += value
    let node = root
    if (options.byProcess === true) {
      node = child(node, processNameOf(sample, profile, options.processNames), '')
      node.value += value
    }
    for (let i = sample.frames.length - 1; i >= 0; i--) {
      const frame = sample.frames[i]
      node = child(node, frameName(frame), kindOf(frame))
      node.value += value
    }
  }
  return root
}

let bundledScript: Promise<string> | undefined

/**
 * d3-flame-graph and the d3 modules it imports, bundled by esbuild into one script that sets
 * `periscopeFlameGraph` (built once per process; its licence comments are kept).
 */
function flameGraphScript(): Promise<string> {
  bundledScript ??= (async () => {
    const { build } = await import('esbuild')
    const result = await build({
      stdin: {
        contents: [
          "import flamegraph from 'd3-flame-graph'",
          "import { select } from 'd3-selection'",
          'globalThis.periscopeFlameGraph = { flamegraph, select }',
        ].join('\n'),
        resolveDir: path.dirname(fileURLToPath(import.meta.url)),
        loader: 'js',
      },
      bundle: true,
      format: 'iife',
      platform: 'browser',
      minify: true,
      write: false,
      legalComments: 'inline',
      // the package imports its stylesheet; the page inlines it instead (flameGraphStyle)
      loader: { '.css': 'empty' },
      logLevel: 'silent',
    })
    return result.outputFiles[0].text
  })()
  bundledScript.catch(() => (bundledScript = undefined))
  return bundledScript
}

async function flameGraphStyle(): Promise<string> {
  const require = createRequire(import.meta.url)
  // the package exports only its scripts; the stylesheet sits beside them in dist/
  const distDir = path.dirname(require.resolve('d3-flame-graph'))
  return readFile(path.join(distDir, 'd3-flamegraph.css'), 'utf8')
}

/** JSON that can sit inside a <script> element: no `</script>` or `<!--` can end or bend it. */
function scriptSafeJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029')
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

/** The page's own code: draws the tree at the window's width, wires search and reset; each frame's <title> is its tooltip. */
const PAGE_SCRIPT = `
const { flamegraph, select } = globalThis.periscopeFlameGraph
const data = JSON.parse(document.getElementById('profile-data').textContent)
const unit = data.unit
const format = (v) => {
  if (unit === 'nanoseconds') return v >= 1e9 ? (v / 1e9).toFixed(2) + ' s' : v >= 1e6 ? (v / 1e6).toFixed(1) + ' ms' : (v / 1e3).toFixed(0) + ' µs'
  if (unit === 'bytes') return v >= 1048576 ? (v / 1048576).toFixed(1) + ' MB' : v >= 1024 ? (v / 1024).toFixed(1) + ' kB' : v + ' B'
  return String(v)
}
const share = (v) => (100 * v / data.tree.value).toFixed(2) + '%'
const label = (d) => d.data.name + ' (' + format(d.value) + ', ' + share(d.value) + ')'
const chart = flamegraph()
  .width(Math.max(600, document.getElementById('chart').clientWidth))
  .cellHeight(18)
  .minFrameSize(1)
  .sort(true)
  .setLabelHandler(label)
  .setDetailsElement(document.getElementById('details'))
  .setSearchHandler((results, sum, total) => {
    document.getElementById('details').textContent = results.length === 0 ? '' : 'search: ' + format(sum) + ' of ' + format(total) + ' (' + share(sum) + ')'
  })
select('#chart').datum(data.tree).call(chart)
document.getElementById('search').addEventListener('input', (e) => { const term = e.target.value; if (term === '') chart.clear(); else chart.search(term) })
document.getElementById('reset').addEventListener('click', () => { document.getElementById('search').value = ''; chart.clear(); chart.resetZoom() })
`

/** The flame graph page for a profile, with everything it needs inside it. */
export async function flameGraphHtml(profile: AggregatedProfile, options: FlameGraphOptions): Promise<string> {
  const valueIndex = options.valueIndex ?? profile.sampleTypes.length - 1
  const [type, unit] = profile.sampleTypes[valueIndex] ?? ['', '']
  const tree = flameTree(profile, { valueIndex, byProcess: options.byProcess, processNames: options.processNames, root: 'all' })
  const [script, style] = await Promise.all([flameGraphScript(), flameGraphStyle()])
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="generator" content="periscope profile">
<title>${escapeHtml(options.title)}</title>
<style>
${style}
body { font-family: Verdana, 'DejaVu Sans', sans-serif; margin: 16px; }
/* Verdana is missing on most Linux machines: its fallback should not be a serif face */
.d3-flame-graph-label { font-family: Verdana, 'DejaVu Sans', sans-serif; }
h1 { font-size: 18px; margin: 0 0 4px; }
#subtitle { color: #555; font-size: 13px; margin-bottom: 8px; }
#controls { margin-bottom: 8px; font-size: 13px; }
#details { min-height: 18px; font-size: 13px; margin-top: 6px; }
</style>
</head>
<body>
<h1>${escapeHtml(options.title)}</h1>
<div id="subtitle">${escapeHtml(options.subtitle ?? '')}${options.subtitle === undefined ? '' : ' · '}widths are ${escapeHtml(type)} (${escapeHtml(unit)}); click a frame to zoom</div>
<div id="controls"><input id="search" type="search" placeholder="search functions (regular expression)" size="40"> <button id="reset">reset</button></div>
<div id="chart"></div>
<div id="details"></div>
<script id="profile-data" type="application/json">${scriptSafeJson({ unit, tree })}</script>
<script>${script.replace(/<\/(script)/gi, '<\\/$1')}</script>
<script>${PAGE_SCRIPT}</script>
</body>
</html>
`
}
