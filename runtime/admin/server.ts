/**
 * The admin socket: a unix socket (mode 0600, in a 0700 directory) that the REPL and CLI use to
 * look into a running runtime. The protocol is newline-delimited JSON:
 *
 *   → {"id": 1, "method": "plugins"}                 ← {"id": 1, "result": [...]}
 *   → {"id": 2, "method": "subscribe", "params": {"topic": "exec:events"}}
 *   ← {"id": 2, "result": {"subscribed": "exec:events"}}, then one line per event,
 *     {"id": 2, "event": {"kind": 1, "pid": 4242, ...}}, decoded by the generated decoders
 *     (bpf/lib/index.types.ts; 64-bit integers as strings), and {"id": 2, "lost": n} for records the
 *     kernel lost or that were skipped because the client read too slowly
 *   → {"id": 3, "method": "unsubscribe", "params": {"id": 2}}
 *
 * Methods: plugins, objects, maps, links, stats, reload {name}, subscribe {topic}, unsubscribe {id}.
 * Failures come back as {"id", "error": "message"}.
 */
import { chmodSync, mkdirSync, rmSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { forEachRecord, type RecordBatch } from '../bpf/batch.ts'
import { type Bus, splitTopic } from '../bus.ts'
import { defaultDecodersPath } from '../plugins/build.ts'
import type { Logger } from '../plugins/log.ts'
import type { PluginManager } from '../plugins/manager.ts'

export interface AdminRequest {
  id: number
  method: string
  params?: Record<string, unknown>
}

/** Where the socket goes when the config names none. */
export function defaultSocketPath(): string {
  if (process.getuid?.() === 0) return '/run/periscope/admin.sock'
  const base = process.env.XDG_RUNTIME_DIR ?? '/tmp'
  return path.join(base, `periscope-${process.getuid?.() ?? 'user'}`, 'admin.sock')
}

/** Bytes a streaming client may leave unread before its events are skipped (and counted as lost). */
const MAX_PENDING_STREAM_BYTES = 4 * 1024 * 1024

/** One streamed line: a decoded event, or how many records were lost (by the kernel, or skipped for a slow client). */
export type WireStreamMessage = { event: Record<string, unknown> } | { lost: number }

type Decoder = (view: DataView, offset: number, size?: number) => object

export interface AdminServer {
  readonly path: string
  close(): Promise<void>
}

/** JSON with 64-bit integers (bigint) as decimal strings. */
function toJson(message: object): string {
  return JSON.stringify(message, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))
}

/** Refuses to replace a socket that a live runtime still answers on. */
async function clearStaleSocket(file: string): Promise<void> {
  const alive = await new Promise<boolean>((resolve) => {
    const probe = net.connect(file)
    probe.once('connect', () => { probe.destroy(); resolve(true) })
    probe.once('error', () => resolve(false))
  })
  if (alive) {
    throw new Error(`admin socket ${file} is in use by another running periscope; stop it, or set admin.socket in the config`)
  }
  rmSync(file, { force: true })
}

export async function startAdminServer(options: {
  path?: string
  manager: PluginManager
  bus: Bus
  log: Logger
  /** Extra facts for `stats` (process RSS, privileges...). */
  extraStats?: () => Record<string, unknown>
  /** The decoder table streamed events go through; the plugins' table (`RuntimeOptions.decodersPath`). */
  decodersPath?: string
}): Promise<AdminServer> {
  const file = options.path ?? defaultSocketPath()
  const decodersPath = options.decodersPath ?? defaultDecodersPath
  let decoders: Promise<Record<string, Decoder>> | undefined
  const decoderFor = async (topic: string): Promise<Decoder> => {
    decoders ??= import(pathToFileURL(decodersPath).href).then((m: { decoders: Record<string, Decoder> }) => m.decoders)
    const table = await decoders
    const decode = table[topic]
    if (decode === undefined) {
      throw new Error(`no decoder for '${topic}' in ${decodersPath}; topics with decoders: ${Object.keys(table).join(', ')} (run \`npm run build\` after adding a record type)`)
    }
    return decode
  }
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
  await clearStaleSocket(file)
  const connections = new Set<net.Socket>()
  let connectionsOpened = 0

  const server = net.createServer((socket) => {
    connections.add(socket)
    const connectionId = ++connectionsOpened
    const streams = new Map<number, () => void>()
    let buffered = ''
    const send = (message: object) => {
      if (!socket.destroyed) socket.write(`${toJson(message)}\n`)
    }
    const handle = async (request: AdminRequest) => {
      const { manager, bus } = options
      switch (request.method) {
        case 'plugins': return manager.list()
        case 'objects': return bus.listObjects().map(({ links: _links, ...rest }) => rest)
        case 'maps': return bus.listStreams()
        case 'links': return bus.listObjects().flatMap((o) => o.links.map((l) => ({ object: o.name, ...l })))
        case 'stats': return {
          plugins: manager.list().map((p) => ({ name: p.name, status: p.status, ...p.stats })),
          objects: bus.listObjects().map((o) => ({ name: o.name, ...o.stats })),
          streams: bus.listStreams(),
          process: { rssBytes: process.memoryUsage.rss(), ...options.extraStats?.() },
        }
        case 'reload': {
          const name = request.params?.name
          if (typeof name !== 'string') throw new Error("reload needs params.name, the plugin's name")
          return manager.reload(name)
        }
        case 'subscribe': {
          const topic = request.params?.topic
          if (typeof topic !== 'string') throw new Error("subscribe needs params.topic, like 'exec:events'")
          const { object } = splitTopic(topic)
          const decode = await decoderFor(topic)
          // Holding the object keeps it open (and its stream flowing) while the admin client listens.
          const user = `admin#${connectionId}:${request.id}`
          await bus.acquire(object, user)
          let unsubscribe: () => void
          try {
            let behind = 0
            unsubscribe = bus.subscribe(topic, (batch: RecordBatch) => {
              if (socket.destroyed) return
              // a client that does not read must not grow our memory: skip and count instead
              if (socket.writableLength > MAX_PENDING_STREAM_BYTES) {
                // the count goes out as soon as the client has caught up, even if no batch follows
                if (behind === 0) {
                  socket.once('drain', () => {
                    if (behind > 0 && !socket.destroyed) socket.write(`${toJson({ id: request.id, lost: behind })}\n`)
                    behind = 0
                  })
                }
                behind += batch.count
                return
              }
              // one write per batch, one JSON line per event
              const lines: string[] = []
              if (batch.lost + behind > 0) lines.push(toJson({ id: request.id, lost: batch.lost + behind }))
              behind = 0
              forEachRecord(batch, (view, offset, size) => lines.push(toJson({ id: request.id, event: decode(view, offset, size) })))
              if (lines.length > 0) socket.write(`${lines.join('\n')}\n`)
            })
          } catch (error) {
            await bus.release(object, user)
            throw error
          }
          streams.set(request.id, () => {
            unsubscribe()
            bus.release(object, user).catch((e: Error) => options.log.error(`admin: release ${object}: ${e.message}`))
          })
          return { subscribed: topic }
        }
        case 'unsubscribe': {
          const id = request.params?.id
          const stop = typeof id === 'number' ? streams.get(id) : undefined
          if (stop === undefined) throw new Error(`unsubscribe: no subscription with id ${String(id)} on this connection`)
          stop()
          streams.delete(id as number)
          return { unsubscribed: id }
        }
        default:
          throw new Error(`unknown method '${request.method}'; methods: plugins, objects, maps, links, stats, reload, subscribe, unsubscribe`)
      }
    }
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      buffered += chunk
      let newline: number
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline)
        buffered = buffered.slice(newline + 1)
        if (line.trim() === '') continue
        let request: AdminRequest
        try {
          request = JSON.parse(line) as AdminRequest
        } catch {
          send({ id: null, error: 'request is not JSON; send one JSON object per line' })
          continue
        }
        handle(request).then(
          (result) => send({ id: request.id, result }),
          (error: Error) => send({ id: request.id, error: error.message }),
        )
      }
    })
    socket.on('close', () => {
      connections.delete(socket)
      for (const stop of streams.values()) stop()
      streams.clear()
    })
    socket.on('error', (error) => options.log.debug(`admin connection: ${error.message}`))
  })

  // The umask makes the socket 0600 from the moment it exists; the chmod is for umask-less platforms.
  const previous = process.umask(0o177)
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(file, () => { server.off('error', reject); resolve() })
    })
  } finally {
    process.umask(previous)
  }
  chmodSync(file, 0o600)
  options.log.info(`admin socket listening on ${file}`)
  return {
    path: file,
    close: () => new Promise<void>((resolve) => {
      for (const c of connections) c.destroy()
      server.close(() => { rmSync(file, { force: true }); resolve() })
    }),
  }
}
