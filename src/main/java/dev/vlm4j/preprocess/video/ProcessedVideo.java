package dev.vlm4j.preprocess.video;

import dev.vlm4j.tensor.Tensor;

/**
 * One preprocessed video: {@code pixelValues [gt*gh*gw, 1176]} float32 patch rows ({@code pixel_values_videos}),
 * {@code gridThw = [gt, gh, gw]} ({@code video_grid_thw}) and the seconds one temporal patch spans
 * ({@code second_per_grid_ts = temporal_patch_size / fps}).
 *
 * @param sampledFrames the number of frames taken from the source (before padding to an even count)
 */
public record ProcessedVideo(Tensor pixelValues, int[] gridThw, double secondPerGridT, int sampledFrames) {
    /** {@code video_grid_thw} as an int64 tensor of shape {@code [1, 3]}. */
    public Tensor gridTensor() {
        return Tensor.ofLongs(new long[]{gridThw[0], gridThw[1], gridThw[2]}, 1, 3);
    }

    /** {@code second_per_grid_ts} as a float32 tensor of shape {@code [1]}. */
    public Tensor secondPerGridTensor() {
        return Tensor.of(new float[]{(float) secondPerGridT}, 1);
    }
}
