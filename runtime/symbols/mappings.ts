/**
 * A process's executable mappings, from /proc/<pid>/maps: which file (or JIT region, or the vDSO)
 * holds an address, at what file offset, and where to read that file.
 *
 * A file is read through /proc/<pid>/map_files/<start>-<end>, the kernel's handle on the very
 * file mapped: it works for a file deleted (or replaced) since it was mapped and for a file in
 * another mount namespace (a container), and needs CAP_SYS_ADMIN, which the runtime has. Where
 * that link cannot be opened, /proc/<pid>/root/<path> is the fallback.
 *
 * The load bias (runtime address - the ELF file's virtual address) needs the file's program
 * headers: ElfFile.loadBias(mapping.start, mapping.offset) gives it.
 *
 * @example
 *   const maps = ProcessMappings.read(pid)
 *   const m = maps.find(0x55d0c0a01234n)  // { path: '/usr/bin/redis-server', start, end, offset, … }
 *   const fileOffset = m.offset + (0x55d0c0a01234n - m.start)
 */
import { readFileSync, statSync } from 'node:fs'
import { lastAtOrBefore } from './sorted.ts'

export type MappingKind = 'file' | 'anonymous' | 'vdso' | 'vsyscall' | 'other'

export interface Mapping {
  start: bigint
  /** Exclusive. */
  end: bigint
  /** The file offset of `start`. */
  offset: bigint
  /** major:minor of the file's device, as maps prints it (hex). */
  device: string
  inode: number
  /** The path as maps shows it, without a ` (deleted)` suffix; '' for an anonymous mapping. */
  path: string
  /** The file was deleted (or replaced) after it was mapped. */
  deleted: boolean
  kind: MappingKind
}

export class ProcessMappings {
  readonly pid: number
  /** Executable mappings, by start address. */
  readonly mappings: readonly Mapping[]
  readonly #starts: Float64Array

  private constructor(pid: number, mappings: Mapping[]) {
    this.pid = pid
    this.mappings = mappings
    // user-space addresses are below 2^47: doubles hold them exactly; [vsyscall] is above, kept last
    this.#starts = Float64Array.from(mappings, (m) => Number(m.start))
  }

  /**
   * The executable mappings of process `pid`. Throws ENOENT (as readFileSync does) when the process
   * is gone.
   */
  static read(pid: number, procRoot: string = '/proc'): ProcessMappings {
    return ProcessMappings.parse(pid, readFileSync(`${procRoot}/${pid}/maps`, 'latin1'))
  }

  /** The executable mappings in `text`, the contents of /proc/<pid>/maps. */
  static parse(pid: number, text: string): ProcessMappings {
    const mappings: Mapping[] = []
    for (const line of text.split('\n')) {
      // 55d0c0a00000-55d0c0b2c000 r-xp 00022000 fe:01 1234567    /usr/bin/redis-server (deleted)
      const match = /^([0-9a-f]+)-([0-9a-f]+) ..(.). ([0-9a-f]+) ([0-9a-f]+:[0-9a-f]+) (\d+)\s*(.*)$/.exec(line)
      if (match === null || match[3] !== 'x') continue
      let path = match[7]!
      const deleted = path.endsWith(' (deleted)')
      if (deleted) path = path.slice(0, -' (deleted)'.length)
      const inode = Number(match[6])
      mappings.push({
        start: BigInt(`0x${match[1]}`),
        end: BigInt(`0x${match[2]}`),
        offset: BigInt(`0x${match[4]}`),
        device: match[5]!,
        inode,
        path,
        deleted,
        kind: kindOf(path, inode),
      })
    }
    mappings.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0))
    return new ProcessMappings(pid, mappings)
  }

  /** The executable mapping holding `address`, or undefined. */
  find(address: bigint | number): Mapping | undefined {
    return this.mappings[this.indexOf(address)]
  }

  /** The index in `mappings` of the one holding `address`, or -1. */
  indexOf(address: bigint | number): number {
    const index = lastAtOrBefore(this.#starts, Number(address))
    const mapping = this.mappings[index]
    return mapping !== undefined && BigInt(address) < mapping.end ? index : -1
  }

  /**
   * Where to read the file of `mapping`: its map_files link (see the module doc), which stays
   * valid while the process lives and maps it.
   */
  filePath(mapping: Mapping, procRoot: string = '/proc'): string {
    return `${procRoot}/${this.pid}/map_files/${mapping.start.toString(16)}-${mapping.end.toString(16)}`
  }

  /** The fallback for filePath: the path seen from the process's root (its mount namespace). */
  rootPath(mapping: Mapping, procRoot: string = '/proc'): string {
    return `${procRoot}/${this.pid}/root${mapping.path}`
  }

  /**
   * The last resort, once the runtime gave up CAP_SYS_ADMIN and runs as another user (neither
   * link opens then): the path in Periscope's own mount namespace, when the file there is the
   * very one mapped (same device and inode); undefined otherwise (another namespace's file, a
   * file replaced since).
   */
  hostPath(mapping: Mapping): string | undefined {
    const stat = statSync(mapping.path, { throwIfNoEntry: false })
    if (stat === undefined || stat.ino !== mapping.inode) return undefined
    const [major, minor] = mapping.device.split(':').map((hex) => parseInt(hex, 16))
    // the kernel's new_encode_dev(), which stat reports
    const device = (minor! & 0xff) | (major! << 8) | ((minor! & ~0xff) << 12)
    return stat.dev === device ? mapping.path : undefined
  }
}

function kindOf(path: string, inode: number): MappingKind {
  if (path === '[vdso]') return 'vdso'
  if (path === '[vsyscall]') return 'vsyscall'
  // a memfd (/memfd:name) is a file too, readable through map_files
  if (inode !== 0 && path.startsWith('/')) return 'file'
  // JIT code (V8, the JVM, Python's perf trampolines) is anonymous memory
  return path === '' || path.startsWith('[anon') ? 'anonymous' : 'other'
}
