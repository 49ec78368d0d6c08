package dev.vlm4j.preprocess.image;

import dev.vlm4j.tensor.Tensor;

import java.util.List;

/**
 * Several preprocessed images, concatenated in order: {@code pixelValues [sum of rows, 1176]} and one
 * {@code [gt, gh, gw]} per image.
 */
public record ProcessedImages(Tensor pixelValues, List<int[]> gridThw) {
    /** {@code image_grid_thw} as an int64 tensor of shape {@code [I, 3]}. */
    public Tensor gridTensor() {
        long[] v = new long[gridThw.size() * 3];
        for (int i = 0; i < gridThw.size(); i++)
            for (int j = 0; j < 3; j++) v[i * 3 + j] = gridThw.get(i)[j];
        return Tensor.ofLongs(v, gridThw.size(), 3);
    }

    /** Concatenates single images' results (they must share the row width). */
    public static ProcessedImages concat(List<ProcessedImage> images) {
        if (images.isEmpty()) return new ProcessedImages(Tensor.zeros(0, 0), List.of());
        long cols = images.getFirst().pixelValues().dim(1);
        long rows = 0;
        for (ProcessedImage p : images) {
            if (p.pixelValues().dim(1) != cols)
                throw new IllegalArgumentException("row widths differ: " + cols + " and " + p.pixelValues().dim(1));
            rows += p.pixelValues().dim(0);
        }
        float[] all = new float[Math.toIntExact(rows * cols)];
        int off = 0;
        List<int[]> grids = new java.util.ArrayList<>();
        for (ProcessedImage p : images) {
            float[] v = p.pixelValues().toFloatArray();
            System.arraycopy(v, 0, all, off, v.length);
            off += v.length;
            grids.add(p.gridThw().clone());
        }
        return new ProcessedImages(Tensor.of(all, rows, cols), List.copyOf(grids));
    }
}
