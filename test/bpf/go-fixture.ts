/**
 * The Go uprobe fixture (test/bpf/fixtures/go/main.go, standard library only), built with the
 * machine's Go once per source and Go version into ~/.cache/periscope-peers/go-fixture-<hash>
 * (PERISCOPE_PEERS_DIR), in the forms Go binaries come in: as built, a PIE, and one linked by the
 * system linker (cgo's external linking, which puts C code ahead of Go's in .text), each also
 * stripped of symbols and DWARF (`-ldflags=-s -w`; the .gopclntab remains).
 */
import { execFile, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises'
import { homedir } from 'node:os'
import { delimiter, join } from 'node:path'
import { promisify } from 'node:util'
import { root } from './kernel.ts'

const exec = promisify(execFile)
const SOURCES = join(root, 'test/bpf/fixtures/go')

/** Each stripped build has a twin with symbols, of the same code at the same addresses, for `go tool nm` and `go tool objdump`. */
export const GO_FIXTURE_BUILDS = {
  plain: [],
  stripped: ['-ldflags=-s -w'],
  pie: ['-buildmode=pie'],
  pieStripped: ['-buildmode=pie', '-ldflags=-s -w'],
  external: ['-ldflags=-linkmode=external'],
  externalStripped: ['-ldflags=-linkmode=external -s -w'],
} as const satisfies Record<string, readonly string[]>

export type GoFixtureBuild = keyof typeof GO_FIXTURE_BUILDS

/** [with symbols, stripped] pairs of builds. */
export const GO_FIXTURE_TWINS = [['plain', 'stripped'], ['pie', 'pieStripped'], ['external', 'externalStripped']] as const

/** Go from PATH, else where the official tarball puts it; never a toolchain download. */
export function goEnv(): NodeJS.ProcessEnv {
  const path = [process.env.PATH ?? '', '/usr/local/go/bin'].filter((p) => p !== '').join(delimiter)
  return { ...process.env, PATH: path, GOTOOLCHAIN: 'local', GOFLAGS: '-mod=readonly', CGO_ENABLED: '1' }
}

async function sourceHash(): Promise<string> {
  let version: string
  try {
    version = (await exec('go', ['env', 'GOVERSION'], { env: goEnv() })).stdout.trim()
  } catch (error) {
    throw new Error(`running go failed: ${(error as Error).message}. The Go uprobe fixture needs Go (https://go.dev/dl, or scripts/setup.sh --test)`)
  }
  const hash = createHash('sha256').update(version)
  for (const name of readdirSync(SOURCES).filter((n) => n.endsWith('.go') || n === 'go.mod').sort()) {
    hash.update(`\0${name}\0`).update(readFileSync(join(SOURCES, name)))
  }
  return hash.digest('hex').slice(0, 16)
}

let built: Promise<Record<GoFixtureBuild, string>> | undefined

/**
 * Paths of the fixture's builds. On a cold cache this takes a minute or two (the external link
 * builds runtime/cgo); a failed build leaves nothing behind: the binaries land in a scratch
 * directory renamed into place only when all are built.
 */
export function goFixture(): Promise<Record<GoFixtureBuild, string>> {
  built ??= (async () => {
    const cache = process.env.PERISCOPE_PEERS_DIR ?? join(homedir(), '.cache/periscope-peers')
    const dir = join(cache, `go-fixture-${await sourceHash()}`)
    const names = Object.keys(GO_FIXTURE_BUILDS) as GoFixtureBuild[]
    const paths = Object.fromEntries(names.map((name) => [name, join(dir, name)])) as Record<GoFixtureBuild, string>
    if (names.every((name) => existsSync(paths[name]))) return paths
    await mkdir(cache, { recursive: true })
    const scratch = await mkdtemp(join(cache, 'go-fixture-build-'))
    try {
      for (const name of names) {
        await exec('go', ['build', '-trimpath', '-buildvcs=false', ...GO_FIXTURE_BUILDS[name], '-o', join(scratch, name), '.'],
          { cwd: SOURCES, env: goEnv(), maxBuffer: 16 * 1024 * 1024, timeout: 10 * 60_000 })
      }
      // another test file may have built its own copy in the meantime, which may be in use
      const complete = () => names.every((name) => existsSync(paths[name]))
      if (!complete()) {
        await rm(dir, { recursive: true, force: true })
        await rename(scratch, dir).catch((error: unknown) => {
          if (!complete()) throw error
        })
      }
    } catch (error) {
      const { message, stderr } = error as Error & { stderr?: string }
      throw new Error(`building the Go uprobe fixture failed (go build in ${SOURCES}; the external link needs cgo and a C compiler): ${message}\n${stderr?.slice(-4000) ?? ''}`)
    } finally {
      await rm(scratch, { recursive: true, force: true })
    }
    return paths
  })()
  built.catch(() => (built = undefined))
  return built
}

/** What `go tool <args>` prints (nm, objdump: the toolchain's own reading of a binary). */
export async function goTool(...args: string[]): Promise<string> {
  return (await exec('go', ['tool', ...args], { env: goEnv(), maxBuffer: 256 * 1024 * 1024 })).stdout
}

export interface GoFixtureRun {
  pid: number
  /** Lets the program go on once the test attached. */
  release(): void
  /** Kills it if it still runs (a test that failed before release() would otherwise wait on it forever). */
  stop(): void
  /** Resolves with what it printed once it exited 0; rejects with its status and the start of its stderr (where Go says why it crashed) otherwise. */
  exited: Promise<string>
}

/**
 * Starts the fixture in `mode`; it waits for release(). GODEBUG=adaptivestackstart=0 keeps every
 * goroutine's first stack at the minimum, so each classify call moves its goroutine's stack.
 */
export function runGoFixture(binary: string, mode: 'classify' | 'tls', numbers: number[]): GoFixtureRun {
  const child = spawn(binary, [mode, ...numbers.map(String)], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, GODEBUG: 'adaptivestackstart=0' } })
  let stdout = '', stderr = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const exited = new Promise<string>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code, signal) => (code === 0 ? resolve(stdout.trim()) : reject(new Error(`${binary} ${mode} exited ${code ?? signal}: ${stderr.slice(0, 4000)}`))))
  })
  exited.catch(() => {}) // a test that stops the program early does not wait for this
  return {
    pid: child.pid!,
    release: () => child.stdin.end('go\n'),
    stop: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    },
    exited,
  }
}
