/**
 * What plugins hold in the kernel besides objects, shared across plugins and across versions of
 * one plugin, on the bus (runtime/bus.ts):
 * - map claims: an entry written while any holder wants it, deleted (an array's: zeroed) when the
 *   last holder lets go;
 * - uprobe links: one kernel link per (object, program, file, symbol, retprobe, at, pid), however
 *   many holders asked for it, detached by the last.
 * A hot reload takes its holds (in the new version's setup) before the old version lets go of
 * its own, so a held entry or link never leaves the kernel across the swap.
 *
 * Holders are named by the caller (the plugin host names one per version); nothing here trusts a
 * plugin: the host checks that the object is the version's before it calls in.
 */
import { statSync } from 'node:fs'
import { isAbsolute } from 'node:path'
import type { LibraryObject, ObjectMap } from './bus.ts'

/**
 * An error whose message starts with its code (`ENOSYMBOL: ...`) and that carries it as `code`.
 * The prefix survives the isolate boundary, where the bootstrap sets `code` again from it.
 */
export class PluginApiError extends Error {
  readonly code: string

  constructor(code: string, message: string) {
    super(`${code}: ${message}`)
    this.name = 'PluginApiError'
    this.code = code
  }
}

export interface Holder {
  /** One per version of a plugin. */
  id: string
  /** The plugin's name: holders of one plugin may change a value, others may not. */
  plugin: string
}

interface Claim {
  map: ObjectMap
  topic: string
  key: Uint8Array
  /** What the kernel holds now. */
  written: Uint8Array
  /** Per holder its value and when it claimed: the latest claim's value is the one written. */
  holders: Map<string, { plugin: string; value: Uint8Array; order: number }>
}

const hex = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b)

export class MapClaims {
  private readonly claims = new Map<string, Claim>()
  private readonly byHolder = new Map<string, Set<string>>()
  private order = 0

  /**
   * Makes `holder` hold `key` = `value` in the map of `topic`. A holder of another plugin holding
   * the key with another value refuses it (EBUSY); holders of the same plugin (an older version)
   * give way, and get their value back if the newer version lets go first.
   */
  claim(topic: string, map: ObjectMap, key: Uint8Array, value: Uint8Array, holder: Holder): void {
    const id = `${topic}\0${hex(key)}`
    const existing = this.claims.get(id)
    if (existing !== undefined) {
      for (const hold of existing.holders.values()) {
        if (hold.plugin !== holder.plugin && !sameBytes(hold.value, value)) {
          throw new PluginApiError('EBUSY', `map '${topic}': key ${hex(key)} is claimed by plugin ${hold.plugin} with value ${hex(hold.value)}, ` +
            `not ${hex(value)}; plugins that share a key must claim the same value`)
        }
      }
    }
    const claim = existing ?? { map, topic, key: Uint8Array.from(key), written: new Uint8Array(0), holders: new Map() }
    const previous = claim.holders.get(holder.id)
    claim.holders.set(holder.id, { plugin: holder.plugin, value: Uint8Array.from(value), order: ++this.order })
    try {
      this.write(claim)
    } catch (error) {
      if (previous === undefined) claim.holders.delete(holder.id)
      else claim.holders.set(holder.id, previous)
      throw error
    }
    this.claims.set(id, claim)
    let keys = this.byHolder.get(holder.id)
    if (keys === undefined) this.byHolder.set(holder.id, keys = new Set())
    keys.add(id)
  }

  /** Drops `holder`'s claim on one key; false when it held none. */
  unclaim(topic: string, key: Uint8Array, holderId: string): boolean {
    const id = `${topic}\0${hex(key)}`
    if (!this.byHolder.get(holderId)?.delete(id)) return false
    this.drop(id, holderId)
    return true
  }

  /** Drops every claim of `holderId` (its version ended). Errors are collected, not thrown halfway. */
  releaseHolder(holderId: string): Error[] {
    const keys = this.byHolder.get(holderId)
    this.byHolder.delete(holderId)
    const errors: Error[] = []
    for (const id of keys ?? []) {
      try {
        this.drop(id, holderId)
      } catch (error) {
        errors.push(error as Error)
      }
    }
    return errors
  }

  /** The plugin other than `plugin` that claims `key`, if one does: its writes must not be undone by plain updates. */
  claimedByOther(topic: string, key: Uint8Array, plugin: string): string | undefined {
    const claim = this.claims.get(`${topic}\0${hex(key)}`)
    for (const hold of claim?.holders.values() ?? []) if (hold.plugin !== plugin) return hold.plugin
    return undefined
  }

  /** Whether `key` of `topic` is claimed with exactly `value`. */
  holdsValue(topic: string, key: Uint8Array, value: Uint8Array): boolean {
    const claim = this.claims.get(`${topic}\0${hex(key)}`)
    return claim !== undefined && sameBytes(claim.written, value)
  }

  /** Forgets the claims on an object's maps once it closed (its maps went with it). */
  forgetObject(object: string): void {
    for (const [id, claim] of this.claims) {
      if (!claim.topic.startsWith(`${object}:`)) continue
      this.claims.delete(id)
      for (const holder of claim.holders.keys()) this.byHolder.get(holder)?.delete(id)
    }
  }

  /** Entries held now, with their holders. */
  list(): { topic: string; key: string; value: string; holders: string[] }[] {
    return [...this.claims.values()].map((c) => ({ topic: c.topic, key: hex(c.key), value: hex(c.written), holders: [...c.holders.keys()].sort() }))
  }

  private drop(id: string, holderId: string): void {
    const claim = this.claims.get(id)
    if (claim === undefined || !claim.holders.delete(holderId)) return
    if (claim.holders.size > 0) {
      this.write(claim)
      return
    }
    this.claims.delete(id)
    if (claim.map.info?.type === 'array' || claim.map.info?.type === 'percpu_array') {
      // array entries cannot be deleted; zero is what the kernel starts them at
      claim.map.update(claim.key, new Uint8Array(claim.written.byteLength))
    } else {
      claim.map.delete(claim.key)
    }
  }

  /** Writes the latest holder's value, when the kernel does not hold it already. */
  private write(claim: Claim): void {
    let latest: { value: Uint8Array; order: number } | undefined
    for (const hold of claim.holders.values()) if (latest === undefined || hold.order > latest.order) latest = hold
    if (latest === undefined || sameBytes(claim.written, latest.value)) return
    claim.map.update(claim.key, latest.value)
    claim.written = latest.value
  }
}

export interface UprobeRequest {
  binary: string
  symbol: string
  retprobe: boolean
  /** The function's entry, or each of its return instructions (a uprobe program there). */
  at: 'entry' | 'returns'
  pid?: number
  /** The BPF cookie the program reads, for a program that finds its settings by it (entry only). */
  cookie?: number
}

interface SharedLink {
  object: string
  program: string
  /** What it is attached to, for listings: `uretprobe /usr/lib/…/libssl.so.3:SSL_read`, `uprobe /srv/api:crypto/tls.(*Conn).Write (3 returns)`. */
  attach: string
  link: { readonly id: number; readonly ids?: readonly number[]; detach(): void }
  holds: number
}

/** How a program's ELF section says it attaches: 'uprobe', 'uretprobe', or neither. */
export function uprobeKind(section: string): 'uprobe' | 'uretprobe' | undefined {
  const match = /^(uprobe|uretprobe)(\.s)?(\/|$)/.exec(section)
  return match === null ? undefined : (match[1] as 'uprobe' | 'uretprobe')
}

/**
 * One more hold on `shared`, a kernel link kept in `table` under `key` by every holder of the same
 * target: the returned release() is idempotent, and the last one detaches the link.
 */
export function holdLink<T extends { link: { id: number; detach(): void }; holds: number }>(table: Map<string, T>, key: string, shared: T): { id: number; release(): boolean } {
  shared.holds++
  let released = false
  return {
    id: shared.link.id,
    release: () => {
      if (released) return false
      released = true
      if (--shared.holds === 0) {
        table.delete(key)
        shared.link.detach()
      }
      return true
    },
  }
}

export class SharedUprobes {
  private readonly links = new Map<string, SharedLink>()

  /**
   * One more hold on the link for (object, program, the binary's file, symbol, retprobe, at, pid),
   * attaching it if nobody holds it yet. The returned release() is idempotent; the last detaches.
   */
  attach(objectName: string, object: LibraryObject, program: string, request: UprobeRequest, asked?: string): { id: number; release(): boolean } {
    const at = request.at === 'returns' ? ' at its returns' : ''
    // errors name the call the plugin made
    const what = asked ?? `ctx.attach(${objectName}:${program} on ${request.binary}:${request.symbol}${at})`
    if (object.attachUprobe === undefined || object.programs === undefined) {
      throw new PluginApiError('EINVAL', `${what}: object '${objectName}' cannot attach programs at run time`)
    }
    const info = object.programs().find((p) => p.name === program)
    const uprobes = object.programs().filter((p) => uprobeKind(p.section) !== undefined).map((p) => p.name)
    if (info === undefined) {
      throw new PluginApiError('ENOENT', `${what}: object '${objectName}' has no program '${program}'; its uprobe programs: ${uprobes.join(', ') || 'none'}`)
    }
    const kind = uprobeKind(info.section)
    if (kind === undefined) {
      throw new PluginApiError('EINVAL', `${what}: program '${program}' is a '${info.section}' program, not a uprobe; its uprobe programs: ${uprobes.join(', ') || 'none'}`)
    }
    if (request.at === 'returns' && (kind === 'uretprobe' || request.retprobe)) {
      throw new PluginApiError('EINVAL', `${what}: at: 'returns' runs a uprobe program (SEC("uprobe")) at each return instruction, in place of a uretprobe; ` +
        (kind === 'uretprobe' ? `program '${program}' is a uretprobe program` : 'do not pass retprobe: true with it'))
    }
    if ((kind === 'uretprobe') !== request.retprobe) {
      throw new PluginApiError('EINVAL', `${what}: program '${program}' is a ${kind} program; pass retprobe: ${kind === 'uretprobe'}`)
    }
    const file = fileIdentity(request.binary, what)
    const key = [objectName, program, file, request.symbol, request.retprobe, request.at, request.pid ?? -1, request.cookie ?? -1].join('\0')
    let shared = this.links.get(key)
    if (shared === undefined) {
      const link = attachOrExplain(object, program, request, what)
      const returns = link.returns === undefined ? '' : ` (${link.returns} returns)`
      const target = `${kind} ${request.binary}:${request.symbol}${returns}${request.pid === undefined ? '' : ` pid ${request.pid}`}`
      shared = { object: objectName, program, attach: target, link, holds: 0 }
      this.links.set(key, shared)
    }
    return holdLink(this.links, key, shared)
  }

  /** Forgets an object's links once it closed (closing detached them). */
  forgetObject(object: string): void {
    for (const [key, shared] of this.links) if (shared.object === object) this.links.delete(key)
  }

  /** Links held now, with how many holds each; `ids`: the kernel links each is made of. */
  list(): { object: string; id: number; ids: readonly number[]; program: string; attach: string; holds: number }[] {
    return [...this.links.values()].map((s) => ({ object: s.object, id: s.link.id, ids: s.link.ids ?? [s.link.id], program: s.program, attach: s.attach, holds: s.holds }))
  }
}

/** `dev:inode` of the file a path names (links followed), so two paths of one file share a link. */
export function fileIdentity(binary: string, what: string): string {
  if (!isAbsolute(binary)) throw new PluginApiError('EINVAL', `${what}: give the binary as an absolute path`)
  let stat
  try {
    stat = statSync(binary)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'ENOENT'
    const why = code === 'ENOENT' ? 'it does not exist' : `it cannot be read (${(error as Error).message})`
    throw new PluginApiError(code, `${what}: binary ${binary}: ${why}`)
  }
  if (!stat.isFile()) throw new PluginApiError('EINVAL', `${what}: ${binary} is not a regular file`)
  return `${stat.dev}:${stat.ino}`
}

/**
 * The binary exists (checked just before), so ENOSYMBOL from runtime/symbols/elf.ts, like an
 * ENOENT from libbpf, means the symbol is not in it.
 */
function attachOrExplain(object: LibraryObject, program: string, request: UprobeRequest, what: string): SharedLink['link'] & { readonly returns?: number } {
  try {
    return object.attachUprobe!(program, request.binary, {
      symbol: request.symbol, retprobe: request.retprobe, pid: request.pid, at: request.at, cookie: request.cookie === undefined ? undefined : BigInt(request.cookie),
    })
  } catch (error) {
    const code = (error as { code?: unknown }).code
    if (code === 'ENOENT' || code === 'ENOSYMBOL') {
      throw new PluginApiError('ENOSYMBOL', `${what}: ${request.binary} has no function symbol ${request.symbol}`)
    }
    if (code === 'EACCES' || code === 'EPERM') {
      throw new PluginApiError(code, `${what}: the kernel attaches uprobes only for CAP_SYS_ADMIN, which Periscope gives up after start-up; ` +
        'attach in setup() of a plugin that is in place when `periscope run` starts (a link attached then is shared with later holders)')
    }
    throw new PluginApiError(typeof code === 'string' ? code : 'EIO', `${what}: ${(error as Error).message}`)
  }
}
