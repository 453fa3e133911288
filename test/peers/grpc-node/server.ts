// The @grpc/grpc-js server of test/peers/grpc-node.ts, run as its own process. Argument: a JSON
// object `{ tls?: { cert, key } }` (PEM file paths). It listens on a free 127.0.0.1 port and
// writes JSON lines: `{"event":"ready","port":N}` once it listens, then for every call it
// handled `{"event":"handled","method":...,"outcome":...,"cancelled":bool}`, which failure messages show.
import * as grpc from '@grpc/grpc-js'
import { readFileSync } from 'node:fs'
import { echoService } from './echo-service.ts'
import type { ChatMessage, CountReply, CountRequest, SayReply, SayRequest, SumReply, SumRequest } from './echo-service.ts'

const options = JSON.parse(process.argv[2] ?? '{}') as { tls?: { cert: string; key: string } }

const print = (line: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(line)}\n`)
const handled = (method: string, call: { cancelled: boolean }, extra: Record<string, unknown> = {}): void =>
  print({ event: 'handled', method: `/periscope.test.Echo/${method}`, cancelled: call.cancelled, ...extra })

function say(call: grpc.ServerUnaryCall<SayRequest, SayReply>, callback: grpc.sendUnaryData<SayReply>): void {
  const { name, outcome, delayMs } = call.request
  handled('Say', call, { outcome })
  switch (outcome) {
    case 'ok': return callback(null, { message: `hello ${name}` })
    case 'not-found': return callback({ code: grpc.status.NOT_FOUND, details: `no greeting for ${name}` })
    case 'internal': return callback({ code: grpc.status.INTERNAL, details: 'the handler failed' })
    case 'deadline': return callback({ code: grpc.status.DEADLINE_EXCEEDED, details: 'the backend did not answer in time' })
    case 'throw': throw new Error('the handler threw')
    case 'stall': {
      const until = Date.now() + (delayMs ?? 1000)
      while (Date.now() < until) {
        // busy: nothing of the event loop runs, neither the client's reset nor the deadline timer
      }
      return
    }
  }
}

function count(call: grpc.ServerWritableStream<CountRequest, CountReply>): void {
  const { count, intervalMs } = call.request
  let index = 0
  const timer = setInterval(() => {
    call.write({ index: index++ })
    if (index < count) return
    clearInterval(timer)
    call.end()
    handled('Count', call, { sent: index })
  }, intervalMs)
  call.once('cancelled', () => clearInterval(timer))
}

function sum(call: grpc.ServerReadableStream<SumRequest, SumReply>, callback: grpc.sendUnaryData<SumReply>): void {
  let total = 0
  let received = 0
  call.on('data', (message: SumRequest) => {
    total += message.value
    received++
  })
  call.once('end', () => {
    callback(null, { sum: total, count: received })
    handled('Sum', call, { received })
  })
}

function chat(call: grpc.ServerDuplexStream<ChatMessage, ChatMessage>): void {
  let received = 0
  call.on('data', (message: ChatMessage) => {
    received++
    call.write({ text: `echo ${message.text}` })
  })
  call.once('end', () => {
    call.end()
    handled('Chat', call, { received })
  })
}

const server = new grpc.Server()
server.addService(echoService, { Say: say, Count: count, Sum: sum, Chat: chat })
const credentials = options.tls === undefined
  ? grpc.ServerCredentials.createInsecure()
  : grpc.ServerCredentials.createSsl(null, [{ cert_chain: readFileSync(options.tls.cert), private_key: readFileSync(options.tls.key) }], false)
server.bindAsync('127.0.0.1:0', credentials, (error, port) => {
  if (error !== null) {
    process.stderr.write(`grpc-node server: cannot listen on 127.0.0.1: ${error.message}\n`)
    process.exit(1)
  }
  print({ event: 'ready', port })
})
// the test's end of stdin closes when the test ends, even when it dies without stopping this server
process.stdin.resume()
process.stdin.once('end', () => process.exit(0))
process.once('SIGTERM', () => {
  server.forceShutdown()
  process.exit(0)
})
