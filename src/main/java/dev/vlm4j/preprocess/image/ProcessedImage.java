package dev.vlm4j.preprocess.image;

import dev.vlm4j.tensor.Tensor;

/**
 * One preprocessed image: {@code pixelValues [gt*gh*gw, 1176]} float32 patch rows and {@code gridThw = [gt, gh, gw]}.
 */
public record ProcessedImage(Tensor pixelValues, int[] gridThw) {
    /** {@code image_grid_thw} as an int64 tensor of shape {@code [1, 3]}. */
    public Tensor gridTensor() {
        return Tensor.ofLongs(new long[]{gridThw[0], gridThw[1], gridThw[2]}, 1, 3);
    }

    /** The number of merged tokens this image takes in the prompt: {@code gt*gh*gw / mergeSize^2}. */
    public long tokens(int mergeSize) {
        return (long) gridThw[0] * gridThw[1] * gridThw[2] / ((long) mergeSize * mergeSize);
    }
}
