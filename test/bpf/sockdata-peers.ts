/**
 * Shared by the sockdata kernel tests: python3 peers (test/bpf/fixtures/sockdata-peer.py) that
 * talk over real sockets with known bytes, and a sockdata object whose rings the test drains
 * synchronously into decoded records.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { join } from 'node:path'
import { decodeLibraryEvent, decodeSockEvent, mapCodecs, type LibraryEvent, type ProtocolConfig, type SockEvent } from '../../bpf/lib/sockdata.types.ts'
import { forEachRecord } from '../../runtime/bpf/batch.ts'
import type { AttachKind } from '../../runtime/bpf/features.ts'
import { TypedMap } from '../../runtime/bpf/maps.ts'
import { RingBufferReader } from '../../runtime/bpf/ringbuf.ts'
import { openLibraryObject, type LibraryObject } from '../../runtime/library/index.ts'
import { root, waitFor } from './kernel.ts'

const PYTHON = '/usr/bin/python3'
const PEER = join(root, 'test/bpf/fixtures/sockdata-peer.py')

export const HTTP = 1, HTTP2 = 2, REDIS = 3, POSTGRES = 4, MYSQL = 5, KAFKA = 6
export const DATA = 0, OPEN = 1, CLOSE = 2, CONNECT_FAILED = 3
export const EGRESS = 0, INGRESS = 1
export const CLIENT = 1, SERVER = 2
export const FLAG_TLS = 1, FLAG_SENDFILE = 2, FLAG_LOSS = 4, FLAG_PREEXISTING = 8, FLAG_TRUNCATED = 16
export const AF_UNIX = 1, AF_INET = 2, AF_INET6 = 10
export const protocolRings = ['http', 'http2', 'redis', 'postgres', 'mysql', 'kafka'] as const

export const REQUEST = 'GET /hello?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: sockdata-test\r\n\r\n'
export const RESPONSE = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello'

export type Step = [string, unknown?]
export const hex = (data: string | Buffer): string => Buffer.from(data).toString('hex')
export const send = (data: string | Buffer): Step => ['send', hex(data)]
export const recv = (data: string | Buffer): Step => ['recv', Buffer.byteLength(data)]

/** One record, its payload copied out of the lent batch, its addresses as text. */
export interface Rec extends Omit<SockEvent, 'data' | 'local_addr' | 'remote_addr' | 'pad'> {
  stream: string
  data: Buffer
  local: string
  remote: string
}

function address(family: number, bytes: Uint8Array): string {
  return family === AF_INET ? [...bytes.subarray(0, 4)].join('.') : Buffer.from(bytes).toString('hex')
}

export function toRec(stream: string, e: SockEvent): Rec {
  const { data, local_addr, remote_addr, pad: _pad, ...fields } = e
  return { ...fields, stream, data: Buffer.from(data), local: address(e.family, local_addr), remote: address(e.family, remote_addr) }
}

/** A sockdata object with one reader per stream, which the tests drain synchronously. */
export class Capture {
  readonly library: LibraryObject
  readonly records: Rec[] = []
  readonly libraries: LibraryEvent[] = []
  readonly log: string[] = []
  readonly #readers: RingBufferReader[] = []
  readonly protocols: TypedMap<number, ProtocolConfig>

  private constructor(library: LibraryObject, log: string[]) {
    this.library = library
    this.log = log
    this.protocols = new TypedMap(library.object.map('protocols'), mapCodecs.protocols.key, mapCodecs.protocols.value)
  }

  /** attachKind: the attach kind socket data must be captured with (the plan's choice otherwise). */
  static async open(options: { maxEntries?: Record<string, number>; subscribe?: boolean; attachKind?: AttachKind } = {}): Promise<Capture> {
    const log: string[] = []
    const library = await openLibraryObject('sockdata', { maxEntries: options.maxEntries, attachKind: options.attachKind, log: (message) => log.push(message) })
    const capture = new Capture(library, log)
    if (options.subscribe !== false) capture.subscribe()
    return capture
  }

  subscribe(): void {
    for (const stream of [...protocolRings, 'connections']) {
      this.#readers.push(new RingBufferReader(this.library.object, stream, {
        onBatch: (batch) => forEachRecord(batch, (view, offset, size) => this.records.push(toRec(stream, decodeSockEvent(view, offset, size)))),
      }))
    }
    this.#readers.push(new RingBufferReader(this.library.object, 'libraries', {
      onBatch: (batch) => forEachRecord(batch, (view, offset) => this.libraries.push(decodeLibraryEvent(view, offset))),
    }))
  }

  /** Records of one process, after taking everything the rings hold now. */
  of(pid: number, stream?: string): Rec[] {
    for (const reader of this.#readers) reader.drain()
    return this.records.filter((r) => r.pid === pid && (stream === undefined || r.stream === stream))
  }

  want(protocol: number, options: { captureBytes?: number; pidFilter?: boolean; cgroupFilter?: boolean; clientEndOnly?: boolean } = {}): void {
    this.protocols.update(protocol, {
      wanted: options.clientEndOnly === true ? 2 : 1, capture_bytes: options.captureBytes ?? 0, pid_filter: options.pidFilter === true ? 1 : 0, cgroup_filter: options.cgroupFilter === true ? 1 : 0,
    })
  }

  /** Adds a process to a protocol's pid filter (want(protocol, { pidFilter: true })). */
  target(protocol: number, pid: number): void {
    const key = new Uint8Array(8)
    new DataView(key.buffer).setUint32(0, protocol, true)
    new DataView(key.buffer).setUint32(4, pid, true)
    this.library.object.map('target_pids').update(key, new Uint8Array([1]))
  }

  /** Adds a cgroup (by id) to a protocol's cgroup filter (want(protocol, { cgroupFilter: true })). */
  targetCgroup(protocol: number, cgroup: number): void {
    const key = new Uint8Array(16)
    new DataView(key.buffer).setUint32(0, protocol, true)
    new DataView(key.buffer).setBigUint64(8, BigInt(cgroup), true)
    this.library.object.map('target_cgroups').update(key, new Uint8Array([1]))
  }

  /** Every protocol unwanted and no filters: what a fresh object has. */
  reset(): void {
    for (let protocol = 0; protocol < 9; protocol++) this.protocols.update(protocol, { wanted: 0, capture_bytes: 0, pid_filter: 0, cgroup_filter: 0 })
    for (const map of ['target_pids', 'target_cgroups', 'excluded_ports']) {
      const raw = this.library.object.map(map)
      for (const key of [...raw.keys()]) raw.delete(key)
    }
  }

  async close(): Promise<void> {
    for (const reader of this.#readers) reader.close()
    await this.library.close()
  }
}

const peers = new Set<Peer>()
let onSpawn: ((pid: number) => void) | undefined

/**
 * Runs `fn` with every peer it starts held at its first line until `register(pid)` returned, so
 * a pid filter can follow exactly the test's peers, whatever else the host sends meanwhile.
 */
export async function registeringPeers<T>(register: (pid: number) => void, fn: () => Promise<T>): Promise<T> {
  onSpawn = register
  try {
    return await fn()
  } finally {
    onSpawn = undefined
  }
}

/** Kills the peers a failed test left running. */
export function killPeers(): void {
  for (const peer of peers) peer.child.kill('SIGKILL')
}

/** A sockdata-peer.py process; its stdout lines say where it is. */
export class Peer {
  readonly child: ChildProcessWithoutNullStreams
  readonly lines: string[] = []
  stderr = ''
  exitCode: number | null | undefined

  constructor(spec: Record<string, unknown>) {
    this.child = spawn(PYTHON, [PEER, JSON.stringify(onSpawn === undefined ? spec : { ...spec, gate: true })])
    if (onSpawn !== undefined) {
      onSpawn(this.pid)
      this.child.stdin.write('\n')
    }
    let pending = ''
    this.child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      pending += chunk
      for (let newline = pending.indexOf('\n'); newline >= 0; newline = pending.indexOf('\n')) {
        this.lines.push(pending.slice(0, newline))
        pending = pending.slice(newline + 1)
      }
    })
    this.child.stderr.setEncoding('utf8').on('data', (chunk: string) => { this.stderr += chunk })
    // 'close', not 'exit': 'exit' may come before the last stdout data is read (a peer's "done"
    // line was missed so in CI), 'close' comes after its stdio ended
    this.child.on('close', (code) => { this.exitCode = code })
    peers.add(this)
  }

  get pid(): number {
    return this.child.pid!
  }

  /** The `occurrence`th line starting with `prefix`, once printed. */
  async line(prefix: string, occurrence = 1): Promise<string> {
    const find = () => this.lines.filter((l) => l.startsWith(prefix))[occurrence - 1]
    await waitFor(() => find() !== undefined || this.exitCode !== undefined, `"${prefix}" from peer ${this.pid}`, 10_000)
    const line = find()
    if (line === undefined) throw new Error(`peer ${this.pid} exited (${this.exitCode}) before printing "${prefix}" #${occurrence}: ${this.stderr}`)
    return line
  }

  /** Lets a peer blocked in a "wait" step go on. */
  resume(): void {
    this.child.stdin.write('\n')
  }

  /** Waits for a peer that is expected to stop without printing "done" (a failed connect). */
  async exited(): Promise<void> {
    await waitFor(() => this.exitCode !== undefined, `peer ${this.pid} to exit`)
    peers.delete(this)
  }

  async finished(): Promise<void> {
    await this.line('done')
    await waitFor(() => this.exitCode !== undefined, `peer ${this.pid} to exit`)
    assert.equal(this.exitCode, 0, `peer ${this.pid} failed: ${this.stderr}`)
    peers.delete(this)
  }
}

export function startServer(steps: Step[], extra: Record<string, unknown> = {}): { server: Peer; port: Promise<number> } {
  const server = new Peer({ role: 'server', steps, ...extra })
  return { server, port: server.line('listening ').then((line) => Number(line.split(' ')[1])) }
}

export async function startClient(port: number, steps: Step[], extra: Record<string, unknown> = {}): Promise<{ client: Peer; clientPort: number }> {
  const client = new Peer({ role: 'client', port, steps, ...extra })
  return { client, clientPort: Number((await client.line('connected ')).split(' ')[1]) }
}

/** A server and a client running their steps to the end. */
export async function exchange(serverSteps: Step[], clientSteps: Step[], extra: Record<string, unknown> = {}) {
  const { server, port: listening } = startServer(serverSteps, extra)
  const port = await listening
  const { client, clientPort } = await startClient(port, clientSteps, extra)
  await Promise.all([server.finished(), client.finished()])
  return { server, client, port, clientPort }
}

export const requestResponse = (request = REQUEST, response = RESPONSE): [Step[], Step[]] => [[recv(request), send(response)], [send(request), recv(response)]]
