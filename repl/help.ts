/** What `.help` prints in `periscope repl`: the API in scope, each with an example to type. */

/** The names the REPL puts in scope, completed by Tab like any global. */
export const apiNames = ['trace', 'probes', 'objects', 'maps', 'links', 'plugins', 'map', 'plugin'] as const

export const helpText = `Periscope REPL: TypeScript with top-level await, and bpftrace one-liners.

Exploring
  probes('sched:*')                          tracepoints and their fields (from tracefs)
  probes('uprobe:/usr/lib/x86_64-linux-gnu/libc.so.6:mall*')
                                             symbols of a binary a uprobe can attach to
  trace('tracepoint:syscalls:sys_enter_openat', { comm: 'nginx' }).print()
                                             every event, until Ctrl-C (pid, comm and uid
                                             filters run in the kernel)
  trace('tracepoint:sched:sched_switch').count('prev_comm').top(5).every('1s')
                                             a count table every second, as bpftrace prints it
  trace('tracepoint:syscalls:sys_exit_read').hist('ret')
                                             a histogram, printed when you press Ctrl-C
  for await (const e of trace('tracepoint:sched:sched_process_exec').take(3)) console.log(e.comm)

bpftrace one-liners (a line that starts with a probe runs until Ctrl-C or exit())
  tracepoint:syscalls:sys_enter_openat { @[comm] = count(); }
  tracepoint:syscalls:sys_exit_read /args->ret > 0/ { @bytes = hist(args->ret); }
  interval:s:1 { printf("tick\\n"); }

The runtime (a running \`periscope run\`, or one in this process)
  objects()  maps()  links()  plugins()      what is loaded, with its counters
  map('sched:proc_stats').dump()             a map's entries, decoded
  map('sched:proc_stats').watch('1s')        the same every second, until Ctrl-C
  plugin.load('./my-plugin.ts')              load (or reload) a plugin file
  plugin.reload('processes')  plugin.stats('processes')
  plugin.fromStream(trace('sched:sched_process_exec').count('comm'), 'process.execs', { name: 'execs' })
                                             write a stream as a plugin the runtime hot-loads

Keys
  Tab          completes names, tracepoints ('sched:sched_sw<Tab>') and fields (args.<Tab>)
  Ctrl-C       stops what runs (probes detach), or clears the line
  Ctrl-D       leaves; history is kept in $PERISCOPE_REPL_HISTORY or ~/.periscope_history
`
