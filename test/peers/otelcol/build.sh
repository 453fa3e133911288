#!/usr/bin/env bash
# Builds a real OpenTelemetry Collector from Go modules with the official builder (ocb).
# Needs Go and the Go module proxy. Caches the binary:
#   PERISCOPE_PEERS_DIR (default ~/.cache/periscope-peers)/otelcol-periscope-test
# Prints the binary's path on success. Several minutes on a cold cache.
#
# Differences from ../../../../shared/peers/otelcol/build.sh, and why:
# - GOSUMDB=off: the Go checksum database is unreachable from the build machines.
# - ocb's own `go mod tidy` also resolves the *test* dependencies of the contrib file exporter, and
#   the proxy refuses one of them (otlpencodingextension@v0.129.0 zip: 403). So ocb only generates
#   the sources; `go mod tidy -e` tolerates the unreachable test-only module and `go build` needs
#   only what the binary imports.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${PERISCOPE_PEERS_DIR:-$HOME/.cache/periscope-peers}
bin=$dir/otelcol-periscope-test
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi
command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || { echo "build.sh: Go is not installed; cannot build the test collector" >&2; exit 3; }
export GOSUMDB=off GOFLAGS=-mod=mod
mkdir -p "$dir/work"
export GOBIN=$dir/bin
[ -x "$GOBIN/builder" ] || go install go.opentelemetry.io/collector/cmd/builder@v0.129.0 >&2
cp "$here/builder-config.yaml" "$dir/work/"
chmod u+w "$dir/work/builder-config.yaml"
(cd "$dir/work" && "$GOBIN/builder" --config builder-config.yaml --skip-get-modules --skip-compilation >&2)
(cd "$dir/work/dist" && go mod tidy -e >&2 && CGO_ENABLED=0 go build -trimpath -o otelcol-periscope-test . >&2)
cp "$dir/work/dist/otelcol-periscope-test" "$bin.tmp"
mv "$bin.tmp" "$bin"
echo "$bin"
