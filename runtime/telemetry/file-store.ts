/**
 * The embedded store: append-only files rotated by size, as the Collector's file exporter does
 * (`traces.jsonl` → `traces-2026-01-02T15-04-05.000.jsonl`), keeping a bounded number of rotated
 * files. Writes are serialised through one promise chain so lines never interleave.
 */
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { basename, dirname, extname, join } from 'node:path'

const NEWLINE = new Uint8Array([0x0a])

export class RotatingFile {
  readonly path: string
  private readonly maxBytes: number
  private readonly maxFiles: number
  private handle: FileHandle | undefined
  private size = 0
  private chain: Promise<void> = Promise.resolve()

  constructor(path: string, maxBytes: number, maxFiles: number) {
    this.path = path
    this.maxBytes = maxBytes
    this.maxFiles = maxFiles
  }

  /** Appends one line (the newline is added). */
  appendLine(data: Uint8Array): Promise<void> {
    const next = this.chain.then(() => this.write(data))
    // a failed write must not poison later ones; the caller of this one sees the error
    this.chain = next.catch(() => {})
    return next
  }

  private async write(data: Uint8Array): Promise<void> {
    if (this.handle === undefined) await this.openFile()
    if (this.size > 0 && this.size + data.length + 1 > this.maxBytes) {
      await this.rotate()
      await this.openFile()
    }
    const handle = this.handle as FileHandle
    await handle.writev([data, NEWLINE])
    this.size += data.length + 1
  }

  private async openFile(): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true })
    this.handle = await open(this.path, 'a')
    this.size = (await this.handle.stat()).size
  }

  private async rotate(): Promise<void> {
    await this.handle?.close()
    this.handle = undefined
    const ext = extname(this.path)
    const stem = basename(this.path, ext)
    const stamp = new Date().toISOString().replace(/:/g, '-').replace(/Z$/, '')
    let target = join(dirname(this.path), `${stem}-${stamp}${ext}`)
    for (let n = 1; await exists(target); n++) target = join(dirname(this.path), `${stem}-${stamp}.${n}${ext}`)
    await rename(this.path, target)
    await pruneOldest(dirname(this.path), (name) => name.startsWith(`${stem}-`) && name.endsWith(ext), this.maxFiles)
  }

  async close(): Promise<void> {
    await this.chain
    await this.handle?.close()
    this.handle = undefined
  }
}

/** Keeps the `keep` newest files (by name, which sorts by the embedded timestamp) that match. */
export async function pruneOldest(dir: string, matches: (name: string) => boolean, keep: number): Promise<void> {
  const names = (await readdir(dir)).filter(matches).sort()
  for (const name of names.slice(0, Math.max(0, names.length - keep))) await rm(join(dir, name), { force: true })
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}
