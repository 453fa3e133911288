/**
 * The gRPC service the Node peers serve and call: `periscope.test.Echo`, defined with grpc-js's
 * own service definition (no .proto, no code generation). Messages are JSON, since the payload
 * format is nothing Periscope looks at; the wire is ordinary gRPC (content-type application/grpc,
 * 5-byte length-prefixed messages, trailers).
 *
 * - `Say` (unary): the request's `outcome` decides the answer: `ok`, `not-found` (NOT_FOUND),
 *   `throw` (the handler throws: UNKNOWN), `internal` (INTERNAL), `deadline` (the server answers
 *   DEADLINE_EXCEEDED itself, as a server whose own downstream call timed out does), `stall`
 *   (computes synchronously for `delayMs`, blocking the server's event loop, and never answers:
 *   with a client deadline shorter than that, the client resets the stream at its deadline, and
 *   the server's own deadline timer, which runs once the loop is free and before it reads the
 *   reset, then sends DEADLINE_EXCEEDED; the wire is the same every time).
 * - `Count` (server streaming): `count` messages, `intervalMs` apart, the first after `intervalMs`.
 * - `Sum` (client streaming): one answer, the sum and count of what the client sent, after it ended.
 * - `Chat` (bidirectional): each message echoed at once; the server ends when the client does.
 */
import type { ServiceDefinition } from '@grpc/grpc-js'

export const ECHO_SERVICE = 'periscope.test.Echo'

export type SayOutcome = 'ok' | 'not-found' | 'throw' | 'internal' | 'deadline' | 'stall'

export interface SayRequest { name: string; outcome: SayOutcome; delayMs?: number }
export interface SayReply { message: string }
export interface CountRequest { count: number; intervalMs: number }
export interface CountReply { index: number }
export interface SumRequest { value: number }
export interface SumReply { sum: number; count: number }
export interface ChatMessage { text: string }

const serialize = (value: unknown): Buffer => Buffer.from(JSON.stringify(value))
const deserialize = (bytes: Buffer): any => JSON.parse(bytes.toString())

function method(name: string, requestStream: boolean, responseStream: boolean) {
  return {
    path: `/${ECHO_SERVICE}/${name}`,
    requestStream,
    responseStream,
    requestSerialize: serialize,
    requestDeserialize: deserialize,
    responseSerialize: serialize,
    responseDeserialize: deserialize,
    originalName: name,
  }
}

export const echoService: ServiceDefinition = {
  Say: method('Say', false, false),
  Count: method('Count', false, true),
  Sum: method('Sum', true, false),
  Chat: method('Chat', true, true),
}
