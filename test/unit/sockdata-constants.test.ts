// The constants protocol plugins use to read sockdata records (runtime/protocols/sockdata.ts) are
// the kernel's: each must equal the enum value of the same name in bpf/lib/sockdata.h, and the
// filter-map encoder must produce what the BTF-generated decoder reads back.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { mapCodecs } from '../../bpf/lib/sockdata.types.ts'
import * as sockdata from '../../runtime/protocols/sockdata.ts'

test('every constant equals the enum value of the same name in sockdata.h', () => {
  const header = readFileSync(new URL('../../bpf/lib/sockdata.h', import.meta.url), 'utf8')
  const enums = new Map<string, number>()
  for (const [, name, value] of header.matchAll(/^\s*([A-Z_0-9]+)\s*=\s*(\d+)\s*,/gm)) enums.set(name!, Number(value))
  const constants = Object.entries(sockdata).filter(([name, value]) => /^[A-Z_0-9]+$/.test(name) && typeof value === 'number')
  assert.ok(constants.length >= 20, `found ${constants.length} constants`)
  for (const [name, value] of constants) assert.equal(value, enums.get(name), `${name} in sockdata.h`)
})

test('protocolConfig encodes struct protocol_config as the generated decoder reads it', () => {
  const decode = (bytes: Uint8Array) => {
    assert.equal(bytes.length, mapCodecs.protocols.value.size)
    return mapCodecs.protocols.value.decode(new DataView(bytes.buffer), 0)
  }
  assert.deepEqual(decode(sockdata.protocolConfig({ wanted: true, captureBytes: 4096, pidFilter: true })), { wanted: 1, capture_bytes: 4096, pid_filter: 1, cgroup_filter: 0 })
  assert.deepEqual(decode(sockdata.protocolConfig({ wanted: true, captureBytes: 512, pidFilter: false, cgroupFilter: true })), { wanted: 1, capture_bytes: 512, pid_filter: 0, cgroup_filter: 1 })
  assert.deepEqual(decode(sockdata.protocolConfig({ wanted: true, captureBytes: 0, pidFilter: false, clientEndOnly: true })), { wanted: sockdata.WANTED_CLIENT_END, capture_bytes: 0, pid_filter: 0, cgroup_filter: 0 })
  assert.deepEqual(decode(sockdata.protocolConfig({ wanted: false, captureBytes: 0, pidFilter: false, clientEndOnly: true })).wanted, 0)
})

test('protocolCgroup encodes struct protocol_cgroup as the generated decoder reads it', () => {
  const bytes = sockdata.protocolCgroup(sockdata.PROTOCOL_HTTP, 2 ** 40 + 8176)
  assert.equal(bytes.length, mapCodecs.target_cgroups.key.size)
  assert.deepEqual(mapCodecs.target_cgroups.key.decode(new DataView(bytes.buffer), 0), { protocol: 1, pad: 0, cgroup: 2 ** 40 + 8176 })
})

test('addresses format as IPv4, mapped IPv4 and RFC 5952 IPv6', () => {
  const v4 = new Uint8Array(16)
  v4.set([127, 0, 0, 1])
  assert.equal(sockdata.formatAddress(2, v4), '127.0.0.1')
  const mapped = new Uint8Array(16)
  mapped.set([0xff, 0xff, 10, 1, 2, 3], 10)
  assert.equal(sockdata.formatAddress(10, mapped), '10.1.2.3')
  const loopback = new Uint8Array(16)
  loopback[15] = 1
  assert.equal(sockdata.formatAddress(10, loopback), '::1')
  const doc = Uint8Array.from([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1])
  assert.equal(sockdata.formatAddress(10, doc), '2001:db8::1:0:0:1')
  assert.equal(sockdata.formatAddress(1, v4), '')
})
