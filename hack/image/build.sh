#!/usr/bin/env bash
# Build the kai container image without a Docker engine: a Debian bookworm base made from
# Debian's packages by mmdebstrap, the repository's Dockerfile built on it by buildah
# (chroot isolation), and the result exported as an OCI archive (skopeo, podman load, or
# `skopeo copy oci-archive:... docker://<registry>/...` to push it).
#
#   hack/image/build.sh                    # build (or reuse) the image
#   FORCE=1 hack/image/build.sh            # rebuild the image even if its inputs are unchanged
#   FORCE_BASE=1 hack/image/build.sh       # also remake the Debian base (security updates)
#   KAI_IMAGE_NO_INSTALL=1 ...             # never apt-get install mmdebstrap/buildah/skopeo
#   KAI_IMAGE_VERBOSE=1 ...                # buildah's whole output (else: the steps; the log on failure)
#
# Output: ${KAI_IMAGE_CACHE:-$HOME/.cache/kai-image}/kai-<version>.oci.tar, image name
# localhost/kai:<version> inside. The last line printed on stdout is the archive's path.
# Everything is cached under KAI_IMAGE_CACHE: the base root filesystem (remade after
# KAI_IMAGE_BASE_MAX_AGE_DAYS, default 30) and buildah's layer cache (containers storage),
# so a source change rebuilds only the kai wheel and the runtime layers. The build is
# skipped when the archive's stamp matches the Dockerfile, the build context and the base.
# Runs as root (rootless buildah and mmdebstrap modes are not tried here) and needs the
# Debian mirrors and, for pip inside the build, the Python package index. buildah uses the
# overlay storage driver; STORAGE_DRIVER=vfs is its fallback where the kernel has no
# overlayfs (slower, more disk; not tried here).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${KAI_IMAGE_CACHE:-$HOME/.cache/kai-image}"
suite=bookworm          # Python 3.11, the version the project pins
max_age_days="${KAI_IMAGE_BASE_MAX_AGE_DAYS:-30}"
# The Debian base: minbase (apt, dpkg, coreutils, bash) plus Python 3.11. No documentation,
# man pages or translations (also for what the builder stage installs later).
base_packages="python3"
base_opts=(--variant=minbase --include="$base_packages"
           --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
           --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
           --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias'
           --aptopt='Acquire::Languages "none"')
# The builder stage's apt packages on that base (python:3.11-slim needs only gcc g++).
build_packages="gcc g++ python3-dev python3-venv"

log() { echo "build.sh: $*" >&2; }
sha() { sha256sum | cut -c1-64; }

# ---------------------------------------------------------------- tools, from Debian
need=()
for t in mmdebstrap buildah skopeo; do command -v "$t" >/dev/null 2>&1 || need+=("$t"); done
if ((${#need[@]})); then
  if [[ "${KAI_IMAGE_NO_INSTALL:-0}" != 1 && $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing ${need[*]} from Debian"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
  else
    log "error: missing ${need[*]} (Debian: apt-get install mmdebstrap buildah skopeo)"
    exit 1
  fi
fi

# buildah's storage lives in the cache (hack/image/buildah.sh), its layer cache included.
# One build at a time per cache (a second one waits, then finds the archive up to date).
mkdir -p "$cache/base"
exec 9>"$cache/.lock"
flock 9
bah() { "$here/buildah.sh" "$@"; }
find "$cache/containers/run" -mindepth 1 -maxdepth 1 ! -name "$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo noboot)" \
  -exec rm -rf {} + 2>/dev/null || true
export BUILDAH_ISOLATION=chroot

total_start=$(date +%s)

# ---------------------------------------------------------------- the Debian base
recipe="suite=$suite ${base_opts[*]} mirror=${KAI_DEBIAN_MIRROR:-default}"
recipe_id="$(echo "$recipe" | sha | cut -c1-12)"
rootfs="$cache/base/debian-$suite-$recipe_id.tar"
base_image="localhost/kai-debian-base:$suite-$recipe_id"
if [[ -f "$rootfs" && -n "$(find "$rootfs" -mtime "+$max_age_days" 2>/dev/null)" ]]; then
  log "the $suite base is older than $max_age_days days: remaking it"
  FORCE_BASE=1
fi
if [[ "${FORCE_BASE:-0}" == 1 || ! -s "$rootfs" ]]; then
  start=$(date +%s)
  log "making the Debian $suite base with mmdebstrap ($base_packages; minutes on a cold cache)"
  mirrors=()
  [[ -n "${KAI_DEBIAN_MIRROR:-}" ]] && mirrors=("$KAI_DEBIAN_MIRROR")
  rm -f "$rootfs.tmp"
  mmdebstrap --quiet --format=tar "${base_opts[@]}" "$suite" "$rootfs.tmp" "${mirrors[@]}" >&2
  mv -f "$rootfs.tmp" "$rootfs"
  find "$cache/base" -name "debian-$suite-*.tar" ! -name "$(basename "$rootfs")" -delete
  bah rmi -f "$base_image" >/dev/null 2>&1 || true
  log "base root filesystem in $(( $(date +%s) - start ))s: $rootfs ($(du -m "$rootfs" | cut -f1) MB)"
fi
# The image records which tarball it came from (and how it was imported); a remade tarball
# is imported again. Device nodes stay out (the runtime provides /dev; rootless engines
# cannot create them when they unpack a layer).
rootfs_id="$(stat -c '%Y-%s' "$rootfs") nodev"
if [[ "$(bah inspect --type image --format '{{index .ImageAnnotations "io.kai.rootfs"}}' "$base_image" 2>/dev/null)" != "$rootfs_id" ]]; then
  start=$(date +%s)
  bah rmi -f "$base_image" >/dev/null 2>&1 || true
  ctr="$(bah from --name "kai-base-import-$$" scratch)"
  trap 'bah rm "$ctr" >/dev/null 2>&1 || true' EXIT
  mnt="$(bah mount "$ctr")"
  tar -C "$mnt" --numeric-owner --xattrs --xattrs-include='*' --exclude='./dev/*' -xpf "$rootfs"
  bah umount "$ctr" >/dev/null
  bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd /bin/bash --annotation "io.kai.rootfs=$rootfs_id" \
    --label "io.kai.base=debian $suite mmdebstrap minbase +$base_packages" "$ctr"
  bah commit --quiet --rm "$ctr" "$base_image" >/dev/null
  trap - EXIT
  while read -r old; do
    [[ "$old" == "$base_image" ]] || bah rmi -f "$old" >/dev/null 2>&1 || true
  done < <(bah images --noheading --format '{{.Name}}:{{.Tag}}' | grep '^localhost/kai-debian-base:')
  log "imported $base_image in $(( $(date +%s) - start ))s"
fi

# ---------------------------------------------------------------- the kai image
version="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$repo/pyproject.toml" | head -n1)"
[[ -n "$version" ]] || { log "error: no version in pyproject.toml"; exit 1; }
image="localhost/kai:$version"
archive="$cache/kai-$version.oci.tar"
stamp="$archive.stamp"
# The build context as the Dockerfile sees it (.dockerignore keeps build output out).
context_files() {
  if git -C "$repo" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$repo" ls-files -co --exclude-standard -- Dockerfile .dockerignore pyproject.toml setup.py README.md LICENSE kai
  else
    (cd "$repo" && find Dockerfile .dockerignore pyproject.toml setup.py README.md LICENSE kai -type f \
       ! -name '*.so' ! -name '*.c' ! -name '*.pyc' ! -name '*.html' ! -path '*/__pycache__/*')
  fi
}
context_id="$(cd "$repo" && context_files | LC_ALL=C sort | while read -r f; do if [[ -f "$f" ]]; then sha256sum "$f"; fi; done | sha)"
base_id="$(bah inspect --type image --format '{{.FromImageID}}' "$base_image")"
want_stamp="image=$image context=$context_id base=$base_id build_packages=$build_packages"
if [[ "${FORCE:-0}" != 1 && -s "$archive" && -f "$stamp" && "$(head -n1 "$stamp")" == "$want_stamp" ]]; then
  log "up to date: $archive"
  echo "$archive"
  exit 0
fi

# pip inside the build trusts what the host's pip trusts: a CA bundle configured for pip here
# (PIP_CERT, pip.conf; e.g. a proxy's CA) is the build secret `pip-ca`, never stored in a layer.
secrets=()
pip_cert="${KAI_IMAGE_PIP_CERT:-${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}}"
if [[ -n "$pip_cert" && -f "$pip_cert" ]]; then
  secrets+=(--secret "id=pip-ca,src=$pip_cert")
fi

start=$(date +%s)
log "building $image from the Dockerfile on $base_image (buildah bud, chroot isolation, cached layers)"
buildlog="$cache/build.log"
bah bud --isolation chroot --network host --layers --format oci "${secrets[@]}" \
  --build-arg "BASE=$base_image" --build-arg "BUILD_PACKAGES=$build_packages" \
  --label "org.opencontainers.image.version=$version" --label "org.opencontainers.image.title=kai" \
  -t "$image" -f "$repo/Dockerfile" "$repo" > "$buildlog" 2>&1 &
bud_pid=$!
if [[ "${KAI_IMAGE_VERBOSE:-0}" == 1 ]]; then tail -n +1 -f --pid "$bud_pid" "$buildlog" >&2; fi
if ! wait "$bud_pid"; then
  log "error: buildah bud failed; the end of $buildlog:"
  tail -n 60 "$buildlog" >&2
  exit 1
fi
grep -E '^\[[0-9]+/[0-9]+\] STEP|^--> Using cache' "$buildlog" | sed 's/^/  /' | cut -c1-160 >&2
build_s=$(( $(date +%s) - start ))
# Keep the layer cache this build used (every step's image, printed as `--> <id>`), the
# base and the image; drop the untagged images of earlier builds (stale sources).
keep=" $(grep -oE '^--> (Using cache )?[0-9a-f]{11,64}$' "$buildlog" | grep -oE '[0-9a-f]{11,64}$' | tr '\n' ' ')"
while read -r id name; do
  id="${id#sha256:}"
  [[ "$name" == "<none>"* ]] || continue
  for k in $keep; do [[ "$id" == "$k"* ]] && continue 2; done
  bah rmi "$id" >/dev/null 2>&1 || true
done < <(bah images -a --no-trunc --noheading --format '{{.ID}} {{.Name}}')

start=$(date +%s)
rm -f "$archive.tmp"
bah push --quiet --format oci "$image" "oci-archive:$archive.tmp:$image" >&2
skopeo inspect --config "oci-archive:$archive.tmp" >/dev/null
mv -f "$archive.tmp" "$archive"
size="$(bah images --noheading --format '{{.Size}}' "$image" | tr -d ' ')"
base_size="$(bah images --noheading --format '{{.Size}}' "$base_image" | tr -d ' ')"
archive_mb="$(du -m "$archive" | cut -f1)"
{
  echo "$want_stamp"
  echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ) build_seconds=$build_s export_seconds=$(( $(date +%s) - start ))" \
       "total_seconds=$(( $(date +%s) - total_start )) image_size=$size base_size=$base_size" \
       "archive_mb=$archive_mb"
} > "$stamp"
log "built $image in ${build_s}s: $size uncompressed (base $base_size), OCI archive ${archive_mb} MB"
echo "$archive"
