#!/usr/bin/env bash
# Build (or reuse) the helm CLI from Go modules, for the chart tests (tests/charts).
#
#   hack/tools/build-helm.sh             # build once, then reuse
#   FORCE=1 hack/tools/build-helm.sh     # rebuild
#
# Output: ${KAI_TOOLS_DIR:-$HOME/.cache/kai-tools}/bin/helm. The last line printed on
# stdout is the path of the binary. The build runs with `go build -p 1` by default
# (KAI_GO_BUILD_P to change it): the CI machine has 2 shared cores.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.18.6}"
# The Kubernetes version helm assumes for `helm template`/`lint` without a cluster (helm's
# own Makefile stamps it from its client-go; without it a source build says v1.20).
HELM_KUBE_MAJOR=1
HELM_KUBE_MINOR=33
tools_dir="${KAI_TOOLS_DIR:-$HOME/.cache/kai-tools}"
bin_dir="$tools_dir/bin"
helm="$bin_dir/helm"
stamp="$bin_dir/.helm.stamp"

log() { echo "build-helm.sh: $*" >&2; }

if [[ "${FORCE:-0}" != 1 && -x "$helm" && -f "$stamp" && "$(head -n1 "$stamp")" == "helm=${HELM_VERSION} kube=${HELM_KUBE_MAJOR}.${HELM_KUBE_MINOR}" ]]; then
  log "up to date: helm ${HELM_VERSION}"
  echo "$helm"
  exit 0
fi

command -v go >/dev/null 2>&1 || { log "error: go is not installed (need Go >= 1.24)"; exit 1; }

mkdir -p "$bin_dir"
tmp="$(mktemp -d "$tools_dir/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
log "building helm ${HELM_VERSION} from Go modules (a cold build takes a few minutes)"
# Outside any module, so `go install pkg@version` uses helm's own go.mod.
(cd "$tmp" && CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS="-buildvcs=false -p=${KAI_GO_BUILD_P:-1}" \
   go install -trimpath \
   -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION} \
     -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=${HELM_KUBE_MAJOR} \
     -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${HELM_KUBE_MINOR} \
     -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=${HELM_KUBE_MAJOR} \
     -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${HELM_KUBE_MINOR}" \
   "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}")
[[ -x "$tmp/helm" ]] || { log "error: helm was not built"; exit 1; }
mv -f "$tmp/helm" "$helm"
{
  echo "helm=${HELM_VERSION} kube=${HELM_KUBE_MAJOR}.${HELM_KUBE_MINOR}"
  echo "go=$(go env GOVERSION) built=$(date -u +%Y-%m-%dT%H:%M:%SZ) seconds=$(( $(date +%s) - start ))"
} > "$stamp"
log "built helm ${HELM_VERSION} in $(( $(date +%s) - start ))s"
echo "$helm"
