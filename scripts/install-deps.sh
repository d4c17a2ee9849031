#!/usr/bin/env bash
# Installs what ferry's runtime (npm) and, with --test, its tests (Debian packages) need.
# Idempotent: skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x node_modules/.bin/bun ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

if [ "${1:-}" = "--test" ]; then
  # The real components the tests run: the upstream registry, clients, Redis, nginx, Ceph (S3), the ACME CA.
  need=()
  for pair in docker-registry:docker-registry skopeo:skopeo podman:podman ctr:containerd dockerd:docker.io \
              redis-server:redis-server nginx:nginx tinyproxy:tinyproxy chromium:chromium systemd-analyze:systemd curl:curl shellcheck:shellcheck qemu-aarch64-static:qemu-user-static htpasswd:apache2-utils unshare:util-linux newuidmap:uidmap openssl:openssl \
              ceph-mon:ceph-mon ceph-osd:ceph-osd radosgw:radosgw ceph:ceph-common pebble:pebble; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
  done
  # The arm64 release binary is run under qemu-user with Debian's arm64 libc.
  [ -d /usr/aarch64-linux-gnu ] || need+=(libc6-arm64-cross)
  if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" ca-certificates iproute2 >/dev/null
  fi
fi
