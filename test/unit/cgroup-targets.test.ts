/**
 * plugins.<name>.target_cgroups: each path becomes the cgroup v2 id the kernel filters by (the
 * directory's inode number), and a path that is not a cgroup v2 directory is an error naming it.
 * Reads the host's real cgroup v2 mount; needs no privileges.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { cgroup2MountPoints, cgroupId } from '../../runtime/config/cgroups.ts'
import { ConfigError, parseConfigText, pluginSettingsFrom } from '../../runtime/config/index.ts'

const [mount] = cgroup2MountPoints()
const plain = mkdtempSync(join(tmpdir(), 'periscope-not-a-cgroup-'))
after(() => rmSync(plain, { recursive: true, force: true }))

const hybrid = [
  '24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw',
  '31 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755',
  '32 31 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate',
  '33 31 0:28 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd',
].join('\n')
const unified = '35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n'
const escaped = '40 24 0:31 / /mnt/my\\040cgroups rw,relatime - cgroup2 none rw\n'

describe('cgroup v2 mount points', () => {
  it('are read from mountinfo on hybrid and unified hosts, with escaped characters decoded', () => {
    assert.deepEqual(cgroup2MountPoints(hybrid), ['/sys/fs/cgroup/unified'])
    assert.deepEqual(cgroup2MountPoints(unified), ['/sys/fs/cgroup'])
    assert.deepEqual(cgroup2MountPoints(escaped), ['/mnt/my cgroups'])
    assert.deepEqual(cgroup2MountPoints(hybrid.split('\n').filter((line) => !line.includes('cgroup2')).join('\n')), [])
  })
})

describe('cgroupId', () => {
  it("is the inode number of the cgroup's directory", () => {
    assert.ok(mount !== undefined, 'cgroup v2 is not mounted on this host; Periscope needs it for target_cgroups: mount -t cgroup2 none /sys/fs/cgroup/unified')
    assert.equal(cgroupId(mount), Number(statSync(mount, { bigint: true }).ino))
  })

  it('names a missing path, says it does not exist and where cgroup v2 is mounted', () => {
    const path = join(mount ?? '/sys/fs/cgroup', 'periscope-no-such.service')
    assert.throws(() => cgroupId(path), (error: Error) => {
      assert.ok(error.message.startsWith(`${path} does not exist; name an existing cgroup directory`), error.message)
      assert.ok(error.message.endsWith(mount === undefined ? '(cgroup v2 is not mounted on this host; mount it with mount -t cgroup2 none /sys/fs/cgroup/unified)' : `(cgroup v2 is mounted at ${mount} on this host)`), error.message)
      return true
    })
  })

  it('refuses a directory of another file system, and a file', () => {
    const failsWith = (path: string, start: string) => assert.throws(() => cgroupId(path), (error: Error) => {
      assert.ok(error.message.startsWith(start), error.message)
      return true
    })
    failsWith(plain, `${plain} is not a cgroup v2 directory, and the kernel filters by cgroup v2 ids (`)
    assert.ok(mount !== undefined, 'cgroup v2 is not mounted on this host; Periscope needs it for target_cgroups: mount -t cgroup2 none /sys/fs/cgroup/unified')
    failsWith(join(mount, 'cgroup.procs'), `${join(mount, 'cgroup.procs')} is not a directory; name the cgroup's directory (`)
  })
})

describe('plugins.<name>.target_cgroups', () => {
  it('reaches the plugin as target_cgroup_ids, next to its other settings', () => {
    assert.ok(mount !== undefined, 'cgroup v2 is not mounted on this host; Periscope needs it for target_cgroups: mount -t cgroup2 none /sys/fs/cgroup/unified')
    const config = parseConfigText(JSON.stringify({ plugins: { http: { target_cgroups: [mount], target_pids: [7], config: { capture_bytes: 512 } } } }))
    assert.deepEqual(pluginSettingsFrom(config).http!.config, { capture_bytes: 512, target_pids: [7], target_cgroup_ids: [cgroupId(mount)] })
  })

  it('is a ConfigError listing every path that is not a cgroup v2 directory, by its key', () => {
    const missing = '/sys/fs/cgroup/periscope-no-such.service'
    const config = parseConfigText(JSON.stringify({ plugins: { http: { target_cgroups: [...(mount === undefined ? [] : [mount]), missing, plain] } } }), 'periscope.yaml')
    const first = mount === undefined ? 0 : 1
    assert.throws(() => pluginSettingsFrom(config, 'periscope.yaml'), (error: unknown) => {
      assert.ok(error instanceof ConfigError)
      assert.match(error.message, /^periscope\.yaml is not a valid Periscope config:/)
      assert.equal(error.problems.length, 2)
      assert.ok(error.problems[0]!.startsWith(`plugins.http.target_cgroups.${first}: ${missing} does not exist`), error.problems[0])
      assert.ok(error.problems[1]!.startsWith(`plugins.http.target_cgroups.${first + 1}: ${plain} is not a cgroup v2 directory`), error.problems[1])
      return true
    })
  })

  it('must be absolute paths', () => {
    assert.throws(() => parseConfigText('plugins: { http: { target_cgroups: [system.slice/nginx.service] } }', 'periscope.yaml'), (error: unknown) => {
      assert.ok(error instanceof ConfigError)
      assert.deepEqual(error.problems, ["plugins.http.target_cgroups.0: write the cgroup directory's absolute path, like /sys/fs/cgroup/system.slice/nginx.service"])
      return true
    })
  })
})
