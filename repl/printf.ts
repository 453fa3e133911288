/**
 * bpftrace 0.17's `printf`: how it finds conversions in a format string and how it formats
 * each argument (`FormatString` in its `src/format_string.cpp`).
 *
 * bpftrace cuts the format after each conversion it knows and hands each piece with its one
 * argument to C's `snprintf`, always passing integers as 64 bits. So:
 * - `%d`, `%u`, `%x` read the low 32 bits (`%d` of 2^40 prints 0), `%hd` 16, `%hhd` 8, and
 *   `%ld`, `%lld`, `%jd`, `%zd`, `%td` all 64;
 * - `%%` before a conversion prints `%`, but text after the last conversion is printed as it
 *   is, so a trailing `%%` prints `%%`;
 * - flags are `-` and a width starting with `0`; precision works as in C.
 *
 * `conversions(format)` lists the conversions (for the argument checks), `formatPrintf` formats.
 */

export type PrintfType = 'integer' | 'string' | 'buffer'

export interface Conversion {
  /** the whole conversion, e.g. `%-10s` */
  text: string
  /** where it ends in the format string */
  end: number
  leftAlign: boolean
  zeroPad: boolean
  width: number
  /** undefined when the conversion has no `.N` */
  precision: number | undefined
  /** length modifier and conversion letter, e.g. `lu` */
  token: string
  type: PrintfType
}

export type PrintfArg = { type: 'integer'; value: bigint } | { type: 'string'; value: string }

const LENGTHS = ['hh', 'h', 'll', 'l', 'j', 'z', 't', '']
const INTEGER_TOKENS = LENGTHS.flatMap((length) => ['d', 'u', 'o', 'x', 'X', 'p'].map((letter) => length + letter))
const TOKEN_TYPES = new Map<string, PrintfType>([['s', 'string'], ['rx', 'buffer'], ['rh', 'buffer'], ['r', 'buffer'], ['c', 'integer'], ...INTEGER_TOKENS.map((token) => [token, 'integer'] as [string, PrintfType])])
const CONVERSION = new RegExp(`%(-?)([0-9]*)(?:\\.([0-9]+))?(${[...TOKEN_TYPES.keys()].join('|')})`, 'g')

export function conversions(format: string): Conversion[] {
  return [...format.matchAll(CONVERSION)].map((match) => ({
    text: match[0],
    end: match.index + match[0].length,
    leftAlign: match[1] === '-',
    zeroPad: match[2].startsWith('0'),
    width: match[2] === '' ? 0 : Number(match[2]),
    precision: match[3] === undefined ? undefined : Number(match[3]),
    token: match[4],
    type: TOKEN_TYPES.get(match[4])!,
  }))
}

/** How many bits of the 64-bit argument a length modifier makes snprintf read. */
function bitsOf(token: string): number {
  if (token.startsWith('hh')) return 8
  if (token.startsWith('h')) return 16
  if (/^[lljzt]/.test(token)) return 64
  return 32
}

function pad(body: string, conversion: Conversion, zeroAllowed: boolean): string {
  const width = conversion.width
  if (Buffer.byteLength(body) >= width) return body
  const fill = width - Buffer.byteLength(body)
  if (conversion.leftAlign) return body + ' '.repeat(fill)
  if (conversion.zeroPad && zeroAllowed) {
    const sign = body.startsWith('-') ? '-' : ''
    const prefix = body.startsWith('0x', sign.length) ? '0x' : ''
    return sign + prefix + '0'.repeat(fill) + body.slice(sign.length + prefix.length)
  }
  return ' '.repeat(fill) + body
}

function formatInteger(value: bigint, conversion: Conversion): string {
  const letter = conversion.token[conversion.token.length - 1]
  if (letter === 'p') {
    // glibc prints a null pointer as (nil), others as %#lx
    const pointer = BigInt.asUintN(64, value)
    return pad(pointer === 0n ? '(nil)' : `0x${pointer.toString(16)}`, conversion, pointer !== 0n)
  }
  const bits = bitsOf(conversion.token)
  const number = letter === 'd' ? BigInt.asIntN(bits, value) : BigInt.asUintN(bits, value)
  const negative = number < 0n
  const magnitude = negative ? -number : number
  let digits = letter === 'o' ? magnitude.toString(8) : letter === 'x' ? magnitude.toString(16) : letter === 'X' ? magnitude.toString(16).toUpperCase() : magnitude.toString(10)
  if (conversion.precision !== undefined) digits = conversion.precision === 0 && magnitude === 0n ? '' : digits.padStart(conversion.precision, '0')
  return pad((negative ? '-' : '') + digits, conversion, conversion.precision === undefined)
}

function formatString(value: string, conversion: Conversion): string {
  const bytes = Buffer.from(value)
  const text = conversion.precision !== undefined && bytes.length > conversion.precision ? bytes.subarray(0, conversion.precision).toString() : value
  return pad(text, conversion, false)
}

function formatOne(arg: PrintfArg, conversion: Conversion): string {
  if (conversion.token === 'c') return pad(String.fromCharCode(Number(BigInt.asUintN(8, arg.value as bigint))), conversion, false)
  if (arg.type === 'string') return formatString(arg.value, conversion)
  return formatInteger(arg.value, conversion)
}

/** The text bpftrace prints for `printf(format, args...)`; `args` match `conversions(format)`. */
export function formatPrintf(format: string, args: PrintfArg[]): string {
  const specs = conversions(format)
  let text = ''
  let from = 0
  for (let i = 0; i < args.length; i++) {
    const spec = specs[i]
    const literal = format.slice(from, spec.end - spec.text.length)
    text += literal.replaceAll('%%', '%') + formatOne(args[i], spec)
    from = spec.end
  }
  return text + format.slice(from)
}
