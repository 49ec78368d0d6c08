// vlm4j CUDA kernels: float32 activations, weights in float32 or bf16 (raw uint16 bits).
// Self-contained (no #include) so that both nvcc -ptx and NVRTC compile it as is.
// Every kernel is extern "C" so its PTX name is the C name used by CudaBackend.

#define NEG_INF __int_as_float(0xff800000)

__device__ __forceinline__ float bf16_to_f32(unsigned short b) { return __int_as_float(((unsigned int) b) << 16); }

__device__ __forceinline__ unsigned short f32_to_bf16(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short) ((u >> 16) | 0x40u);  // NaN stays NaN
    u += 0x7fffu + ((u >> 16) & 1u);                                                       // round to nearest even
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

// Block-wide reductions; red needs 32 floats of shared memory; every thread gets the result.
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

extern "C" __global__ void f32_to_bf16_kernel(const float* x, unsigned short* y, long long n) {
    long long i = (long long) blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = f32_to_bf16(x[i]);
}

extern "C" __global__ void bf16_to_f32_kernel(const unsigned short* x, float* y, long long n) {
    long long i = (long long) blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = bf16_to_f32(x[i]);
}

// y = w * x / sqrt(mean(x^2) + eps), one block per row.
extern "C" __global__ void rms_norm(const float* x, const float* w, float* y, int d, float eps) {
    __shared__ float red[32];
    const float* xr = x + (long long) blockIdx.x * d;
    float* yr = y + (long long) blockIdx.x * d;
    float ss = 0.f;
    for (int k = threadIdx.x; k < d; k += blockDim.x) ss += xr[k] * xr[k];
    ss = block_sum(ss, red);
    float inv = rsqrtf(ss / d + eps);
    for (int k = threadIdx.x; k < d; k += blockDim.x) yr[k] = w[k] * (xr[k] * inv);
}

extern "C" __global__ void add_f32(const float* a, const float* b, float* y, long long n) {
    long long i = (long long) blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a[i] + b[i];
}

// y[r, c] += b[c]
extern "C" __global__ void bias_add(float* y, const float* b, long long n, int cols) {
    long long i = (long long) blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += b[i % cols];
}

extern "C" __global__ void silu_mul(const float* g, const float* u, float* y, long long n) {
    long long i = (long long) blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { float x = g[i]; y[i] = x / (1.f + expf(-x)) * u[i]; }
}

extern "C" __global__ void gelu_erf(const float* x, float* y, long long n) {
    long long i = (long long) blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { float v = x[i]; y[i] = 0.5f * v * (1.f + erff(v * 0.70710678118654752f)); }
}

// y[i, :] = table[ids[i], :] (table f32 or bf16), grid (rows, ceil(d / block)).
extern "C" __global__ void embedding_f32(const float* table, const int* ids, float* y, int d) {
    int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c < d) y[(long long) blockIdx.x * d + c] = table[(long long) ids[blockIdx.x] * d + c];
}

extern "C" __global__ void embedding_bf16(const unsigned short* table, const int* ids, float* y, int d) {
    int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c < d) y[(long long) blockIdx.x * d + c] = bf16_to_f32(table[(long long) ids[blockIdx.x] * d + c]);
}

// y[i] = x[idx[i]], grid (rows, ceil(d / block)).
extern "C" __global__ void gather_rows(const float* x, const int* idx, float* y, int d) {
    int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c < d) y[(long long) blockIdx.x * d + c] = x[(long long) idx[blockIdx.x] * d + c];
}

// dst[idx[i]] = src[i]
extern "C" __global__ void scatter_rows(float* dst, const int* idx, const float* src, int d) {
    int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c < d) dst[(long long) idx[blockIdx.x] * d + c] = src[(long long) blockIdx.x * d + c];
}

// y[r, c] = x[r, from + c], c < w
extern "C" __global__ void columns_f32(const float* x, float* y, int d, int from, int w) {
    int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c < w) y[(long long) blockIdx.x * w + c] = x[(long long) blockIdx.x * d + from + c];
}

// In place rotate-half rotary: x [n, heads * d], cos/sin [n, d]; grid (n, heads), block >= d/2.
extern "C" __global__ void rotary_f32(float* x, const float* cs, const float* sn, int heads, int d) {
    int r = blockIdx.x, h = blockIdx.y, half = d >> 1;
    float* xr = x + ((long long) r * heads + h) * d;
    const float* c = cs + (long long) r * d;
    const float* s = sn + (long long) r * d;
    for (int j = threadIdx.x; j < half; j += blockDim.x) {
        float x1 = xr[j], x2 = xr[j + half];
        xr[j] = x1 * c[j] - x2 * s[j];
        xr[j + half] = x2 * c[j + half] + x1 * s[j + half];
    }
}

#define ATT_MAXC 4
// Attention with an online softmax (flash-attention style, one pass over the keys). One block per (query, head);
// keys are taken blockDim.x at a time: each thread scores one key, the block updates the running max and sum, then
// each thread accumulates its output channels (c = tid, tid + blockDim, ...; d <= ATT_MAXC * blockDim).
// q [n, hq*d], k/v [>= kvLen, hkv*d], out [n, hq*d]. seg: cumulative segment lengths (nseg + 1 entries) or null.
// Shared memory: (d + blockDim.x + 32) floats.
extern "C" __global__ void attention_f32(const float* q, const float* k, const float* v, float* out,
                                         int kvLen, int hq, int hkv, int d, float scale,
                                         const int* seg, int nseg, int causal, int qoff) {
    extern __shared__ float sh[];
    float* qs = sh;
    float* ps = sh + d;
    float* red = ps + blockDim.x;
    int i = blockIdx.x, h = blockIdx.y, kh = h / (hq / hkv), tid = threadIdx.x, nt = blockDim.x;
    const float* qr = q + ((long long) i * hq + h) * d;
    for (int c = tid; c < d; c += nt) qs[c] = qr[c];
    int lo, hi;
    if (nseg > 0) {
        int a = 0, b = nseg - 1;                 // find s with seg[s] <= i < seg[s+1]
        while (a < b) { int m = (a + b + 1) >> 1; if (seg[m] <= i) a = m; else b = m - 1; }
        lo = seg[a]; hi = seg[a + 1];
        if (causal) hi = i + 1;
    } else {
        lo = 0;
        hi = causal ? min(kvLen, qoff + i + 1) : kvLen;
    }
    __syncthreads();
    long long kstride = (long long) hkv * d;
    float m = NEG_INF, l = 0.f, acc[ATT_MAXC];
    for (int t = 0; t < ATT_MAXC; t++) acc[t] = 0.f;
    for (int j0 = lo; j0 < hi; j0 += nt) {
        int j = j0 + tid;
        float s = NEG_INF;
        if (j < hi) {
            const float* kr = k + j * kstride + (long long) kh * d;
            float dot = 0.f;
            for (int c = 0; c < d; c++) dot += qs[c] * kr[c];
            s = dot * scale;
        }
        float mnew = fmaxf(m, block_max(s, red));
        float p = j < hi ? expf(s - mnew) : 0.f;
        ps[tid] = p;
        float psum = block_sum(p, red);   // its __syncthreads also publish ps
        float alpha = expf(m - mnew);
        l = l * alpha + psum;
        m = mnew;
        int cnt = min(nt, hi - j0);
        for (int t = 0; t < ATT_MAXC; t++) {
            int c = tid + t * nt;
            if (c < d) {
                float a = acc[t] * alpha;
                const float* vr = v + (long long) j0 * kstride + (long long) kh * d + c;
                for (int u = 0; u < cnt; u++) a += ps[u] * vr[u * kstride];
                acc[t] = a;
            }
        }
        __syncthreads();
    }
    float inv = l > 0.f ? 1.f / l : 0.f;
    float* orow = out + ((long long) i * hq + h) * d;
    for (int t = 0; t < ATT_MAXC; t++) {
        int c = tid + t * nt;
        if (c < d) orow[c] = acc[t] * inv;
    }
}
