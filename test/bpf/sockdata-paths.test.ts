/**
 * sockdata's attach paths give the same records. Socket data comes from the entry and return of
 * the stream socket functions where fentry is allowed; else from the sock_recv_length and
 * sock_send_length tracepoints (with the sends' syscall entries) where the kernel has them; else
 * from kprobes on the socket functions; else from the syscall tracepoints. Every path the feature probes allow here is opened forced onto
 * itself, sees the same python peer traffic (every data syscall, IPv4, IPv6, unix, sendfile, a
 * cut payload, plain files), and its records must equal the expected ones, and each other's,
 * field by field. What differs by construction is compared by shape: times (start <= end, in
 * order), connection ids (which records share one), pids and ephemeral ports (whose they are).
 * A path this kernel refuses is still checked: offered first, present in the object, refused
 * by its feature probe with a reason the run log repeats, and verified by the kernel wherever
 * its program type loads at all.
 */
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { BpfError } from '../../runtime/bpf/errors.ts'
import { probeProgramType, type AttachKind, type FeatureResult } from '../../runtime/bpf/features.ts'
import { ObjectSpec } from '../../runtime/bpf/object.ts'
import { catalogue, probeAlternative, programsOf, socketFunctions, type AttachGroup } from '../../runtime/library/catalogue.ts'
import { objectPath, requireFeature } from './kernel.ts'
import {
  AF_INET, AF_INET6, AF_UNIX, CLIENT, CLOSE, Capture, DATA, EGRESS, FLAG_SENDFILE, FLAG_TRUNCATED, HTTP, INGRESS, OPEN, Peer, REQUEST, RESPONSE, SERVER,
  type Rec, exchange, hex, killPeers, recv, registeringPeers, requestResponse, send, startClient, startServer,
} from './sockdata-peers.ts'

const paths = ['fentry', 'tp_btf', 'kprobe', 'tracepoint'] as const
const socketData = catalogue.sockdata.attach.find((point) => point.what === 'socket data')!
const group = (kind: AttachKind) => socketData.alternatives.find((a) => a.kind === kind) as AttachGroup
const work = mkdtempSync(join(tmpdir(), 'periscope-sockdata-paths-'))

after(() => {
  killPeers()
  rmSync(work, { recursive: true, force: true })
})

/** Each path's probe answer; a probe that could not tell fails the test instead of passing for a refusal. */
async function verdicts(): Promise<Record<(typeof paths)[number], FeatureResult>> {
  const answers = Object.fromEntries(await Promise.all(paths.map(async (kind) => [kind, await probeAlternative(group(kind))] as const)))
  for (const kind of paths) if (answers[kind].status === 'failed') throw new Error(`the ${kind} attach probe failed: ${answers[kind].reason}`)
  return answers as Record<(typeof paths)[number], FeatureResult>
}

test('the catalogue offers fentry, then the socket tracepoints, then kprobes, then syscall tracepoints for socket data, and the object has each program where it says', () => {
  assert.deepEqual(socketData.alternatives.map((a) => a.kind), paths)
  const spec = ObjectSpec.open(objectPath('sockdata'))
  try {
    const sections = new Map(spec.programs().map((p) => [p.name, p.section]))
    const expected = new Map<string, string>([['on_recv_length', 'tp_btf/sock_recv_length'], ['on_send_length', 'tp_btf/sock_send_length']])
    for (const f of socketFunctions) {
      expected.set(`fentry_${f}`, `fentry/${f}`).set(`fexit_${f}`, `fexit/${f}`)
      expected.set(`kprobe_${f}`, `kprobe/${f}`).set(`kretprobe_${f}`, `kretprobe/${f}`)
    }
    for (const syscall of ['write', 'read', 'writev', 'readv', 'sendto', 'recvfrom', 'sendmsg', 'recvmsg', 'sendmmsg', 'recvmmsg']) {
      expected.set(`enter_${syscall}`, `tracepoint/syscalls/sys_enter_${syscall}`).set(`exit_${syscall}`, `tracepoint/syscalls/sys_exit_${syscall}`)
    }
    const offered = socketData.alternatives.flatMap(programsOf)
    assert.deepEqual(new Map(offered.map((p) => [p.program, sections.get(p.program)])), expected)
    // the socket tracepoints' path takes the sends' starts and the mmsg calls from the syscall path's programs
    assert.deepEqual(group('tp_btf').programs.filter((p) => p.kind === 'tracepoint').map((p) => p.program),
      ['enter_write', 'enter_writev', 'enter_sendto', 'enter_sendmsg', 'enter_sendmmsg', 'exit_sendmmsg', 'enter_recvmmsg', 'exit_recvmmsg'])
    assert.deepEqual(group('kprobe').programs.filter((p) => p.kind === 'kprobe').map((p) => [p.program, p.function, p.retprobe === true]),
      socketFunctions.flatMap((f) => [[`kprobe_${f}`, f, false], [`kretprobe_${f}`, f, true]]))
  } finally {
    spec.close()
  }
  // functions the kernel really has (not inlined away), so fentry and kprobes could find them
  const symbols = new Set(readFileSync('/proc/kallsyms', 'utf8').split('\n').filter((line) => / [tT] /.test(line)).map((line) => line.split(' ')[2]))
  assert.deepEqual(socketFunctions.filter((f) => !symbols.has(f)), [])
})

test('the run log says how socket data is captured and why better ways were refused; only that path\'s programs load', async () => {
  const answers = await verdicts()
  const chosen = paths.find((kind) => answers[kind].status === 'supported')!
  assert.ok(answers.tracepoint.status === 'supported', 'tracepoints are the fallback every kernel Periscope runs on has')
  // this machine's kernel has no kprobe PMU at all: the probe must say exactly that
  if (!existsSync('/sys/bus/event_source/devices/kprobe')) {
    assert.equal(answers.kprobe.status, 'unsupported')
    assert.match((answers.kprobe as { reason: string }).reason, /^kprobes are not available on this kernel \(no kprobe PMU, CONFIG_KPROBES off\)/)
  }
  // this machine's kernel (6.18) refuses fentry, has the socket tracepoints, and attaches tp_btf programs
  if (answers.fentry.status === 'unsupported' && existsSync('/sys/kernel/tracing/events/sock/sock_recv_length')) {
    assert.equal(chosen, 'tp_btf', `tp_btf: ${JSON.stringify(answers.tp_btf)}`)
  }
  const refused = paths.slice(0, paths.indexOf(chosen)).map((kind) => `${kind}: ${(answers[kind] as { reason: string }).reason}`)
  const capture = await Capture.open({ subscribe: false })
  try {
    const fallback = refused.length > 0 ? ` (${chosen} fallback: ${refused.join('; ')})` : ''
    assert.deepEqual(capture.log.filter((line) => line.startsWith('sockdata: socket data ')), [`sockdata: socket data from ${group(chosen).how}${fallback}`])
    const loaded = new Set(capture.library.programs().map((p) => p.name))
    const attached = new Set(capture.library.links().map((l) => l.program))
    const mine = new Set(group(chosen).programs.map((p) => p.program))
    for (const kind of paths) {
      for (const { program } of group(kind).programs) {
        assert.equal(loaded.has(program), mine.has(program), `${program} loaded`)
        assert.equal(attached.has(program), mine.has(program), `${program} attached`)
      }
    }
  } finally {
    await capture.close()
  }
})

test('the socket function programs pass the verifier wherever the kernel loads their program type', async (t) => {
  const answers = await verdicts()
  const load = async (kind: 'fentry' | 'kprobe') => {
    const spec = ObjectSpec.open(objectPath('sockdata'))
    const mine = new Set(group(kind).programs.map((p) => p.program))
    for (const p of spec.programs()) spec.setAutoload(p.name, mine.has(p.name))
    const object = await spec.load()
    const count = object.programs().length
    object.close()
    return count
  }
  // a kprobe program loads without kprobes (uprobes are kprobe programs too): its load is the verifier's verdict
  if (requireFeature(t, 'kprobe programs', probeProgramType('kprobe'))) assert.equal(await load('kprobe'), 2 * socketFunctions.length)
  // fentry programs load only where fentry is allowed; a kernel that refuses them does so before verifying
  try {
    assert.equal(await load('fentry'), 2 * socketFunctions.length)
  } catch (error) {
    if (!(error instanceof BpfError)) throw error
    assert.equal(answers.fentry.status, 'unsupported', `fentry programs failed to load: ${error.message}`)
    assert.ok((answers.fentry as { reason: string }).reason.endsWith(`: ${error.code}`), `the load failed as the probe did (${error.code}): ${error.message}`)
    assert.doesNotMatch(error.message, /BEGIN PROG LOAD LOG|processed \d+ insns/, 'no verifier log: the kernel refused before verifying')
  }
})

/** A record with what differs between paths by construction replaced by whose it is. */
interface Normal {
  who: string
  stream: string
  /** Which of `who`'s connections, by first appearance. */
  conn: number
  kind: number
  direction: number
  role: number
  protocol: number
  flags: number
  family: number
  local: string
  remote: string
  local_port: string
  remote_port: string
  fd: number
  thread: string
  comm: string
  position: number
  bytes: number
  captured: number
  data: string
}

/**
 * The peers' records, in a fixed order (by peer, then ring, then ring order, which within one
 * single-threaded peer is syscall order). Checks the shape of what it replaces: times rise
 * along a ring and each ends after it starts; a connection keeps its fd.
 */
function normalize(records: Rec[], peers: [string, number][], ports: Map<number, string>): Normal[] {
  const normal: Normal[] = []
  for (const [who, pid] of peers) {
    const mine = records.filter((r) => r.pid === pid)
    const connections: number[] = []
    const fds = new Map<number, number>()
    for (const stream of [...new Set(mine.map((r) => r.stream))].sort()) {
      let previous: Rec | undefined
      for (const r of mine.filter((m) => m.stream === stream)) {
        assert.ok(r.start_ns > 0 && r.start_ns <= r.end_ns, `${who} ${stream}: start ${r.start_ns} <= end ${r.end_ns}`)
        if (previous !== undefined) assert.ok(r.start_ns >= previous.start_ns && r.end_ns >= previous.end_ns, `${who} ${stream}: records in time order`)
        previous = r
        if (!connections.includes(r.conn_id)) connections.push(r.conn_id)
        assert.equal(fds.get(r.conn_id) ?? r.fd, r.fd, `${who}: a connection keeps its fd`)
        fds.set(r.conn_id, r.fd)
        const port = (p: number) => (p === 0 ? '0' : ports.get(p) ?? `unknown port ${p}`)
        normal.push({
          who, stream, conn: connections.indexOf(r.conn_id), kind: r.kind, direction: r.direction, role: r.role, protocol: r.protocol, flags: r.flags,
          family: r.family, local: r.local, remote: r.remote, local_port: port(r.local_port), remote_port: port(r.remote_port), fd: r.fd,
          thread: r.tid === r.pid ? 'main' : `thread ${r.tid}`, comm: r.comm, position: r.position, bytes: r.bytes, captured: r.captured, data: r.data.toString('latin1'),
        })
      }
    }
  }
  return normal
}

/** Payloads are cut at this size; small, so that every cut one still travels in one segment. */
const CAPTURE = 100
const BIG = `HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n${'x'.repeat(300)}`
const REQUEST2 = 'POST /two HTTP/1.1\r\nContent-Length: 0\r\n\r\n'
const first = ['GET /gather HTTP/1.1\r\n', 'Host: a\r\n', 'X-Part: 3\r\n\r\n']
const second = ['GET /second', ' HTTP/1.1\r\n', '\r\n']
const third = [['GET /m1 HTTP/1.1\r\n', '\r\n'], ['GET /m2 HTTP/1.1\r\n\r\n']]
const BODY = 'b'.repeat(5000)
const HEADERS = `HTTP/1.1 200 OK\r\nContent-Length: ${BODY.length}\r\n\r\n`

/**
 * The same traffic for every path: on one IPv4 connection each data syscall in turn (recvfrom
 * and sendto, read and write, readv and writev, recvmsg and sendmsg, recvmmsg and sendmmsg,
 * sendfile), payloads cut at the capture size; then an IPv6 exchange, a unix socketpair, and
 * plain file and pipe I/O. Each read runs once what it reads is in the socket (the peers wait
 * for the test), so every path sees the same calls return the same bytes.
 */
async function traffic(capture: Capture): Promise<Normal[]> {
  const file = join(work, 'body.bin')
  writeFileSync(file, BODY)
  const { server, port: listening } = startServer([
    recv(REQUEST), send(RESPONSE), ['read', REQUEST2.length], ['write', hex(BIG)],
    ['wait'], ['readv', [5, 10, 100]],
    ['wait'], ['recvmsg_into', [4, 4, 200]],
    ['wait'], ['recvmmsg', [[4, 6], [100]]], send(HEADERS), ['sendfile', file],
    ['wait'],
  ])
  const port = await listening
  const { client, clientPort } = await startClient(port, [
    send(REQUEST), recv(RESPONSE), ['write', hex(REQUEST2)],
    ['wait'], ['read', BIG.length], ['writev', first.map(hex)],
    ['wait'], ['sendmsg', second.map(hex)],
    ['wait'], ['sendmmsg', third.map((parts) => parts.map(hex))],
    // sendfile's pages may reach this end after the call returns: one call takes them all
    ['wait'], ['recv_waitall', HEADERS.length + BODY.length],
  ])
  const step = async (writer: Peer, occurrence: number, reader: Peer) => {
    await writer.line('waiting', occurrence)
    reader.resume()
  }
  await client.line('waiting', 1)
  await step(server, 1, client)
  await step(client, 2, server)
  await step(server, 2, client)
  await step(client, 3, server)
  await step(server, 3, client)
  await step(client, 4, server)
  await step(server, 4, client)
  server.resume()
  await Promise.all([server.finished(), client.finished()])
  const v6 = await exchange(...requestResponse(), { family: 'inet6' })
  const pair = new Peer({ role: 'pair', request: hex(REQUEST), response: hex(RESPONSE) })
  await pair.finished()
  const files = new Peer({ role: 'files', path: join(work, 'request.txt'), data: hex(REQUEST) })
  await files.finished()
  const peers: [string, number][] = [['server', server.pid], ['client', client.pid], ['server6', v6.server.pid], ['client6', v6.client.pid], ['pair', pair.pid], ['files', files.pid]]
  const ports = new Map([[port, 'server'], [clientPort, 'client'], [v6.port, 'server6'], [v6.clientPort, 'client6']])
  const records = peers.flatMap(([, pid]) => capture.of(pid))
  return normalize(records, peers, ports)
}

/** One connection's end as the records describe it. */
interface End { who: string; conn: number; role: number; family: number; local: string; remote: string; local_port: string; remote_port: string }

/** What `traffic` must give on any path, fd aside (compared between paths), in normalize's order. */
function expectedRecords(): Omit<Normal, 'fd'>[] {
  const positions = new Map<string, number>()
  const data = (end: End, direction: number, text: string, flags = 0): Omit<Normal, 'fd'> => {
    const key = `${end.who} ${end.conn} ${direction}`
    const position = positions.get(key) ?? 0
    positions.set(key, position + text.length)
    const captured = flags & FLAG_SENDFILE ? 0 : Math.min(text.length, CAPTURE)
    if (captured < text.length && !(flags & FLAG_SENDFILE)) flags |= FLAG_TRUNCATED
    return { ...end, stream: 'http', kind: DATA, direction, protocol: HTTP, flags, thread: 'main', comm: 'python3', position, bytes: text.length, captured, data: text.slice(0, captured) }
  }
  // opened before any data classified the connection; closed as what it was classified
  const opened = (end: End) => lifecycle(end, OPEN, 0)
  const closed = (end: End) => lifecycle(end, CLOSE, HTTP)
  const lifecycle = (end: End, kind: number, protocol: number): Omit<Normal, 'fd'> =>
    ({ ...end, stream: 'connections', kind, direction: 0, protocol, flags: 0, thread: 'main', comm: 'python3', position: 0, bytes: 0, captured: 0, data: '' })

  const inet = (who: string, role: number, family: number, address: string, local: string, remote: string): End =>
    ({ who, conn: 0, role, family, local: address, remote: address, local_port: local, remote_port: remote })
  const server = inet('server', SERVER, AF_INET, '127.0.0.1', 'server', 'client')
  const client = inet('client', CLIENT, AF_INET, '127.0.0.1', 'client', 'server')
  const loopback6 = '00000000000000000000000000000001'
  const server6 = inet('server6', SERVER, AF_INET6, loopback6, 'server6', 'client6')
  const client6 = inet('client6', CLIENT, AF_INET6, loopback6, 'client6', 'server6')
  const none = '0'.repeat(32)
  const unix = (conn: number): End => ({ who: 'pair', conn, role: 0, family: AF_UNIX, local: none, remote: none, local_port: '0', remote_port: '0' })
  const [m1, m2] = third.map((parts) => parts.join(''))
  return [
    opened(server), closed(server),
    data(server, INGRESS, REQUEST), data(server, EGRESS, RESPONSE), data(server, INGRESS, REQUEST2), data(server, EGRESS, BIG),
    data(server, INGRESS, first.join('')), data(server, INGRESS, second.join('')),
    // recvmmsg's first message takes 10 bytes across its two iovecs, the second the rest
    data(server, INGRESS, (m1 + m2).slice(0, 10)), data(server, INGRESS, (m1 + m2).slice(10)),
    data(server, EGRESS, HEADERS), data(server, EGRESS, BODY, FLAG_SENDFILE),

    opened(client), closed(client),
    data(client, EGRESS, REQUEST), data(client, INGRESS, RESPONSE), data(client, EGRESS, REQUEST2), data(client, INGRESS, BIG),
    data(client, EGRESS, first.join('')), data(client, EGRESS, second.join('')), data(client, EGRESS, m1), data(client, EGRESS, m2),
    data(client, INGRESS, HEADERS + BODY),

    opened(server6), closed(server6), data(server6, INGRESS, REQUEST), data(server6, EGRESS, RESPONSE),
    opened(client6), closed(client6), data(client6, EGRESS, REQUEST), data(client6, INGRESS, RESPONSE),

    // a socketpair is neither connected nor accepted: its ends appear with their data
    closed(unix(0)), closed(unix(1)),
    data(unix(0), EGRESS, REQUEST), data(unix(1), INGRESS, REQUEST), data(unix(1), EGRESS, RESPONSE), data(unix(0), INGRESS, RESPONSE),
  ]
}

test('every path this kernel allows gives the same records for the same traffic', async () => {
  const answers = await verdicts()
  const allowed = paths.filter((kind) => answers[kind].status === 'supported')
  assert.ok(allowed.includes('tracepoint'))
  const seen = new Map<string, Normal[]>()
  for (const kind of allowed) {
    const capture = await Capture.open({ attachKind: kind })
    try {
      assert.ok(capture.log.includes(`sockdata: socket data from ${group(kind).how}`), `forced onto ${kind}: ${capture.log.join(' | ')}`)
      // only the peers' records: other HTTP on the host could fill the ring
      capture.want(HTTP, { captureBytes: CAPTURE, pidFilter: true })
      const records = await registeringPeers((pid) => capture.target(HTTP, pid), () => traffic(capture))
      // exact, flags included: a lost record of the peers would be missing or flag the next one
      assert.deepEqual(records.map(({ fd: _fd, ...rest }) => rest), expectedRecords(), `the ${kind} path's records`)
      seen.set(kind, records)
    } finally {
      await capture.close()
    }
  }
  const [reference, ...others] = allowed
  for (const kind of others) assert.deepEqual(seen.get(kind), seen.get(reference), `${kind} and ${reference} records`)
})
