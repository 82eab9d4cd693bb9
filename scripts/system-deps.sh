#!/usr/bin/env bash
# Install the Debian packages stepper needs when their binaries are missing.
# Usage: scripts/system-deps.sh PACKAGE...   (binary names are looked up from the package names below)
set -euo pipefail

binary_of() {
  case "$1" in
    redis-server) echo redis-server ;;
    tesseract-ocr) echo tesseract ;;
    espeak-ng) echo espeak-ng ;;
    *) echo "$1" ;;
  esac
}

missing=()
for package in "$@"; do
  command -v "$(binary_of "$package")" >/dev/null 2>&1 || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "stepper needs these system packages: ${missing[*]}" >&2
  echo "install them, then run make again:  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "stepper needs: ${missing[*]}; this machine has no apt-get, install them with its package manager" >&2
  exit 1
fi
echo "==> installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
