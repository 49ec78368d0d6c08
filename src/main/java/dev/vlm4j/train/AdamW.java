package dev.vlm4j.train;

import dev.vlm4j.train.autograd.Parameter;
import dev.vlm4j.train.autograd.GradBackend;

import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Tensor;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * AdamW (decoupled weight decay, bias-corrected moments), as torch.optim.AdamW: for each parameter
 * {@code p -= lr * wd * p}, then {@code p -= lr * m_hat / (sqrt(v_hat) + eps)}. Updates float32 parameter
 * tensors in place (LoRA factors, master weights) through their backend's {@link dev.vlm4j.compute.GradOps}, on the
 * host or on a GPU; the moments are float32 tensors beside them.
 */
public final class AdamW {
    private final List<Parameter> params;
    private final double beta1, beta2, eps, weightDecay;
    /** First and second moments, float32 tensors on each parameter's backend. */
    private final Tensor[] m, v;
    private int t;

    public AdamW(List<Parameter> params, double beta1, double beta2, double eps, double weightDecay) {
        this.params = params;
        this.beta1 = beta1;
        this.beta2 = beta2;
        this.eps = eps;
        this.weightDecay = weightDecay;
        m = new Tensor[params.size()];
        v = new Tensor[params.size()];
        for (int i = 0; i < params.size(); i++) {
            Parameter p = params.get(i);
            if (p.tensor().dtype() != DType.F32)
                throw new IllegalArgumentException("parameter " + p.name() + " is not a float32 tensor (" + p.tensor()
                        + "); only float32 master weights and LoRA factors can be updated");
            m[i] = p.backend().zeros(p.tensor().shape());
            v[i] = p.backend().zeros(p.tensor().shape());
        }
    }

    /** Steps taken so far. */
    public int steps() { return t; }

    /**
     * The optimizer state as float32 host tensors named {@code <parameter>.exp_avg} and {@code <parameter>.exp_avg_sq}
     * (torch's names for the first and second moments); {@link #steps()} is the step count.
     */
    public Map<String, Tensor> state() {
        Map<String, Tensor> out = new LinkedHashMap<>();
        for (int i = 0; i < params.size(); i++) {
            Parameter p = params.get(i);
            long[] shape = p.tensor().shape();
            out.put(p.name() + ".exp_avg", Tensor.of(p.backend().toHost(m[i]), shape));
            out.put(p.name() + ".exp_avg_sq", Tensor.of(p.backend().toHost(v[i]), shape));
        }
        return out;
    }

    /** Restores a {@link #state()} and the step count; every parameter's moments must be present with its size. */
    public void loadState(Map<String, Tensor> state, int steps) {
        for (int i = 0; i < params.size(); i++) {
            Parameter p = params.get(i);
            String n = p.name();
            for (String kind : new String[]{".exp_avg", ".exp_avg_sq"}) {
                Tensor s = state.get(n + kind);
                if (s == null) throw new IllegalArgumentException("optimizer state has no " + n + kind);
                Tensor dst = kind.equals(".exp_avg") ? m[i] : v[i];
                float[] src = s.toFloatArray();
                if (src.length != dst.numel())
                    throw new IllegalArgumentException("optimizer state " + n + kind + " has " + src.length + " values, the parameter " + dst.numel());
                p.ops().copyFromHost(dst, src);
            }
        }
        t = steps;
    }

    /** One update with learning rate {@code lr} from the current gradients. */
    public void step(double lr) {
        t++;
        double bc1 = 1 - Math.pow(beta1, t), bc2 = 1 - Math.pow(beta2, t);
        // each backend's parameters in one call (the CUDA backend updates them in one launch)
        for (var e : byOps(params).entrySet()) {
            List<Tensor> ps = new java.util.ArrayList<>(), gs = new java.util.ArrayList<>(), ms = new java.util.ArrayList<>(),
                    vs = new java.util.ArrayList<>();
            for (int i : e.getValue()) {
                ps.add(params.get(i).tensor());
                gs.add(params.get(i).gradTensor());
                ms.add(m[i]);
                vs.add(v[i]);
            }
            e.getKey().adamW(ps, gs, ms, vs, lr, beta1, beta2, eps, weightDecay, bc1, bc2);
        }
    }

    /**
     * Scales every gradient so that their global L2 norm is at most {@code maxNorm} (torch's clip_grad_norm_);
     * returns the norm before clipping.
     */
    public static double clipGradNorm(List<Parameter> params, double maxNorm) {
        double ss = 0;
        java.util.Map<dev.vlm4j.compute.GradOps, List<Tensor>> grads = new java.util.LinkedHashMap<>();
        for (var e : byOps(params).entrySet())
            grads.put(e.getKey(), e.getValue().stream().map(i -> params.get(i).gradTensor()).toList());
        for (var e : grads.entrySet()) ss += e.getKey().sumSquares(e.getValue());
        double norm = Math.sqrt(ss);
        double coef = maxNorm / (norm + 1e-6);
        if (coef < 1) for (var e : grads.entrySet()) e.getKey().scale(e.getValue(), coef);
        return norm;
    }

    /** The indices of the parameters, grouped by the backend that holds them, in order. */
    private static java.util.Map<dev.vlm4j.compute.GradOps, List<Integer>> byOps(List<Parameter> params) {
        java.util.Map<dev.vlm4j.compute.GradOps, List<Integer>> byOps = new java.util.LinkedHashMap<>();
        for (int i = 0; i < params.size(); i++) byOps.computeIfAbsent(params.get(i).ops(), k -> new java.util.ArrayList<>()).add(i);
        return byOps;
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
