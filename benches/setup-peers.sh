#!/usr/bin/env bash
# Installs what the `peers` benchmark feature needs to build RocksDB (librocksdb-sys uses
# bindgen, which needs libclang) on Debian/Ubuntu. Run once before
#   cargo bench --bench kv --features peers
set -euo pipefail
if ! ldconfig -p 2>/dev/null | grep -qE 'libclang(-[0-9.]+)?\.so'; then
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq libclang-dev clang
fi
echo "libclang available: $(ldconfig -p | grep -m1 -E 'libclang(-[0-9.]+)?\.so' | awk '{print $NF}')"
