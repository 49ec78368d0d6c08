// vlm4j CUDA kernels: float32 activations, weights in float32 or bf16 (raw uint16 bits).
// Self-contained (no #include) so that both nvcc -ptx and NVRTC compile it as is.
// Every kernel is extern "C" so its PTX name is the C name used by CudaBackend.

#define NEG_INF __int_as_float(0xff800000)

struct alignas(16) U32x4 { unsigned int x, y, z, w; };
struct alignas(16) F32x4 { float x, y, z, w; };

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

// The same conversion 8 values a thread (two 16-byte loads, one 16-byte store): x and y 16-byte aligned, n8 = n / 8
extern "C" __global__ void f32_to_bf16_x8(const float4* x, uint4* y, long long n8) {
    long long i = (long long) blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n8) return;
    float4 a = x[2 * i], b = x[2 * i + 1];
    uint4 o;
    o.x = (unsigned int) f32_to_bf16(a.x) | ((unsigned int) f32_to_bf16(a.y) << 16);
    o.y = (unsigned int) f32_to_bf16(a.z) | ((unsigned int) f32_to_bf16(a.w) << 16);
    o.z = (unsigned int) f32_to_bf16(b.x) | ((unsigned int) f32_to_bf16(b.y) << 16);
    o.w = (unsigned int) f32_to_bf16(b.z) | ((unsigned int) f32_to_bf16(b.w) << 16);
    y[i] = o;
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

// rms_norm for rows with d % 4 == 0 and d <= 16 * blockDim: each thread keeps its float4s in registers (one read of
// x, all loads in flight at once) and the block is as wide as the row (a decode step's single row is one block, so
// the latency of a sequential loop over the row was most of its time).
__device__ __forceinline__ void rms_norm_v4_rows(const float* x, const float* w, float* y, unsigned short* yb, int d, float eps);

extern "C" __global__ void rms_norm_v4(const float* x, const float* w, float* y, int d, float eps) {
    rms_norm_v4_rows(x, w, y, nullptr, d, eps);
}

// rms_norm_v4 that also writes y as bf16 into yb (the operand of the products that read y next)
extern "C" __global__ void rms_norm_v4_bf16(const float* x, const float* w, float* y, unsigned short* yb, int d, float eps) {
    rms_norm_v4_rows(x, w, y, yb, d, eps);
}

__device__ __forceinline__ void rms_norm_v4_rows(const float* x, const float* w, float* y, unsigned short* yb, int d, float eps) {
    __shared__ float red[32];
    const F32x4* xr = (const F32x4*) (x + (long long) blockIdx.x * d);
    const F32x4* w4 = (const F32x4*) w;
    F32x4* yr = (F32x4*) (y + (long long) blockIdx.x * d);
    const int d4 = d >> 2;
    F32x4 v[4];
    float ss = 0.f;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        int k = threadIdx.x + j * blockDim.x;
        if (k < d4) {
            v[j] = xr[k];
            ss += v[j].x * v[j].x + v[j].y * v[j].y + v[j].z * v[j].z + v[j].w * v[j].w;
        }
    }
    ss = block_sum(ss, red);
    float inv = rsqrtf(ss / d + eps);
#pragma unroll
    for (int j = 0; j < 4; j++) {
        int k = threadIdx.x + j * blockDim.x;
        if (k < d4) {
            F32x4 g = w4[k], o;
            o.x = g.x * (v[j].x * inv); o.y = g.y * (v[j].y * inv); o.z = g.z * (v[j].z * inv); o.w = g.w * (v[j].w * inv);
            yr[k] = o;
            if (yb != nullptr) {
                unsigned short* b = yb + (long long) blockIdx.x * d + 4 * k;
                b[0] = f32_to_bf16(o.x); b[1] = f32_to_bf16(o.y); b[2] = f32_to_bf16(o.z); b[3] = f32_to_bf16(o.w);
            }
        }
    }
}

// P[r, :] = bf16(softmax(S[r, :])) for rows of length n (scores already scaled), one block per row. Used by the
// GEMM form of full (unmasked) attention over long sequences: S = Q K^T and O = P V run on the tensor cores.
extern "C" __global__ void softmax_rows_bf16(const float* S, unsigned short* P, int n) {
    __shared__ float red[32];
    const float* sr = S + (long long) blockIdx.x * n;
    unsigned short* pr = P + (long long) blockIdx.x * n;
    float mx = NEG_INF;
    for (int j = threadIdx.x; j < n; j += blockDim.x) mx = fmaxf(mx, sr[j]);
    mx = block_max(mx, red);
    float sum = 0.f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) sum += expf(sr[j] - mx);
    sum = block_sum(sum, red);
    float inv = 1.f / sum;
    for (int j = threadIdx.x; j < n; j += blockDim.x) pr[j] = f32_to_bf16(expf(sr[j] - mx) * inv);
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

// silu_mul that also writes y as bf16 into yb
extern "C" __global__ void silu_mul_bf16(const float* g, const float* u, float* y, unsigned short* yb, long long n) {
    long long i = (long long) blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { float x = g[i], r = x / (1.f + expf(-x)) * u[i]; y[i] = r; yb[i] = f32_to_bf16(r); }
}

__device__ __forceinline__ uint2 bf16x4(float4 v) {
    return make_uint2((unsigned int) f32_to_bf16(v.x) | ((unsigned int) f32_to_bf16(v.y) << 16),
                      (unsigned int) f32_to_bf16(v.z) | ((unsigned int) f32_to_bf16(v.w) << 16));
}

// silu_mul_bf16 four values a thread (16-byte loads and stores, 8-byte bf16 stores), n4 = n / 4 groups (the caller
// runs the tail through silu_mul_bf16), 16-byte aligned operands. When gb and ub are not null (a training step that
// keeps the inputs compact for the backward) it writes their bf16 copies and computes y from those rounded values, so
// that the backward can rebuild y's bf16 copy from them bit for bit (train_kernels.cu's lora_down_da4_swiglu) instead
// of keeping it.
extern "C" __global__ void silu_mul_bf16_x4(const float4* g, const float4* u, float4* y, uint2* yb, uint2* gb, uint2* ub,
                                            long long n4) {
    long long i = (long long) blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n4) return;
    float4 a = g[i], b = u[i], r;
    if (gb != nullptr) {
        uint2 ga = bf16x4(a), ua = bf16x4(b);
        gb[i] = ga;
        ub[i] = ua;
        a = make_float4(__uint_as_float(ga.x << 16), __uint_as_float(ga.x & 0xffff0000u), __uint_as_float(ga.y << 16),
                        __uint_as_float(ga.y & 0xffff0000u));
        b = make_float4(__uint_as_float(ua.x << 16), __uint_as_float(ua.x & 0xffff0000u), __uint_as_float(ua.y << 16),
                        __uint_as_float(ua.y & 0xffff0000u));
    }
    r.x = a.x / (1.f + expf(-a.x)) * b.x;
    r.y = a.y / (1.f + expf(-a.y)) * b.y;
    r.z = a.z / (1.f + expf(-a.z)) * b.z;
    r.w = a.w / (1.f + expf(-a.w)) * b.w;
    y[i] = r;
    yb[i] = bf16x4(r);
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

// rotary_f32 that also writes the result's bf16 copy (the flash attention's operand) into xb
extern "C" __global__ void rotary_f32_bf16(float* x, unsigned short* xb, const float* cs, const float* sn, int heads, int d) {
    int r = blockIdx.x, h = blockIdx.y, half = d >> 1;
    long long o = ((long long) r * heads + h) * d;
    float* xr = x + o;
    const float* c = cs + (long long) r * d;
    const float* s = sn + (long long) r * d;
    for (int j = threadIdx.x; j < half; j += blockDim.x) {
        float x1 = xr[j], x2 = xr[j + half];
        float y1 = x1 * c[j] - x2 * s[j], y2 = x2 * c[j + half] + x1 * s[j + half];
        xr[j] = y1;
        xr[j + half] = y2;
        xb[o + j] = f32_to_bf16(y1);
        xb[o + j + half] = f32_to_bf16(y2);
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


__device__ __forceinline__ float round_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

// Matrix-vector product for one activation row (decoding): y[r] = sum_k bf16(x[k]) * w[r, k] (+ b[r]), one warp per
// output row, 16-byte weight loads. x is rounded to bf16 as the GEMM path does, accumulation in float32.
// Needs in % 8 == 0 and 16-byte aligned rows. Grid: ceil(out / (blockDim.x / 32)).
__device__ __forceinline__ float dot8_bf16(U32x4 v, F32x4 a, F32x4 c) {
    return round_bf16(a.x) * __int_as_float(v.x << 16) + round_bf16(a.y) * __int_as_float(v.x & 0xffff0000u)
         + round_bf16(a.z) * __int_as_float(v.y << 16) + round_bf16(a.w) * __int_as_float(v.y & 0xffff0000u)
         + round_bf16(c.x) * __int_as_float(v.z << 16) + round_bf16(c.y) * __int_as_float(v.z & 0xffff0000u)
         + round_bf16(c.z) * __int_as_float(v.w << 16) + round_bf16(c.w) * __int_as_float(v.w & 0xffff0000u);
}

// Four 16-byte weight loads per lane are issued before any is used, so each warp keeps 2 KiB in flight (one load
// at a time left the HBM mostly idle for the narrow k/v projections).
extern "C" __global__ void gemv_bf16(const float* x, const unsigned short* w, const float* b, float* y, int in, int out) {
    int row = (int) (((long long) blockIdx.x * blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    if (row >= out) return;
    const U32x4* w4 = (const U32x4*) (w + (long long) row * in);
    const F32x4* x4 = (const F32x4*) x;
    float acc = 0.f;
    int n8 = in >> 3, i = lane;
    for (; i + 96 < n8; i += 128) {
        U32x4 v0 = w4[i], v1 = w4[i + 32], v2 = w4[i + 64], v3 = w4[i + 96];
        acc += dot8_bf16(v0, x4[2 * i], x4[2 * i + 1]) + dot8_bf16(v1, x4[2 * i + 64], x4[2 * i + 65])
             + dot8_bf16(v2, x4[2 * i + 128], x4[2 * i + 129]) + dot8_bf16(v3, x4[2 * i + 192], x4[2 * i + 193]);
    }
    for (; i < n8; i += 32) acc += dot8_bf16(w4[i], x4[2 * i], x4[2 * i + 1]);
    acc = warp_sum(acc);
    if (lane == 0) y[row] = acc + (b ? b[row] : 0.f);
}

// gemv_bf16 with x rounded to bf16 once per block into shared memory (in floats, in * 4 <= 48 KiB): the inner loop
// is then only the weight unpacking and the multiply-adds, instead of rounding every x value again for every row.
extern "C" __global__ void gemv_bf16_sx(const float* x, const unsigned short* w, const float* b, float* y, int in, int out) {
    extern __shared__ float xs[];
    for (int k = threadIdx.x; k < in; k += blockDim.x) xs[k] = round_bf16(x[k]);
    __syncthreads();
    int row = (int) (((long long) blockIdx.x * blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    if (row >= out) return;
    const U32x4* w4 = (const U32x4*) (w + (long long) row * in);
    const F32x4* x4 = (const F32x4*) xs;
    float acc = 0.f;
    int n8 = in >> 3, i = lane;
    for (; i + 96 < n8; i += 128) {
        U32x4 v[4] = {w4[i], w4[i + 32], w4[i + 64], w4[i + 96]};
#pragma unroll
        for (int u = 0; u < 4; u++) {
            F32x4 a = x4[2 * (i + 32 * u)], c = x4[2 * (i + 32 * u) + 1];
            acc += a.x * __int_as_float(v[u].x << 16) + a.y * __int_as_float(v[u].x & 0xffff0000u)
                 + a.z * __int_as_float(v[u].y << 16) + a.w * __int_as_float(v[u].y & 0xffff0000u)
                 + c.x * __int_as_float(v[u].z << 16) + c.y * __int_as_float(v[u].z & 0xffff0000u)
                 + c.z * __int_as_float(v[u].w << 16) + c.w * __int_as_float(v[u].w & 0xffff0000u);
        }
    }
    for (; i < n8; i += 32) {
        U32x4 v = w4[i];
        F32x4 a = x4[2 * i], c = x4[2 * i + 1];
        acc += a.x * __int_as_float(v.x << 16) + a.y * __int_as_float(v.x & 0xffff0000u)
             + a.z * __int_as_float(v.y << 16) + a.w * __int_as_float(v.y & 0xffff0000u)
             + c.x * __int_as_float(v.z << 16) + c.y * __int_as_float(v.z & 0xffff0000u)
             + c.z * __int_as_float(v.w << 16) + c.w * __int_as_float(v.w & 0xffff0000u);
    }
    acc = warp_sum(acc);
    if (lane == 0) y[row] = acc + (b ? b[row] : 0.f);
}

// Fused matrix-vector products for one activation row (decoding), warp-per-row like gemv_bf16 (16-byte weight
// loads, four in flight per lane) with three additions that cut launches and fill the GPU:
//  - the output rows are the concatenation of up to three segments (q, k and v over one normed input): segment s
//    has r_s rows of weight w_s [r_s, in] (bf16), optional bias b_s and output y_s; res, when given, is added to
//    segment 0 (a residual projection);
//  - swiglu = 1: r0 outputs, each from row r of w0 (gate) and of w1 (up) in the same warp, y0 = silu(g) * u;
//  - split = 1, 2 or 4 warps share a row (each a contiguous part of it, summed through shared memory), so that a
//    4096-row matrix still gives every SM enough warps. Block: W warps (blockDim 32 W, W <= 16), W / split rows.
// x is rounded to bf16 as the GEMM path does; float32 accumulation. Needs in % 8 == 0 and 16-byte aligned rows.
// stage = 1: x is rounded once per block into dynamic shared memory (in floats), which spares the per-row reads of
// x from L1 that otherwise compete with the weight stream (the large matrices).
__device__ __forceinline__ float dot8_rounded(U32x4 v, const float* a) {
    return a[0] * __int_as_float(v.x << 16) + a[1] * __int_as_float(v.x & 0xffff0000u)
         + a[2] * __int_as_float(v.y << 16) + a[3] * __int_as_float(v.y & 0xffff0000u)
         + a[4] * __int_as_float(v.z << 16) + a[5] * __int_as_float(v.z & 0xffff0000u)
         + a[6] * __int_as_float(v.w << 16) + a[7] * __int_as_float(v.w & 0xffff0000u);
}

// The 8 bf16-rounded x values of chunk i: from the shared copy (already rounded) or from global memory.
__device__ __forceinline__ void round8(const F32x4* x4, bool staged, int i, float* a) {
    F32x4 p = x4[2 * i], q = x4[2 * i + 1];
    if (staged) {
        a[0] = p.x; a[1] = p.y; a[2] = p.z; a[3] = p.w; a[4] = q.x; a[5] = q.y; a[6] = q.z; a[7] = q.w;
        return;
    }
    a[0] = round_bf16(p.x); a[1] = round_bf16(p.y); a[2] = round_bf16(p.z); a[3] = round_bf16(p.w);
    a[4] = round_bf16(q.x); a[5] = round_bf16(q.y); a[6] = round_bf16(q.z); a[7] = round_bf16(q.w);
}

extern "C" __global__ void __launch_bounds__(512) gemv_bf16_fused(const float* x, int in,
        const unsigned short* w0, const unsigned short* w1, const unsigned short* w2,
        const float* b0, const float* b1, const float* b2, float* y0, float* y1, float* y2,
        int r0, int r1, int r2, const float* res, int swiglu, int split, int stage) {
    __shared__ float red[2][16];
    extern __shared__ float xs[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int part = warp % split, row = blockIdx.x * ((blockDim.x >> 5) / split) + warp / split;
    if (stage) {
        for (int k = threadIdx.x; k < in; k += blockDim.x) xs[k] = round_bf16(x[k]);
        __syncthreads();
    }
    const int total = swiglu ? r0 : r0 + r1 + r2;
    const bool valid = row < total;
    const U32x4 *wa = nullptr, *wb = nullptr;
    if (valid) {
        if (swiglu) {
            wa = (const U32x4*) (w0 + (long long) row * in);
            wb = (const U32x4*) (w1 + (long long) row * in);
        } else if (row < r0) {
            wa = (const U32x4*) (w0 + (long long) row * in);
        } else if (row < r0 + r1) {
            wa = (const U32x4*) (w1 + (long long) (row - r0) * in);
        } else {
            wa = (const U32x4*) (w2 + (long long) (row - r0 - r1) * in);
        }
    }
    const F32x4* x4 = (const F32x4*) (stage ? xs : x);
    const bool st = stage != 0;
    const int n8 = in >> 3, lo = part * n8 / split, hi = (part + 1) * n8 / split;
    float acc = 0.f, acc2 = 0.f;
    if (valid) {
        int i = lo + lane;
        float a[8];
        if (wb) {
            for (; i + 32 < hi; i += 64) {
                U32x4 u0 = wa[i], u1 = wa[i + 32], v0 = wb[i], v1 = wb[i + 32];
                round8(x4, st, i, a);
                acc += dot8_rounded(u0, a);
                acc2 += dot8_rounded(v0, a);
                round8(x4, st, i + 32, a);
                acc += dot8_rounded(u1, a);
                acc2 += dot8_rounded(v1, a);
            }
            for (; i < hi; i += 32) {
                U32x4 u = wa[i], v = wb[i];
                round8(x4, st, i, a);
                acc += dot8_rounded(u, a);
                acc2 += dot8_rounded(v, a);
            }
        } else {
            for (; i + 96 < hi; i += 128) {
                U32x4 v[4] = {wa[i], wa[i + 32], wa[i + 64], wa[i + 96]};
#pragma unroll
                for (int u = 0; u < 4; u++) {
                    round8(x4, st, i + 32 * u, a);
                    acc += dot8_rounded(v[u], a);
                }
            }
            for (; i < hi; i += 32) {
                U32x4 v = wa[i];
                round8(x4, st, i, a);
                acc += dot8_rounded(v, a);
            }
        }
    }
    acc = warp_sum(acc);
    acc2 = warp_sum(acc2);
    if (split > 1) {
        if (lane == 0) { red[0][warp] = acc; red[1][warp] = acc2; }
        __syncthreads();
        if (part != 0) return;
        acc = 0.f;
        acc2 = 0.f;
        for (int p = 0; p < split; p++) { acc += red[0][warp + p]; acc2 += red[1][warp + p]; }
    }
    if (lane != 0 || !valid) return;
    if (swiglu) {
        y0[row] = acc / (1.f + expf(-acc)) * acc2;
    } else if (row < r0) {
        y0[row] = acc + (b0 ? b0[row] : 0.f) + (res ? res[row] : 0.f);
    } else if (row < r0 + r1) {
        y1[row - r0] = acc + (b1 ? b1[row - r0] : 0.f);
    } else {
        y2[row - r0 - r1] = acc + (b2 ? b2[row - r0 - r1] : 0.f);
    }
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

// ---- batched decoding: one launch for all sequences, each with its own KV cache ----

// dst_i[row_i, :] = src[i, :] where table = {dst pointers [n], rows [n]} (int64); grid (n, ceil(d / block)).
extern "C" __global__ void append_rows(const float* src, const long long* table, int n, int d) {
    int i = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= d) return;
    float* dst = (float*) table[i];
    dst[table[n + i] * d + c] = src[(long long) i * d + c];
}

// Query row i (q [n, hq*d]) over keys [0, len_i) of its own cache; table = {key pointers [n], value pointers [n],
// lengths [n]} (int64). Grid (n, hq, splits), block of warps, shared warps * (d + 2) floats. With one split the
// normalised output goes to out [n, hq*d]; with several, block (i, h, s) covers keys [s*chunk, (s+1)*chunk) and
// writes its partial result to part as attention_split does (merged by attention_combine).
extern "C" __global__ void attention_batch(const float* q, const long long* table, float* out, int n, int hq, int hkv,
                                           int d, float scale, int chunk) {
    extern __shared__ float sh[];
    int i = blockIdx.x, h = blockIdx.y, s = blockIdx.z, splits = gridDim.z, nw = blockDim.x >> 5;
    const float* k = (const float*) table[i];
    const float* v = (const float*) table[n + i];
    int len = (int) table[2 * n + i];
    int a = splits == 1 ? 0 : min(len, s * chunk), b = splits == 1 ? len : min(len, a + chunk);
    float mx = attend_range(q, k, v, i, h, hq, hkv, d, scale, a, b, sh);
    if ((threadIdx.x >> 5) != 0) return;
    float tot = 0.f;
    for (int u = 0; u < nw; u++) if (sh[u] != NEG_INF) tot += sh[nw + u] * expf(sh[u] - mx);
    if (splits == 1) {
        float inv = tot > 0.f ? 1.f / tot : 0.f;
        float* orow = out + ((long long) i * hq + h) * d;
        for (int c = threadIdx.x; c < d; c += 32) {
            float o = 0.f;
            for (int u = 0; u < nw; u++) if (sh[u] != NEG_INF) o += sh[2 * nw + u * d + c] * expf(sh[u] - mx);
            orow[c] = o * inv;
        }
        return;
    }
    float* pr = out + (((long long) i * hq + h) * splits + s) * (d + 2);
    if (threadIdx.x == 0) { pr[0] = mx; pr[1] = tot; }
    for (int c = threadIdx.x; c < d; c += 32) {
        float o = 0.f;
        for (int u = 0; u < nw; u++) if (sh[u] != NEG_INF) o += sh[2 * nw + u * d + c] * expf(sh[u] - mx);
        pr[2 + c] = o;
    }
}

// out[r] = index of the largest x[r, :] (the first on ties); one block per row, blockDim a power of two <= 1024.
extern "C" __global__ void argmax_rows(const float* x, int* out, int cols) {
    __shared__ float bv[1024];
    __shared__ int bi[1024];
    const float* xr = x + (long long) blockIdx.x * cols;
    float best = NEG_INF;
    int idx = 0x7fffffff;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        float v = xr[c];
        if (v > best || (v == best && c < idx) || idx == 0x7fffffff) { best = v; idx = c; }
    }
    bv[threadIdx.x] = best;
    bi[threadIdx.x] = idx;
    __syncthreads();
    for (int o = blockDim.x >> 1; o > 0; o >>= 1) {
        if (threadIdx.x < o) {
            float v = bv[threadIdx.x + o];
            int j = bi[threadIdx.x + o];
            if (v > bv[threadIdx.x] || (v == bv[threadIdx.x] && j < bi[threadIdx.x])) { bv[threadIdx.x] = v; bi[threadIdx.x] = j; }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = bi[0] == 0x7fffffff ? 0 : bi[0];
}

// ---- tiled attention for many queries (prefill, vision tower) ----
// Flash-attention style: block (query tile of 64 rows, head), 256 threads; key tiles of 64 staged in shared memory,
// online softmax in base 2. Thread (ty = t / 16, tx = t % 16) owns query rows 4ty..4ty+3: scores for keys 4tx..4tx+3
// of the tile and output channels tx + 16j. Needs d % 16 == 0, d <= 128. Dynamic shared memory:
// (3 * 64 * d + 64 * 68) floats: Q^T [d][64] (pre-scaled), K^T [d][64], V [64][d], P [64][68].
// Rows' key ranges are nondecreasing in the row (segments in order, causal), so a tile's keys are
// [lo(first row), hi(last row)); each row masks what it may not see.
extern "C" __global__ void attention_flash(const float* q, const float* k, const float* v, float* out, int n,
                                           int kvLen, int hq, int hkv, int d, float scale, const int* seg, int nseg,
                                           int causal, int qoff) {
    extern __shared__ float sm[];
    float* Qt = sm;
    float* Kt = Qt + d * 64;
    float* Vs = Kt + d * 64;
    float* Ps = Vs + 64 * d;
    const int PS = 68;
    int h = blockIdx.y, kh = h / (hq / hkv), q0 = blockIdx.x * 64, t = threadIdx.x, ty = t >> 4, tx = t & 15;
    long long qs = (long long) hq * d, ks = (long long) hkv * d;
    float sl2 = scale * 1.4426950408889634f;
    int d4 = d >> 2, nj = d >> 4;
    for (int e = t; e < 64 * d4; e += 256) {
        int r = e & 63, c4 = e >> 6, i = q0 + r;
        F32x4 x = {0.f, 0.f, 0.f, 0.f};
        if (i < n) x = *(const F32x4*) (q + i * qs + (long long) h * d + 4 * c4);
        Qt[(4 * c4) * 64 + r] = x.x * sl2; Qt[(4 * c4 + 1) * 64 + r] = x.y * sl2;
        Qt[(4 * c4 + 2) * 64 + r] = x.z * sl2; Qt[(4 * c4 + 3) * 64 + r] = x.w * sl2;
    }
    int lo[4], hi[4];
    float m[4], l[4], acc[4][8];
#pragma unroll
    for (int a = 0; a < 4; a++) {
        int i = q0 + 4 * ty + a;
        if (i < n) key_range(i, kvLen, seg, nseg, causal, qoff, &lo[a], &hi[a]); else { lo[a] = 0; hi[a] = 0; }
        m[a] = NEG_INF; l[a] = 0.f;
#pragma unroll
        for (int j = 0; j < 8; j++) acc[a][j] = 0.f;
    }
    int tlo, thi, dummy;
    key_range(q0, kvLen, seg, nseg, causal, qoff, &tlo, &dummy);
    key_range(min(q0 + 63, n - 1), kvLen, seg, nseg, causal, qoff, &dummy, &thi);
    for (int j0 = tlo; j0 < thi; j0 += 64) {
        __syncthreads();
        for (int e = t; e < 64 * d4; e += 256) {
            int r = e & 63, c4 = e >> 6, j = j0 + r;
            F32x4 x = {0.f, 0.f, 0.f, 0.f};
            if (j < thi) x = *(const F32x4*) (k + j * ks + (long long) kh * d + 4 * c4);
            Kt[(4 * c4) * 64 + r] = x.x; Kt[(4 * c4 + 1) * 64 + r] = x.y;
            Kt[(4 * c4 + 2) * 64 + r] = x.z; Kt[(4 * c4 + 3) * 64 + r] = x.w;
        }
        for (int e = t; e < 64 * d4; e += 256) {
            int r = e / d4, c4 = e - r * d4, j = j0 + r;
            F32x4 x = {0.f, 0.f, 0.f, 0.f};
            if (j < thi) x = *(const F32x4*) (v + j * ks + (long long) kh * d + 4 * c4);
            *(F32x4*) (Vs + r * d + 4 * c4) = x;
        }
        __syncthreads();
        float s[4][4];
#pragma unroll
        for (int a = 0; a < 4; a++)
#pragma unroll
            for (int b = 0; b < 4; b++) s[a][b] = 0.f;
        for (int c = 0; c < d; c++) {
            F32x4 qa = *(const F32x4*) (Qt + c * 64 + 4 * ty), kb = *(const F32x4*) (Kt + c * 64 + 4 * tx);
            float qv[4] = {qa.x, qa.y, qa.z, qa.w}, kv[4] = {kb.x, kb.y, kb.z, kb.w};
#pragma unroll
            for (int a = 0; a < 4; a++)
#pragma unroll
                for (int b = 0; b < 4; b++) s[a][b] += qv[a] * kv[b];
        }
#pragma unroll
        for (int a = 0; a < 4; a++) {
            float mx = NEG_INF;
#pragma unroll
            for (int b = 0; b < 4; b++) {
                int j = j0 + 4 * tx + b;
                if (j < lo[a] || j >= hi[a]) s[a][b] = NEG_INF;
                mx = fmaxf(mx, s[a][b]);
            }
            for (int o = 1; o < 16; o <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            float mn = fmaxf(m[a], mx);
            float alpha = mn == NEG_INF ? 1.f : exp2f(m[a] - mn);
            float p[4], ps = 0.f;
#pragma unroll
            for (int b = 0; b < 4; b++) { p[b] = s[a][b] == NEG_INF ? 0.f : exp2f(s[a][b] - mn); ps += p[b]; }
            for (int o = 1; o < 16; o <<= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
            F32x4 pv = {p[0], p[1], p[2], p[3]};
            *(F32x4*) (Ps + (4 * ty + a) * PS + 4 * tx) = pv;
            l[a] = l[a] * alpha + ps;
            m[a] = mn;
#pragma unroll
            for (int j = 0; j < 8; j++) acc[a][j] *= alpha;
        }
        __syncthreads();
        for (int kk = 0; kk < 64; kk += 4) {
            F32x4 pr[4];
#pragma unroll
            for (int a = 0; a < 4; a++) pr[a] = *(const F32x4*) (Ps + (4 * ty + a) * PS + kk);
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const float* vr = Vs + (kk + u) * d + tx;
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    if (j < nj) {
                        float vv = vr[16 * j];
                        acc[0][j] += (u == 0 ? pr[0].x : u == 1 ? pr[0].y : u == 2 ? pr[0].z : pr[0].w) * vv;
                        acc[1][j] += (u == 0 ? pr[1].x : u == 1 ? pr[1].y : u == 2 ? pr[1].z : pr[1].w) * vv;
                        acc[2][j] += (u == 0 ? pr[2].x : u == 1 ? pr[2].y : u == 2 ? pr[2].z : pr[2].w) * vv;
                        acc[3][j] += (u == 0 ? pr[3].x : u == 1 ? pr[3].y : u == 2 ? pr[3].z : pr[3].w) * vv;
                    }
                }
            }
        }
    }
#pragma unroll
    for (int a = 0; a < 4; a++) {
        int i = q0 + 4 * ty + a;
        if (i >= n) continue;
        float inv = l[a] > 0.f ? 1.f / l[a] : 0.f;
        float* orow = out + i * qs + (long long) h * d;
#pragma unroll
        for (int j = 0; j < 8; j++) if (j < nj) orow[tx + 16 * j] = acc[a][j] * inv;
    }
}
