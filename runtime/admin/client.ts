/** A small client for the admin socket (see server.ts for the protocol), used by the CLI and REPL. */
import net from 'node:net'
import { lineSplitter } from './lines.ts'
import type { WireStreamMessage } from './server.ts'

export interface AdminClient {
  request<T = unknown>(method: string, params?: Record<string, unknown>): Promise<T>
  /**
   * Streams a topic's events, decoded (64-bit integers arrive as strings), and the counts of
   * records the kernel lost; the returned function stops the stream.
   */
  subscribe(topic: string, onEvent: (event: Record<string, unknown>) => void, onLost?: (count: number) => void): Promise<() => Promise<void>>
  close(): void
}

export async function connectAdmin(socketPath: string): Promise<AdminClient> {
  const socket = net.connect(socketPath)
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', (error: NodeJS.ErrnoException) => {
      const hint = error.code === 'ENOENT' || error.code === 'ECONNREFUSED'
        ? '; is `periscope run` running, and is this its admin.socket?'
        : error.code === 'EACCES' ? '; the socket is mode 0600: connect as the user running periscope' : ''
      reject(new Error(`connect to admin socket ${socketPath}: ${error.message}${hint}`))
    })
  })
  let nextId = 1
  const pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>()
  const streams = new Map<number, (message: WireStreamMessage) => void>()
  socket.on('data', lineSplitter((line) => {
    const message = JSON.parse(line) as { id: number; result?: unknown; error?: string } & Partial<WireStreamMessage>
    if ('event' in message || 'lost' in message) {
      streams.get(message.id)?.(message as WireStreamMessage)
      return
    }
    const waiter = pending.get(message.id)
    pending.delete(message.id)
    if (message.error !== undefined) waiter?.reject(new Error(message.error))
    else waiter?.resolve(message.result)
  }))
  socket.on('close', () => {
    for (const waiter of pending.values()) waiter.reject(new Error('admin socket closed before answering'))
    pending.clear()
  })

  const request = <T>(method: string, params?: Record<string, unknown>, id = nextId++): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject })
      socket.write(`${JSON.stringify({ id, method, params })}\n`)
    })

  return {
    request: (method, params) => request(method, params),
    async subscribe(topic, onEvent, onLost) {
      const id = nextId++
      streams.set(id, (message) => ('event' in message ? onEvent(message.event) : onLost?.(message.lost)))
      try {
        await request('subscribe', { topic }, id)
      } catch (error) {
        streams.delete(id)
        throw error
      }
      return async () => {
        streams.delete(id)
        await request('unsubscribe', { id })
      }
    },
    close: () => { socket.end() },
  }
}
