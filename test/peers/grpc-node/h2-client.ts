// A Node HTTP/2 client (node:http2, so nghttp2's HPACK encoder) for test/peers/grpc-node.ts, run
// as its own process. Argument: the server's URL (`http://127.0.0.1:port`). It opens one session
// (one connection), writes `{"event":"ready"}` once connected, then reads batches of requests from
// stdin, one JSON line each (`{ requests: { method, path, headers? }[] }`), makes them one after
// the other on that session and writes one `{"event":"request",...}` line each, then
// `{"event":"batch","count":N}`. It closes the session and exits at the end of stdin.
import { connect } from 'node:http2'
import { createInterface } from 'node:readline'

interface Request { method: string; path: string; headers?: Record<string, string> }

const print = (line: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(line)}\n`)
const nowNs = (): string => String(BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n)

const session = connect(process.argv[2]!)
session.once('error', (error) => {
  process.stderr.write(`h2 client: session to ${process.argv[2]} failed: ${error.message}\n`)
  process.exit(1)
})

function request({ method, path, headers }: Request): Promise<number> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': method, ':path': path, ...headers })
    let status = 0
    stream.once('response', (response) => (status = Number(response[':status'])))
    stream.once('error', reject)
    stream.resume()
    stream.once('end', () => resolve(status))
    stream.end()
  })
}

session.once('connect', async () => {
  print({ event: 'ready' })
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() === '') continue
    const batch = JSON.parse(line) as { requests: Request[] }
    for (const [index, each] of batch.requests.entries()) {
      const startNs = nowNs()
      const status = await request(each)
      print({ event: 'request', index, method: each.method, path: each.path, status, startNs, endNs: nowNs() })
    }
    print({ event: 'batch', count: batch.requests.length })
  }
  session.close()
})
