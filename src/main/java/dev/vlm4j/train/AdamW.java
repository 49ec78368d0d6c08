package dev.vlm4j.train;

import dev.vlm4j.train.autograd.GradBackend;

import java.util.List;

/**
 * AdamW (decoupled weight decay, bias-corrected moments), as torch.optim.AdamW: for each parameter
 * {@code p -= lr * wd * p}, then {@code p -= lr * m_hat / (sqrt(v_hat) + eps)}. Updates heap float32 parameter
 * tensors in place (the LoRA factors); the moments are float32.
 */
public final class AdamW {
    private final List<GradBackend.Parameter> params;
    private final double beta1, beta2, eps, weightDecay;
    private final float[][] m, v;
    private int t;

    public AdamW(List<GradBackend.Parameter> params, double beta1, double beta2, double eps, double weightDecay) {
        this.params = params;
        this.beta1 = beta1;
        this.beta2 = beta2;
        this.eps = eps;
        this.weightDecay = weightDecay;
        m = new float[params.size()][];
        v = new float[params.size()][];
        for (int i = 0; i < params.size(); i++) {
            if (params.get(i).tensor().heapFloats() == null)
                throw new IllegalArgumentException("parameter " + params.get(i).name() + " is not a float32 heap tensor ("
                        + params.get(i).tensor() + "); only such parameters (LoRA factors) can be updated");
            m[i] = new float[params.get(i).grad().length];
            v[i] = new float[m[i].length];
        }
    }

    /** Steps taken so far. */
    public int steps() { return t; }

    /**
     * The optimizer state as float32 tensors named {@code <parameter>.exp_avg} and {@code <parameter>.exp_avg_sq}
     * (torch's names for the first and second moments); {@link #steps()} is the step count.
     */
    public java.util.Map<String, dev.vlm4j.tensor.Tensor> state() {
        java.util.Map<String, dev.vlm4j.tensor.Tensor> out = new java.util.LinkedHashMap<>();
        for (int i = 0; i < params.size(); i++) {
            long[] shape = params.get(i).tensor().shape();
            out.put(params.get(i).name() + ".exp_avg", dev.vlm4j.tensor.Tensor.of(m[i].clone(), shape));
            out.put(params.get(i).name() + ".exp_avg_sq", dev.vlm4j.tensor.Tensor.of(v[i].clone(), shape));
        }
        return out;
    }

    /** Restores a {@link #state()} and the step count; every parameter's moments must be present with its size. */
    public void loadState(java.util.Map<String, dev.vlm4j.tensor.Tensor> state, int steps) {
        for (int i = 0; i < params.size(); i++) {
            String n = params.get(i).name();
            for (String kind : new String[]{".exp_avg", ".exp_avg_sq"}) {
                dev.vlm4j.tensor.Tensor s = state.get(n + kind);
                if (s == null) throw new IllegalArgumentException("optimizer state has no " + n + kind);
                float[] src = s.toFloatArray(), dst = kind.equals(".exp_avg") ? m[i] : v[i];
                if (src.length != dst.length)
                    throw new IllegalArgumentException("optimizer state " + n + kind + " has " + src.length + " values, the parameter " + dst.length);
                System.arraycopy(src, 0, dst, 0, dst.length);
            }
        }
        t = steps;
    }

    /** One update with learning rate {@code lr} from the current gradients. */
    public void step(double lr) {
        t++;
        double bc1 = 1 - Math.pow(beta1, t), bc2 = 1 - Math.pow(beta2, t);
        for (int i = 0; i < params.size(); i++) {
            float[] p = params.get(i).tensor().heapFloats(), g = params.get(i).grad(), mi = m[i], vi = v[i];
            for (int k = 0; k < p.length; k++) {
                mi[k] = (float) (beta1 * mi[k] + (1 - beta1) * g[k]);
                vi[k] = (float) (beta2 * vi[k] + (1 - beta2) * (double) g[k] * g[k]);
                double upd = (mi[k] / bc1) / (Math.sqrt(vi[k] / bc2) + eps);
                p[k] = (float) (p[k] * (1 - lr * weightDecay) - lr * upd);
            }
        }
    }

    /**
     * Scales every gradient so that their global L2 norm is at most {@code maxNorm} (torch's clip_grad_norm_);
     * returns the norm before clipping.
     */
    public static double clipGradNorm(List<GradBackend.Parameter> params, double maxNorm) {
        double ss = 0;
        for (GradBackend.Parameter p : params) for (float g : p.grad()) ss += (double) g * g;
        double norm = Math.sqrt(ss);
        double coef = maxNorm / (norm + 1e-6);
        if (coef < 1) for (GradBackend.Parameter p : params) {
            float[] g = p.grad();
            for (int k = 0; k < g.length; k++) g[k] = (float) (g[k] * coef);
        }
        return norm;
    }

    /**
     * The learning rate at optimizer step {@code step} (0-based) of {@code total}: linear warmup over
     * {@code warmup} steps from 0, then cosine decay to 0 (transformers' get_cosine_schedule_with_warmup).
     */
    public static double cosineWithWarmup(double peak, int step, int warmup, int total) {
        if (step < warmup) return peak * step / Math.max(1, warmup);
        double progress = (double) (step - warmup) / Math.max(1, total - warmup);
        return peak * Math.max(0.0, 0.5 * (1.0 + Math.cos(Math.PI * progress)));
    }
}
