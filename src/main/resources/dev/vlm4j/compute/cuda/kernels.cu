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

#define ATT_MAXC 8
// Attention with an online softmax (flash-attention style, one pass over the keys), one block per (query, head)
// [and key chunk]: one warp per key at a time, lanes holding channels c = lane, lane + 32, ... (d <= 32 * ATT_MAXC),
// so key and value rows are read coalesced; each warp keeps its own running max, sum and output over keys
// j = lo + warp, + warps, ... and the block merges the warps' partial results in shared memory (warps * (d + 2)
// floats). q [n, hq*d], k/v [>= kvLen, hkv*d], out [n, hq*d].

// Query row i's allowed keys [lo, hi). seg: cumulative segment lengths (nseg + 1 entries) or null.
__device__ __forceinline__ void key_range(int i, int kvLen, const int* seg, int nseg, int causal, int qoff, int* lo, int* hi) {
    if (nseg > 0) {
        int a = 0, b = nseg - 1;                 // find s with seg[s] <= i < seg[s+1]
        while (a < b) { int m = (a + b + 1) >> 1; if (seg[m] <= i) a = m; else b = m - 1; }
        *lo = seg[a]; *hi = seg[a + 1];
        if (causal) *hi = i + 1;
    } else {
        *lo = 0;
        *hi = causal ? min(kvLen, qoff + i + 1) : kvLen;
    }
}

// Softmax-weighted sum over keys [lo, hi) for query row i, head h. On return (after a barrier) sh holds per-warp
// maxima sh[0..nw), sums sh[nw..2nw) and unnormalised outputs sh[2nw + w*d + c]. Returns the block maximum.
__device__ float attend_range(const float* q, const float* k, const float* v, int i, int h, int hq, int hkv, int d,
                              float scale, int lo, int hi, float* sh) {
    int kh = h / (hq / hkv), lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const float* qr = q + ((long long) i * hq + h) * d;
    float qv[ATT_MAXC], acc[ATT_MAXC];
#pragma unroll
    for (int t = 0; t < ATT_MAXC; t++) {
        int c = lane + 32 * t;
        qv[t] = c < d ? qr[c] : 0.f;
        acc[t] = 0.f;
    }
    long long kstride = (long long) hkv * d;
    const float* kb = k + (long long) kh * d;
    const float* vb = v + (long long) kh * d;
    float m = NEG_INF, l = 0.f;
    for (int j = lo + w; j < hi; j += nw) {
        const float* kr = kb + j * kstride;
        float s = 0.f;
#pragma unroll
        for (int t = 0; t < ATT_MAXC; t++) {
            int c = lane + 32 * t;
            if (c < d) s += qv[t] * kr[c];
        }
        s = warp_sum(s) * scale;
        float mn = fmaxf(m, s), alpha = expf(m - mn), p = expf(s - mn);
        l = l * alpha + p;
        m = mn;
        const float* vr = vb + j * kstride;
#pragma unroll
        for (int t = 0; t < ATT_MAXC; t++) {
            int c = lane + 32 * t;
            if (c < d) acc[t] = acc[t] * alpha + p * vr[c];
        }
    }
    if (lane == 0) { sh[w] = m; sh[nw + w] = l; }
#pragma unroll
    for (int t = 0; t < ATT_MAXC; t++) {
        int c = lane + 32 * t;
        if (c < d) sh[2 * nw + w * d + c] = acc[t];
    }
    __syncthreads();
    float mx = NEG_INF;
    for (int u = 0; u < nw; u++) mx = fmaxf(mx, sh[u]);
    return mx;
}

extern "C" __global__ void attention_f32(const float* q, const float* k, const float* v, float* out,
                                         int kvLen, int hq, int hkv, int d, float scale,
                                         const int* seg, int nseg, int causal, int qoff) {
    extern __shared__ float sh[];
    int i = blockIdx.x, h = blockIdx.y, nw = blockDim.x >> 5, lo, hi;
    key_range(i, kvLen, seg, nseg, causal, qoff, &lo, &hi);
    float mx = attend_range(q, k, v, i, h, hq, hkv, d, scale, lo, hi, sh);
    if ((threadIdx.x >> 5) != 0) return;
    float tot = 0.f;
    for (int u = 0; u < nw; u++) if (sh[u] != NEG_INF) tot += sh[nw + u] * expf(sh[u] - mx);
    float inv = tot > 0.f ? 1.f / tot : 0.f;
    float* orow = out + ((long long) i * hq + h) * d;
    for (int c = threadIdx.x; c < d; c += 32) {
        float o = 0.f;
        for (int u = 0; u < nw; u++) if (sh[u] != NEG_INF) o += sh[2 * nw + u * d + c] * expf(sh[u] - mx);
        orow[c] = o * inv;
    }
}

// Split-key attention for few queries over a long cache (decoding): block (i, h, s) covers keys
// [lo + s*chunk, lo + (s+1)*chunk) of query i's range and writes its partial result (max, sum, unnormalised
// output: d + 2 floats) to part[((i*hq + h)*splits + s)]; attention_combine merges the splits. No segments.
extern "C" __global__ void attention_split(const float* q, const float* k, const float* v, float* part,
                                           int kvLen, int hq, int hkv, int d, float scale, int causal, int qoff,
                                           int chunk) {
    extern __shared__ float sh[];
    int i = blockIdx.x, h = blockIdx.y, s = blockIdx.z, splits = gridDim.z, nw = blockDim.x >> 5, lo, hi;
    key_range(i, kvLen, 0, 0, causal, qoff, &lo, &hi);
    int a = lo + s * chunk, b = min(hi, a + chunk);
    float mx = attend_range(q, k, v, i, h, hq, hkv, d, scale, a, max(a, b), sh);
    if ((threadIdx.x >> 5) != 0) return;
    float* pr = part + (((long long) i * hq + h) * splits + s) * (d + 2);
    float tot = 0.f;
    for (int u = 0; u < nw; u++) if (sh[u] != NEG_INF) tot += sh[nw + u] * expf(sh[u] - mx);
    if (threadIdx.x == 0) { pr[0] = mx; pr[1] = tot; }
    for (int c = threadIdx.x; c < d; c += 32) {
        float o = 0.f;
        for (int u = 0; u < nw; u++) if (sh[u] != NEG_INF) o += sh[2 * nw + u * d + c] * expf(sh[u] - mx);
        pr[2 + c] = o;
    }
}

// out[i, h] = merge of the splits' partial results; grid (n, hq), one warp.
extern "C" __global__ void attention_combine(const float* part, float* out, int hq, int d, int splits) {
    int i = blockIdx.x, h = blockIdx.y;
    const float* pr = part + ((long long) i * hq + h) * splits * (d + 2);
    float mx = NEG_INF;
    for (int s = 0; s < splits; s++) mx = fmaxf(mx, pr[s * (d + 2)]);
    float tot = 0.f;
    for (int s = 0; s < splits; s++) {
        float m = pr[s * (d + 2)];
        if (m != NEG_INF) tot += pr[s * (d + 2) + 1] * expf(m - mx);
    }
    float inv = tot > 0.f ? 1.f / tot : 0.f;
    float* orow = out + ((long long) i * hq + h) * d;
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
        float o = 0.f;
        for (int s = 0; s < splits; s++) {
            float m = pr[s * (d + 2)];
            if (m != NEG_INF) o += pr[s * (d + 2) + 2 + c] * expf(m - mx);
        }
        orow[c] = o * inv;
    }
}

struct alignas(16) U32x4 { unsigned int x, y, z, w; };
struct alignas(16) F32x4 { float x, y, z, w; };

__device__ __forceinline__ float round_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

// Matrix-vector product for one activation row (decoding): y[r] = sum_k bf16(x[k]) * w[r, k] (+ b[r]), one warp per
// output row, 16-byte weight loads. x is rounded to bf16 as the GEMM path does, accumulation in float32.
// Needs in % 8 == 0 and 16-byte aligned rows. Grid: ceil(out / (blockDim.x / 32)).
extern "C" __global__ void gemv_bf16(const float* x, const unsigned short* w, const float* b, float* y, int in, int out) {
    int row = (int) (((long long) blockIdx.x * blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    if (row >= out) return;
    const U32x4* w4 = (const U32x4*) (w + (long long) row * in);
    const F32x4* x4 = (const F32x4*) x;
    float acc = 0.f;
    for (int i = lane; i < (in >> 3); i += 32) {
        U32x4 v = w4[i];
        F32x4 a = x4[2 * i], c = x4[2 * i + 1];
        acc += round_bf16(a.x) * __int_as_float(v.x << 16) + round_bf16(a.y) * __int_as_float(v.x & 0xffff0000u)
             + round_bf16(a.z) * __int_as_float(v.y << 16) + round_bf16(a.w) * __int_as_float(v.y & 0xffff0000u)
             + round_bf16(c.x) * __int_as_float(v.z << 16) + round_bf16(c.y) * __int_as_float(v.z & 0xffff0000u)
             + round_bf16(c.z) * __int_as_float(v.w << 16) + round_bf16(c.w) * __int_as_float(v.w & 0xffff0000u);
    }
    acc = warp_sum(acc);
    if (lane == 0) y[row] = acc + (b ? b[row] : 0.f);
}

// The float32-weight version (parity mode): needs in % 4 == 0.
extern "C" __global__ void gemv_f32(const float* x, const float* w, const float* b, float* y, int in, int out) {
    int row = (int) (((long long) blockIdx.x * blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    if (row >= out) return;
    const F32x4* w4 = (const F32x4*) (w + (long long) row * in);
    const F32x4* x4 = (const F32x4*) x;
    float acc = 0.f;
    for (int i = lane; i < (in >> 2); i += 32) {
        F32x4 v = w4[i], a = x4[i];
        acc += a.x * v.x + a.y * v.y + a.z * v.z + a.w * v.w;
    }
    acc = warp_sum(acc);
    if (lane == 0) y[row] = acc + (b ? b[row] : 0.f);
}
