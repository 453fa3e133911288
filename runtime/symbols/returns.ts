/**
 * The return instructions of a function, as file offsets, for uprobes placed where it returns.
 * Go functions must not get uretprobes: a uretprobe swaps the return address on the stack for the
 * kernel's trampoline, and Go moves goroutine stacks as they grow, walking each frame by its
 * return address; one that points into no Go function makes the runtime abort the program.
 *
 * The function's bytes are decoded from its entry to its end with iced-x86: on x86-64, Go puts no
 * data among its instructions, and a C compiler keeps jump tables in read-only data.
 */
import { statSync } from 'node:fs'
import { createRequire } from 'node:module'
import type * as Iced from 'iced-x86'
import { ElfError, ElfFile, MACHINE_X86_64, type FunctionSymbol } from './elf.ts'

export interface FunctionReturns {
  symbol: FunctionSymbol
  /** File offsets of the function's return instructions (their first byte, prefixes included), ascending. */
  offsets: readonly number[]
}

/** Larger than any function a compiler emits: a size past it is a misread table, not code. */
const MAX_FUNCTION_BYTES = 1 << 24
/** Functions remembered; each is a few numbers, and a plugin attaches to a few functions per binary. */
const CACHE_ENTRIES = 512
const cache = new Map<string, FunctionReturns>()

let iced: typeof Iced | undefined
/** The decoder, loaded on first use: its WebAssembly costs 20 MB and 50 ms, which only a plugin that attaches at returns should pay. */
function decoder(): typeof Iced {
  iced ??= createRequire(import.meta.url)('iced-x86') as typeof Iced
  return iced
}

/**
 * The return instructions (RET, RET imm16, with any prefixes) of function `symbol` of the ELF file
 * at `path` (found as functionFileOffset finds it, Go's .gopclntab included). x86-64 only. Throws
 * an ElfError: ENOSYMBOL (no such function), EINVAL (another instruction set, a size the symbol
 * table does not give, bytes that do not decode, no return instruction at all).
 * Remembered per file (device, inode, size, modification time) and symbol.
 * @example functionReturns('/usr/local/bin/server', 'crypto/tls.(*Conn).Write').offsets  // [0x1f6a3c, 0x1f6b10, 0x1f6b52]
 */
export function functionReturns(path: string, symbol: string): FunctionReturns {
  const stat = statSync(path, { bigint: true })
  const key = `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeNs}\0${symbol}`
  const cached = cache.get(key)
  if (cached !== undefined) {
    // most recently used last: the first key is the one to evict
    cache.delete(key)
    cache.set(key, cached)
    return cached
  }
  const found = readReturns(path, symbol)
  cache.set(key, found)
  if (cache.size > CACHE_ENTRIES) cache.delete(cache.keys().next().value!)
  return found
}

function readReturns(path: string, name: string): FunctionReturns {
  const elf = ElfFile.open(path)
  try {
    if (elf.machine !== MACHINE_X86_64) {
      throw new ElfError('EINVAL', `${path} is not x86-64 code (ELF machine ${elf.machine}): uprobes at return instructions are supported on x86-64 only`)
    }
    const symbol = elf.functionSymbol(name)
    if (symbol.size === 0n || symbol.size > BigInt(MAX_FUNCTION_BYTES)) {
      throw new ElfError('EINVAL', `${path}: ${symbol.table} gives function ${name} a size of ${symbol.size} bytes, so where it ends is not known and its return instructions cannot be found`)
    }
    const code = elf.read(BigInt(symbol.fileOffset), symbol.size, `the code of ${name}`)
    const offsets = decodeReturns(code, symbol.address, `${path}: function ${name}`).map((address) => symbol.fileOffset + Number(address - symbol.address))
    if (offsets.length === 0) {
      throw new ElfError('EINVAL', `${path}: function ${name} has no return instruction (it never returns, or leaves by a jump to another function); there is nowhere to attach at its returns`)
    }
    return { symbol, offsets }
  } finally {
    elf.close()
  }
}

/** Addresses of the near returns among `code`, decoded in a line from `address`; `what` names the function in errors. */
function decodeReturns(code: Buffer, address: bigint, what: string): bigint[] {
  const { Decoder, DecoderOptions, Instruction, Mnemonic } = decoder()
  const decoding = new Decoder(64, code, DecoderOptions.None)
  const instruction = new Instruction()
  try {
    decoding.ip = address
    const returns: bigint[] = []
    while (decoding.canDecode) {
      decoding.decodeOut(instruction)
      if (instruction.isInvalid) {
        throw new ElfError('EINVAL', `${what}: the bytes at 0x${instruction.ip.toString(16)}, ${instruction.ip - address} into it, ` +
          'do not decode as an x86-64 instruction, so its return instructions cannot be told apart from data; attach at its entry instead')
      }
      if (instruction.mnemonic === Mnemonic.Ret) returns.push(instruction.ip)
    }
    return returns
  } finally {
    instruction.free()
    decoding.free()
  }
}
