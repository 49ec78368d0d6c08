package dev.vlm4j.compute;

import dev.vlm4j.compute.cpu.CpuBackend;
import dev.vlm4j.compute.cpu.QuantMode;
import dev.vlm4j.compute.cuda.CudaBackend;
import dev.vlm4j.compute.cuda.Precision;
import dev.vlm4j.tensor.Device;

/** Creates the backend the command line (or a library user) asks for: {@code cpu} or {@code cuda[:N]}. */
public final class Backends {
    private Backends() {}

    /**
     * @param device  "cpu" or "cuda[:N]" (null: cpu)
     * @param quant   CPU: bf16 | f32 | none (weights as stored), q8_0, q4_0 (null: as stored).
     *                CUDA: bf16 (default, speed) or f32 (parity mode: float32 products, no TF32)
     * @param threads CPU kernel worker threads; 0 or less means all processors
     */
    public static Backend create(String device, String quant, int threads) {
        Device d = Device.parse(device == null ? "cpu" : device);
        if (d.isCpu()) return new CpuBackend(QuantMode.parse(quant), threads);
        String why = CudaBackend.unavailableReason();
        if (why != null)
            throw new IllegalArgumentException("--device " + d + " is not usable here: " + why + " (use --device cpu)");
        Precision p = quant == null || quant.equalsIgnoreCase("bf16") ? Precision.BF16
                : quant.equalsIgnoreCase("f32") || quant.equalsIgnoreCase("fp32") ? Precision.F32 : null;
        if (p == null) throw new IllegalArgumentException("--quant " + quant + " is not available on CUDA (use bf16 or f32)");
        return CudaBackend.create(d.index(), p);
    }
}
