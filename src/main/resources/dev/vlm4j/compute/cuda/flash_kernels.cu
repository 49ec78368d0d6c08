// vlm4j: attention on the tensor cores without materialised scores (bf16 mode), forward and backward, in the manner
// of FlashAttention-2. Self-contained (no #include); compiled into a module of its own (FlashAttention.java).
//
// Operands are bf16 copies of the model's float32 activations (kernels.cu's f32_to_bf16_kernel): q [n, hq*D], k and v [>= kvLen, hkv*D]
// (grouped KV heads read in place); tiles move to shared memory with cp.async (the next one loads during the
// products), fragments come out with ldmatrix, products accumulate in float32 (mma.sync m16n8k16). The mask
// is Backend.attention's: per query i, keys [lo, hi) from key_range (segments, causality, query offset).
// Softmax runs in base 2: s = (q.k) * scale * log2(e); the forward may keep lse = m + log2(l) per (head, query), from
// which the backward rebuilds P = exp2(s - lse) tile by tile.

#define NEG_INF __int_as_float(0xff800000)

typedef unsigned int u32;
typedef unsigned short u16;

// The key range [lo, hi) query i may attend (as kernels.cu's key_range).
__device__ __forceinline__ void flash_key_range(int i, int kvLen, const int* seg, int nseg, int causal, int qoff,
                                                int* lo, int* hi) {
    if (nseg > 0) {
        int a = 0, b = nseg - 1;
        while (a < b) { int m = (a + b + 1) >> 1; if (seg[m] <= i) a = m; else b = m - 1; }
        *lo = seg[a]; *hi = seg[a + 1];
        if (causal) *hi = i + 1;
    } else {
        *lo = 0;
        *hi = causal ? min(kvLen, qoff + i + 1) : kvLen;
    }
}

// Two floats as packed bf16 (round to nearest even): lo in the low half.
__device__ __forceinline__ u32 pack_bf16(float lo, float hi) {
    u32 r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

// 2^x with the hardware approximation (relative error about 2^-22, far below the bf16 rounding of P); 2^-inf = 0.
__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ u16 to_bf16(float f) { return (u16) (pack_bf16(f, 0.f) & 0xffffu); }

// c[16x8] += a[16x16] b[16x8]; a row-major, b column-major, bf16 in, float32 accumulate.
// Fragments (g = lane / 4, t = lane % 4): a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], a2 = A[g][2t+8..], a3 = A[g+8][2t+8..];
// b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]; c0,c1 = C[g][2t..2t+1], c2,c3 = C[g+8][2t..2t+1].
__device__ __forceinline__ void mma16816(float* c, const u32* a, u32 b0, u32 b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ u32 ld32(const u16* p) { return *(const u32*) p; }

__device__ __forceinline__ unsigned smem_addr(const void* p) {
    unsigned r;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(r) : "l"(p));
    return r;
}

// 16 bytes global -> shared without passing through registers; zero-filled when !valid (src must still be mapped).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(smem_addr(dst)), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;"); }
__device__ __forceinline__ void cp_wait_all() { asm volatile("cp.async.wait_group 0;"); }
__device__ __forceinline__ void cp_wait_one() { asm volatile("cp.async.wait_group 1;"); }

// Four 8x8 bf16 matrices from shared memory; lane l gives the address of row (l % 8) of matrix (l / 8). Without
// .trans lane (g, t) receives row g, columns 2t..2t+1 of each; with .trans rows 2t..2t+1 of column g.
__device__ __forceinline__ void ldsm4(u32* r, const u16* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldsm4t(u32* r, const u16* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_addr(p)));
}

// Addresses for the three fragment shapes read from a row-major bf16 tile (row stride rs), lane l:
// A of rows [r, r+16) x k [c, c+16)            -> a0..a3
__device__ __forceinline__ const u16* a_addr(const u16* base, int rs, int r, int c, int l) {
    return base + (r + (l & 7) + 8 * ((l >> 3) & 1)) * rs + c + 8 * (l >> 4);
}
// B of n-tiles [n, n+16) x k [c, c+16), stored [n][k] -> b0, b1 of tile n, b0, b1 of tile n+8
__device__ __forceinline__ const u16* bn_addr(const u16* base, int rs, int n, int c, int l) {
    return base + (n + (l & 7) + 8 * (l >> 4)) * rs + c + 8 * ((l >> 3) & 1);
}
// B of k [c, c+16) x n-tiles [n, n+16), stored [k][n] (read with .trans) -> b0, b1 of tile n, b0, b1 of tile n+8
__device__ __forceinline__ const u16* bk_addr(const u16* base, int rs, int c, int n, int l) {
    return base + (c + (l & 7) + 8 * ((l >> 3) & 1)) * rs + n + 8 * (l >> 4);
}

// Rows [r0, r0 + rows) of a bf16 matrix (row stride ld elements, columns [c0, c0 + D)) into shared memory
// dst[r * rs + c] with cp.async; rows at or past `valid` are zero.
template <int D>
__device__ __forceinline__ void load_tile(u16* dst, int rs, const u16* src, long long ld, int c0, int r0, int rows,
                                          int valid) {
    constexpr int C = D / 8;
    for (int e = threadIdx.x; e < rows * C; e += blockDim.x) {
        int r = e / C, c = 8 * (e - r * C), gr = r0 + r;
        bool ok = gr < valid;
        cp_async16(dst + r * rs + c, src + (long long) (ok ? gr : 0) * ld + c0 + c, ok);
    }
}

// Adds an mma accumulator pair-of-rows to global memory: this lane holds (row r0: c, c+1) and (row r1: c, c+1) with
// c = base + 2t; lanes t and t^1 swap halves so that the even lane adds 4 columns of row r0 and the odd lane 4 columns
// of row r1 (one 16-byte reduction each on sm_90). Every lane of the warp must call it (shuffles).
__device__ __forceinline__ void red_rows(float* row0, bool ok0, float* row1, bool ok1, int base, int t, float x0, float x1,
                                         float y0, float y1) {
#if __CUDA_ARCH__ >= 900
    bool odd = t & 1;
    float s0 = odd ? x0 : y0, s1 = odd ? x1 : y1;
    float r0 = __shfl_xor_sync(0xffffffffu, s0, 1), r1 = __shfl_xor_sync(0xffffffffu, s1, 1);
    if (!odd) {
        if (ok0) asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};" :: "l"(row0 + base + 2 * t), "f"(x0), "f"(x1),
                              "f"(r0), "f"(r1) : "memory");
    } else {
        if (ok1) asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};" :: "l"(row1 + base + 2 * t - 2), "f"(r0), "f"(r1),
                              "f"(y0), "f"(y1) : "memory");
    }
#else
    if (ok0) { atomicAdd(row0 + base + 2 * t, x0); atomicAdd(row0 + base + 2 * t + 1, x1); }
    if (ok1) { atomicAdd(row1 + base + 2 * t, y0); atomicAdd(row1 + base + 2 * t + 1, y1); }
#endif
}

// ---------------------------------------------------------------------------------------------------------------
// Forward. Block: W warps (4 or 8), 16 W queries (16 per warp) of one head; grid (ceil(n / 16 W), hq). bf16 q [n, hq*D], k and v
// [>= kvLen, hkv*D]. Shared: two stages of a K tile and a V tile [64][D+8] (the next pair loads during the products).
// y [n, hq*D] float32 (every row written), also as bf16 into yb if not null; lse [hq][n] (log2 units) if not null.
// ---------------------------------------------------------------------------------------------------------------
template <int D>
__device__ void flash_fwd(const u16* q, const u16* k, const u16* v, float* y, u16* yb, float* lse, int n, int kvLen,
                          int hq, int hkv, float scale, const int* seg, int nseg, int causal, int qoff) {
    constexpr int RS = D + 8, NT = D / 8, KT = D / 16, TILE = 64 * RS;
    extern __shared__ __align__(16) u16 fsm[];
    u16* Ks = fsm;              // [2][64][RS]
    u16* Vs = Ks + 2 * TILE;    // [2][64][RS]
    // the last query tiles first: under a causal mask they see the most keys, so the long blocks start early
    const int QB = 16 * (blockDim.x >> 5);   // 16 queries per warp
    const int h = blockIdx.y, kh = h / (hq / hkv), q0 = (gridDim.x - 1 - blockIdx.x) * QB;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const long long qs = (long long) hq * D, ks = (long long) hkv * D;
    const float sl2 = scale * 1.4426950408889634f;
    const int i0 = q0 + 16 * warp + g, i1 = i0 + 8;

    int tlo, thi, dummy;
    flash_key_range(q0, kvLen, seg, nseg, causal, qoff, &tlo, &dummy);
    flash_key_range(min(q0 + QB - 1, n - 1), kvLen, seg, nseg, causal, qoff, &dummy, &thi);
    const int tiles = thi > tlo ? (thi - tlo + 63) / 64 : 0;
    if (tiles > 0) {
        load_tile<D>(Ks, RS, k, ks, kh * D, tlo, 64, thi);
        load_tile<D>(Vs, RS, v, ks, kh * D, tlo, 64, thi);
        cp_commit();
    }
    u32 qf[KT][4];
#pragma unroll
    for (int kk = 0; kk < KT; kk++) {
        int c = h * D + 16 * kk + 2 * t;
        qf[kk][0] = i0 < n ? *(const u32*) (q + i0 * qs + c) : 0u;
        qf[kk][1] = i1 < n ? *(const u32*) (q + i1 * qs + c) : 0u;
        qf[kk][2] = i0 < n ? *(const u32*) (q + i0 * qs + c + 8) : 0u;
        qf[kk][3] = i1 < n ? *(const u32*) (q + i1 * qs + c + 8) : 0u;
    }
    int lo0 = 0, hi0 = 0, lo1 = 0, hi1 = 0;
    if (i0 < n) flash_key_range(i0, kvLen, seg, nseg, causal, qoff, &lo0, &hi0);
    if (i1 < n) flash_key_range(i1, kvLen, seg, nseg, causal, qoff, &lo1, &hi1);

    float o[NT][4];
#pragma unroll
    for (int j = 0; j < NT; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
    float m0 = NEG_INF, m1 = NEG_INF, l0 = 0.f, l1 = 0.f;

    for (int it = 0; it < tiles; it++) {
        const int j0 = tlo + 64 * it, b = it & 1;
        if (it + 1 < tiles) {
            load_tile<D>(Ks + (b ^ 1) * TILE, RS, k, ks, kh * D, j0 + 64, 64, thi);
            load_tile<D>(Vs + (b ^ 1) * TILE, RS, v, ks, kh * D, j0 + 64, 64, thi);
            cp_commit();
            cp_wait_one();
        } else {
            cp_wait_all();
        }
        __syncthreads();
        const u16* K = Ks + b * TILE;
        const u16* V = Vs + b * TILE;
        float s[8][4];
#pragma unroll
        for (int nt = 0; nt < 8; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < KT; kk++) {
#pragma unroll
            for (int nt = 0; nt < 8; nt += 2) {
                u32 bb[4];
                ldsm4(bb, bn_addr(K, RS, nt * 8, 16 * kk, lane));
                mma16816(s[nt], qf[kk], bb[0], bb[1]);
                mma16816(s[nt + 1], qf[kk], bb[2], bb[3]);
            }
        }
        float mx0 = NEG_INF, mx1 = NEG_INF;
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
#pragma unroll
            for (int e = 0; e < 2; e++) {
                int j = j0 + nt * 8 + 2 * t + e;
                s[nt][e] = (j >= lo0 && j < hi0) ? s[nt][e] * sl2 : NEG_INF;
                s[nt][2 + e] = (j >= lo1 && j < hi1) ? s[nt][2 + e] * sl2 : NEG_INF;
                mx0 = fmaxf(mx0, s[nt][e]);
                mx1 = fmaxf(mx1, s[nt][2 + e]);
            }
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        float n0 = fmaxf(m0, mx0), n1 = fmaxf(m1, mx1);
        float a0 = n0 == NEG_INF ? 1.f : fast_exp2(m0 - n0), a1 = n1 == NEG_INF ? 1.f : fast_exp2(m1 - n1);
        m0 = n0; m1 = n1;
        float ps0 = 0.f, ps1 = 0.f;
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
#pragma unroll
            for (int e = 0; e < 2; e++) {
                s[nt][e] = fast_exp2(s[nt][e] - (n0 == NEG_INF ? 0.f : n0));
                s[nt][2 + e] = fast_exp2(s[nt][2 + e] - (n1 == NEG_INF ? 0.f : n1));
                ps0 += s[nt][e];
                ps1 += s[nt][2 + e];
            }
        }
        l0 = l0 * a0 + ps0;
        l1 = l1 * a1 + ps1;
#pragma unroll
        for (int j = 0; j < NT; j++) { o[j][0] *= a0; o[j][1] *= a0; o[j][2] *= a1; o[j][3] *= a1; }
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            u32 pa[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                         pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]), pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int nt = 0; nt < NT; nt += 2) {
                u32 bb[4];
                ldsm4t(bb, bk_addr(V, RS, 16 * kk, nt * 8, lane));
                mma16816(o[nt], pa, bb[0], bb[1]);
                mma16816(o[nt + 1], pa, bb[2], bb[3]);
            }
        }
        __syncthreads();
    }
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    float r0 = l0 > 0.f ? 1.f / l0 : 0.f, r1 = l1 > 0.f ? 1.f / l1 : 0.f;
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        int c = h * D + nt * 8 + 2 * t;
        if (i0 < n) *(float2*) (y + i0 * qs + c) = make_float2(o[nt][0] * r0, o[nt][1] * r0);
        if (i1 < n) *(float2*) (y + i1 * qs + c) = make_float2(o[nt][2] * r1, o[nt][3] * r1);
        if (yb != nullptr) {   // the bf16 operand of the output projection, written alongside
            if (i0 < n) *(u32*) (yb + i0 * qs + c) = pack_bf16(o[nt][0] * r0, o[nt][1] * r0);
            if (i1 < n) *(u32*) (yb + i1 * qs + c) = pack_bf16(o[nt][2] * r1, o[nt][3] * r1);
        }
    }
    if (lse != nullptr && t == 0) {
        if (i0 < n) lse[(long long) h * n + i0] = l0 > 0.f ? m0 + log2f(l0) : NEG_INF;
        if (i1 < n) lse[(long long) h * n + i1] = l1 > 0.f ? m1 + log2f(l1) : NEG_INF;
    }
}

// dvec[h][i] = sum_c dO[i][h*D + c] * O[i][h*D + c] (FlashAttention-2's D term): one warp per (query, head); O in
// float32 or as the forward's bf16 copy.
__device__ __forceinline__ float dvec_val(const float* p, int c) { return p[c]; }
__device__ __forceinline__ float dvec_val(const unsigned short* p, int c) { return __uint_as_float(((unsigned int) p[c]) << 16); }

template <typename T>
__device__ __forceinline__ void flash_dvec_t(const float* dout, const T* out, float* dvec, int n, int hq, int d) {
    long long w = ((long long) blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (w >= (long long) n * hq) return;
    int i = (int) (w / hq), h = (int) (w - (long long) i * hq);
    const float* a = dout + (long long) i * hq * d + (long long) h * d;
    const T* b = out + (long long) i * hq * d + (long long) h * d;
    float s = 0.f;
    for (int c = lane; c < d; c += 32) s += a[c] * dvec_val(b, c);
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) dvec[(long long) h * n + i] = s;
}

extern "C" __global__ void flash_dvec(const float* dout, const float* out, float* dvec, int n, int hq, int d) {
    flash_dvec_t(dout, out, dvec, n, hq, d);
}

extern "C" __global__ void flash_dvec_bf16(const float* dout, const unsigned short* out, float* dvec, int n, int hq, int d) {
    flash_dvec_t(dout, out, dvec, n, hq, d);
}

// The next 32-query tile at or after q0 with a query that sees a key of [k0, kEnd); n when none.
__device__ __forceinline__ int next_query_tile(int q0, int n, int k0, int kEnd, int kvLen, const int* seg, int nseg,
                                               int causal, int qoff) {
    for (; q0 < n; q0 += 32) {
        int flo, fhi, llo, lhi;
        flash_key_range(q0, kvLen, seg, nseg, causal, qoff, &flo, &fhi);
        flash_key_range(min(q0 + 31, n - 1), kvLen, seg, nseg, causal, qoff, &llo, &lhi);
        if (lhi > k0 && flo < kEnd) return q0;
    }
    return n;
}

// ---------------------------------------------------------------------------------------------------------------
// Backward. Block: 4 warps, 64 keys (16 per warp) of one query head against every 32-query tile that can see them;
// grid (ceil(kvLen / 64), hq). bf16 q, k, v, dO; with P = exp2(s - lse), dP = dO V^T, dS = P (dP - dvec):
// dV += P^T dO, dK += scale dS^T Q (per warp, in registers, added at the end), dQ += scale dS K (per tile, atomics).
// dq [n, hq*D], dk and dv [>= kvLen, hkv*D] float32 accumulate (+=) with atomics (grouped heads share dk/dv rows).
// ---------------------------------------------------------------------------------------------------------------
template <int D>
__device__ void flash_bwd(const u16* q, const u16* k, const u16* v, const u16* dout, const float* lse,
                          const float* dvec, float* dq, float* dk, float* dv, int n, int kvLen, int hq, int hkv,
                          float scale, const int* seg, int nseg, int causal, int qoff) {
    constexpr int RS = D + 8, SS = 72, NT = D / 8, KT = D / 16, QT = 32 * RS;
    extern __shared__ __align__(16) u16 bsm[];
    u16* Ks = bsm;                 // [64][RS]
    u16* Vs = Ks + 64 * RS;        // [64][RS]
    u16* Qs = Vs + 64 * RS;        // [2][32][RS]
    u16* Os = Qs + 2 * QT;         // dO [2][32][RS]
    u16* Ss = Os + 2 * QT;         // dS [32][SS]
    float* Ls = (float*) (Ss + 32 * SS);   // lse [2][32]
    float* Dv = Ls + 64;                    // dvec [2][32]
    int* Lo = (int*) (Dv + 64);             // key range [2][32]
    int* Hi = Lo + 64;

    const int h = blockIdx.y, kh = h / (hq / hkv), k0 = blockIdx.x * 64;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const long long qs = (long long) hq * D, ks = (long long) hkv * D;
    const float sl2 = scale * 1.4426950408889634f;
    const int kEnd = min(k0 + 64, kvLen);
    const int kr = 16 * warp;   // this warp's keys within the tile: kr + g, kr + g + 8
    const int key0 = k0 + kr + g, key1 = key0 + 8;

    float dka[NT][4], dva[NT][4];
#pragma unroll
    for (int j = 0; j < NT; j++) {
        dka[j][0] = dka[j][1] = dka[j][2] = dka[j][3] = 0.f;
        dva[j][0] = dva[j][1] = dva[j][2] = dva[j][3] = 0.f;
    }
    int qt = next_query_tile(0, n, k0, kEnd, kvLen, seg, nseg, causal, qoff);
    if (qt >= n) return;   // no query sees these keys: nothing to add
    load_tile<D>(Ks, RS, k, ks, kh * D, k0, 64, kvLen);
    load_tile<D>(Vs, RS, v, ks, kh * D, k0, 64, kvLen);
    int b = 0;
    // the small per-query arrays of tile q0 into buffer bb (threads 0..31)
    auto stage_rows = [&](int q0, int bb) {
        load_tile<D>(Qs + bb * QT, RS, q, qs, h * D, q0, 32, n);
        load_tile<D>(Os + bb * QT, RS, dout, qs, h * D, q0, 32, n);
        cp_commit();
        if (threadIdx.x < 32) {
            int i = q0 + threadIdx.x, lo = 0, hi = 0;
            if (i < n) flash_key_range(i, kvLen, seg, nseg, causal, qoff, &lo, &hi);
            Lo[bb * 32 + threadIdx.x] = lo;
            Hi[bb * 32 + threadIdx.x] = hi;
            Ls[bb * 32 + threadIdx.x] = i < n ? lse[(long long) h * n + i] : 0.f;
            Dv[bb * 32 + threadIdx.x] = i < n ? dvec[(long long) h * n + i] : 0.f;
        }
    };
    stage_rows(qt, 0);

    while (qt < n) {
        const int nxt = next_query_tile(qt + 32, n, k0, kEnd, kvLen, seg, nseg, causal, qoff);
        if (nxt < n) {
            stage_rows(nxt, b ^ 1);
            cp_wait_one();
        } else {
            cp_wait_all();
        }
        __syncthreads();
        const u16* Q = Qs + b * QT;
        const u16* O = Os + b * QT;
        const int* lo = Lo + b * 32;
        const int* hi = Hi + b * 32;
        const float* ls = Ls + b * 32;
        const float* dvv = Dv + b * 32;
        // S^T (16 keys x 32 queries) = K Q^T and dP^T = V dO^T
        float st[4][4], dp[4][4];
#pragma unroll
        for (int nt = 0; nt < 4; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) st[nt][e] = dp[nt][e] = 0.f;
#pragma unroll
        for (int kk = 0; kk < KT; kk++) {
            u32 af[4], vf[4];
            ldsm4(af, a_addr(Ks, RS, kr, 16 * kk, lane));
            ldsm4(vf, a_addr(Vs, RS, kr, 16 * kk, lane));
#pragma unroll
            for (int nt = 0; nt < 4; nt += 2) {
                u32 qb[4], ob[4];
                ldsm4(qb, bn_addr(Q, RS, nt * 8, 16 * kk, lane));
                ldsm4(ob, bn_addr(O, RS, nt * 8, 16 * kk, lane));
                mma16816(st[nt], af, qb[0], qb[1]);
                mma16816(st[nt + 1], af, qb[2], qb[3]);
                mma16816(dp[nt], vf, ob[0], ob[1]);
                mma16816(dp[nt + 1], vf, ob[2], ob[3]);
            }
        }
        // P^T and dS^T in place: c0 = (key g, query 2t), c1 = (g, 2t+1), c2 = (g+8, 2t), c3 = (g+8, 2t+1)
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int qi = nt * 8 + 2 * t + (e & 1), key = (e < 2) ? key0 : key1;
                bool in = key >= lo[qi] && key < hi[qi];
                float p = in ? fast_exp2(st[nt][e] * sl2 - ls[qi]) : 0.f;
                st[nt][e] = p;
                dp[nt][e] = p * (dp[nt][e] - dvv[qi]);
            }
        }
        // dS into shared memory as [query][key] for dQ
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
            int qi = nt * 8 + 2 * t;
            Ss[qi * SS + kr + g] = to_bf16(dp[nt][0]);
            Ss[(qi + 1) * SS + kr + g] = to_bf16(dp[nt][1]);
            Ss[qi * SS + kr + g + 8] = to_bf16(dp[nt][2]);
            Ss[(qi + 1) * SS + kr + g + 8] = to_bf16(dp[nt][3]);
        }
        // dV += P^T dO and dK += dS^T Q (the queries are the reduction: two 16-wide steps)
#pragma unroll
        for (int kk = 0; kk < 2; kk++) {
            u32 pa[4] = {pack_bf16(st[2 * kk][0], st[2 * kk][1]), pack_bf16(st[2 * kk][2], st[2 * kk][3]),
                         pack_bf16(st[2 * kk + 1][0], st[2 * kk + 1][1]), pack_bf16(st[2 * kk + 1][2], st[2 * kk + 1][3])};
            u32 sa[4] = {pack_bf16(dp[2 * kk][0], dp[2 * kk][1]), pack_bf16(dp[2 * kk][2], dp[2 * kk][3]),
                         pack_bf16(dp[2 * kk + 1][0], dp[2 * kk + 1][1]), pack_bf16(dp[2 * kk + 1][2], dp[2 * kk + 1][3])};
#pragma unroll
            for (int nt = 0; nt < NT; nt += 2) {
                u32 ob[4], qb[4];
                ldsm4t(ob, bk_addr(O, RS, 16 * kk, nt * 8, lane));
                ldsm4t(qb, bk_addr(Q, RS, 16 * kk, nt * 8, lane));
                mma16816(dva[nt], pa, ob[0], ob[1]);
                mma16816(dva[nt + 1], pa, ob[2], ob[3]);
                mma16816(dka[nt], sa, qb[0], qb[1]);
                mma16816(dka[nt + 1], sa, qb[2], qb[3]);
            }
        }
        __syncthreads();
        // dQ (32 queries x D) += scale dS (32 x 64 keys) K (64 x D): warp w takes query rows 16 (w & 1), half the columns
        if (dq != nullptr) {
            constexpr int HALF = NT / 2;
            const int qr = 16 * (warp & 1), nb = (warp >> 1) * HALF;
            float acc[HALF][4];
#pragma unroll
            for (int j = 0; j < HALF; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                u32 af[4];
                ldsm4(af, a_addr(Ss, SS, qr, 16 * kk, lane));
#pragma unroll
                for (int j = 0; j + 1 < HALF; j += 2) {
                    u32 kb[4];
                    ldsm4t(kb, bk_addr(Ks, RS, 16 * kk, (nb + j) * 8, lane));
                    mma16816(acc[j], af, kb[0], kb[1]);
                    mma16816(acc[j + 1], af, kb[2], kb[3]);
                }
                if (HALF & 1) {   // an odd count of 8-column tiles (D = 16, 80): the last one alone
                    const u16* kp = Ks + (16 * kk + 2 * t) * RS + (nb + HALF - 1) * 8 + g;
                    u32 b0 = (u32) kp[0] | ((u32) kp[RS] << 16), b1 = (u32) kp[8 * RS] | ((u32) kp[9 * RS] << 16);
                    mma16816(acc[HALF - 1], af, b0, b1);
                }
            }
            int iq0 = qt + qr + g, iq1 = iq0 + 8;
            float* r0 = dq + (long long) min(iq0, n - 1) * qs;
            float* r1 = dq + (long long) min(iq1, n - 1) * qs;
#pragma unroll
            for (int j = 0; j < HALF; j++)
                red_rows(r0, iq0 < n, r1, iq1 < n, h * D + (nb + j) * 8, t, scale * acc[j][0], scale * acc[j][1],
                         scale * acc[j][2], scale * acc[j][3]);
        }
        qt = nxt;
        b ^= 1;
    }
    const long long k0r = (long long) min(key0, kvLen - 1) * ks, k1r = (long long) min(key1, kvLen - 1) * ks;
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        if (dk) red_rows(dk + k0r, key0 < kvLen, dk + k1r, key1 < kvLen, kh * D + nt * 8, t, scale * dka[nt][0],
                         scale * dka[nt][1], scale * dka[nt][2], scale * dka[nt][3]);
        if (dv) red_rows(dv + k0r, key0 < kvLen, dv + k1r, key1 < kvLen, kh * D + nt * 8, t, dva[nt][0], dva[nt][1],
                         dva[nt][2], dva[nt][3]);
    }
}

#define FLASH_ENTRIES(D)                                                                                                 \
    extern "C" __global__ void __launch_bounds__(256) flash_fwd_##D(                                                     \
            const u16* q, const u16* k, const u16* v, float* y, u16* yb, float* lse, int n, int kvLen, int hq, int hkv,  \
            float scale, const int* seg, int nseg, int causal, int qoff) {                                                \
        flash_fwd<D>(q, k, v, y, yb, lse, n, kvLen, hq, hkv, scale, seg, nseg, causal, qoff);                             \
    }                                                                                                                    \
    extern "C" __global__ void __launch_bounds__(128) flash_bwd_##D(                                                     \
            const u16* q, const u16* k, const u16* v, const u16* dout, const float* lse, const float* dvec,              \
            float* dq, float* dk, float* dv, int n, int kvLen, int hq, int hkv, float scale, const int* seg, int nseg,    \
            int causal, int qoff) {                                                                                       \
        flash_bwd<D>(q, k, v, dout, lse, dvec, dq, dk, dv, n, kvLen, hq, hkv, scale, seg, nseg, causal, qoff);            \
    }

FLASH_ENTRIES(16)
FLASH_ENTRIES(32)
FLASH_ENTRIES(64)
FLASH_ENTRIES(80)
FLASH_ENTRIES(96)
FLASH_ENTRIES(128)
