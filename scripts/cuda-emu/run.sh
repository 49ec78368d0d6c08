#!/usr/bin/env bash
# CPU emulation of the tensor-core flash attention kernels (no GPU needed): flash_kernels.cu and flash2_kernels.cu are
# compiled with g++ against emu.h (lanes as fibers, warps in lockstep between ldmatrix / mma.sync / shuffles / votes,
# blocks one after another; prep.py swaps the inline-asm helpers for emulated ones), run on small ragged cases
# (segments, causal with query offset, GQA, n = 1) and compared with each other and with a float64 reference.
#   usage: scripts/cuda-emu/run.sh [case index]        (about 15 s for all cases)
set -euo pipefail
cd "$(dirname "$0")"
R=../../src/main/resources/dev/vlm4j/compute/cuda
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
python3 prep.py $R/flash_kernels.cu "$T/old.inc" oldk
python3 prep.py $R/flash2_kernels.cu "$T/new.inc" newk
g++ -O2 -std=c++20 -w -I. -I"$T" -o "$T/emu" main.cpp
"$T/emu" "$@"
