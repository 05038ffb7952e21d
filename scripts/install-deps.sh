#!/usr/bin/env bash
# Installs every system package streamllm needs to build and test (Debian 12). Idempotent; run as root.
set -euo pipefail
# clang + libclang-rt-14-dev: the libFuzzer targets (scripts/fuzz.sh, docs/fuzzing.md); OpenMPI: data-parallel
# training across processes (docs/training.md).
PKGS=(cmake g++ make pkg-config libcli11-dev nlohmann-json3-dev libgtest-dev libpcre2-dev libhdf5-dev libomp-dev
      libopenmpi-dev openmpi-bin
      clang libclang-rt-14-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
