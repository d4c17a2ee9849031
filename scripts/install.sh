#!/usr/bin/env bash
# Installs ferry as a systemd service on this host (or into a staging root):
#   /usr/local/bin/ferry                  the binary (from BINARY, else ./dist/ferry)
#   ferry system user and group           no login shell, home = the cache dir (not created by useradd)
#   /etc/ferry/config.toml                from config.example.toml, only if absent (never overwritten)
#   /var/cache/ferry                      the cache, owned by ferry, mode 0750
#   /etc/systemd/system/ferry.service     from scripts/ferry.service
# then, when systemd is running: systemctl daemon-reload, enable --now (restart on upgrade).
# Idempotent: a second run changes nothing and says what it skipped.
#
# Usage: scripts/install.sh [--root DIR] [BINARY]
#        scripts/install.sh [--root DIR] --uninstall [--purge]
#   --root DIR    install into DIR instead of / (no systemctl; the user is created with
#                 useradd --root DIR when DIR/etc/passwd exists, else skipped with a note)
#   --uninstall   stop and disable the unit, remove the binary and the unit; keep config and cache
#   --purge       with --uninstall: also remove /etc/ferry, /var/cache/ferry and the ferry user
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
REPO_DIR=$(dirname "$SCRIPT_DIR")
UNIT_SRC="$SCRIPT_DIR/ferry.service"
CONFIG_SRC="$REPO_DIR/config.example.toml"

USER_NAME=ferry
BIN_PATH=/usr/local/bin/ferry
CONFIG_DIR=/etc/ferry
CONFIG_PATH=/etc/ferry/config.toml
CACHE_DIR=/var/cache/ferry
UNIT_PATH=/etc/systemd/system/ferry.service

ROOT=/
MODE=install
PURGE=0
BINARY=""

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

die() {
  echo "install.sh: $*" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case "$1" in
    --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT=$2; shift 2 ;;
    --root=*) ROOT=${1#--root=}; shift ;;
    --uninstall) MODE=uninstall; shift ;;
    --purge) PURGE=1; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$BINARY" ] || die "only one BINARY argument"; BINARY=$1; shift ;;
  esac
done
[ "$PURGE" -eq 0 ] || [ "$MODE" = uninstall ] || die "--purge goes with --uninstall"
[ "$MODE" = install ] || [ -z "$BINARY" ] || die "--uninstall takes no BINARY"

[ -d "$ROOT" ] || die "--root $ROOT: no such directory"
ROOT=$(cd "$ROOT" && pwd)
if [ "$ROOT" = / ]; then P=""; else P=$ROOT; fi
[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0 …)"

CHANGES=0
did() { echo "  done: $*"; CHANGES=$((CHANGES + 1)); }
skip() { echo "  skip: $*"; }
note() { echo "  note: $*"; }

# systemctl only on the live system with systemd as init.
systemd_running() { [ -z "$P" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

# The ferry user's "uid:gid" in the target root's passwd, or nothing.
ferry_ids() {
  [ -f "$P/etc/passwd" ] || return 0
  awk -F: -v u="$USER_NAME" '$1 == u { print $3 ":" $4 }' "$P/etc/passwd"
}

# ensure_owner PATH OWNER(uid:gid): chown when it differs.
ensure_owner() {
  local path=$1 want=$2
  [ -n "$want" ] || return 0
  if [ "$(stat -c %u:%g "$path")" != "$want" ]; then
    chown "$want" "$path"
    did "owner of $path set to $want"
  fi
}

# ensure_mode PATH MODE (octal, e.g. 0750): chmod when it differs.
ensure_mode() {
  local path=$1 want=$2
  if [ "$(stat -c %a "$path")" != "$(printf %o "$((8#$want))")" ]; then
    chmod "$want" "$path"
    did "mode of $path set to $want"
  fi
}

# ensure_dir PATH MODE [OWNER]
ensure_dir() {
  local path=$1 mode=$2 owner=${3:-}
  if [ -d "$path" ]; then
    skip "${path#"$P"} exists"
  else
    mkdir -p "$path"
    chmod "$mode" "$path"
    did "created ${path#"$P"}"
  fi
  ensure_mode "$path" "$mode"
  ensure_owner "$path" "$owner"
}

# ensure_file SRC DEST MODE: copy when the content differs (atomically: a running binary
# is replaced, not written into). Returns 0 when it copied, 1 when it was already there.
ensure_file() {
  local src=$1 dest=$2 mode=$3
  if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
    skip "${dest#"$P"} is up to date"
    ensure_mode "$dest" "$mode"
    return 1
  fi
  local verb=installed
  [ -e "$dest" ] && verb=updated
  mkdir -p "$(dirname "$dest")"
  cp "$src" "$dest.new.$$"
  chmod "$mode" "$dest.new.$$"
  mv -f "$dest.new.$$" "$dest"
  did "$verb ${dest#"$P"}"
  return 0
}

nologin_shell() {
  local s
  for s in /usr/sbin/nologin /sbin/nologin; do
    [ -x "$P$s" ] && { echo "$s"; return; }
  done
  echo /usr/sbin/nologin
}

ensure_user() {
  if [ -n "$(ferry_ids)" ]; then
    skip "user $USER_NAME exists"
    return
  fi
  if [ -n "$P" ] && [ ! -f "$P/etc/passwd" ]; then
    note "no $P/etc/passwd: user $USER_NAME not created, files stay owned by root (create it on the target)"
    return
  fi
  command -v useradd >/dev/null 2>&1 || die "useradd not found (Debian/Ubuntu: apt-get install passwd)"
  local rootopt=()
  [ -z "$P" ] || rootopt=(--root "$P")
  useradd "${rootopt[@]}" --system --user-group --home-dir "$CACHE_DIR" --no-create-home \
    --shell "$(nologin_shell)" --comment "ferry registry mirror" "$USER_NAME"
  did "created system user $USER_NAME ($(ferry_ids))"
}

install_config() {
  ensure_dir "$P$CONFIG_DIR" 0755 0:0
  local ids
  ids=$(ferry_ids)
  if [ -e "$P$CONFIG_PATH" ]; then
    skip "$CONFIG_PATH exists (kept as it is)"
    return
  fi
  [ -f "$CONFIG_SRC" ] || die "$CONFIG_SRC not found (run from a ferry checkout or release)"
  # The example with the cache dir pointed at $CACHE_DIR (the unit sets it too).
  sed -e "s|^dir = \"./data\"|dir = \"$CACHE_DIR\"|" "$CONFIG_SRC" >"$P$CONFIG_PATH.new.$$"
  chmod 0640 "$P$CONFIG_PATH.new.$$"
  # root owns it, the ferry group reads it (it may hold credentials).
  [ -z "$ids" ] || chown "0:${ids#*:}" "$P$CONFIG_PATH.new.$$"
  mv "$P$CONFIG_PATH.new.$$" "$P$CONFIG_PATH"
  did "installed $CONFIG_PATH from config.example.toml (cache.dir = $CACHE_DIR)"
}

do_install() {
  local src=$BINARY
  if [ -z "$src" ]; then
    if [ -f ./dist/ferry ]; then src=./dist/ferry; else src=$REPO_DIR/dist/ferry; fi
  fi
  [ -f "$src" ] || die "binary $src not found: build it with \`npm run build\` or pass its path"
  [ -f "$UNIT_SRC" ] || die "$UNIT_SRC not found"
  local version
  if version=$("$src" version 2>/dev/null); then
    echo "ferry install: $version → ${ROOT%/}/ (from $src)"
  else
    echo "ferry install: $src (cannot run here: $(file -b "$src" 2>/dev/null | cut -d, -f1-2)) → ${ROOT%/}/"
  fi

  local binary_changed=0 unit_changed=0
  ensure_file "$src" "$P$BIN_PATH" 0755 && binary_changed=1
  ensure_user
  local ids
  ids=$(ferry_ids)
  install_config
  ensure_dir "$P$CACHE_DIR" 0750 "$ids"
  ensure_file "$UNIT_SRC" "$P$UNIT_PATH" 0644 && unit_changed=1

  if ! systemd_running; then
    if [ -n "$P" ]; then
      note "staging root $ROOT: systemctl not called"
    else
      note "systemd is not running here: not enabling or starting ferry.service (start it with: $BIN_PATH serve --config $CONFIG_PATH)"
    fi
  else
    if [ "$unit_changed" -eq 1 ]; then
      systemctl daemon-reload
      did "systemctl daemon-reload"
    fi
    if systemctl is-enabled --quiet ferry.service; then
      skip "ferry.service is enabled"
    else
      systemctl enable ferry.service
      did "enabled ferry.service"
    fi
    if systemctl is-active --quiet ferry.service; then
      if [ "$binary_changed" -eq 1 ] || [ "$unit_changed" -eq 1 ]; then
        systemctl restart ferry.service
        did "restarted ferry.service (new binary or unit)"
      else
        skip "ferry.service is running"
      fi
    else
      systemctl start ferry.service
      did "started ferry.service"
    fi
  fi

  if [ "$CHANGES" -eq 0 ]; then
    echo "ferry install: nothing to do, everything is installed"
  else
    echo "ferry install: $CHANGES change(s)"
  fi
}

remove() {
  local path=$1
  if [ -e "$path" ] || [ -L "$path" ]; then
    rm -rf "$path"
    did "removed ${path#"$P"}"
  else
    skip "${path#"$P"} is already gone"
  fi
}

do_uninstall() {
  local what=uninstall
  [ "$PURGE" -eq 0 ] || what="uninstall --purge"
  echo "ferry $what: ${ROOT%/}/"
  if systemd_running; then
    if systemctl is-active --quiet ferry.service; then
      systemctl stop ferry.service
      did "stopped ferry.service"
    fi
    if systemctl is-enabled --quiet ferry.service 2>/dev/null; then
      systemctl disable ferry.service
      did "disabled ferry.service"
    fi
  elif [ -n "$P" ]; then
    note "staging root $ROOT: systemctl not called"
  else
    note "systemd is not running here: nothing to stop"
  fi
  remove "$P$UNIT_PATH"
  remove "$P$BIN_PATH"
  if systemd_running; then
    systemctl daemon-reload
  fi
  if [ "$PURGE" -eq 1 ]; then
    remove "$P$CONFIG_DIR"
    remove "$P$CACHE_DIR"
    if [ -n "$(ferry_ids)" ]; then
      local rootopt=()
      [ -z "$P" ] || rootopt=(--root "$P")
      userdel "${rootopt[@]}" "$USER_NAME"
      did "removed user $USER_NAME"
    else
      skip "user $USER_NAME does not exist"
    fi
  else
    skip "kept $CONFIG_DIR and $CACHE_DIR (--purge removes them and the user)"
  fi
  if [ "$CHANGES" -eq 0 ]; then
    echo "ferry uninstall: nothing to do"
  else
    echo "ferry uninstall: $CHANGES change(s)"
  fi
}

if [ "$MODE" = install ]; then do_install; else do_uninstall; fi
