#!/usr/bin/env bash
# A LoRA training step of a MiMo-VL-7B-shaped model: vlm4j (CUDA, bf16) against transformers + peft, in one run on a
# GPU host with python3, torch, transformers and peft (see scripts/gpu_train_hf.py and CudaTrainBench for the exact
# definitions: ms-swift's LoRA defaults on the language model, one sequence of 2048 tokens, AdamW, clipping).
#   usage: bash scripts/gpu-train-compare.sh [CudaTrainBench options]   from a built tree, or
#          bash BUNDLE/train-compare.sh [options]                       from a bundle made by scripts/gpu-pack.sh
# Env: CKPT (checkpoint folder, default /tmp/mimo-vl-7b-random; written the first time, about 16.6 GB),
#      OUT (results: hf_train.json, vlm4j_train.json, train_table.md; default /tmp/out), SKIP_HF=1, HF_GC=1 (also the
#      transformers run with gradient checkpointing, into hf_train_gc.json), TOKENS (default 2048).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CKPT=${CKPT:-/tmp/mimo-vl-7b-random}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
TOKENS=${TOKENS:-2048}
if [ -f "$here/jre.txz" ]; then                     # a bundle
  ex() { python3 -c 'import tarfile,sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"; }
  [ -x /tmp/jre/jre/bin/java ] || { mkdir -p /tmp/jre && ex "$here/jre.txz" /tmp/jre; } || exit 1
  [ -d /tmp/fx/fixtures ] || { mkdir -p /tmp/fx && ex "$here/fixtures.txz" /tmp/fx; } || exit 1
  [ -f "$here/lib/api-0.38.0.jar" ] || ex "$here/lib-djl.txz" "$here/lib" || exit 1
  JAVA=/tmp/jre/jre/bin/java; PYDIR=$here; FX=/tmp/fx/fixtures/tiny-qwen2_5-vl
  CP="$here/ptx:$here/cp/classes:$here/cp/test-classes:$(ls "$here"/lib/*.jar | tr '\n' ':')"
else                                                # a built tree (./mvnw -DskipTests package test-compile)
  cd "$here/.."
  JAVA=${JAVA:-java}; PYDIR=scripts; FX=${VLM4J_FIXTURES:-../shared/fixtures}/tiny-qwen2_5-vl
  CP="target/classes:target/test-classes:$(ls target/lib/*.jar | tr '\n' ':')"
fi
date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if [ ! -f "$CKPT/model.safetensors.index.json" ]; then
  python3 "$PYDIR/gpu_compare_hf.py" make "$CKPT" "$FX" 2>&1 | grep -v Warning | tee "$OUT/make.log" || exit 1
fi
if [ -z "${SKIP_HF:-}" ]; then
  python3 "$PYDIR/gpu_train_hf.py" bench "$CKPT" "$OUT/hf_train.json" --tokens "$TOKENS" 2>&1 | grep -v Warning | tee "$OUT/hf_train.log"
  if [ -n "${HF_GC:-}" ]; then
    python3 "$PYDIR/gpu_train_hf.py" bench "$CKPT" "$OUT/hf_train_gc.json" --tokens "$TOKENS" --gradient-checkpointing 1 2>&1 \
      | grep -v Warning | tee "$OUT/hf_train_gc.log"
  fi
fi
"$JAVA" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -Xss8m -Xmx32g -cp "$CP" \
  dev.vlm4j.train.CudaTrainBench "$CKPT" "$OUT/vlm4j_train.json" --tokens "$TOKENS" "$@" 2>&1 | grep -v "WARNING: Using incubator" | tee "$OUT/vlm4j_train.log"
python3 "$PYDIR/gpu_train_hf.py" table "$OUT/hf_train.json" "$OUT/vlm4j_train.json" | tee "$OUT/train_table.md"
