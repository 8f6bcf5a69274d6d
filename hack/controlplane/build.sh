#!/usr/bin/env bash
# Build a local Kubernetes control plane for tests (no Docker): etcd, kube-apiserver,
# kube-controller-manager and kube-scheduler from this wrapper module, plus kwok.
#
#   hack/controlplane/build.sh            # build (or reuse) the binaries
#   FORCE=1 hack/controlplane/build.sh    # rebuild even if the stamp matches
#
# Output: ${KAI_CONTROLPLANE_DIR:-$HOME/.cache/kai-controlplane/<k8s-version>}/bin
# The last line printed on stdout is that bin directory.
# Versions come from hack/controlplane/VERSIONS (the single source of truth, also read by
# kai/testing/controlplane.py). GOMODCACHE/GOCACHE stay in Go's default places.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

# shellcheck source=VERSIONS
. "$here/VERSIONS"
: "${KUBERNETES_VERSION:?missing in VERSIONS}" "${KWOK_VERSION:?missing in VERSIONS}"

log() { echo "build.sh: $*" >&2; }

command -v go >/dev/null 2>&1 || { log "error: go is not installed (need Go >= 1.24)"; exit 1; }

# The module must require exactly the pinned Kubernetes version.
if ! grep -Eq "^[[:space:]]*k8s.io/kubernetes ${KUBERNETES_VERSION//./\\.}$" go.mod \
   && ! grep -Eq "^require k8s.io/kubernetes ${KUBERNETES_VERSION//./\\.}$" go.mod; then
  log "error: go.mod does not require k8s.io/kubernetes ${KUBERNETES_VERSION} (VERSIONS and go.mod disagree)"
  exit 1
fi

out_root="${KAI_CONTROLPLANE_DIR:-$HOME/.cache/kai-controlplane/${KUBERNETES_VERSION}}"
bin_dir="$out_root/bin"
stamp="$bin_dir/.stamp"
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

sha() { sha256sum "$@" | sha256sum | cut -c1-64; }
want_stamp="kubernetes=${KUBERNETES_VERSION} kwok=${KWOK_VERSION} go.sum=$(sha go.sum) sources=$(sha go.mod cmd/*/main.go)"

up_to_date=1
for b in "${binaries[@]}"; do [[ -x "$bin_dir/$b" ]] || up_to_date=0; done
if [[ "${FORCE:-0}" != 1 && $up_to_date == 1 && -f "$stamp" && "$(head -n1 "$stamp")" == "$want_stamp" ]]; then
  log "up to date: $bin_dir"
  echo "$bin_dir"
  exit 0
fi

mkdir -p "$out_root"
tmp="$(mktemp -d "$out_root/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

start=$(date +%s)
ver="${KUBERNETES_VERSION#v}"
major="${ver%%.*}"; rest="${ver#*.}"; minor="${rest%%.*}"
ldflags="-s -w"
ldflags+=" -X k8s.io/component-base/version.gitVersion=${KUBERNETES_VERSION}"
ldflags+=" -X k8s.io/component-base/version.gitMajor=${major}"
ldflags+=" -X k8s.io/component-base/version.gitMinor=${minor}"
ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
ldflags+=" -X k8s.io/component-base/version.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"

log "building etcd, kube-apiserver, kube-controller-manager, kube-scheduler (k8s ${KUBERNETES_VERSION}); a cold build takes several minutes"
# One go build for all four commands so they share compilation; -mod=readonly: go.sum is committed.
CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "$ldflags" -o "$tmp/" \
  ./cmd/etcd ./cmd/kube-apiserver ./cmd/kube-controller-manager ./cmd/kube-scheduler

log "installing kwok ${KWOK_VERSION}"
# Run outside this module so its go.mod does not interfere with `go install pkg@version`.
(cd "$tmp" && CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS=-buildvcs=false \
   go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}")

for b in "${binaries[@]}"; do
  [[ -x "$tmp/$b" ]] || { log "error: $b was not built"; exit 1; }
done

etcd_version="$(go list -mod=readonly -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
mkdir -p "$bin_dir"
for b in "${binaries[@]}"; do mv -f "$tmp/$b" "$bin_dir/$b"; done
{
  echo "$want_stamp"
  echo "etcd=${etcd_version} go=$(go env GOVERSION) built=$(date -u +%Y-%m-%dT%H:%M:%SZ) seconds=$(( $(date +%s) - start ))"
} > "$stamp"
log "built in $(( $(date +%s) - start ))s: kubernetes ${KUBERNETES_VERSION}, etcd ${etcd_version}, kwok ${KWOK_VERSION}"
echo "$bin_dir"
