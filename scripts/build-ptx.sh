#!/usr/bin/env bash
# Compiles the CUDA kernels to PTX when nvcc is available (called by Maven in process-resources).
#   usage: build-ptx.sh SRC.cu OUT.ptx
# Without nvcc it prints a note and exits 0: the CUDA backend then compiles the source at first use with NVRTC.
set -euo pipefail
src=${1:?usage: build-ptx.sh SRC.cu OUT.ptx}
out=${2:?usage: build-ptx.sh SRC.cu OUT.ptx}
nvcc=${NVCC:-$(command -v nvcc || true)}
if [ -z "$nvcc" ]; then
  echo "build-ptx: nvcc not found; $out not built (the CUDA backend will use NVRTC at run time)"
  exit 0
fi
if [ -f "$out" ] && [ "$out" -nt "$src" ]; then exit 0; fi
mkdir -p "$(dirname "$out")"
# compute_80 PTX runs on Ampere and newer (H100/H200 JIT it to sm_90).
"$nvcc" -arch=compute_80 -ptx -O3 -o "$out.tmp" "$src"
mv "$out.tmp" "$out"
echo "build-ptx: $out"
