/**
 * Whole bpftrace programs through Periscope's parser, checker, evaluator and printers, against
 * Debian's bpftrace 0.17 on the same program: BEGIN probes over literal values (no workload, so
 * the output is deterministic), printf with random conversions, and the error messages of bad
 * programs, column markers included.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { UserSpaceAggregator } from '../../repl/bpftrace/aggregate.ts'
import { BpftraceErrors } from '../../repl/bpftrace/errors.ts'
import { Evaluator, type TraceEvent } from '../../repl/bpftrace/evaluate.ts'
import { compileProgram } from '../../repl/bpftrace/program.ts'
import { exitJson, exitText, mapJson, mapText, printfJson } from '../../repl/printers.ts'
import { bpftraceErrors, runBpftrace } from './repl-bpftrace.ts'

const beginEvent: TraceEvent = { pid: 1, tid: 1, uid: 0, gid: 0, comm: 'bpftrace', cpu: 0, nsecs: 0n }

/** What Periscope prints for a BEGIN/END program: its printf and print output, then the maps. */
function ours(source: string, json = false): string {
  const checked = compileProgram(source)
  const aggregator = new UserSpaceAggregator(checked.maps)
  let output = ''
  const evaluator = new Evaluator(checked, aggregator, {
    printf: (text) => { output += json ? printfJson(text) : text },
    print: (map) => { output += json ? mapJson(map) : mapText(map) },
    exit: () => {},
  }, 0n)
  evaluator.begin(beginEvent)
  evaluator.end(beginEvent)
  return output + (json ? exitJson(aggregator.snapshots()) : exitText(aggregator.snapshots()))
}

// NAME / RUN cases in the spirit of bpftrace's runtime tests; EXPECT is bpftrace's own output
const CASES: [name: string, program: string][] = [
  ['printf of every integer conversion', 'BEGIN { printf("%d|%u %x %X %o|%ld %lu %lx|%hd %hu %hhd %hhu|%c|%p %p\\n", -5, -1, 255, 255, 8, -5, -1, -1, 70000, -1, 300, -1, 65, 0, 4096); exit(); }'],
  ['printf widths, precision and text after the last conversion', 'BEGIN { printf("[%5d][%-5d][%05d][%.3d][%8.3x][%-10s][%10s][%.2s] 100%%\\n", 42, 42, -42, 7, 255, "left", "right", "cut"); exit(); }'],
  ['printf %d reads the low 32 bits of a 64-bit value', 'BEGIN { printf("%d %u %x %lld\\n", 1 << 40, 0x1ffffffff, -1, 1 << 40); exit(); }'],
  ['count by two keys, sorted by value', 'BEGIN { @[1, "b"] = count(); @[1, "b"] = count(); @[2, "a"] = count(); @[3, "c"] = count(); @[3, "c"] = count(); @[3, "c"] = count(); exit(); }'],
  ['sum, min, max and avg with negative values', 'BEGIN { @s = sum(-4); @s = sum(10); @mn = min(7); @mn = min(-3); @mx = max(3); @mx = max(9); @a = avg(3); @a = avg(4); @neg = max(-5); exit(); }'],
  ['hist over zero, negatives, powers of two and 2^40', 'BEGIN { @h = hist(0); @h = hist(-1); @h = hist(1); @h = hist(2); @h = hist(3); @h = hist(1023); @h = hist(1024); @h = hist(1 << 40); exit(); }'],
  ['lhist with values below, inside and above the range', 'BEGIN { @l = lhist(-1, 0, 100, 10); @l = lhist(0, 0, 100, 10); @l = lhist(55, 0, 100, 10); @l = lhist(100, 0, 100, 10); @l = lhist(1000, 0, 100, 10); @k = lhist(2048, 1024, 4096, 1024); exit(); }'],
  ['stats per string key', 'BEGIN { @s["read"] = stats(10); @s["read"] = stats(30); @s["write"] = stats(5); exit(); }'],
  ['scratch variables and arithmetic', 'BEGIN { $a = 7; $b = $a * 6 - 2; @x = $b / 3; @y = $b % 7; @z = ($a > 3) && ($b < 100); @w = !0; @t = $a == 7 ? 1 : 2; exit(); }'],
  ['a keyless count() cleared prints 0, in print() too; other maps nothing', 'BEGIN { @c = count(); clear(@c); print(@c); @s = sum(1); clear(@s); print(@s); @h = hist(1); clear(@h); @k[1] = count(); clear(@k); exit(); }'],
  ['clear() and delete() of keyless maps: a count stays at 0, a sum goes', 'BEGIN { @c = count(); @c = count(); clear(@c); @d = count(); delete(@d); @s = sum(5); clear(@s); @t = sum(6); delete(@t); @n[1] = count(); clear(@n); exit(); }'],
  ['print(), clear() and delete() while running', 'BEGIN { @c[1] = count(); @c[2] = count(); @c[2] = count(); print(@c); delete(@c[1]); print(@c); clear(@c); @c[5] = count(); exit(); }'],
  ['several probes: BEGIN and END', 'BEGIN { @start = 1; printf("begin\\n"); exit(); } END { printf("end %d\\n", @start); @end = 2; }'],
  ['string values and a string read back', 'BEGIN { @name["k"] = "value"; @name["a"] = "other"; printf("%s|%-8s|\\n", @name["k"], @name["a"]); exit(); }'],
  ['++, -- and compound assignments, on maps and variables', 'BEGIN { @x += 5; @x += 2; @y[1] -= 3; @z++; @z++; ++@w; @v--; $a = 1; $a += 4; $a++; @r = $a; @q = @z++; @p = ++@z; @m[2] *= 3; exit() }'],
  ['comments, and an END probe', '// a comment\nBEGIN /* inline */ { @x = 1; exit(); } // trailing\nEND { @y = 2; }'],
]

for (const [name, program] of CASES) {
  test(`bpftrace program: ${name}`, { timeout: 120_000 }, () => {
    assert.equal(ours(program), runBpftrace(program))
  })
}

test('the same programs in -f json', { timeout: 300_000 }, () => {
  for (const [name, program] of CASES.filter(([, p]) => !p.includes('%c'))) {
    assert.equal(ours(program, true), runBpftrace(program, { json: true }), name)
  }
})

const conversion = fc.record({
  flag: fc.constantFrom('', '-', '0'),
  width: fc.constantFrom('', '1', '5', '12'),
  precision: fc.constantFrom('', '.0', '.3', '.10'),
  length: fc.constantFrom('', 'hh', 'h', 'l', 'll', 'j', 'z', 't'),
  letter: fc.constantFrom('d', 'u', 'x', 'X', 'o', 's', 'c'),
  value: fc.oneof(fc.bigInt(-300n, 300n), fc.bigInt(-(1n << 63n) + 1n, (1n << 63n) - 1n), fc.constantFrom(0n, 0xffffffffn, 1n << 32n)),
  text: fc.stringMatching(/^[a-zA-Z0-9 ]{0,14}$/),
})

test('printf conversions with random flags, widths, precisions and lengths print as bpftrace prints them', { timeout: 300_000 }, () => {
  fc.assert(fc.property(fc.array(conversion, { minLength: 20, maxLength: 20 }), (specs) => {
    const statements = specs.map((s) => {
      const letter = s.letter === 's' || s.letter === 'c' ? s.letter : s.length + s.letter
      // %c of 0 would end bpftrace's C string early; widths with 0 before `-` are not C
      const value = s.letter === 's' ? `"${s.text}"` : s.letter === 'c' ? `${65n + (s.value & 31n)}` : `${s.value}`
      const precision = s.letter === 'c' ? '' : s.precision
      return `printf("<%${s.flag}${s.width}${precision}${letter}>\\n", ${value});`
    })
    const program = `BEGIN { ${statements.join(' ')} exit(); }`
    assert.equal(ours(program), runBpftrace(program), program)
  }), { numRuns: 6, seed: 1303, endOnFailure: true })
})

/** Our formatted errors for a program that must not compile. */
function ourErrors(program: string): string {
  try {
    compileProgram(program)
  } catch (error) {
    if (error instanceof BpftraceErrors) return error.format(program)
    throw error
  }
  throw new Error(`compiled without errors: ${program}`)
}

// errors whose message and columns are bpftrace's own
const SAME_AS_BPFTRACE = [
  'tracepoint:syscalls:sys_enter_openat /comm == "x"/ { @[str(args->filename)] = cnt(); }',
  'BEGIN { @x = 1 +; }',
  'BEGIN { @x = pid +; }',
  'BEGIN { foo }',
  'tracepoint:x { }',
  'interval:x:1 { }',
  'uprobe:/bin/sh { }',
  'BEGIN { count(); }',
  'BEGIN { $x = count(); }',
  'BEGIN { printf("%d %d\\n", 1); }',
  'BEGIN { printf("%d\\n", "a"); }',
  'BEGIN { printf(5); }',
  'BEGIN { @x = count(); @x = hist(1); }',
  'BEGIN { @x = comm == 5 }',
  'BEGIN { @x = retval }',
  'BEGIN { @x = lhist(1, 0, 10) }',
  'BEGIN { @x[1] = 1; @x["a"] = 2 }',
  'BEGIN\n{\n  @x = 1 +;\n}',
  'BEGIN\n{\n\t@x = 1 +;\n}',
  'BEGIN { @x = 1; } END { print(@y); }',
  'BEGIN { printf("abc\n); }',
  'BEGIN { @x = 1 ` }',
  'BEGIN { $b++; exit() }',
  'BEGIN { @c = count(); @c++; exit() }',
  'BEGIN { @c = count(); @c += 1; exit() }',
  'BEGIN { 5++; exit() }',
  'BEGIN { @x = 1 foo }',
  'BEGIN { @x = 1; @y = 2 @z = 3 }',
  'BEGIN { printf("unterminated); }',
  '// a comment\nBEGIN { @x = 1; } // trailing\nBEGIN { @y = 2; exit(); }',
  'BEGIN { @x = 1 } tracepoint:syscalls { }',
]

test('bad programs get bpftrace\'s message, line and column marker', { timeout: 300_000 }, () => {
  for (const program of SAME_AS_BPFTRACE) assert.equal(ourErrors(program), bpftraceErrors(program), program)
})
