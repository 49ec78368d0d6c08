#!/usr/bin/env bash
# Batch-1 decode speed of the CUDA backend on a random MiMo-VL-7B-shaped decoder (see CudaDecodeBench).
#   usage: scripts/gpu-bench.sh [DIR] [bf16|f32 ...] [--prompt N] [--tokens N] [--layers N]
# DIR (default /tmp/vlm4j-bench-7b) gets the random checkpoint (about 15 GB) the first time.
# Needs a built tree: ./mvnw -q -DskipTests package test-compile (or the classes/jars given in VLM4J_BENCH_CP).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/vlm4j-bench-7b}; shift || true
cp=${VLM4J_BENCH_CP:-target/classes:target/test-classes:$(ls target/lib/*.jar | tr '\n' ':')}
java=${JAVA:-java}
exec "$java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -Xmx48g -cp "$cp" \
  dev.vlm4j.compute.cuda.CudaDecodeBench "$dir" "$@"
