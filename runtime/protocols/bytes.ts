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

/**
 * UTF-8 bytes as a string (isolates have no TextDecoder). Invalid sequences become U+FFFD; a
 * character cut at `end` is dropped.
 */
export function utf8(bytes: Uint8Array, start: number, end: number): string {
  let ascii = true
  for (let i = start; i < end; i++) {
    if (bytes[i]! >= 0x80) {
      ascii = false
      break
    }
  }
  if (ascii) return latin1(bytes, start, end)
  let text = ''
  const units: number[] = []
  for (let i = start; i < end;) {
    const b = bytes[i]!
    let code = 0xfffd
    let size = 1
    if (b < 0x80) {
      code = b
    } else if (b >= 0xc2 && b < 0xf5) {
      size = b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4
      if (i + size > end) break
      code = b & (0xff >> (size + 1))
      for (let k = 1; k < size; k++) {
        const c = bytes[i + k]!
        if ((c & 0xc0) !== 0x80) {
          code = -1
          size = k
          break
        }
        code = (code << 6) | (c & 0x3f)
      }
      if (code < 0 || (size === 3 && (code < 0x800 || (code >= 0xd800 && code < 0xe000))) || (size === 4 && (code < 0x10000 || code > 0x10ffff))) code = 0xfffd
    }
    if (code > 0xffff) {
      code -= 0x10000
      units.push(0xd800 + (code >> 10), 0xdc00 + (code & 0x3ff))
    } else {
      units.push(code)
    }
    i += size
    if (units.length >= 8192) {
      text += String.fromCharCode.apply(null, units)
      units.length = 0
    }
  }
  return text + String.fromCharCode.apply(null, units)
}
