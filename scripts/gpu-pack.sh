#!/usr/bin/env bash
# Packs what the CUDA tests need into one folder for a GPU host that has the NVIDIA driver but no JDK or Maven
# (about 52 MB, under the 64 MiB a device call may carry): a jlink'd JRE (xz), compiled classes and test classes,
# the few jars they use, prebuilt PTX (when nvcc is here), the tiny fixture model and cases (xz), run.sh and compare.sh.
#   usage: scripts/gpu-pack.sh OUTDIR        then on the GPU host: bash OUTDIR/run.sh (tests), bash OUTDIR/compare.sh
#   (vlm4j against transformers, see scripts/gpu-compare.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: gpu-pack.sh OUTDIR}
. scripts/java-home.sh
./mvnw -B -q -o -ntp -DskipTests package
./mvnw -B -q -o -ntp test-compile
fx=${VLM4J_FIXTURES:-../shared/fixtures}
m2=${M2_REPO:-$HOME/.m2/repository}
rm -rf "$out" && mkdir -p "$out/cp" "$out/lib" "$out/ptx/dev/vlm4j/compute/cuda"
cp -r target/classes "$out/cp/classes"
cp -r target/test-classes "$out/cp/test-classes"
cp target/lib/jackson-*.jar target/lib/picocli-*.jar target/lib/xchart-*.jar "$out/lib/"   # xchart: the loss plots of sft
for j in org/junit/jupiter/junit-jupiter-api/5.11.4/junit-jupiter-api-5.11.4.jar \
         org/junit/jupiter/junit-jupiter-engine/5.11.4/junit-jupiter-engine-5.11.4.jar \
         org/junit/jupiter/junit-jupiter-params/5.11.4/junit-jupiter-params-5.11.4.jar \
         org/junit/platform/junit-platform-commons/1.11.4/junit-platform-commons-1.11.4.jar \
         org/junit/platform/junit-platform-engine/1.11.4/junit-platform-engine-1.11.4.jar \
         org/junit/platform/junit-platform-launcher/1.11.4/junit-platform-launcher-1.11.4.jar \
         org/opentest4j/opentest4j/1.3.0/opentest4j-1.3.0.jar \
         org/apiguardian/apiguardian-api/1.1.2/apiguardian-api-1.1.2.jar; do
  cp "$m2/$j" "$out/lib/"
done
bash scripts/build-ptx.sh src/main/resources/dev/vlm4j/compute/cuda/kernels.cu "$out/ptx/dev/vlm4j/compute/cuda/kernels.ptx"
bash scripts/build-ptx.sh src/main/resources/dev/vlm4j/compute/cuda/train_kernels.cu "$out/ptx/dev/vlm4j/compute/cuda/train_kernels.ptx"
bash scripts/build-ptx.sh src/main/resources/dev/vlm4j/compute/cuda/flash_kernels.cu "$out/ptx/dev/vlm4j/compute/cuda/flash_kernels.ptx"
bash scripts/build-ptx.sh src/main/resources/dev/vlm4j/compute/cuda/flash2_kernels.cu "$out/ptx/dev/vlm4j/compute/cuda/flash2_kernels.ptx"
tmp=$(mktemp -d)
"$JAVA_HOME/bin/jlink" --add-modules java.base,jdk.incubator.vector,java.logging,java.management,jdk.unsupported,java.xml,java.sql,java.naming,java.desktop \
  --strip-debug --no-header-files --no-man-pages --output "$tmp/jre" 2>&1 | grep -v incubator || true
tar cf - -C "$tmp" jre | xz -T2 -6 > "$out/jre.txz"
mkdir -p "$tmp/fixtures/tiny-qwen2_5-vl" "$tmp/fixtures/cases"
cp "$fx"/tiny-qwen2_5-vl/*.json "$fx"/tiny-qwen2_5-vl/*.safetensors "$tmp/fixtures/tiny-qwen2_5-vl/"
for c in ${GPU_PACK_CASES:-text_only image_describe two_images video}; do   # GPU_PACK_CASES: fewer, for a smaller bundle
  mkdir -p "$tmp/fixtures/cases/$c" && cp "$fx/cases/$c/tensors.safetensors" "$tmp/fixtures/cases/$c/"
done
mkdir -p "$tmp/fixtures/cases/lora" && cp "$fx/cases/lora/image0.png" "$tmp/fixtures/cases/lora/"   # training tests' image
tar cf - -C "$tmp" fixtures | xz -T2 -6 > "$out/fixtures.txz"
# the Hugging Face tokenizers (DJL) for tests that load a whole model folder: its jar slimmed to the linux-x86_64
# native library, xz'd; the bundle's scripts unpack it into lib/
mkdir -p "$tmp/djl/x" "$tmp/djl/jars"
(cd "$tmp/djl/x" && unzip -q "$OLDPWD/target/lib/tokenizers-0.38.0.jar" && find native/lib -mindepth 1 -maxdepth 1 -type d ! -name linux-x86_64 -exec rm -rf {} + \
  && { strip --strip-unneeded native/lib/linux-x86_64/cpu/libtokenizers.so 2>/dev/null || true; } \
  && zip -0 -q -r "$tmp/djl/jars/tokenizers-0.38.0-linux-x86_64.jar" .)   # stored: the xz below compresses better
cp target/lib/api-0.38.0.jar target/lib/gson-*.jar target/lib/jna-*.jar target/lib/slf4j-api-2.0.17.jar target/lib/slf4j-nop-*.jar "$tmp/djl/jars/"
(cd "$tmp/djl/jars" && for j in jna-*.jar; do   # JNA's native stubs for other platforms are not needed there
   zip -q -d "$j" 'com/sun/jna/aix*' 'com/sun/jna/darwin*' 'com/sun/jna/dragonfly*' 'com/sun/jna/freebsd*' 'com/sun/jna/openbsd*' \
     'com/sun/jna/sunos*' 'com/sun/jna/win32*' 'com/sun/jna/linux-[!x]*' 'com/sun/jna/linux-x86/*' >/dev/null || true; done)
tar cf - -C "$tmp/djl/jars" . | xz -T2 -6 > "$out/lib-djl.txz"
rm -rf "$tmp"
cp scripts/gpu-run.sh "$out/run.sh"
cp scripts/gpu-compare.sh "$out/compare.sh"
cp scripts/gpu_compare_hf.py "$out/"
cp scripts/gpu-train-compare.sh "$out/train-compare.sh"
cp scripts/gpu_train_hf.py "$out/"
du -sh "$out"
