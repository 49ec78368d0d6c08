package dev.vlm4j.compute;

import dev.vlm4j.compute.cpu.CpuBackend;
import dev.vlm4j.compute.cpu.QuantMode;
import dev.vlm4j.tensor.Device;

/** Creates the backend the command line asks for. */
public final class Backends {
    private Backends() {}

    /**
     * @param device  "cpu" (other devices are provided by their own modules)
     * @param quant   bf16 | f32 | none (weights as stored), q8_0, q4_0; null means as stored
     * @param threads kernel worker threads; 0 or less means all processors
     */
    public static Backend create(String device, String quant, int threads) {
        Device d = Device.parse(device == null ? "cpu" : device);
        if (!d.isCpu()) throw new IllegalArgumentException("device " + d + " is not available in this build (use cpu)");
        return new CpuBackend(QuantMode.parse(quant), threads);
    }
}
