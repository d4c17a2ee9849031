#!/usr/bin/env bash
# `npm test`: install everything (npm packages and the Debian packages of the real
# components), type-check, run every test, and end with one line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --test || { echo "install failed"; echo "0 passed, 1 failed"; exit 1; }

failed_extra=0
if ! node_modules/.bin/tsc --noEmit -p .; then
  echo "type check failed"
  failed_extra=1
fi

mkdir -p .test-artifacts
report=.test-artifacts/junit.xml
rm -f "$report"
node_modules/.bin/bun test --timeout 60000 --reporter=junit --reporter-outfile="$report" "$@"
status=$?

read -r tests failures errors skipped < <(node -e '
  const xml = require("fs").readFileSync(process.argv[1], "utf8");
  const m = /<testsuites[^>]*>/.exec(xml)?.[0] ?? "";
  const n = (k) => Number((new RegExp(` ${k}="(\\d+)"`).exec(m) || [0, 0])[1]);
  console.log(n("tests"), n("failures"), n("errors"), n("skipped"));
' "$report" 2>/dev/null || echo "0 0 1 0")
failed=$((failures + errors + failed_extra))
passed=$((tests - failures - errors - skipped))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
