/**
 * A hand-written stand-in for the generated bpf/lib/index.types.ts, for plugin tests that run
 * without the kernel: one 64-byte record, numbered so tests can look for gaps.
 */
export interface GenEvent {
  seq: number
  pid: number
  tid: number
  timeNs: bigint
  value: number
  comm: string
}

export const GEN_RECORD_SIZE = 64

export function decodeGen(view: DataView, offset: number): GenEvent {
  let comm = ''
  for (let i = 0; i < 16; i++) {
    const c = view.getUint8(offset + 32 + i)
    if (c === 0) break
    comm += String.fromCharCode(c)
  }
  return {
    seq: Number(view.getBigUint64(offset, true)),
    pid: view.getUint32(offset + 8, true),
    tid: view.getUint32(offset + 12, true),
    timeNs: view.getBigUint64(offset + 16, true),
    value: Number(view.getBigUint64(offset + 24, true)),
    comm,
  }
}

export const decoders: Record<string, (view: DataView, offset: number) => object> = {
  'gen:events': decodeGen,
  'gen:other': decodeGen,
  'secret:events': decodeGen,
}
