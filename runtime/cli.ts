#!/usr/bin/env node
/**
 * The `periscope` command. Each subcommand lives in its own module and is imported only when
 * used, so `periscope check` works even where the plugin runtime's dependencies cannot load.
 */
const usage = `usage: periscope <command> [options]

commands:
  run [--plugins DIR]... [--config periscope.yaml]   start the runtime and load plugins
  profile [--pid P] [--seconds N] [--frequency HZ]   CPU profile of a process or the whole host:
          [--top ROWS] [--out DIR]                   top functions, pprof and an HTML flame graph
  check                                              report what this kernel supports
  -e 'program' | file.bt [-f json]                   run a bpftrace program until exit() or Ctrl-C
  repl [--socket PATH] [--config periscope.yaml]     explore the kernel live: trace(), one-liners,
                                                     the running runtime's objects and plugins
  help                                               show this text`

const commands: Record<string, () => Promise<{ main(argv: string[]): Promise<number> }>> = {
  run: () => import('./run.ts'),
  check: () => import('./check.ts'),
  profile: () => import('./profiling/profile-command.ts'),
  repl: () => import('../repl/shell.ts'),
}

const [name, ...rest] = process.argv.slice(2)
if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
  console.log(usage)
  process.exit(name === undefined ? 2 : 0)
}
// bpftrace's own command line: `periscope -e 'program'`, `periscope -f json script.bt`
const bpftraceStyle = name.startsWith('-') || name.endsWith('.bt')
const load = bpftraceStyle ? () => import('../repl/bpftrace/command.ts') : commands[name]
if (load === undefined) {
  console.error(`periscope: unknown command "${name}"\n\n${usage}`)
  process.exit(2)
}
process.exitCode = await (await load()).main(bpftraceStyle ? [name, ...rest] : rest)
