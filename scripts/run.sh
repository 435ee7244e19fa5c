#!/usr/bin/env bash
# Entry point for a fresh Debian/Ubuntu machine: installs what is missing (apt packages, npm dependencies, the
# native addon), then runs the requested job.
#   bash scripts/run.sh demo    the seed recipe on MNIST: teacher LeNet-5, student alone, student + KD, and the verdict
#   bash scripts/run.sh test    the test suite
#   bash scripts/run.sh bench   the engine benchmark
#   bash scripts/run.sh setup   set-up only
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libtorch-dev libgloo-dev libopenblas0-pthread dataset-fashion-mnist g++ make python3 chromium espeak-ng)

setup_apt() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "setup: installing ${missing[*]}"
  local SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

setup_npm() {
  if [ ! -d node_modules ] || [ ! -f build/Release/tsdistill_native.node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "setup: npm ci (builds the native addon against libtorch)"
    npm ci --no-audit --no-fund
  elif [ native/addon.cc -nt build/Release/tsdistill_native.node ] || [ native/find-libtorch.js -nt build/Release/tsdistill_native.node ]; then
    echo "setup: rebuilding the native addon (its sources changed)"
    node native/build.js
  fi
}

job="${1:-test}"
shift || true
setup_apt
setup_npm
case "$job" in
  setup) ;;
  test) npm test ;;
  demo) npm run build --silent && node dist/src/cli/main.js compare examples/seed-mnist-lenet.yaml --threads "$(nproc)" "$@" ;;
  bench) npm run bench:engine --silent -- "$@" ;;
  *) echo "unknown job '$job' (expected demo, test, bench or setup)" >&2; exit 2 ;;
esac
