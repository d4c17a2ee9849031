#!/usr/bin/env bash
# `npm run bench [-- --quick] [-- --check]`: installs what the benchmarks need (npm
# packages, and Debian's wrk, nginx, docker-registry, skopeo, openssl; gcc and libssl-dev
# for the C relay of scenario 3), then runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
need=()
for pair in wrk:wrk nginx:nginx docker-registry:docker-registry skopeo:skopeo openssl:openssl setpriv:util-linux cc:gcc; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
[ -f /usr/include/openssl/evp.h ] || need+=(libssl-dev)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
exec node_modules/.bin/bun bench/run.ts "$@"
