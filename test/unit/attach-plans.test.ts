/**
 * The attach plans `periscope check` reports, from fixed kernel feature sets: the planner's
 * answers are checked against what each kernel should get, not against a report of itself.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { AttachKind } from '../../runtime/bpf/features.ts'
import { planAttachKinds } from '../../runtime/library/catalogue.ts'

const plan = (...supported: AttachKind[]) => Object.fromEntries(planAttachKinds(new Set(supported)).map((p) => [p.want, p.use ?? 'nothing']))

describe('attach plans', () => {
  it('on the machines we build on (no kprobes, fentry refused): tracepoints stand in for both', () => {
    assert.deepEqual(plan('tp_btf', 'raw_tp', 'tracepoint', 'uprobe', 'uprobe_multi', 'perf_event', 'cgroup_skb', 'tc'), {
      fentry: 'tracepoint', kprobe: 'tracepoint', tp_btf: 'tp_btf', raw_tp: 'raw_tp', tracepoint: 'tracepoint',
      uprobe: 'uprobe', uprobe_multi: 'uprobe_multi', perf_event: 'perf_event', cgroup_skb: 'cgroup_skb', tc: 'tc',
    })
  })

  it('on a kernel that allows everything, each kind is used as wanted', () => {
    assert.deepEqual(plan('kprobe', 'fentry', 'tp_btf', 'raw_tp', 'tracepoint', 'uprobe', 'uprobe_multi', 'perf_event', 'cgroup_skb', 'tc'), {
      fentry: 'fentry', kprobe: 'kprobe', tp_btf: 'tp_btf', raw_tp: 'raw_tp', tracepoint: 'tracepoint',
      uprobe: 'uprobe', uprobe_multi: 'uprobe_multi', perf_event: 'perf_event', cgroup_skb: 'cgroup_skb', tc: 'tc',
    })
  })

  it('on an old kernel without BTF programs, cgroup_skb or uprobe_multi: kprobe for fentry, raw_tp for tp_btf, tc for cgroup_skb, the uprobe PMU for uprobe_multi', () => {
    assert.deepEqual(plan('kprobe', 'raw_tp', 'tracepoint', 'uprobe', 'perf_event', 'tc'), {
      fentry: 'kprobe', kprobe: 'kprobe', tp_btf: 'raw_tp', raw_tp: 'raw_tp', tracepoint: 'tracepoint',
      uprobe: 'uprobe', uprobe_multi: 'uprobe', perf_event: 'perf_event', cgroup_skb: 'tc', tc: 'tc',
    })
  })

  it('with nothing supported, nothing is planned', () => {
    assert.ok(Object.values(plan()).every((use) => use === 'nothing'))
  })
})
