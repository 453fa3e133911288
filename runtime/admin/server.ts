/**
 * The admin socket: a unix socket that the REPL and CLI use to look into a running runtime, open
 * to this uid and root only (socket-path.ts says how, and what that does not cover). The protocol
 * is newline-delimited JSON, one request of at most 1 MiB per line:
 *
 *   → {"id": 1, "method": "plugins"}                 ← {"id": 1, "result": [...]}
 *   → {"id": 2, "method": "subscribe", "params": {"topic": "exec:events"}}
 *   ← {"id": 2, "result": {"subscribed": "exec:events"}}, then one line per event,
 *     {"id": 2, "event": {"kind": 1, "pid": 4242, ...}}, decoded by the generated decoders
 *     (bpf/lib/index.types.ts; 64-bit integers as strings), and {"id": 2, "lost": n} for records the
 *     kernel lost or that were skipped because the client read too slowly
 *   → {"id": 3, "method": "unsubscribe", "params": {"id": 2}}
 *
 * Methods: plugins, objects, streams, links, stats, maps, dump {topic}, reload {name}, load {file},
 * subscribe {topic}, unsubscribe {id}.
 * Failures come back as {"id", "error": "message"}; a longer line is answered with an error and
 * the connection is closed.
 */
import net from 'node:net'
import { rmSync } from 'node:fs'
import { defaultDecodersPath } from '../plugins/build.ts'
import type { Logger } from '../plugins/log.ts'
import { lineSplitter } from './lines.ts'
import { type AdminState, stateMethods } from './methods.ts'
import { defaultSocketPath, listenPrivately, prepareSocketPath } from './socket-path.ts'
import { ConnectionStreams, DecoderTable, toJson } from './stream.ts'

export interface AdminRequest {
  id: number
  method: string
  params?: Record<string, unknown>
}

/** The longest request line, newline excluded. */
export const MAX_REQUEST_BYTES = 1024 * 1024

const methodNames = [...stateMethods.keys(), 'subscribe', 'unsubscribe'].join(', ')

/** One streamed line: a decoded event, or how many records were lost (by the kernel, or skipped for a slow client). */
export type WireStreamMessage = { event: Record<string, unknown> } | { lost: number }

export interface AdminServer {
  readonly path: string
  close(): Promise<void>
}

interface ConnectionContext extends AdminState {
  decoders: DecoderTable
  log: Logger
  /** Names this connection as a user of the objects it subscribes to. */
  user: string
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)

/** The request a line holds, or why it is not one. */
function parseRequest(line: string): AdminRequest | string {
  let request: unknown
  try {
    request = JSON.parse(line)
  } catch {
    return 'request is not JSON; send one JSON object per line'
  }
  if (!isObject(request) || typeof request.id !== 'number' || typeof request.method !== 'string' || (request.params !== undefined && !isObject(request.params))) {
    return 'a request is an object {"id": <number>, "method": <string>, "params"?: <object>}'
  }
  return request as unknown as AdminRequest
}

/** Answers one connection's requests until it closes. */
function serveConnection(socket: net.Socket, context: ConnectionContext): void {
  const streams = new ConnectionStreams({ socket, bus: context.bus, decoders: context.decoders, user: context.user, log: context.log })
  const send = (message: object) => {
    if (!socket.destroyed) socket.write(`${toJson(message)}\n`)
  }
  const dispatch = async ({ id, method, params = {} }: AdminRequest): Promise<unknown> => {
    const answer = stateMethods.get(method)
    if (answer !== undefined) return answer(context, params)
    if (method === 'subscribe') return streams.subscribe(id, params.topic)
    if (method === 'unsubscribe') return streams.unsubscribe(params.id)
    throw new Error(`unknown method '${method}'; methods: ${methodNames}`)
  }
  const onLine = (line: string) => {
    if (line.trim() === '') return
    const request = parseRequest(line)
    if (typeof request === 'string') return send({ id: null, error: request })
    dispatch(request).then(
      (result) => send({ id: request.id, result }),
      (error: Error) => send({ id: request.id, error: error.message }),
    )
  }
  const onTooLong = () => {
    // the client sees why, then the connection goes: nothing more of it is read
    socket.end(`${toJson({ id: null, error: `request line longer than ${MAX_REQUEST_BYTES} bytes; closing the connection` })}\n`, () => socket.destroy())
  }
  socket.on('data', lineSplitter(onLine, { maxBytes: MAX_REQUEST_BYTES, onTooLong }))
  socket.on('close', () => streams.closeAll())
  socket.on('error', (error) => context.log.debug(`admin connection: ${error.message}`))
}

export interface AdminServerOptions extends AdminState {
  /** Defaults to /run/periscope/admin.sock for root, else periscope-<uid>/ under $XDG_RUNTIME_DIR or /tmp. */
  path?: string
  log: Logger
  /** The decoder table streamed events go through; the plugins' table (`RuntimeOptions.decodersPath`). */
  decodersPath?: string
}

export async function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const file = await prepareSocketPath(options.path ?? defaultSocketPath())
  const decoders = new DecoderTable(options.decodersPath ?? defaultDecodersPath)
  const connections = new Set<net.Socket>()
  let connectionsOpened = 0
  const server = net.createServer((socket) => {
    connections.add(socket)
    socket.on('close', () => connections.delete(socket))
    serveConnection(socket, { ...options, decoders, user: `admin#${++connectionsOpened}` })
  })
  await listenPrivately(server, file)
  options.log.info(`admin socket listening on ${file}`)
  return {
    path: file,
    close: () => new Promise<void>((resolve) => {
      for (const c of connections) c.destroy()
      server.close(() => {
        try {
          rmSync(file, { force: true })
        } catch (error) {
          // expected after the privilege drop (runtime/privileges.ts): the runtime runs as nobody
          // and may not change the socket's directory, which stays root's
          const denied = ['EACCES', 'EPERM'].includes((error as NodeJS.ErrnoException).code ?? '')
          options.log[denied ? 'info' : 'warn'](`admin socket ${file} is left for the next start to clear: ${(error as Error).message}`)
        }
        resolve()
      })
    }),
  }
}
