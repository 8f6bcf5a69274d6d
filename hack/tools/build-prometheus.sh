#!/usr/bin/env bash
# Build (or reuse) a Prometheus server from Go modules, for the test of KAI's Prometheus usage
# source (tests/cache/test_usage_prometheus.py): a real server scraping kai's metrics and
# answering the same PromQL queries KAI's scheduler sends.
#
#   hack/tools/build-prometheus.sh           # build once, then reuse
#   FORCE=1 hack/tools/build-prometheus.sh   # rebuild
#
# Output: ${KAI_TOOLS_DIR:-$HOME/.cache/kai-tools}/bin/prometheus. The last line printed on
# stdout is the path of the binary. Prometheus 3.x publishes its Go module as v0.3xx.y
# (v0.316.0 is Prometheus 3.16.0 -- hence the two names below). The web UI assets are not
# embedded (no `builtinassets` tag): the HTTP API, which is all the tests use, works without them.
# The build runs with `go build -p 1` by default (KAI_GO_BUILD_P to change it): the CI
# machine has 2 shared cores.
set -euo pipefail

PROMETHEUS_MODULE_VERSION="${PROMETHEUS_MODULE_VERSION:-v0.316.0}"
tools_dir="${KAI_TOOLS_DIR:-$HOME/.cache/kai-tools}"
bin_dir="$tools_dir/bin"
prom="$bin_dir/prometheus"
stamp="$bin_dir/.prometheus.stamp"

log() { echo "build-prometheus.sh: $*" >&2; }

if [[ "${FORCE:-0}" != 1 && -x "$prom" && -f "$stamp" && "$(head -n1 "$stamp")" == "prometheus=${PROMETHEUS_MODULE_VERSION}" ]]; then
  log "up to date: prometheus ${PROMETHEUS_MODULE_VERSION}"
  echo "$prom"
  exit 0
fi

command -v go >/dev/null 2>&1 || { log "error: go is not installed"; exit 1; }

mkdir -p "$bin_dir"
tmp="$(mktemp -d "$tools_dir/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
log "building prometheus ${PROMETHEUS_MODULE_VERSION} from Go modules (a cold build takes several minutes)"
# Outside any module, so `go install pkg@version` uses Prometheus's own go.mod.
(cd "$tmp" && CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS="-buildvcs=false -p=${KAI_GO_BUILD_P:-1}" \
   go install -trimpath -ldflags "-s -w" \
   "github.com/prometheus/prometheus/cmd/prometheus@${PROMETHEUS_MODULE_VERSION}")
[[ -x "$tmp/prometheus" ]] || { log "error: prometheus was not built"; exit 1; }
mv -f "$tmp/prometheus" "$prom"
{
  echo "prometheus=${PROMETHEUS_MODULE_VERSION}"
  echo "go=$(go env GOVERSION) built=$(date -u +%Y-%m-%dT%H:%M:%SZ) seconds=$(( $(date +%s) - start ))"
} > "$stamp"
log "built prometheus ${PROMETHEUS_MODULE_VERSION} in $(( $(date +%s) - start ))s"
echo "$prom"
