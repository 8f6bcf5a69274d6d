#!/usr/bin/env bash
# buildah on the image cache's own containers storage (the one hack/image/build.sh fills):
#   hack/image/buildah.sh images
#   hack/image/buildah.sh from localhost/kai:0.1.0
# The storage lives in ${KAI_IMAGE_CACHE:-$HOME/.cache/kai-image}/containers; its run root
# (mount counts, locks) is per boot, so nothing stale survives a reboot.
set -euo pipefail
cache="${KAI_IMAGE_CACHE:-$HOME/.cache/kai-image}"
boot_id="$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo noboot)"
mkdir -p "$cache/containers/run"
exec buildah --root "$cache/containers/storage" --runroot "$cache/containers/run/$boot_id" "$@"
