#!/usr/bin/env bash
# `npm run release`: the release binaries, built offline.
#   dist/ferry-linux-x64     dist/ferry-linux-arm64     dist/SHA256SUMS (sha256sum format)
#
# `bun build --compile --target=bun-linux-ARCH` normally downloads the Bun runtime for ARCH
# from GitHub. Here the runtime comes from the npm registry instead: the package
# @oven/bun-linux-{x64,aarch64}, of the same version as the Bun that compiles, holds it as
# bin/bun; `--compile-executable-path` points the compiler at it. For the host's own
# architecture that is the compiling Bun itself; the others are fetched once with
# `npm pack` into node_modules/.cache/ferry-release/ (npm's own cache keeps the tarball).
#
# Checks: the binary for this host's architecture must run `version`; the other one must
# be an ELF for its machine, and runs `version` under qemu-user when qemu-user-static
# and the target's libc (e.g. libc6-arm64-cross) are installed.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
BUN=node_modules/.bin/bun
BUN_VERSION=$("$BUN" --version)
CACHE=node_modules/.cache/ferry-release/bun-$BUN_VERSION
TARGETS=(x64 arm64)

log() { echo "release: $*" >&2; }
die() {
  echo "release: $*" >&2
  exit 1
}

# Bun's and npm's names for an architecture, `uname -m`'s, and the ELF e_machine value.
npm_arch() { case $1 in x64) echo x64 ;; arm64) echo aarch64 ;; *) die "unknown arch $1" ;; esac; }
elf_machine() { case $1 in x64) echo 3e ;; arm64) echo b7 ;; esac; }
host_arch() { case $(uname -m) in x86_64 | amd64) echo x64 ;; aarch64 | arm64) echo arm64 ;; *) uname -m ;; esac; }

# The path of the Bun $BUN_VERSION runtime for linux-$1: for the host's own architecture the
# compiler itself; otherwise the npm package's bin/bun, fetched once.
runtime_for() {
  local arch=$1 pkg dir
  if [ "$arch" = "$(host_arch)" ]; then
    readlink -f "$BUN"
    return
  fi
  pkg=@oven/bun-linux-$(npm_arch "$arch")
  dir=$CACHE/$arch
  if [ ! -x "$dir/bin/bun" ]; then
    log "fetching $pkg@$BUN_VERSION from the npm registry (once)"
    local tmp tarball
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack "$pkg@$BUN_VERSION" --silent >/dev/null) || {
      rm -rf "$tmp"
      die "npm pack $pkg@$BUN_VERSION failed"
    }
    tarball=$(find "$tmp" -maxdepth 1 -name '*.tgz' | head -n 1)
    mkdir -p "$dir"
    tar -xzf "$tarball" -C "$dir" --strip-components=1 package/bin/bun package/package.json
    rm -rf "$tmp"
    chmod +x "$dir/bin/bun"
  fi
  echo "$dir/bin/bun"
}

# The ELF e_machine of a file, as two hex digits (bytes 18-19, little endian).
elf_machine_of() { od -An -tx1 -j18 -N1 "$1" | tr -d ' \n'; }

mkdir -p dist
files=()
for arch in "${TARGETS[@]}"; do
  out=dist/ferry-linux-$arch
  runtime=$(runtime_for "$arch")
  log "building $out (runtime $runtime)"
  rm -f "$out"
  "$BUN" build --compile --minify --bytecode --format=esm --target="bun-linux-$arch" --compile-executable-path="$runtime" \
    src/main.ts src/cache/file-write-worker.ts --outfile "$out" >&2
  [ "$(head -c 4 "$out" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ] || die "$out is not an ELF file"
  [ "$(elf_machine_of "$out")" = "$(elf_machine "$arch")" ] || die "$out: wrong ELF machine $(elf_machine_of "$out")"
  files+=("ferry-linux-$arch")
done

# Checks.
host=$(host_arch)
for arch in "${TARGETS[@]}"; do
  out=dist/ferry-linux-$arch
  command -v file >/dev/null 2>&1 && log "$(file -b "$out" | cut -d, -f1-2): $out"
  if [ "$arch" = "$host" ]; then
    log "$out version: $("$out" version)"
  else
    qarch=$(case $arch in x64) echo x86_64 ;; arm64) echo aarch64 ;; esac)
    qemu=$(command -v "qemu-$qarch-static" || command -v "qemu-$qarch" || true)
    sysroot=/usr/$qarch-linux-gnu
    if [ -n "$qemu" ] && [ -d "$sysroot" ]; then
      log "$out version (under $(basename "$qemu")): $("$qemu" -L "$sysroot" "$out" version)"
    else
      cross=$(case $arch in x64) echo libc6-amd64-cross ;; arm64) echo libc6-arm64-cross ;; esac)
      log "$out: not run here (needs qemu-user-static and $cross)"
    fi
  fi
done

(cd dist && sha256sum "${files[@]}" >SHA256SUMS)
log "dist/SHA256SUMS:"
cat dist/SHA256SUMS >&2
ls -l "${files[@]/#/dist/}" dist/SHA256SUMS
