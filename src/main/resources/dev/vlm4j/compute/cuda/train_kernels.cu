// vlm4j CUDA kernels for training: the backward halves of the forward ops (CudaGradOps), the optimizer, seeded
// dropout, cross-entropy, and the masked softmax pieces of attention as products (ProductAttention).
// Self-contained (no #include) like kernels.cu, compiled into a module of its own. Gradients are float32 and every
// backward kernel accumulates (+=) into them; a null gradient pointer means "not wanted".

#define NEG_INF __int_as_float(0xff800000)

__device__ __forceinline__ float bf16_to_f32(unsigned short b) { return __int_as_float(((unsigned int) b) << 16); }

__device__ __forceinline__ unsigned short f32_to_bf16(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short) ((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short) (u >> 16);
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Block-wide reductions (red: 32 floats of shared memory); every thread gets the result.
__device__ float block_sum(float v, float* red) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    float t = lane < nw ? red[lane] : 0.f;
    return warp_sum(t);
}

__device__ float block_max(float v, float* red) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    float t = lane < nw ? red[lane] : NEG_INF;
    return warp_max(t);
}

#define GRID_STRIDE(i, n) for (long long i = (long long) blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
                               i += (long long) gridDim.x * blockDim.x)

// dst += alpha * src
extern "C" __global__ void axpy_f32(float* dst, const float* src, float alpha, long long n) {
    GRID_STRIDE(i, n) dst[i] += alpha * src[i];
}

// dst += a * b
extern "C" __global__ void add_product_f32(float* dst, const float* a, const float* b, long long n) {
    GRID_STRIDE(i, n) dst[i] += a[i] * b[i];
}

// y = x * s (Backend.scale)
extern "C" __global__ void scale_copy_f32(const float* x, float* y, float s, long long n) {
    GRID_STRIDE(i, n) y[i] = x[i] * s;
}

// y = a * b (Backend.mul)
extern "C" __global__ void mul_f32(const float* a, const float* b, float* y, long long n) {
    GRID_STRIDE(i, n) y[i] = a[i] * b[i];
}

// y = silu(a) * u: dA += g u s (1 + a (1 - s)), dU += g a s, s = sigmoid(a)
// A saved activation's value: float32, or bf16 as kept for a backward (GradOps.compact)
__device__ __forceinline__ float act(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ float act(const unsigned short* p, long long i) { return __uint_as_float(((unsigned int) p[i]) << 16); }

// da, du += (or = when !accumulate: their old contents are not read) the gradients of y = silu(a) u
template <typename T>
__device__ __forceinline__ void silu_mul_backward_t(const float* g, const T* a, const T* u, float* da, float* du, long long n,
                                                    int accumulate) {
    GRID_STRIDE(i, n) {
        float x = act(a, i), s = 1.f / (1.f + expf(-x));
        if (da) da[i] = (accumulate ? da[i] : 0.f) + g[i] * act(u, i) * s * (1.f + x * (1.f - s));
        if (du) du[i] = (accumulate ? du[i] : 0.f) + g[i] * x * s;
    }
}

extern "C" __global__ void silu_mul_backward(const float* g, const float* a, const float* u, float* da, float* du, long long n,
                                             int accumulate) {
    silu_mul_backward_t(g, a, u, da, du, n, accumulate);
}

extern "C" __global__ void silu_mul_backward_bf16(const float* g, const unsigned short* a, const unsigned short* u, float* da, float* du,
                                                  long long n, int accumulate) {
    silu_mul_backward_t(g, a, u, da, du, n, accumulate);
}

// silu_mul_backward_bf16 four values a thread (16-byte float loads and stores, 8-byte bf16 ones; n4 = n / 4), also
// writing the gradients' bf16 copies into dab and dub: the operands of the gate and up products' backward (their dx
// and the LoRA up-projections' dh and dB read dy as bf16), made here instead of by a conversion pass each.

extern "C" __global__ void silu_mul_backward_bf16_x4(const float4* g, const uint2* a, const uint2* u, float4* da, float4* du,
                                                     uint2* dab, uint2* dub, long long n4, int accumulate) {
    long long i = (long long) blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n4) return;
    float4 gv = g[i];
    uint2 av = a[i], uv = u[i];
    float x[4] = {__uint_as_float(av.x << 16), __uint_as_float(av.x & 0xffff0000u), __uint_as_float(av.y << 16),
                  __uint_as_float(av.y & 0xffff0000u)};
    float w[4] = {__uint_as_float(uv.x << 16), __uint_as_float(uv.x & 0xffff0000u), __uint_as_float(uv.y << 16),
                  __uint_as_float(uv.y & 0xffff0000u)};
    float gg[4] = {gv.x, gv.y, gv.z, gv.w};
    float4 oa = accumulate ? da[i] : make_float4(0.f, 0.f, 0.f, 0.f), ou = accumulate ? du[i] : make_float4(0.f, 0.f, 0.f, 0.f);
    float ra[4] = {oa.x, oa.y, oa.z, oa.w}, ru[4] = {ou.x, ou.y, ou.z, ou.w};
#pragma unroll
    for (int e = 0; e < 4; e++) {   // as silu_mul_backward_t, term for term
        float s = 1.f / (1.f + expf(-x[e]));
        ra[e] = ra[e] + gg[e] * w[e] * s * (1.f + x[e] * (1.f - s));
        ru[e] = ru[e] + gg[e] * x[e] * s;
    }
    da[i] = make_float4(ra[0], ra[1], ra[2], ra[3]);
    du[i] = make_float4(ru[0], ru[1], ru[2], ru[3]);
    dab[i] = make_uint2((unsigned int) f32_to_bf16(ra[0]) | ((unsigned int) f32_to_bf16(ra[1]) << 16),
                        (unsigned int) f32_to_bf16(ra[2]) | ((unsigned int) f32_to_bf16(ra[3]) << 16));
    dub[i] = make_uint2((unsigned int) f32_to_bf16(ru[0]) | ((unsigned int) f32_to_bf16(ru[1]) << 16),
                        (unsigned int) f32_to_bf16(ru[2]) | ((unsigned int) f32_to_bf16(ru[3]) << 16));
}

// y = x Phi(x): dx += g (Phi(x) + x phi(x))
extern "C" __global__ void gelu_backward(const float* g, const float* x, float* dx, long long n) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        float cdf = 0.5f * (1.f + erff(v * 0.70710678118654752f));
        dx[i] += g[i] * (cdf + v * expf(-0.5f * v * v) * 0.39894228040143268f);
    }
}

// dst[dstRows[i]] += src[srcRows[i]] (null index: identity), rows of w values; grid (count, column blocks)
extern "C" __global__ void add_rows_f32(float* dst, const int* dstRows, const float* src, const int* srcRows, int w) {
    int i = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= w) return;
    long long dr = dstRows ? dstRows[i] : i, sr = srcRows ? srcRows[i] : i;
    atomicAdd(dst + dr * w + c, src[sr * w + c]);
}

// dx[r, from + c] += dy[r, c]; grid (rows, column blocks)
extern "C" __global__ void add_columns_f32(float* dx, const float* dy, int dxWidth, int from, int w) {
    int r = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c < w) dx[(long long) r * dxWidth + from + c] += dy[(long long) r * w + c];
}

// the transpose of x' = x cos + rotate_half(x) sin, per head; grid (rows, heads)
extern "C" __global__ void rotary_backward(const float* g, const float* cos, const float* sin, float* dx, int heads, int d) {
    int r = blockIdx.x, h = blockIdx.y, half = d / 2;
    long long o = ((long long) r * heads + h) * d, co = (long long) r * d;
    for (int j = threadIdx.x; j < half; j += blockDim.x) {
        float g1 = g[o + j], g2 = g[o + j + half];
        dx[o + j] += g1 * cos[co + j] + g2 * sin[co + j + half];
        dx[o + j + half] += g2 * cos[co + j + half] - g1 * sin[co + j];
    }
}

// rotary_backward writing (accumulate = 0) or adding to dx, and dx's bf16 copy into xb when not null
extern "C" __global__ void rotary_backward2(const float* g, const float* cos, const float* sin, float* dx, unsigned short* xb,
                                            int heads, int d, int accumulate) {
    int r = blockIdx.x, h = blockIdx.y, half = d / 2;
    long long o = ((long long) r * heads + h) * d, co = (long long) r * d;
    for (int j = threadIdx.x; j < half; j += blockDim.x) {
        float g1 = g[o + j], g2 = g[o + j + half];
        float v1 = (accumulate ? dx[o + j] : 0.f) + (g1 * cos[co + j] + g2 * sin[co + j + half]);
        float v2 = (accumulate ? dx[o + j + half] : 0.f) + (g2 * cos[co + j + half] - g1 * sin[co + j]);
        dx[o + j] = v1;
        dx[o + j + half] = v2;
        if (xb != nullptr) {
            xb[o + j] = f32_to_bf16(v1);
            xb[o + j + half] = f32_to_bf16(v2);
        }
    }
}

// RMSNorm backward, one block per row: inv = rsqrt(mean(x^2) + eps);
// dx += inv g w - x inv^3 (sum g w x) / d;  dw += g x inv (atomically, over rows)
template <typename T>
__device__ __forceinline__ void rms_norm_backward_t(const float* g, const T* x, const float* w, float* dx, float* dw, int d, float eps) {
    __shared__ float red[32];
    long long o = (long long) blockIdx.x * d;
    float ss = 0.f, dot = 0.f;
    for (int k = threadIdx.x; k < d; k += blockDim.x) {
        float v = act(x, o + k);
        ss += v * v;
        dot += g[o + k] * w[k] * v;
    }
    ss = block_sum(ss, red);
    dot = block_sum(dot, red);
    float inv = rsqrtf(ss / d + eps);
    float c = inv * inv * inv * dot / d;
    for (int k = threadIdx.x; k < d; k += blockDim.x) {
        float v = act(x, o + k);
        if (dx) dx[o + k] += inv * g[o + k] * w[k] - c * v;
        if (dw) atomicAdd(dw + k, g[o + k] * v * inv);
    }
}

extern "C" __global__ void rms_norm_backward(const float* g, const float* x, const float* w, float* dx, float* dw, int d, float eps) {
    rms_norm_backward_t(g, x, w, dx, dw, d, eps);
}

extern "C" __global__ void rms_norm_backward_bf16(const float* g, const unsigned short* x, const float* w, float* dx, float* dw, int d,
                                                  float eps) {
    rms_norm_backward_t(g, x, w, dx, dw, d, eps);
}

// db[c] += sum over rows of dy[r, c]; grid (column blocks)
extern "C" __global__ void column_sums_f32(const float* dy, float* db, int rows, int cols) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float s = 0.f;
    for (int r = 0; r < rows; r++) s += dy[(long long) r * cols + c];
    db[c] += s;
}

// The optimizer kernels take every trainable tensor of a step in one launch: blockIdx.y picks the tensor from a device
// table of int64 entries, the blocks of x stride over it (a single tensor is a table of one).
// torch.optim.AdamW over table[t] = {p, g, m, v, n}. The host passes 1 - beta (and 1 - lr wd) computed in double:
// 1 - 0.999f in float is 0.00099998713, a 1.3e-5 relative error in the second moment's step.
extern "C" __global__ void adamw_multi_f32(const long long* table, float lr, float b1, float omb1, float b2, float omb2,
                                           float eps, float decay, float bc1, float bc2) {
    const long long* e = table + 5 * blockIdx.y;
    float* p = (float*) e[0];
    const float* g = (const float*) e[1];
    float* m = (float*) e[2];
    float* v = (float*) e[3];
    long long n = e[4];
    GRID_STRIDE(i, n) {
        float gi = g[i];
        float mi = b1 * m[i] + omb1 * gi, vi = b2 * v[i] + omb2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float upd = (mi / bc1) / (sqrtf(vi / bc2) + eps);
        p[i] = p[i] * decay - lr * upd;
    }
}

// g *= s over table[t] = {g, n}
extern "C" __global__ void scale_multi_f32(const long long* table, float s) {
    float* g = (float*) table[2 * blockIdx.y];
    long long n = table[2 * blockIdx.y + 1];
    GRID_STRIDE(i, n) g[i] *= s;
}

extern "C" __global__ void zero_multi_f32(const long long* table) {
    float* g = (float*) table[2 * blockIdx.y];
    long long n = table[2 * blockIdx.y + 1];
    GRID_STRIDE(i, n) g[i] = 0.f;
}

// partial[t * gridDim.x + block] = the block's float64 sum of squares of table[t] = {g, n}
extern "C" __global__ void sum_squares_multi_f32(const long long* table, double* partial) {
    __shared__ double red[32];
    const float* g = (const float*) table[2 * blockIdx.y];
    long long n = table[2 * blockIdx.y + 1];
    double s = 0;
    GRID_STRIDE(i, n) s += (double) g[i] * g[i];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    s = warp_sum_d(s);
    if (lane == 0) red[w] = s;
    __syncthreads();
    if (w == 0) {
        double t = lane < nw ? red[lane] : 0;
        t = warp_sum_d(t);
        if (lane == 0) partial[(long long) blockIdx.y * gridDim.x + blockIdx.x] = t;
    }
}

// Whether dropout keeps element i: Backend.dropoutBits (MurmurHash3's 32-bit finalizer, top 24 bits) >= threshold
__device__ __forceinline__ bool dropout_keeps(unsigned long long seed, long long i, int threshold) {
    unsigned int z = (unsigned int) (i + 1) * 0x9E3779B9u + (unsigned int) seed;
    z ^= (unsigned int) (seed >> 32);
    z ^= z >> 16;
    z *= 0x85EBCA6Bu;
    z ^= z >> 13;
    z *= 0xC2B2AE35u;
    z ^= z >> 16;
    return (int) (z >> 8) >= threshold;
}

// Inverted dropout with the mask of Backend.dropout
extern "C" __global__ void dropout_f32(const float* x, float* y, long long n, unsigned long long seed, int threshold, float scale) {
    GRID_STRIDE(i, n) y[i] = dropout_keeps(seed, i, threshold) ? x[i] * scale : 0.f;
}

// dst += dropout(g) with the same mask
extern "C" __global__ void add_dropout_f32(float* dst, const float* g, long long n, unsigned long long seed, int threshold, float scale) {
    GRID_STRIDE(i, n) if (dropout_keeps(seed, i, threshold)) dst[i] += g[i] * scale;
}

// Cross-entropy, one block per row: lse[r] = logsumexp(row), loss[r] = lse - row[target] (0 without a target)
extern "C" __global__ void cross_entropy_forward(const float* logits, const int* targets, float* lse, float* loss, int vocab) {
    __shared__ float red[32];
    long long o = (long long) blockIdx.x * vocab;
    int t = targets[blockIdx.x];
    if (t < 0) {
        if (threadIdx.x == 0) { lse[blockIdx.x] = 0.f; loss[blockIdx.x] = 0.f; }
        return;
    }
    float mx = NEG_INF;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) mx = fmaxf(mx, logits[o + i]);
    mx = block_max(mx, red);
    float s = 0.f;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) s += expf(logits[o + i] - mx);
    s = block_sum(s, red);
    if (threadIdx.x == 0) {
        float l = mx + logf(s);
        lse[blockIdx.x] = l;
        loss[blockIdx.x] = l - logits[o + t];
    }
}

// dlogits += scale (softmax(row) - onehot(target)) on rows with a target; grid (rows, column blocks)
extern "C" __global__ void cross_entropy_backward(const float* logits, const int* targets, const float* lse, float* dl,
                                                  int vocab, float scale) {
    int r = blockIdx.x, t = targets[r];
    if (t < 0) return;
    long long o = (long long) r * vocab;
    float l = lse[r];
    for (int i = blockIdx.y * blockDim.x + threadIdx.x; i < vocab; i += gridDim.y * blockDim.x)
        dl[o + i] += scale * (expf(logits[o + i] - l) - (i == t ? 1.f : 0.f));
}

// ---- attention as products (ProductAttention) ----

// Copies heads of x [rows, heads_in * d] (float32, row stride xs) into y [rows, heads_in * rep * d] (bf16 or float32),
// each head repeated rep times (grouped KV heads expanded to the query heads); grid (rows, column blocks)
extern "C" __global__ void expand_heads(const float* x, long long xs, void* y, int rows, int headsIn, int rep, int d, int bf16) {
    int r = blockIdx.x, width = headsIn * rep * d;
    for (int c = blockIdx.y * blockDim.x + threadIdx.x; c < width; c += gridDim.y * blockDim.x) {
        int h = c / d, k = c - h * d;
        float v = x[(long long) r * xs + (long long) (h / rep) * d + k];
        long long o = (long long) r * width + c;
        if (bf16) ((unsigned short*) y)[o] = f32_to_bf16(v);
        else ((float*) y)[o] = v;
    }
}

// Masked softmax of score rows: S [heads][nq][nk] (float32, already scaled) -> P (bf16 or float32). Query i of the
// block sees keys j < limit(i) = causal ? min(nk, offset + i + 1) : nk; the rest of the row becomes 0.
// One block per (head, query) row.
extern "C" __global__ void masked_softmax(const float* S, void* P, int nq, int nk, int causal, int offset, int bf16) {
    __shared__ float red[32];
    long long row = blockIdx.x;
    int i = (int) (row % nq);
    int lim = causal ? min(nk, offset + i + 1) : nk;
    const float* sr = S + row * nk;
    float mx = NEG_INF;
    for (int j = threadIdx.x; j < lim; j += blockDim.x) mx = fmaxf(mx, sr[j]);
    mx = block_max(mx, red);
    float sum = 0.f;
    for (int j = threadIdx.x; j < lim; j += blockDim.x) sum += expf(sr[j] - mx);
    sum = block_sum(sum, red);
    float inv = lim > 0 ? 1.f / sum : 0.f;
    for (int j = threadIdx.x; j < nk; j += blockDim.x) {
        float p = j < lim ? expf(sr[j] - mx) * inv : 0.f;
        if (bf16) ((unsigned short*) P)[row * nk + j] = f32_to_bf16(p);
        else ((float*) P)[row * nk + j] = p;
    }
}

// dS = P (dP - sum_j P dP) per row (P bf16 or float32, dP float32) -> dS (bf16 or float32; may alias dP when float32)
extern "C" __global__ void softmax_backward_rows(const void* P, const float* dP, void* dS, int nk, int bf16) {
    __shared__ float red[32];
    long long o = (long long) blockIdx.x * nk;
    float dot = 0.f;
    for (int j = threadIdx.x; j < nk; j += blockDim.x) {
        float p = bf16 ? bf16_to_f32(((const unsigned short*) P)[o + j]) : ((const float*) P)[o + j];
        dot += p * dP[o + j];
    }
    dot = block_sum(dot, red);
    for (int j = threadIdx.x; j < nk; j += blockDim.x) {
        float p = bf16 ? bf16_to_f32(((const unsigned short*) P)[o + j]) : ((const float*) P)[o + j];
        float ds = p * (dP[o + j] - dot);
        if (bf16) ((unsigned short*) dS)[o + j] = f32_to_bf16(ds);
        else ((float*) dS)[o + j] = ds;
    }
}

// dst [rows, hkv * d] (row stride ds) += the sum over each KV head's rep query heads of src [rows, hkv * rep * d];
// grid (rows, column blocks)
extern "C" __global__ void reduce_heads_add(const float* src, float* dst, long long ds, int rows, int hkv, int rep, int d) {
    int r = blockIdx.x, width = hkv * d;
    for (int c = blockIdx.y * blockDim.x + threadIdx.x; c < width; c += gridDim.y * blockDim.x) {
        int kh = c / d, k = c - kh * d;
        const float* s = src + (long long) r * hkv * rep * d + (long long) kh * rep * d + k;
        float acc = 0.f;
        for (int g = 0; g < rep; g++) acc += s[g * d];
        dst[(long long) r * ds + c] += acc;
    }
}

// ---- LoRA down-projection with its dropout fused: h = scale * dropout(x) A^T, x [n, in], A [R, in], R <= 16 ----
// The dropout mask is dropout_keeps(seed, t * in + k, threshold) (Backend.dropout's, never stored); threshold 0 means
// no dropout. Sums in float32 FMA (no TF32). Each kernel keeps many independent loads in flight: the work is a
// stream over x (or dx), the rank-R side is small.
#define LORA_MAXR 16
#define LORA_KC 512

__device__ __forceinline__ float lora_masked(const float* __restrict__ x, long long e, unsigned long long seed, int threshold) {
    float v = x[e];
    return threshold > 0 && !dropout_keeps(seed, e, threshold) ? 0.f : v;
}

// Partial down-projection: part[ks][t][r] = sum over k in chunk ks (LORA_KC columns) of mask * x[t, k] * A[r, k].
// The same partial sums by resident blocks: a block stages A's chunk once, then its warps walk over row pairs
// (pair w of the chunk, w += 8 * gridDim.x), the next pair's 32 loads per lane issued before the current pair is
// summed, so loads stay in flight without a wave tail; each value of A read from shared memory serves both rows,
// and eight ranks at a time are summed over the warp in 9 shuffles instead of 40 (halving exchange: after the steps
// over lane bits 4, 3, 2 each lane keeps one rank, then bits 1 and 0 finish).
__device__ __forceinline__ void lora_load_pair(const float* __restrict__ x, float (&v)[2][16], int t, int n, int in, int k0, int kc,
                                               int lane, unsigned long long seed, int threshold) {
#pragma unroll
    for (int j = 0; j < 2; j++) {
        long long base = (long long) (t + j) * in + k0;
#pragma unroll
        for (int i = 0; i < 16; i++) {
            int c = lane + 32 * i;
            v[j][i] = t + j < n && c < kc ? x[base + c] : 0.f;
        }
    }
}

// Ranks [r0, r0 + 8) of a row pair's partial sums over the chunk (v: the pair's 16 values per lane, column lane + 32 i;
// chunk: A's chunk in shared memory): o[j] on the lanes l with (l & 3) == 0 holds rank r0 + ((l >> 2) & 7) of row j.
// Eight ranks are summed over the warp in 9 shuffles by halving exchange (lane bits 4, 3, 2 pick the half kept).
__device__ __forceinline__ void lora_rank8(const float (&v)[2][16], const float* chunk, int r0, int R, int lane, float (&o)[2]) {
    bool b4 = lane & 16, b3 = lane & 8, b2 = lane & 4;
    float s[2][8];
#pragma unroll
    for (int r = 0; r < 8; r++) {
        s[0][r] = 0.f;
        s[1][r] = 0.f;
        if (r0 + r >= R) continue;
#pragma unroll
        for (int i = 0; i < 16; i++) {
            float w = chunk[(r0 + r) * LORA_KC + lane + 32 * i];
            s[0][r] = fmaf(v[0][i], w, s[0][r]);
            s[1][r] = fmaf(v[1][i], w, s[1][r]);
        }
    }
#pragma unroll
    for (int j = 0; j < 2; j++) {
        float h[4], q[2];
#pragma unroll
        for (int m = 0; m < 4; m++) h[m] = (b4 ? s[j][m + 4] : s[j][m]) + __shfl_xor_sync(0xffffffffu, b4 ? s[j][m] : s[j][m + 4], 16);
#pragma unroll
        for (int m = 0; m < 2; m++) q[m] = (b3 ? h[m + 2] : h[m]) + __shfl_xor_sync(0xffffffffu, b3 ? h[m] : h[m + 2], 8);
        float x = (b2 ? q[1] : q[0]) + __shfl_xor_sync(0xffffffffu, b2 ? q[0] : q[1], 4);
        x += __shfl_xor_sync(0xffffffffu, x, 2);
        o[j] = x + __shfl_xor_sync(0xffffffffu, x, 1);
    }
}

__device__ __forceinline__ void lora_down_stream_t(const float* __restrict__ x, const float* __restrict__ a, float* __restrict__ part,
                                                   int n, int in, int R, unsigned long long seed, int threshold) {
    extern __shared__ float as[];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, ks = blockIdx.y, k0 = ks * LORA_KC;
    int kc = min(LORA_KC, in - k0), stride = 16 * gridDim.x;
    int t = (blockIdx.x * 8 + warp) * 2;
    float v[2][16], nv[2][16];
    lora_load_pair(x, v, t, n, in, k0, kc, lane, seed, threshold);
    for (int j = threadIdx.x; j < R * LORA_KC; j += blockDim.x) {
        int r = j / LORA_KC, c = j % LORA_KC;
        as[j] = c < kc ? a[(long long) r * in + k0 + c] : 0.f;
    }
    __syncthreads();
    bool b4 = lane & 16, b3 = lane & 8, b2 = lane & 4;
    int mine = (b4 ? 4 : 0) + (b3 ? 2 : 0) + (b2 ? 1 : 0);
    for (; t < n; t += stride) {
        if (t + stride < n) lora_load_pair(x, nv, t + stride, n, in, k0, kc, lane, seed, threshold);
        if (threshold > 0)
#pragma unroll
            for (int j = 0; j < 2; j++) {
                long long base = (long long) (t + j) * in + k0;
#pragma unroll
                for (int i = 0; i < 16; i++)
                    if (!dropout_keeps(seed, base + lane + 32 * i, threshold)) v[j][i] = 0.f;
            }
        for (int r0 = 0; r0 < R; r0 += 8) {
            float o[2];
            lora_rank8(v, as, r0, R, lane, o);
#pragma unroll
            for (int j = 0; j < 2; j++)
                if ((lane & 3) == 0 && t + j < n && r0 + mine < R) part[((long long) ks * n + t + j) * R + r0 + mine] = o[j];
        }
#pragma unroll
        for (int j = 0; j < 2; j++)
#pragma unroll
            for (int i = 0; i < 16; i++) v[j][i] = nv[j][i];
    }
}

extern "C" __global__ void __launch_bounds__(256, 2) lora_down_stream(const float* __restrict__ x, const float* __restrict__ a,
        float* __restrict__ part, int n, int in, int R, unsigned long long seed, int threshold) {
    lora_down_stream_t(x, a, part, n, in, R, seed, threshold);
}

// dst[i] (+)= factor * sum_p part[p][i] over parts of size values, summed in order (deterministic): the second stage
// of lora_down_part (h =) and lora_down_da_part (dA +=)
extern "C" __global__ void sum_parts_f32(const float* __restrict__ part, float* __restrict__ dst, int parts, long long size,
                                         float factor, int accumulate) {
    GRID_STRIDE(i, size) {
        float s = 0.f;
        for (int p = 0; p < parts; p++) s += part[(long long) p * size + i];
        dst[i] = accumulate ? dst[i] + s * factor : s * factor;
    }
}

// Partial dA: part[p][r][k] = sum over the rows of part p (rows [p * per, (p + 1) * per)) of dh[t, r] * mask * x[t, k];
// one thread per column k, the part's dh rows (at most LORA_DA_ROWS) staged once in shared memory, padded to 16 ranks so that each
// row's factors come as 16-byte reads, then the rows in groups of 16 loads in flight with no barrier between them.
#define LORA_DA_ROWS 256
template <typename T>
__device__ __forceinline__ void lora_down_da_t(const T* __restrict__ x, const float* __restrict__ dh, float* __restrict__ part,
                                              int n, int in, int R, int per, unsigned long long seed, int threshold) {
    extern __shared__ float4 dsh4[];
    float* dsh = (float*) dsh4;
    int k = blockIdx.x * blockDim.x + threadIdx.x, p = blockIdx.y;
    int t0 = p * per, t1 = min(n, t0 + per), tc = t1 - t0;
    float acc[LORA_MAXR];
#pragma unroll
    for (int r = 0; r < LORA_MAXR; r++) acc[r] = 0.f;
    for (int j = threadIdx.x; j < tc * LORA_MAXR; j += blockDim.x) {
        int i = j / LORA_MAXR, r = j % LORA_MAXR;
        dsh[j] = r < R ? dh[(long long) (t0 + i) * R + r] : 0.f;
    }
    __syncthreads();
    if (k >= in) return;
    for (int i0 = 0; i0 < tc; i0 += 16) {
        float v[16];
#pragma unroll
        for (int i = 0; i < 16; i++) v[i] = i0 + i < tc ? act(x, (long long) (t0 + i0 + i) * in + k) : 0.f;
        if (threshold > 0)
#pragma unroll
            for (int i = 0; i < 16; i++)
                if (!dropout_keeps(seed, (long long) (t0 + i0 + i) * in + k, threshold)) v[i] = 0.f;
#pragma unroll
        for (int i = 0; i < 16; i++) {
            if (i0 + i >= tc) break;
#pragma unroll
            for (int q = 0; q < LORA_MAXR / 4; q++) {
                if (4 * q >= R) break;
                float4 d = dsh4[(i0 + i) * (LORA_MAXR / 4) + q];
                acc[4 * q] = fmaf(d.x, v[i], acc[4 * q]);
                acc[4 * q + 1] = fmaf(d.y, v[i], acc[4 * q + 1]);
                acc[4 * q + 2] = fmaf(d.z, v[i], acc[4 * q + 2]);
                acc[4 * q + 3] = fmaf(d.w, v[i], acc[4 * q + 3]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < LORA_MAXR; r++) if (r < R) part[((long long) p * R + r) * in + k] = acc[r];
}

extern "C" __global__ void lora_down_da_part2(const float* __restrict__ x, const float* __restrict__ dh, float* __restrict__ part,
                                              int n, int in, int R, int per, unsigned long long seed, int threshold) {
    lora_down_da_t(x, dh, part, n, in, R, per, seed, threshold);
}

extern "C" __global__ void lora_down_da_part2_bf16(const unsigned short* __restrict__ x, const float* __restrict__ dh,
                                                   float* __restrict__ part, int n, int in, int R, int per, unsigned long long seed,
                                                   int threshold) {
    lora_down_da_t(x, dh, part, n, in, R, per, seed, threshold);
}

// dx[t, k] += factor * mask(t, k) * sum_r dh[t, r] A[r, k]: a block covers 256 columns (A's column in registers)
// and 32 rows (their dh rows in shared memory), 8 rows' updates in flight at a time
extern "C" __global__ void lora_down_dx(const float* __restrict__ a, const float* __restrict__ dh, float* __restrict__ dx,
                                        int n, int in, int R, unsigned long long seed, int threshold, float factor) {
    __shared__ float ds[32 * LORA_MAXR];
    int k = blockIdx.x * blockDim.x + threadIdx.x, t0 = blockIdx.y * 32, tc = min(32, n - t0);
    for (int j = threadIdx.x; j < tc * R; j += blockDim.x) ds[j] = dh[(long long) t0 * R + j];
    __syncthreads();
    if (k >= in) return;
    float ac[LORA_MAXR];
#pragma unroll
    for (int r = 0; r < LORA_MAXR; r++) ac[r] = r < R ? a[(long long) r * in + k] : 0.f;
    for (int i0 = 0; i0 < tc; i0 += 8) {
        float old[8];
#pragma unroll
        for (int i = 0; i < 8; i++) old[i] = i0 + i < tc ? dx[(long long) (t0 + i0 + i) * in + k] : 0.f;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            if (i0 + i >= tc) break;
            long long e = (long long) (t0 + i0 + i) * in + k;
            float s = 0.f;
#pragma unroll
            for (int r = 0; r < LORA_MAXR; r++) if (r < R) s = fmaf(ds[(i0 + i) * R + r], ac[r], s);
            bool keep = threshold == 0 || dropout_keeps(seed, e, threshold);
            dx[e] = keep ? old[i] + s * factor : old[i];
        }
    }
}

// ---- The same products from bf16 operands, 16-byte loads (in % 8 == 0) ----
// x's bf16 copy (the one its producer wrote for the frozen product) is half the bytes of the float32 x, and a lane
// that reads 8 values at once keeps the loads wide: lane l owns columns 8 l + e and 256 + 8 l + e (e < 8) of a
// 512-column chunk. The same kernels serve the LoRA up-projection's backward: dh = dy B is the down-projection of dy
// with the factor given transposed (B [out, R], AT), and dB = dy^T h the dA product with dy as x (then summed
// transposed by sum_parts_t_f32).

__device__ __forceinline__ void bf16x8_to_f32(uint4 w, float* v) {
    v[0] = __uint_as_float(w.x << 16); v[1] = __uint_as_float(w.x & 0xffff0000u);
    v[2] = __uint_as_float(w.y << 16); v[3] = __uint_as_float(w.y & 0xffff0000u);
    v[4] = __uint_as_float(w.z << 16); v[5] = __uint_as_float(w.z & 0xffff0000u);
    v[6] = __uint_as_float(w.w << 16); v[7] = __uint_as_float(w.w & 0xffff0000u);
}

// Column of value q (< 16) of lane l within a chunk.
__device__ __forceinline__ int lora8_col(int lane, int q) { return 256 * (q >> 3) + 8 * lane + (q & 7); }

__device__ __forceinline__ void lora_load_pair8(const unsigned short* __restrict__ x, float (&v)[2][16], int t, int n, int in,
                                                int k0, int kc, int lane) {
#pragma unroll
    for (int j = 0; j < 2; j++) {
        long long base = (long long) (t + j) * in + k0;
#pragma unroll
        for (int i = 0; i < 2; i++) {
            int c = 256 * i + 8 * lane;
            uint4 w = t + j < n && c < kc ? *(const uint4*) (x + base + c) : make_uint4(0u, 0u, 0u, 0u);
            bf16x8_to_f32(w, &v[j][8 * i]);
        }
    }
}

// part[ks][t][r] = sum over k in chunk ks of mask * x[t, k] * A[r, k] (A[r, k] = a[k * R + r] when at), as
// lora_down_stream. Shared: the chunk of A as [r][q][lane] (value q of lane l at q * 32 + l: conflict-free reads).
extern "C" __global__ void __launch_bounds__(256, 2) lora_down_stream8(const unsigned short* __restrict__ x,
        const float* __restrict__ a, float* __restrict__ part, int n, int in, int R, unsigned long long seed, int threshold, int at,
        float* __restrict__ dst, float factor) {
    extern __shared__ float as[];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, ks = blockIdx.y, k0 = ks * LORA_KC;
    int kc = min(LORA_KC, in - k0), stride = 16 * gridDim.x;
    int t = (blockIdx.x * 8 + warp) * 2;
    float v[2][16], nv[2][16];
    lora_load_pair8(x, v, t, n, in, k0, kc, lane);
    // staged in the factor's memory order (coalesced reads), each value to its lane-interleaved place
    for (int j = threadIdx.x; j < R * LORA_KC; j += blockDim.x) {
        int r = at ? j % R : j / LORA_KC, c = at ? j / R : j % LORA_KC;
        int q = 8 * (c >> 8) + (c & 7), l = (c & 255) >> 3;   // c = lora8_col(l, q)
        as[r * LORA_KC + q * 32 + l] = c < kc ? (at ? a[(long long) (k0 + c) * R + r] : a[(long long) r * in + k0 + c]) : 0.f;
    }
    __syncthreads();
    bool b4 = lane & 16, b3 = lane & 8, b2 = lane & 4;
    int mine = (b4 ? 4 : 0) + (b3 ? 2 : 0) + (b2 ? 1 : 0);
    for (; t < n; t += stride) {
        if (t + stride < n) lora_load_pair8(x, nv, t + stride, n, in, k0, kc, lane);
        if (threshold > 0)
#pragma unroll
            for (int j = 0; j < 2; j++) {
                long long base = (long long) (t + j) * in + k0;
#pragma unroll
                for (int q = 0; q < 16; q++)
                    if (!dropout_keeps(seed, base + lora8_col(lane, q), threshold)) v[j][q] = 0.f;
            }
        for (int r0 = 0; r0 < R; r0 += 8) {
            float o[2];
            lora_rank8(v, as, r0, R, lane, o);
#pragma unroll
            for (int j = 0; j < 2; j++)
                if ((lane & 3) == 0 && t + j < n && r0 + mine < R) {
                    if (dst != nullptr) atomicAdd(dst + (long long) (t + j) * R + r0 + mine, o[j] * factor);
                    else part[((long long) ks * n + t + j) * R + r0 + mine] = o[j];
                }
        }
#pragma unroll
        for (int j = 0; j < 2; j++)
#pragma unroll
            for (int q = 0; q < 16; q++) v[j][q] = nv[j][q];
    }
}

// Four bf16 values of x at element e (8-byte load), or of x = bf16(silu(gate) * up) rebuilt from the bf16 gate and up
// (the SwiGLU output a training step does not keep: kernels.cu's silu_mul_bf16_x4 computed its copy from the same
// rounded inputs with the same expression, so this is that copy bit for bit).
__device__ __forceinline__ void load4(const unsigned short* x, const unsigned short* up, long long e, bool ok, float* v) {
    uint2 w = ok ? *(const uint2*) (x + e) : make_uint2(0u, 0u);
    v[0] = __uint_as_float(w.x << 16); v[1] = __uint_as_float(w.x & 0xffff0000u);
    v[2] = __uint_as_float(w.y << 16); v[3] = __uint_as_float(w.y & 0xffff0000u);
    if (up != nullptr) {
        uint2 q = ok ? *(const uint2*) (up + e) : make_uint2(0u, 0u);
        float b[4] = {__uint_as_float(q.x << 16), __uint_as_float(q.x & 0xffff0000u), __uint_as_float(q.y << 16),
                      __uint_as_float(q.y & 0xffff0000u)};
#pragma unroll
        for (int c = 0; c < 4; c++) v[c] = bf16_to_f32(f32_to_bf16(v[c] / (1.f + expf(-v[c])) * b[c]));
    }
}

// Partial dA from bf16 x, four columns a thread (8-byte loads): part[p][r][k] = sum over the part's rows of
// dh[t, r] * mask * x[t, k], as lora_down_da_part2 (dh staged padded to 16 ranks), R <= 8.
__device__ __forceinline__ void lora_down_da4_t(const unsigned short* __restrict__ x, const unsigned short* __restrict__ up,
                                                const float* __restrict__ dh, float* __restrict__ part, int n, int in, int R,
                                                int per, unsigned long long seed, int threshold, float* __restrict__ dst,
                                                float factor, int transposed) {
    extern __shared__ float4 dsh4[];
    float* dsh = (float*) dsh4;
    int k = 4 * (blockIdx.x * blockDim.x + threadIdx.x), p = blockIdx.y;
    int t0 = p * per, t1 = min(n, t0 + per), tc = t1 - t0;
    float acc[4][8];
#pragma unroll
    for (int c = 0; c < 4; c++)
#pragma unroll
        for (int r = 0; r < 8; r++) acc[c][r] = 0.f;
    for (int j = threadIdx.x; j < tc * 8; j += blockDim.x) {
        int i = j >> 3, r = j & 7;
        dsh[j] = r < R ? dh[(long long) (t0 + i) * R + r] : 0.f;
    }
    __syncthreads();
    if (k >= in) return;
    for (int i0 = 0; i0 < tc; i0 += 8) {
        float v[8][4];
#pragma unroll
        for (int i = 0; i < 8; i++) load4(x, up, (long long) (t0 + i0 + i) * in + k, i0 + i < tc, v[i]);
        if (threshold > 0)
#pragma unroll
            for (int i = 0; i < 8; i++)
#pragma unroll
                for (int c = 0; c < 4; c++)
                    if (!dropout_keeps(seed, (long long) (t0 + i0 + i) * in + k + c, threshold)) v[i][c] = 0.f;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            if (i0 + i >= tc) break;
            float4 d0 = dsh4[(i0 + i) * 2], d1 = dsh4[(i0 + i) * 2 + 1];
#pragma unroll
            for (int c = 0; c < 4; c++) {
                acc[c][0] = fmaf(d0.x, v[i][c], acc[c][0]);
                acc[c][1] = fmaf(d0.y, v[i][c], acc[c][1]);
                acc[c][2] = fmaf(d0.z, v[i][c], acc[c][2]);
                acc[c][3] = fmaf(d0.w, v[i][c], acc[c][3]);
                acc[c][4] = fmaf(d1.x, v[i][c], acc[c][4]);
                acc[c][5] = fmaf(d1.y, v[i][c], acc[c][5]);
                acc[c][6] = fmaf(d1.z, v[i][c], acc[c][6]);
                acc[c][7] = fmaf(d1.w, v[i][c], acc[c][7]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < 8; r++)
        if (r < R) {
            if (dst == nullptr) {
                *(float4*) (part + ((long long) p * R + r) * in + k) = make_float4(acc[0][r], acc[1][r], acc[2][r], acc[3][r]);
            } else if (transposed) {   // dst [in, R]
#pragma unroll
                for (int c = 0; c < 4; c++) atomicAdd(dst + (long long) (k + c) * R + r, acc[c][r] * factor);
            } else {                   // dst [R, in]: one 16-byte reduction
                float* q = dst + (long long) r * in + k;
#if __CUDA_ARCH__ >= 900
                asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};" :: "l"(q), "f"(acc[0][r] * factor),
                             "f"(acc[1][r] * factor), "f"(acc[2][r] * factor), "f"(acc[3][r] * factor) : "memory");
#else
#pragma unroll
                for (int c = 0; c < 4; c++) atomicAdd(q + c, acc[c][r] * factor);
#endif
            }
        }
}

extern "C" __global__ void lora_down_da4_bf16(const unsigned short* __restrict__ x, const float* __restrict__ dh,
                                              float* __restrict__ part, int n, int in, int R, int per, unsigned long long seed,
                                              int threshold, float* __restrict__ dst, float factor, int transposed) {
    lora_down_da4_t(x, nullptr, dh, part, n, in, R, per, seed, threshold, dst, factor, transposed);
}

// The same for x = the SwiGLU output silu(gate) * up, rebuilt from its bf16 inputs (gate in place of x).
extern "C" __global__ void lora_down_da4_swiglu(const unsigned short* __restrict__ gate, const unsigned short* __restrict__ up,
                                                const float* __restrict__ dh, float* __restrict__ part, int n, int in, int R,
                                                int per, unsigned long long seed, int threshold, float* __restrict__ dst,
                                                float factor, int transposed) {
    lora_down_da4_t(gate, up, dh, part, n, in, R, per, seed, threshold, dst, factor, transposed);
}

// dst[k][r] (+)= factor * sum_p part[p][r][k] (parts of R x cols values): sum_parts_f32 writing the transpose
// (dB [out, R] from the partial dB^T of lora_down_da4_bf16).
extern "C" __global__ void sum_parts_t_f32(const float* __restrict__ part, float* __restrict__ dst, int parts, int R, int cols,
                                           float factor, int accumulate) {
    long long size = (long long) R * cols;
    GRID_STRIDE(i, size) {   // i = k * R + r: consecutive threads write consecutive dst values
        int k = (int) (i / R), r = (int) (i - (long long) k * R);
        float s = 0.f;
        for (int q = 0; q < parts; q++) s += part[(long long) q * size + (long long) r * cols + k];
        dst[i] = accumulate ? dst[i] + s * factor : s * factor;
    }
}

// dx[t, k] += factor * mask * sum_r dh[t, r] A[r, k], four columns a thread (16-byte loads and stores; in % 4 == 0),
// as lora_down_dx; R <= 8.
extern "C" __global__ void lora_down_dx4(const float* __restrict__ a, const float* __restrict__ dh, float* __restrict__ dx,
                                         int n, int in, int R, unsigned long long seed, int threshold, float factor) {
    __shared__ float ds[32 * 8];
    int k = 4 * (blockIdx.x * blockDim.x + threadIdx.x), t0 = blockIdx.y * 32, tc = min(32, n - t0);
    for (int j = threadIdx.x; j < tc * R; j += blockDim.x) ds[j] = dh[(long long) t0 * R + j];
    __syncthreads();
    if (k >= in) return;
    float4 ac[8];
#pragma unroll
    for (int r = 0; r < 8; r++) ac[r] = r < R ? *(const float4*) (a + (long long) r * in + k) : make_float4(0.f, 0.f, 0.f, 0.f);
    for (int i0 = 0; i0 < tc; i0 += 4) {
        float4 old[4];
#pragma unroll
        for (int i = 0; i < 4; i++)
            old[i] = i0 + i < tc ? *(const float4*) (dx + (long long) (t0 + i0 + i) * in + k) : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            if (i0 + i >= tc) break;
            long long e = (long long) (t0 + i0 + i) * in + k;
            float4 s = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
            for (int r = 0; r < 8; r++) {
                if (r >= R) break;
                float d = ds[(i0 + i) * R + r];
                s.x = fmaf(d, ac[r].x, s.x); s.y = fmaf(d, ac[r].y, s.y); s.z = fmaf(d, ac[r].z, s.z); s.w = fmaf(d, ac[r].w, s.w);
            }
            float4 o = old[i];
            if (threshold == 0 || dropout_keeps(seed, e, threshold)) o.x += s.x * factor;
            if (threshold == 0 || dropout_keeps(seed, e + 1, threshold)) o.y += s.y * factor;
            if (threshold == 0 || dropout_keeps(seed, e + 2, threshold)) o.z += s.z * factor;
            if (threshold == 0 || dropout_keeps(seed, e + 3, threshold)) o.w += s.w * factor;
            *(float4*) (dx + e) = o;
        }
    }
}
