#!/usr/bin/env bash
# Prepares a fresh machine (Debian, as root) to run Periscope, and does nothing that is already
# done: Debian's BPF toolchain, npm packages with Node 24, tracefs and bpffs, then the build
# (addon, BPF objects, generated types). Both README commands start here; `--test` also brings
# the real peers the tests talk to (Debian's prometheus, nginx, wrk, curl and openssl, Chromium for
# the flame graph page, an OpenTelemetry Collector built once from Go modules and cached under
# ~/.cache/periscope-peers).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "periscope setup: $*" >&2; }
fail() { say "$1"; exit 1; }

[ "$(id -u)" = 0 ] || fail "Periscope loads BPF programs and must run as root (or with CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN for setup). Re-run with: sudo $0"
[ -r /sys/kernel/btf/vmlinux ] || fail "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing). Periscope needs a kernel built with CONFIG_DEBUG_INFO_BTF=y."

packages=(clang llvm libbpf-dev libelf-dev zlib1g-dev bpftool make g++ python3 pkg-config iproute2)
for_tests=0
[ "${1:-}" = --test ] && for_tests=1 && packages+=(prometheus binutils nginx wrk curl openssl redis-server redis-tools postgresql postgresql-contrib mariadb-server mariadb-client python3-redis openjdk-17-jre-headless maven chromium bpftrace linux-perf tmux)
missing=()
# one dpkg-query for all of them (one per package cost a quarter of a second at every start); it
# exits 1 when any package was never installed, which pipefail would make fatal, silently
installed=" $({ dpkg-query -W -f='${Package}:${Status}\n' "${packages[@]}" 2>/dev/null || true; } | sed -n 's/:install ok installed$//p' | tr '\n' ' ') "
for p in "${packages[@]}"; do [[ "$installed" == *" $p "* ]] || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || fail "missing packages ${missing[*]} and no apt-get; install them with your package manager"
  say "installing Debian packages: ${missing[*]} …"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 || fail "apt-get install failed; run: apt-get update && apt-get install -y ${missing[*]}"
fi
command -v clang >/dev/null || fail "clang is missing; run: apt-get install -y clang"
# Debian starts and enables the servers it installs (nginx on 80, redis on 6379, PostgreSQL on 5432,
# MariaDB on 3306). The tests start their own servers on free ports and never use these, and on a
# host traced whole they would only be noise: stop the ones we just installed and keep them from
# starting at boot. Servers that were installed before are left alone.
for pair in nginx:nginx redis-server:redis-server postgresql:postgresql mariadb-server:mariadb; do
  package=${pair%%:*} service=${pair#*:}
  [[ " ${missing[*]} " == *" $package "* ]] || continue
  if [ -d /run/systemd/system ]; then systemctl disable --now "$service" >&2 || say "could not stop the system $service service (the tests do not need it); run: systemctl disable --now $service"
  else { service "$service" stop && update-rc.d "$service" disable; } >/dev/null 2>&1 || say "could not stop the system $service service (the tests do not need it); run: service $service stop && update-rc.d $service disable"
  fi
done

# npm packages, Node 24 among them (the system Node may be older); reinstall when the lockfile changes
stamp=node_modules/.periscope-lock
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -x node_modules/.bin/node ] || [ "$(cat $stamp 2>/dev/null)" != "$want" ]; then
  command -v npm >/dev/null || fail "npm is missing; run: apt-get install -y npm"
  say "installing npm packages and Node 24 (first run: about a minute) …"
  npm ci --no-audit --no-fund --loglevel=error >&2 || fail "npm ci failed; check the network to the npm registry and run: npm ci"
  echo "$want" > $stamp
fi
node_modules/.bin/node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 24 ? 0 : 1)' ||
  fail "node_modules/.bin/node is not Node 24; remove node_modules and run again"

mountpoint -q /sys/kernel/tracing || { say "mounting tracefs on /sys/kernel/tracing"; mount -t tracefs tracefs /sys/kernel/tracing || fail "cannot mount tracefs; run: mount -t tracefs tracefs /sys/kernel/tracing"; }
mountpoint -q /sys/fs/bpf || { say "mounting bpffs on /sys/fs/bpf"; mount -t bpf bpf /sys/fs/bpf || fail "cannot mount bpffs; run: mount -t bpf bpf /sys/fs/bpf"; }

node_modules/.bin/node scripts/build.ts
# what ./periscope checks to skip this script: nothing built from changed since
touch node_modules/.periscope-setup

if [ $for_tests = 1 ] && [ ! -x "${PERISCOPE_PEERS_DIR:-$HOME/.cache/periscope-peers}/otelcol-periscope-test" ]; then
  command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
  command -v go >/dev/null || fail "Go is needed to build the test OpenTelemetry Collector; install Go 1.23+ and run again"
  say "building the test OpenTelemetry Collector from Go modules (first run: several minutes) …"
  bash test/peers/otelcol/build.sh >/dev/null || fail "building the test Collector failed; run bash test/peers/otelcol/build.sh to see why"
fi
