package dev.vlm4j.train.autograd;

import dev.vlm4j.compute.Backend;
import dev.vlm4j.compute.GradOps;
import dev.vlm4j.tensor.Tensor;

/** A trainable tensor: its name, the tensor the model computes with, and its float32 gradient. */
public final class Parameter {
    private final String name;
    final Tensor tensor;
    final GradBackend.Node node;
    private final Backend backend;

    Parameter(GradBackend owner, String name, Tensor tensor) {
        this.name = name;
        this.tensor = tensor;
        this.backend = owner.inner();
        this.node = owner.parameterNode(tensor, this);
    }

    public String name() { return name; }
    public Tensor tensor() { return tensor; }
    /** The accumulated gradient as a float32 tensor of the backend (same shape as the tensor). */
    public Tensor gradTensor() { return node.grad; }
    /** The backend's operations on this parameter and its gradient (optimizer steps, norms). */
    public GradOps ops() { return backend.gradOps(); }
    public Backend backend() { return backend; }

    /**
     * The accumulated gradient on the host (same element order as the tensor): on the CPU the gradient's own
     * array (writes change it), on a device a copy.
     */
    public float[] grad() {
        float[] h = node.grad.heapFloats();
        return h != null ? h : backend.toHost(node.grad);
    }
}
