package dev.vlm4j.compute.cuda;

/**
 * How the CUDA backend keeps matrices and runs products.
 * <ul>
 *   <li>{@link #F32}: parity mode. Weight matrices are widened to float32 on upload and products run in float32
 *       (no TF32), as the reference fixtures were computed; about 1e-4 from transformers' float32 run.</li>
 *   <li>{@link #BF16}: speed mode. Weight matrices stay bf16 as stored (f32/f16 ones are rounded to bf16);
 *       activations stay float32 and are rounded to bf16 only as GEMM inputs, with float32 accumulation and output,
 *       as transformers does on GPU.</li>
 * </ul>
 * Vectors (norm weights, biases) are float32 in both modes.
 */
public enum Precision { F32, BF16 }
