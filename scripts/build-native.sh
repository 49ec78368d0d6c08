#!/usr/bin/env bash
# Rebuilds the native CPU kernels (src/main/c) into the resource the jar carries, and records the source's SHA-256
# next to it (NativeKernelsTest fails when the source changed and the library was not rebuilt).
# Needs gcc with AVX-512 support (any x86-64 gcc >= 8). Usage: scripts/build-native.sh
set -euo pipefail
cd "$(dirname "$0")/.."
src=src/main/c/vlm4j_cpu.c
dir=src/main/resources/native/linux-x86_64
mkdir -p "$dir"
gcc -O3 -std=c11 -mavx512f -mavx512bw -mavx512vl -mf16c -mfma -fPIC -shared -nostdlib -ffreestanding -fno-stack-protector \
    -fno-asynchronous-unwind-tables -Wl,--build-id=none -Wl,-z,noexecstack -Wall -Werror -s \
    -o "$dir/libvlm4j_cpu.so" "$src"
sha256sum "$src" | cut -d' ' -f1 > "$dir/libvlm4j_cpu.so.source-sha256"
ls -l "$dir"
