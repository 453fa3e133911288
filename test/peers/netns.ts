/**
 * Two network namespaces of a test's own joined by a veth pair, with packet loss on the link: the
 * way to make TCP retransmit on demand. Loss is `tc qdisc ... netem loss` where the kernel has
 * netem (CONFIG_NET_SCH_NETEM); where it has not (this project's build machines), an XDP program
 * on each end drops the same share of the packets it receives, at random as netem does. Either
 * way both directions lose packets, so data, acknowledgements and handshakes all go missing.
 *
 *   const link = await VethLink.create({ lossPercent: 10 })
 *   t.after(() => link.remove())
 *   const server = link.spawn('b', 'node', ['server.ts'])   // in namespace b, address link.addressB
 *
 * Names are periscope-<pid>-<n>-a/-b (namespaces) and psc<n>a/b (interfaces); remove() kills what
 * spawn() started and deletes both namespaces (which deletes the veth pair and the XDP programs).
 * A test process that dies before remove() runs deletes them on exit; create() undoes what it
 * made when a step fails.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export type Side = 'a' | 'b'

let made = 0

function ip(args: string[]): void {
  try {
    execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] })
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim() ?? ''
    throw new Error(`ip ${args.join(' ')} failed: ${stderr || (error as Error).message}`)
  }
}

function macAddress(namespace: string, device: string): string {
  const [link] = JSON.parse(execFileSync('ip', ['-n', namespace, '-j', 'link', 'show', 'dev', device], { encoding: 'utf8' })) as { address: string }[]
  return link!.address
}

/** Whether `tc qdisc add ... netem` works here: tried on a namespace's loopback, so the host is untouched. */
function netemAvailable(namespace: string): boolean {
  const result = spawnSync('ip', ['netns', 'exec', namespace, 'tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'loss', '1%'], { stdio: 'ignore' })
  if (result.status !== 0) return false
  spawnSync('ip', ['netns', 'exec', namespace, 'tc', 'qdisc', 'del', 'dev', 'lo', 'root'], { stdio: 'ignore' })
  return true
}

const XDP_LOSS_SOURCE = `// SPDX-License-Identifier: GPL-2.0
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "GPL";
SEC("xdp")
int lose_packets(struct xdp_md *ctx)
{
	return bpf_get_prandom_u32() % 100 < LOSS_PERCENT ? XDP_DROP : XDP_PASS;
}
`

/** Compiles the XDP program that drops lossPercent of the packets it receives; returns the object's path in a temp dir (removed at exit). */
function compileXdpLoss(lossPercent: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'periscope-netns-'))
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'loss.bpf.c'), XDP_LOSS_SOURCE)
  const include = fileURLToPath(new URL('../../bpf/include', import.meta.url))
  const object = join(dir, 'loss.bpf.o')
  execFileSync('clang', ['-g', '-O2', '-target', 'bpf', `-DLOSS_PERCENT=${lossPercent}`, '-I', include, '-c', join(dir, 'loss.bpf.c'), '-o', object])
  return object
}

export class VethLink {
  readonly namespaceA: string
  readonly namespaceB: string
  readonly interfaceA: string
  readonly interfaceB: string
  readonly addressA: string
  readonly addressB: string
  /** How the loss is made: `netem` or `xdp` (netem missing from this kernel). */
  lossBy: 'netem' | 'xdp' | 'none' = 'none'
  readonly #children = new Set<ChildProcess>()
  readonly #removeAtExit = () => {
    for (const child of this.#children) child.kill('SIGKILL')
    this.#deleteNamespaces()
  }
  #removed = false

  private constructor(n: number) {
    this.namespaceA = `periscope-${process.pid}-${n}-a`
    this.namespaceB = `periscope-${process.pid}-${n}-b`
    this.interfaceA = `psc${n}a`
    this.interfaceB = `psc${n}b`
    // a /30 per link, so links of one process do not share addresses
    this.addressA = `10.213.${n % 256}.1`
    this.addressB = `10.213.${n % 256}.2`
  }

  /**
   * Makes both namespaces and the link between them, up and addressed. `lossPercent` (0 to 100) is
   * the share of the packets lost each way, or per receiving end: `{ a: 100 }` makes every packet
   * to namespace a go missing.
   */
  static async create(options: { lossPercent?: number | Partial<Record<Side, number>> } = {}): Promise<VethLink> {
    const loss = typeof options.lossPercent === 'object' ? options.lossPercent : { a: options.lossPercent ?? 0, b: options.lossPercent ?? 0 }
    for (const percent of Object.values(loss)) {
      if (!Number.isInteger(percent) || percent < 0 || percent > 100) throw new Error(`lossPercent must be an integer from 0 to 100, got ${percent}`)
    }
    const link = new VethLink(++made)
    process.once('exit', link.#removeAtExit)
    try {
      link.#build()
      link.#induceLoss(loss.a ?? 0, loss.b ?? 0)
    } catch (error) {
      await link.remove()
      throw error
    }
    return link
  }

  #build(): void {
    ip(['netns', 'add', this.namespaceA])
    ip(['netns', 'add', this.namespaceB])
    ip(['link', 'add', this.interfaceA, 'netns', this.namespaceA, 'type', 'veth', 'peer', 'name', this.interfaceB, 'netns', this.namespaceB])
    for (const [namespace, device, address] of [[this.namespaceA, this.interfaceA, this.addressA], [this.namespaceB, this.interfaceB, this.addressB]] as const) {
      ip(['-n', namespace, 'address', 'add', `${address}/30`, 'dev', device])
      ip(['-n', namespace, 'link', 'set', 'dev', device, 'up'])
      ip(['-n', namespace, 'link', 'set', 'dev', 'lo', 'up'])
    }
    // each end knows the other's MAC address for good: a lossy link must lose IP packets, not the
    // ARP exchange before them (an end that hears nothing would never send at all)
    ip(['-n', this.namespaceA, 'neigh', 'replace', this.addressB, 'lladdr', macAddress(this.namespaceB, this.interfaceB), 'dev', this.interfaceA, 'nud', 'permanent'])
    ip(['-n', this.namespaceB, 'neigh', 'replace', this.addressA, 'lladdr', macAddress(this.namespaceA, this.interfaceA), 'dev', this.interfaceB, 'nud', 'permanent'])
  }

  /** Packets to a lost at lossA percent, to b at lossB. */
  #induceLoss(lossA: number, lossB: number): void {
    if (lossA === 0 && lossB === 0) return
    if (netemAvailable(this.namespaceA)) {
      // netem drops on the way out: what a receives leaves b
      if (lossA > 0) ip(['netns', 'exec', this.namespaceB, 'tc', 'qdisc', 'add', 'dev', this.interfaceB, 'root', 'netem', 'loss', `${lossA}%`])
      if (lossB > 0) ip(['netns', 'exec', this.namespaceA, 'tc', 'qdisc', 'add', 'dev', this.interfaceA, 'root', 'netem', 'loss', `${lossB}%`])
      this.lossBy = 'netem'
      return
    }
    for (const [namespace, device, percent] of [[this.namespaceA, this.interfaceA, lossA], [this.namespaceB, this.interfaceB, lossB]] as const) {
      if (percent > 0) ip(['-n', namespace, 'link', 'set', 'dev', device, 'xdp', 'object', compileXdpLoss(percent), 'section', 'xdp'])
    }
    this.lossBy = 'xdp'
  }

  /** Starts a process inside one namespace; remove() kills it if it still runs. */
  spawn(side: Side, command: string, args: string[], options: SpawnOptions = {}): ChildProcess {
    const namespace = side === 'a' ? this.namespaceA : this.namespaceB
    const child = spawn('ip', ['netns', 'exec', namespace, command, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...options })
    this.#children.add(child)
    child.once('exit', () => this.#children.delete(child))
    return child
  }

  /** Kills the processes spawn() started, waits for them, and deletes both namespaces. Safe to call twice. */
  async remove(): Promise<void> {
    if (this.#removed) return
    this.#removed = true
    await Promise.all([...this.#children].map((child) => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve()
      child.once('exit', () => resolve())
      child.kill('SIGKILL')
    })))
    this.#deleteNamespaces()
    process.removeListener('exit', this.#removeAtExit)
  }

  #deleteNamespaces(): void {
    for (const namespace of [this.namespaceA, this.namespaceB]) spawnSync('ip', ['netns', 'delete', namespace], { stdio: 'ignore' })
  }
}
