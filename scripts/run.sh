#!/usr/bin/env bash
# `npm start`: install, then run ferry with the embedded default (no Redis, no S3):
# listens on 0.0.0.0:5000, mirrors Docker Hub and the built-in registries, caches in ./data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
exec node_modules/.bin/bun src/main.ts serve "$@"
