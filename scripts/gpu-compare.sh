#!/usr/bin/env bash
# vlm4j (CUDA, bf16) against Hugging Face transformers (bf16, sdpa) on a random MiMo-VL-7B-shaped checkpoint, in one
# run on a GPU host that has python3 with torch + transformers: decode tok/s at batch 1, 16 and 64 (128 prompt +
# 128 new tokens, greedy, no early stop), vision encode of a 1036x1036 image, prefill of that image + 32 text tokens;
# prints both sides and the ratio (see scripts/gpu_compare_hf.py and CudaCompareBench for the exact definitions).
#   usage: bash scripts/gpu-compare.sh [--before]      from a built tree (java on PATH or $JAVA), or
#          bash BUNDLE/compare.sh [--before]           from a bundle made by scripts/gpu-pack.sh (no JDK needed)
# --before also times the replaced paths (per-sequence decode attention, one-query-per-block attention).
# Env: CKPT (checkpoint folder, default /tmp/mimo-vl-7b-random; written the first time, about 16.6 GB),
#      OUT (results: hf.json, vlm4j.json, table.md; default /tmp/out), SKIP_HF=1 (reuse $OUT/hf.json).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CKPT=${CKPT:-/tmp/mimo-vl-7b-random}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
if [ -f "$here/jre.txz" ]; then                     # a bundle
  ex() { python3 -c 'import tarfile,sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"; }
  [ -x /tmp/jre/jre/bin/java ] || { mkdir -p /tmp/jre && ex "$here/jre.txz" /tmp/jre; } || exit 1
  [ -d /tmp/fx/fixtures ] || { mkdir -p /tmp/fx && ex "$here/fixtures.txz" /tmp/fx; } || exit 1
  JAVA=/tmp/jre/jre/bin/java; PY=$here/gpu_compare_hf.py; FX=/tmp/fx/fixtures/tiny-qwen2_5-vl
  CP="$here/ptx:$here/cp/classes:$here/cp/test-classes:$(ls "$here"/lib/*.jar | tr '\n' ':')"
else                                                # a built tree (./mvnw -DskipTests package test-compile)
  cd "$here/.."
  JAVA=${JAVA:-java}; PY=scripts/gpu_compare_hf.py; FX=${VLM4J_FIXTURES:-../shared/fixtures}/tiny-qwen2_5-vl
  CP="target/classes:target/test-classes:$(ls target/lib/*.jar | tr '\n' ':')"
fi
date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if [ ! -f "$CKPT/model.safetensors.index.json" ]; then
  python3 "$PY" make "$CKPT" "$FX" 2>&1 | grep -v Warning | tee "$OUT/make.log" || exit 1
fi
if [ -z "${SKIP_HF:-}" ]; then
  python3 "$PY" bench "$CKPT" "$OUT/hf.json" 2>&1 | tee "$OUT/hf.log"
fi
"$JAVA" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -Xss8m -Xmx32g -cp "$CP" \
  dev.vlm4j.compute.cuda.CudaCompareBench "$CKPT" "$OUT/vlm4j.json" "$@" 2>&1 | grep -v "WARNING: Using incubator" | tee "$OUT/vlm4j.log"
python3 "$PY" table "$OUT/hf.json" "$OUT/vlm4j.json" | tee "$OUT/table.md"
