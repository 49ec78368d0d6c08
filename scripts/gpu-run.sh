#!/usr/bin/env bash
# Runs the CUDA tests (ops vs CPU, model parity) from a bundle made by scripts/gpu-pack.sh, on a GPU host with no JDK:
#   bash BUNDLE/run.sh [extra java args and main class, e.g. -Xmx48g dev.vlm4j.compute.cuda.CudaDecodeBench /tmp/b bf16]
# Writes logs to $OUT (default /tmp/out). Kernels: first NVRTC, then the bundled compute_80 PTX (ptx/).
cd "$(dirname "$0")"
OUT=${OUT:-/tmp/out}; mkdir -p $OUT /tmp/jre /tmp/fx
date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
ex() { python3 -c 'import tarfile,sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"; }
ex jre.txz /tmp/jre && ex fixtures.txz /tmp/fx || exit 1
[ -f lib/api-0.38.0.jar ] || ex lib-djl.txz lib || exit 1
echo "libs:"; (ls /usr/local/cuda/lib64 2>/dev/null | grep -E "nvrtc.so|cublasLt.so"; find / -xdev \( -name 'libcublasLt.so*' -o -name 'libnvrtc.so*' -o -name 'libcuda.so.1' \) 2>/dev/null | head -20)
CP="cp/classes:cp/test-classes:$(ls lib/*.jar | tr '\n' ':')"
J=(/tmp/jre/jre/bin/java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -Xss8m -Dvlm4j.fixtures=/tmp/fx/fixtures)
echo "=== ops (kernels via NVRTC) ==="
"${J[@]}" -cp "$CP" dev.vlm4j.compute.cuda.GpuTestMain dev.vlm4j.compute.cuda.CudaBackendTest 2>&1 | tee $OUT/ops.log
if grep -q "CUDA unavailable" $OUT/ops.log; then
  echo "=== ops again with prebuilt PTX ==="
  "${J[@]}" -cp "ptx:$CP" dev.vlm4j.compute.cuda.GpuTestMain dev.vlm4j.compute.cuda.CudaBackendTest 2>&1 | tee $OUT/ops2.log
fi
echo "=== model parity (prebuilt compute_80 PTX) ==="
"${J[@]}" -cp "ptx:$CP" dev.vlm4j.compute.cuda.GpuTestMain dev.vlm4j.compute.cuda.CudaModelParityTest 2>&1 | tee $OUT/parity.log
if [ $# -gt 0 ]; then "${J[@]}" -cp "ptx:$CP" "$@" 2>&1 | tee $OUT/extra.log; fi
