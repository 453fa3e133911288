/**
 * The bpftrace subset without a kernel: real one-liners (from bpftrace's one-liner tutorial and
 * tools) parse to the expected trees, refused constructs get located errors, the evaluator turns
 * decoded events into exact maps, and kernelFilter picks the pid/comm/uid conjuncts.
 * test/bpf/repl-programs.test.ts compares the same pieces with bpftrace itself.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { UserSpaceAggregator } from '../../repl/bpftrace/aggregate.ts'
import type { Expression, Program, Statement } from '../../repl/bpftrace/ast.ts'
import { BpftraceErrors } from '../../repl/bpftrace/errors.ts'
import { Evaluator, type TraceEvent } from '../../repl/bpftrace/evaluate.ts'
import { kernelFilter } from '../../repl/bpftrace/kernel-filter.ts'
import { parse } from '../../repl/bpftrace/parser.ts'
import { compileProgram } from '../../repl/bpftrace/program.ts'
import { exitText, mapText } from '../../repl/printers.ts'

/** A tree as a short S-expression, so expected trees stay readable. */
function show(expression: Expression): string {
  switch (expression.kind) {
    case 'integer': return `${expression.value}`
    case 'string': return JSON.stringify(expression.value)
    case 'builtin': return expression.name
    case 'field': return `${show(expression.base)}${expression.arrow ? '->' : '.'}${expression.field}`
    case 'map': return expression.keys.length ? `${expression.name}[${expression.keys.map(show).join(', ')}]` : expression.name
    case 'variable': return expression.name
    case 'binary': return `(${expression.operator} ${show(expression.left)} ${show(expression.right)})`
    case 'unary': return `(${expression.operator} ${show(expression.operand)})`
    case 'ternary': return `(? ${show(expression.condition)} ${show(expression.then)} ${show(expression.otherwise)})`
    case 'call': return `${expression.name}(${expression.args.map(show).join(', ')})`
    case 'increment': return expression.prefix ? `${expression.operator}${show(expression.target)}` : `${show(expression.target)}${expression.operator}`
  }
}

function showStatement(statement: Statement): string {
  if (statement.kind === 'expression') return show(statement.expression)
  if (statement.kind === 'assignMap') return `${show(statement.map)} = ${show(statement.value)}`
  return `${statement.variable.name} = ${show(statement.value)}`
}

function showProgram(program: Program): string[] {
  return program.probes.map((probe) => {
    const points = probe.attachPoints.map((p) => {
      switch (p.provider) {
        case 'tracepoint': return `tracepoint ${p.category} ${p.name}`
        case 'uprobe': case 'uretprobe': return `${p.provider} ${p.path} ${p.symbol}`
        case 'profile': case 'interval': return `${p.provider} ${p.value}/${p.unit}`
        default: return p.provider
      }
    })
    return `${points.join(' + ')}${probe.predicate ? ` /${show(probe.predicate)}/` : ''} { ${probe.statements.map(showStatement).join('; ')} }`
  })
}

// one-liners from bpftrace's docs/tutorial_one_liners.md and tools, in the subset
const ONE_LINERS: [string, string[]][] = [
  ['BEGIN { printf("hello world\\n"); }', ['BEGIN { printf("hello world\\n") }']],
  ['tracepoint:syscalls:sys_enter_openat { printf("%s %s\\n", comm, str(args->filename)); }', ['tracepoint syscalls sys_enter_openat { printf("%s %s\\n", comm, str(args->filename)) }']],
  ['tracepoint:raw_syscalls:sys_enter { @[comm] = count(); }', ['tracepoint raw_syscalls sys_enter { @[comm] = count() }']],
  ['tracepoint:syscalls:sys_exit_read /pid == 18644/ { @bytes = hist(args->ret); }', ['tracepoint syscalls sys_exit_read /(== pid 18644)/ { @bytes = hist(args->ret) }']],
  ['tracepoint:syscalls:sys_exit_read { @[comm] = sum(args->ret); }', ['tracepoint syscalls sys_exit_read { @[comm] = sum(args->ret) }']],
  ['tracepoint:syscalls:sys_enter_read { @start[tid] = nsecs; } tracepoint:syscalls:sys_exit_read /@start[tid]/ { @ns[comm] = hist(nsecs - @start[tid]); delete(@start[tid]); }',
    ['tracepoint syscalls sys_enter_read { @start[tid] = nsecs }', 'tracepoint syscalls sys_exit_read /@start[tid]/ { @ns[comm] = hist((- nsecs @start[tid])); delete(@start[tid]) }']],
  ['profile:hz:99 /pid == 189/ { @[ustack] = count(); }', ['profile 99/hz /(== pid 189)/ { @[ustack] = count() }']],
  ['tracepoint:sched:sched_process_exec, tracepoint:sched:sched_process_exit { @[probe == 0] = count(); }'.replace('probe == 0', 'comm'), ['tracepoint sched sched_process_exec + tracepoint sched sched_process_exit { @[comm] = count() }']],
  ['uretprobe:/bin/bash:readline { printf("read a line\\n"); }', ['uretprobe /bin/bash readline { printf("read a line\\n") }']],
  ['tracepoint:syscalls:sys_enter_* /comm != "bash" && uid == 0 || !(pid > 10)/ { @[comm, pid] = lhist(args.fd, 0, 100, 10); }', ['tracepoint syscalls sys_enter_* /(|| (&& (!= comm "bash") (== uid 0)) (! (> pid 10)))/ { @[comm, pid] = lhist(args.fd, 0, 100, 10) }']],
  ['interval:s:5 { print(@); clear(@); } interval:ms:100 { $x = elapsed / 1000000; @m = max($x); exit() }', ['interval 5/s { print(@); clear(@) }', 'interval 100/ms { $x = (/ elapsed 1000000); @m = max($x); exit() }']],
  ['uprobe:/usr/lib/x86_64-linux-gnu/libc.so.6:malloc { @s = stats(arg0); @a[comm] = avg(arg0); @mn = min(arg0) } // sizes', ['uprobe /usr/lib/x86_64-linux-gnu/libc.so.6 malloc { @s = stats(arg0); @a[comm] = avg(arg0); @mn = min(arg0) }']],
  ['END { printf("%-10s %5d\\n", "a", -1 + 2 * 3 % 4 << 1) }', ['END { printf("%-10s %5d\\n", "a", (<< (+ -1 (% (* 2 3) 4)) 1)) }']],
  ['tracepoint:syscalls:sys_exit_read /args->ret > 0/ { @bytes[comm] += args->ret; @reads++; $n = 1; $n -= 2; --@left[pid] }', ['tracepoint syscalls sys_exit_read /(> args->ret 0)/ { @bytes[comm] = (+ @bytes[comm] args->ret); @reads++; $n = 1; $n = (- $n 2); --@left[pid] }']],
]

test('one-liners from bpftrace\'s tutorial and tools parse to the expected trees', () => {
  for (const [source, expected] of ONE_LINERS) assert.deepEqual(showProgram(parse(source)), expected, source)
})

function errorsOf(source: string): string {
  try {
    compileProgram(source)
  } catch (error) {
    if (error instanceof BpftraceErrors) return error.format(source)
    throw error
  }
  return 'no error'
}

test('constructs outside the subset get a located error naming them', () => {
  const cases: [string, string][] = [
    ['BEGIN { if (1) { @x = 1 } }', 'stdin:1:9-11: ERROR: \'if\' is not supported by Periscope\'s bpftrace subset yet\nBEGIN { if (1) { @x = 1 } }\n        ~~\n'],
    ['kprobe:do_nanosleep { @ = count() }', 'stdin:1:1-20: ERROR: kprobe probes are not supported: kprobes are not available on this kernel (CONFIG_KPROBES is off); use a tracepoint\nkprobe:do_nanosleep { @ = count() }\n~~~~~~~~~~~~~~~~~~~\n'],
    ['BEGIN { @x = (uint8)1 }', 'stdin:1:14-21: ERROR: a cast is not supported by Periscope\'s bpftrace subset yet\nBEGIN { @x = (uint8)1 }\n             ~~~~~~~\n'],
    ['BEGIN { @x = $1 }', 'stdin:1:14-16: ERROR: a positional parameter is not supported by Periscope\'s bpftrace subset yet\nBEGIN { @x = $1 }\n             ~~\n'],
    ['BEGIN { @x = cgroup }', 'stdin:1:14-20: ERROR: cgroup is not supported by Periscope\'s bpftrace subset yet\nBEGIN { @x = cgroup }\n             ~~~~~~\n'],
    ['BEGIN { system("ls") }', 'stdin:1:9-21: ERROR: system() is not supported by Periscope\'s bpftrace subset yet\nBEGIN { system("ls") }\n        ~~~~~~~~~~~~\n'],
    ['usdt:/bin/x:p { }', 'stdin:1:1-14: ERROR: Invalid probe type: usdt; Periscope runs tracepoint, uprobe, uretprobe, profile, interval, BEGIN and END probes\nusdt:/bin/x:p { }\n~~~~~~~~~~~~~\n'],
    ['BEGIN\n{\n\t@x = 1 +;\n}', 'stdin:3:9-11: ERROR: syntax error, unexpected ;\n    @x = 1 +;\n           ~~\n'],
  ]
  for (const [source, expected] of cases) assert.equal(errorsOf(source), expected, source)
})

test('tracepoint fields resolve from the format; a bad field or tracepoint is located', () => {
  const fields = (category: string, name: string) => (category === 'syscalls' && name === 'sys_exit_read' ? [{ name: 'ret', type: 'long', size: 8, signed: true }] : undefined)
  assert.equal(errorsOf('tracepoint:syscalls:sys_exit_read { @ = hist(args->ret) }'), 'no error')
  const bad = 'tracepoint:syscalls:sys_exit_read { @[args->nofield] = count() }'
  try {
    compileProgram(bad, { tracepointFields: fields })
    assert.fail('compiled')
  } catch (error) {
    assert.ok(error instanceof BpftraceErrors)
    assert.equal(error.format(bad), 'stdin:1:37-52: ERROR: Struct/union of type \'struct _tracepoint_syscalls_sys_exit_read\' does not contain a field named \'nofield\'\ntracepoint:syscalls:sys_exit_read { @[args->nofield] = count() }\n                                    ~~~~~~~~~~~~~~~\n')
  }
  const openat = (category: string, name: string) => (name === 'sys_enter_openat' ? [{ name: 'filename', type: 'const char *', size: 8, signed: false }] : undefined)
  const str = 'tracepoint:syscalls:sys_enter_openat { @[str(args->filename)] = count() }'
  // the kernel copies the string the pointer points to (capture.ts), at bpftrace's 64 bytes
  const checked = compileProgram(str, { tracepointFields: openat })
  const key = (checked.program.probes[0].statements[0] as { map: { keys: Expression[] } }).map.keys[0]
  assert.deepEqual(checked.types.get(key), { kind: 'string', size: 64 })
  const missing = 'tracepoint:syscalls:sys_exit_nothing { @ = count() }'
  assert.throws(() => compileProgram(missing, { tracepointFields: fields }), (error: unknown) => error instanceof BpftraceErrors && error.format(missing).startsWith('stdin:1:1-37: ERROR: tracepoint not found: syscalls:sys_exit_nothing\n'))
})

const event = (fields: Partial<TraceEvent>): TraceEvent => ({ pid: 100, tid: 100, uid: 1000, gid: 1000, comm: 'nginx', cpu: 0, nsecs: 0n, ...fields })

/** Runs `source`'s probe 0 over `events`, then END, and returns everything printed. */
function run(source: string, events: TraceEvent[]): string {
  const checked = compileProgram(source)
  const aggregator = new UserSpaceAggregator(checked.maps)
  let output = ''
  const evaluator = new Evaluator(checked, aggregator, { printf: (text) => { output += text }, print: (map) => { output += mapText(map) }, exit: () => { output += '<exit>' } }, 1_000n)
  for (const e of events) evaluator.fire(0, e)
  evaluator.end(event({}))
  return output + exitText(aggregator.snapshots())
}

test('filters, keys and aggregations over decoded events give exact maps', () => {
  const reads = [
    event({ comm: 'nginx', args: { ret: 512 } }), event({ comm: 'nginx', args: { ret: 4096 } }), event({ comm: 'redis-server', pid: 7, args: { ret: 3 } }),
    event({ comm: 'nginx', args: { ret: -11 } }), event({ comm: 'nginx', args: { ret: 700 } }),
  ]
  assert.equal(run('tracepoint:syscalls:sys_exit_read /args->ret > 0/ { @bytes[comm] = hist(args->ret); @n[comm, pid] = count(); @s = stats(args.ret); }', reads), [
    '\n\n',
    '@bytes[redis-server]: \n',
    '[2, 4)                 1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n',
    '\n',
    '@bytes[nginx]: \n',
    '[512, 1K)              2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n',
    '[1K, 2K)               0 |                                                    |\n',
    '[2K, 4K)               0 |                                                    |\n',
    '[4K, 8K)               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |\n',
    '\n',
    '@n[redis-server, 7]: 1\n',
    '@n[nginx, 100]: 3\n',
    '@s: count 4, average 1327, total 5311\n\n',
  ].join(''))
})

test('comm and string filters, scratch variables, printf per event, delete and exit', () => {
  const opens = [event({ comm: 'nginx', nsecs: 5_000n, args: { filename: '/etc/nginx/nginx.conf', flags: 0 } }), event({ comm: 'bash', args: { filename: '/tmp/x', flags: 1 } }), event({ comm: 'nginx', nsecs: 9_000n, args: { filename: '/var/log/nginx/access.log', flags: 1 } })]
  const source = 'tracepoint:syscalls:sys_enter_openat /comm == "nginx" && !(args.flags == 9)/ { $f = str(args.filename, 10); @[$f] = count(); @last = elapsed; printf("%-6s %5d %s\\n", comm, pid, $f); if_absent = 0 }'
  assert.throws(() => compileProgram(source), BpftraceErrors)
  const clean = source.replace('; if_absent = 0', '')
  assert.equal(run(clean, opens), 'nginx    100 /etc/nginx\nnginx    100 /var/log/n\n\n\n@[/etc/nginx]: 1\n@[/var/log/n]: 1\n@last: 8000\n')
  assert.equal(run('tracepoint:a:b { @[pid] = count(); delete(@[100]); @[pid + 1] = count(); exit(); printf("never\\n") }', [event({}), event({})]), '<exit>\n\n@[101]: 1\n')
})

test('kernelFilter takes pid, comm and uid equalities from the top-level conjunction only', () => {
  const filterOf = (source: string) => kernelFilter(parse(source).probes[0])
  assert.deepEqual(filterOf('tracepoint:a:b /pid == 42 && comm == "nginx" && args.fd > 2/ { @ = count() }'), { pid: 42, comm: 'nginx' })
  assert.deepEqual(filterOf('tracepoint:a:b /0 == uid && 7 == pid/ { @ = count() }'), { pid: 7, uid: 0 })
  assert.deepEqual(filterOf('tracepoint:a:b /pid == 42 || comm == "nginx"/ { @ = count() }'), {})
  assert.deepEqual(filterOf('tracepoint:a:b /!(pid == 42)/ { @ = count() }'), {})
  assert.deepEqual(filterOf('tracepoint:a:b /pid != 42 && comm == "a-name-longer-than-15"/ { @ = count() }'), {})
  assert.deepEqual(filterOf('tracepoint:a:b { @ = count() }'), {})
})

test('any input either compiles or gets located bpftrace errors, never another exception', () => {
  const piece = fc.constantFrom('BEGIN', 'END', 'tracepoint', ':', 'syscalls', ':sys_enter_read', 'uprobe:/bin/sh:main', 'profile:hz:99', 'interval:s:1', ',', '/', '{', '}', '(', ')', '[', ']', ';', '@', '@x', '$v', '$1', '=', '==', '!=', '<', '>=', '&&', '||', '!', '-', '+', '*', '%', '?', '.', '->', 'args', 'args->ret', 'args.fd', 'pid', 'comm', 'uid', 'retval', 'arg0', 'nsecs', 'elapsed', 'kstack', 'count()', 'hist(', 'lhist(', 'sum(', 'stats(', 'printf(', '"%d\\n"', '"x', 'str(', 'exit()', 'delete(', 'clear(', 'print(', '0', '42', '-7', '0x1f', '1_000', 'if', 'else', '++', '+=', '// c\n', '/* c */', '\n', ' ', '\t', 'foo', 'struct', '#include <x>')
  fc.assert(fc.property(fc.array(piece, { maxLength: 30 }), (pieces) => {
    const source = pieces.join(' ')
    try {
      compileProgram(source)
    } catch (error) {
      if (!(error instanceof BpftraceErrors)) throw error
      const text = error.format(source)
      assert.match(text, /^(stdin:\d+(:\d+-\d+|-\d+): )?ERROR: /)
    }
  }), { numRuns: 3000, seed: 1304 })
})
