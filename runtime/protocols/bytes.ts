/**
 * Byte helpers for the protocol parsers. Parsers run inside plugin isolates, which have only V8's
 * builtins (no TextDecoder, no Buffer), so text is decoded here by hand.
 */

/** Wire text as a string, one character per byte (ISO-8859-1): header values are octets, not UTF-8. */
export function latin1(bytes: Uint8Array, start: number, end: number): string {
  if (end - start < 16) {
    let text = ''
    for (let i = start; i < end; i++) text += String.fromCharCode(bytes[i]!)
    return text
  }
  let text = ''
  // apply() takes the typed array as its argument list; slices keep under V8's argument limit
  for (let at = start; at < end; at += 8192) {
    const slice = bytes.subarray(at, Math.min(end, at + 8192))
    text += String.fromCharCode.apply(null, slice as unknown as number[])
  }
  return text
}

/** Bytes of an ASCII string, for comparing wire bytes against constants without decoding them. */
export function ascii(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length)
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i) & 0xff
  return bytes
}

/** Whether `bytes[at..]` equals `expected`, which is lower case, ignoring the case of ASCII letters. */
export function equalsLowerCase(bytes: Uint8Array, at: number, expected: Uint8Array): boolean {
  if (at + expected.length > bytes.length) return false
  for (let i = 0; i < expected.length; i++) {
    let c = bytes[at + i]!
    if (c >= 65 && c <= 90) c |= 0x20
    if (c !== expected[i]) return false
  }
  return true
}

/** Whether `bytes[at..]` equals `expected` exactly. */
export function equalsBytes(bytes: Uint8Array, at: number, expected: Uint8Array): boolean {
  if (at < 0 || at + expected.length > bytes.length) return false
  for (let i = 0; i < expected.length; i++) if (bytes[at + i] !== expected[i]) return false
  return true
}

/** The first index of `byte` in `bytes[from, to)`, or -1. indexOf is native, so it beats a JS loop. */
export function indexOfByte(bytes: Uint8Array, byte: number, from: number, to: number): number {
  const at = bytes.indexOf(byte, from)
  return at < 0 || at >= to ? -1 : at
}
