// The @grpc/grpc-js client of test/peers/grpc-node.ts, run as its own process. Argument: a JSON
// object `{ target: "127.0.0.1:port", tls?: { ca, serverName } }`. It opens one channel (one
// HTTP/2 connection), waits until it is connected, writes `{"event":"ready"}`, then reads
// batches of calls from stdin, one JSON line each (`{ calls: GrpcCall[], parallel?: boolean }`),
// makes them on that channel, and writes one `{"event":"rpc",...}` line per call (in the order
// the calls ended) and then `{"event":"batch","count":N}`. It closes the channel and exits at the
// end of stdin.
import * as grpc from '@grpc/grpc-js'
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { echoService } from './echo-service.ts'
import type { ChatMessage, CountReply, SayReply, SumReply } from './echo-service.ts'
import type { GrpcCall } from '../grpc-node.ts'

const options = JSON.parse(process.argv[2]!) as { target: string; tls?: { ca: string; serverName: string } }

const print = (line: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(line)}\n`)
/** Wall-clock ns, comparable with span times. */
const nowNs = (): string => String(BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n)
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

const Client = grpc.makeGenericClientConstructor(echoService, 'Echo')
const credentials = options.tls === undefined ? grpc.credentials.createInsecure() : grpc.credentials.createSsl(readFileSync(options.tls.ca))
const client = new Client(options.target, credentials, options.tls === undefined ? {} : { 'grpc.ssl_target_name_override': options.tls.serverName })

interface Outcome { code: number; details: string; received: number }

function statusOf(error: grpc.ServiceError | null, received: number): Outcome {
  return error === null ? { code: grpc.status.OK, details: 'OK', received } : { code: error.code, details: error.details, received }
}

function say(call: Extract<GrpcCall, { kind: 'say' }>): Promise<Outcome> {
  const metadata = new grpc.Metadata()
  for (const [key, value] of Object.entries(call.metadata ?? {})) metadata.set(key, value)
  const callOptions = call.deadlineMs === undefined ? {} : { deadline: Date.now() + call.deadlineMs }
  return new Promise((resolve) => {
    client.Say({ name: call.name, outcome: call.outcome, delayMs: call.delayMs }, metadata, callOptions, (error: grpc.ServiceError | null, reply?: SayReply) =>
      resolve(statusOf(error, reply === undefined ? 0 : 1)))
  })
}

function count(call: Extract<GrpcCall, { kind: 'count' }>): Promise<Outcome> {
  return new Promise((resolve) => {
    let received = 0
    const stream = client.Count({ count: call.count, intervalMs: call.intervalMs }) as grpc.ClientReadableStream<CountReply>
    stream.on('data', () => received++)
    stream.on('error', (error: grpc.ServiceError) => resolve(statusOf(error, received)))
    stream.on('status', (status: grpc.StatusObject) => {
      if (status.code === grpc.status.OK) resolve({ code: status.code, details: status.details, received })
    })
  })
}

function sum(call: Extract<GrpcCall, { kind: 'sum' }>): Promise<Outcome> {
  return new Promise((resolve) => {
    const stream = client.Sum((error: grpc.ServiceError | null, reply?: SumReply) => resolve(statusOf(error, reply?.count ?? 0))) as grpc.ClientWritableStream<{ value: number }>
    void (async () => {
      for (let i = 0; i < call.values; i++) {
        await sleep(call.intervalMs)
        stream.write({ value: i })
      }
      stream.end()
    })()
  })
}

function chat(call: Extract<GrpcCall, { kind: 'chat' }>): Promise<Outcome> {
  return new Promise((resolve) => {
    let received = 0
    const stream = client.Chat() as grpc.ClientDuplexStream<ChatMessage, ChatMessage>
    stream.on('data', () => received++)
    stream.on('error', (error: grpc.ServiceError) => resolve(statusOf(error, received)))
    stream.on('status', (status: grpc.StatusObject) => {
      if (status.code === grpc.status.OK) resolve({ code: status.code, details: status.details, received })
    })
    void (async () => {
      for (let i = 0; i < call.messages; i++) {
        await sleep(call.intervalMs)
        stream.write({ text: `message ${i}` })
      }
      stream.end()
    })()
  })
}

const methods = { say: 'Say', count: 'Count', sum: 'Sum', chat: 'Chat' } as const

async function run(call: GrpcCall, index: number): Promise<void> {
  const startNs = nowNs()
  const outcome = call.kind === 'say' ? await say(call) : call.kind === 'count' ? await count(call) : call.kind === 'sum' ? await sum(call) : await chat(call)
  print({ event: 'rpc', index, method: `/periscope.test.Echo/${methods[call.kind]}`, ...outcome, startNs, endNs: nowNs() })
}

client.waitForReady(Date.now() + 20_000, async (error?: Error) => {
  if (error !== undefined) {
    process.stderr.write(`grpc-node client: cannot connect to ${options.target}: ${error.message}\n`)
    process.exit(1)
  }
  print({ event: 'ready' })
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() === '') continue
    const batch = JSON.parse(line) as { calls: GrpcCall[]; parallel?: boolean }
    if (batch.parallel === true) await Promise.all(batch.calls.map(run))
    else for (const [index, call] of batch.calls.entries()) await run(call, index)
    print({ event: 'batch', count: batch.calls.length })
  }
  client.close()
})
