// A plain Node HTTP/2 server (h2c, no TLS) for test/peers/grpc-node.ts, run as its own process:
// any method, `/status/<code>` answers <code>, any other path 200, each with the body "ok\n".
// Writes `{"event":"ready","port":N}` once it listens on a free 127.0.0.1 port.
import { createServer } from 'node:http2'

const server = createServer()
server.on('stream', (stream, headers) => {
  const status = /^\/status\/(\d{3})$/.exec(String(headers[':path']))?.[1]
  stream.respond({ ':status': Number(status ?? 200), 'content-type': 'text/plain' })
  // the body is read (and dropped) before the answer ends, so a request body is part of the exchange
  stream.resume()
  stream.end('ok\n')
})
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ event: 'ready', port: (server.address() as { port: number }).port })}\n`)
})
// the test's end of stdin closes when the test ends, even when it dies without stopping this server
process.stdin.resume()
process.stdin.once('end', () => process.exit(0))
process.once('SIGTERM', () => process.exit(0))
