#!/usr/bin/env bash
# PEFT / transformers interop check (issue #6): an adapter written by `vlm4j sft` must load in Python peft and give
# the same logits, and `vlm4j export --merge_lora true` output must load in transformers with matching logits.
#   scripts/peft-interop.sh pack [OUTDIR]     (here, with the JDK) builds a bundle, default /work/main/.gpu (replaced):
#                                             portable JRE, classes, the jars sft/trace/export need (no video natives;
#                                             DJL tokenizers repacked to its linux-x86_64 native), the tiny model,
#                                             one fixture image, this script and peft_interop.py
#   bash OUTDIR/peft-interop.sh               (on a host with python3 + torch + transformers + peft, no JDK) runs
#                                             sft -> trace (adapter, unmerged) -> export (merged) -> trace (merged),
#                                             then peft_interop.py compares with transformers/peft; PASS/FAIL lines
#   bash scripts/peft-interop.sh              (from a built tree) the same with the tree's java and fixtures
# Env: WORK (scratch folder, default /tmp/peft-interop), STEPS (sft steps, default 12), LR (default 5e-3),
#      SFT_EXTRA (more sft options, e.g. "--modules_to_save lm_head,model.norm").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if [ "${1:-}" = pack ]; then
  cd "$here/.."
  out=${2:-/work/main/.gpu}
  . scripts/java-home.sh
  ./mvnw -B -q -o -ntp -DskipTests package
  fx=${VLM4J_FIXTURES:-/work/shared/fixtures}
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  rm -rf "$out" && mkdir -p "$out"
  # JRE: java.desktop for ImageIO (images) and the training plots (PNG)
  "$JAVA_HOME/bin/jlink" --add-modules java.base,jdk.incubator.vector,java.desktop,java.logging,java.management,jdk.unsupported \
    --strip-debug --no-header-files --no-man-pages --output "$tmp/jre" 2>&1 | grep -v incubator || true
  mkdir -p "$tmp/app/lib" "$tmp/app/fixtures/tiny-qwen2_5-vl" "$tmp/app/fixtures/img"
  cp -r target/classes "$tmp/app/classes"
  for j in target/lib/*.jar; do
    case $(basename "$j") in
      ffmpeg-*|javacv-*|javacpp-*) ;;                      # video decoding only
      jetty-*|javalin-*|kotlin-*|jakarta.*|prometheus-*|pdfbox*|fontbox-*|VectorGraphics2D-*|graphics2d-*) ;;  # serve; plot PDF/SVG
      tokenizers-*)                                        # only the linux-x86_64 native, stripped, stored (xz packs it)
        mkdir -p "$tmp/tok" && (cd "$tmp/tok" && unzip -q "$OLDPWD/$j" && rm -rf native/lib/linux-aarch64 native/lib/osx-* native/lib/win-*)
        so=$tmp/tok/native/lib/linux-x86_64/cpu/libtokenizers.so
        ! command -v strip >/dev/null || { strip --strip-unneeded "$so" && touch -d @315532800 "$so"; }
        "$JAVA_HOME/bin/jar" --create --no-compress --file "$tmp/app/lib/$(basename "$j")" --manifest "$tmp/tok/META-INF/MANIFEST.MF" \
          -C "$tmp/tok" . ;;
      *) cp "$j" "$tmp/app/lib/" ;;
    esac
  done
  cp "$fx"/tiny-qwen2_5-vl/*.json "$fx"/tiny-qwen2_5-vl/*.safetensors "$tmp/app/fixtures/tiny-qwen2_5-vl/"
  cp "$fx"/cases/image_describe/image0.png "$tmp/app/fixtures/img/"
  tar cf - -C "$tmp" jre | xz -T2 -9 > "$out/jre.txz"
  tar cf - -C "$tmp" app | xz -T2 -9 > "$out/app.txz"
  cp scripts/peft-interop.sh scripts/peft_interop.py "$out/"
  du -sh "$out"; ls -l "$out"
  exit 0
fi

WORK=${WORK:-/tmp/peft-interop}; STEPS=${STEPS:-12}; LR=${LR:-5e-3}
rm -rf "$WORK"; mkdir -p "$WORK"
if [ -f "$here/jre.txz" ]; then                          # a bundle
  ex() { python3 -c 'import tarfile,sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"; }
  [ -x /tmp/pi-jre/jre/bin/java ] || { mkdir -p /tmp/pi-jre && ex "$here/jre.txz" /tmp/pi-jre; }
  rm -rf /tmp/pi-app; mkdir -p /tmp/pi-app && ex "$here/app.txz" /tmp/pi-app
  JAVA=/tmp/pi-jre/jre/bin/java; PY=$here/peft_interop.py
  CP="/tmp/pi-app/app/classes:/tmp/pi-app/app/lib/*"
  MODEL=/tmp/pi-app/app/fixtures/tiny-qwen2_5-vl; IMG=/tmp/pi-app/app/fixtures/img/image0.png
else                                                     # a built tree
  cd "$here/.."; . scripts/java-home.sh
  JAVA=$JAVA_HOME/bin/java; PY=scripts/peft_interop.py; CP="target/classes:target/lib/*"
  fx=${VLM4J_FIXTURES:-/work/shared/fixtures}
  MODEL=$fx/tiny-qwen2_5-vl; IMG=$fx/cases/image_describe/image0.png
fi
vlm4j() { "$JAVA" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -Xss8m -Xmx8g -cp "$CP" dev.vlm4j.cli.Main "$@" 2>&1 \
  | grep -v "WARNING: Using incubator"; return "${PIPESTATUS[0]}"; }
date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true
"$JAVA" -version 2>&1 | head -1

# (1) a tiny ms-swift dataset: text-only rows and a row with the fixture image
cat > "$WORK/train.jsonl" <<EOF
{"messages": [{"role": "user", "content": "What colour is the sky?"}, {"role": "assistant", "content": "Blue, mostly."}]}
{"messages": [{"role": "system", "content": "You are MiMo."}, {"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi there!"}]}
{"messages": [{"role": "user", "content": "<image>Describe this image."}, {"role": "assistant", "content": "A gradient with shapes."}], "images": ["$IMG"]}
EOF
vlm4j sft --model "$MODEL" --dataset "$WORK/train.jsonl" --train_type lora --max_steps "$STEPS" --learning_rate "$LR" \
  --lora_dropout 0 --split_dataset_ratio 0 --save_steps "$STEPS" --logging_steps 4 --disable_tqdm true \
  --seed 42 --output_dir "$WORK/output" ${SFT_EXTRA:-} | tail -5
CKPT=$(ls -d "$WORK"/output/v*/checkpoint-* | sort -V | tail -1)
echo "checkpoint: $CKPT"; cat "$CKPT/adapter_config.json"; echo

# (2) cases (prompt only, no answer: the trace's logits are over input_ids) and traces with the adapter unmerged
for c in text image; do mkdir -p "$WORK/cases/$c"; done
cat > "$WORK/cases/text/messages.json" <<'EOF'
[{"role": "system", "content": "You are MiMo."}, {"role": "user", "content": "Hello, 世界! 12345 apples? What colour is the sky?"}]
EOF
echo '{"messages": "messages.json", "images": [], "videos": [], "generate": false}' > "$WORK/cases/text/case.json"
cp "$IMG" "$WORK/cases/image/image0.png"
cat > "$WORK/cases/image/messages.json" <<'EOF'
[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe this image."}]}]
EOF
echo '{"messages": "messages.json", "images": ["image0.png"], "videos": [], "generate": false}' > "$WORK/cases/image/case.json"
for c in text image; do
  vlm4j trace --model "$MODEL" --case "$WORK/cases/$c" --adapter "$CKPT" --out "$WORK/trace-$c-adapter.safetensors"
done

# (3)+(4) export merged, trace the merged folder (no adapter), compare everything in Python
vlm4j export --adapters "$CKPT" --merge_lora true --model "$MODEL" --output_dir "$WORK/merged"
for c in text image; do
  vlm4j trace --model "$WORK/merged" --case "$WORK/cases/$c" --out "$WORK/trace-$c-merged.safetensors"
done
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 python3 "$PY" --model "$MODEL" --adapter "$CKPT" --merged "$WORK/merged" --work "$WORK" --cases text,image
