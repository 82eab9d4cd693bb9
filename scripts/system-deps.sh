#!/usr/bin/env bash
# Install the Debian packages stepper needs when they are missing.
# Usage: [OCR_LANGUAGES="eng deu ..."] scripts/system-deps.sh [--list] PACKAGE...
#   A package counts as installed when its binary answers (binary names are looked up below). Each tesseract
#   language code in OCR_LANGUAGES (eng, deu, chi_sim: tesseract's names) adds the package tesseract-ocr-<code>
#   (lowercase, _ as -), installed when `tesseract --list-langs` names the code.
#   --list prints every package wanted, one a line, installed or not, and installs nothing.
set -euo pipefail

list_only=false
if [ "${1:-}" = "--list" ]; then
  list_only=true
  shift
fi

binary_of() {
  case "$1" in
    redis-server) echo redis-server ;;
    tesseract-ocr) echo tesseract ;;
    espeak-ng) echo espeak-ng ;;
    rabbitmq-server) echo /usr/lib/rabbitmq/bin/rabbitmq-server ;;
    *) echo "$1" ;;
  esac
}

language_package() {
  local code="${1,,}"
  echo "tesseract-ocr-${code//_/-}"
}

read -r -a languages <<< "${OCR_LANGUAGES:-}"
if $list_only; then
  for package in "$@"; do echo "$package"; done
  for code in "${languages[@]}"; do language_package "$code"; done
  exit 0
fi

missing=()
for package in "$@"; do
  command -v "$(binary_of "$package")" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#languages[@]} -gt 0 ]; then
  installed_languages="$(tesseract --list-langs 2>/dev/null || true)"
  for code in "${languages[@]}"; do
    grep -qx -- "$code" <<< "$installed_languages" || missing+=("$(language_package "$code")")
  done
fi
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
