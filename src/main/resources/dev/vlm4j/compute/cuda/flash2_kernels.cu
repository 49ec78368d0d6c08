// vlm4j: the second generation of the tensor-core flash attention kernels (bf16 mode), head sizes 64 and 128, with the
// semantics and arguments of flash_kernels.cu's flash_fwd / flash_bwd (FlashAttention.java picks them by default;
// VLM4J_FLASH_V2=0: the first ones). Self-contained (no #include); compiled into a module of its own. The small helpers
// at the top are flash_kernels.cu's (the two modules share no code at run time).
//
// What differs from flash_kernels.cu: bigger warp tiles, so that every fragment read from shared memory with ldmatrix
// feeds more products, and fewer, larger blocks in the backward, so that fewer dQ partial sums go to global memory.
//  - forward: a warp owns 32 queries (two m16 tiles: each K or V fragment serves two mma.sync), a block 4 warps, 128
//    queries; the query tile stays in shared memory (its fragments are read again per key tile: registers hold the
//    32 x D output and the 32 x 64 scores). Masks are evaluated only on the key tiles that cut a warp's key ranges;
//    key tiles a warp's queries cannot see are skipped by that warp.
//  - backward: a block owns 128 keys (8 warps) against 64-query tiles; per tile S^T and dP^T in 32 x 32 warp tiles,
//    P^T and dS^T through shared memory, then dV, dK (32 keys x D/2 per warp, in registers until the end) and dQ
//    (32 queries x D/4 per warp, added to global memory with vector reductions).

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

// 2^x with the hardware approximation (relative error about 2^-22); 2^-inf = 0.
__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// c[16x8] += a[16x16] b[16x8]; a row-major, b column-major, bf16 in, float32 accumulate.
// Fragments (g = lane / 4, t = lane % 4): a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], a2 = A[g][2t+8..], a3 = A[g+8][2t+8..];
// b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]; c0,c1 = C[g][2t..2t+1], c2,c3 = C[g+8][2t..2t+1].
__device__ __forceinline__ void mma16816(float* c, const u32* a, u32 b0, u32 b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

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
__device__ __forceinline__ void cp_wait_all() { asm volatile("cp.async.wait_group 0;" ::: "memory"); }

// Four 8x8 bf16 matrices from shared memory; lane l gives the address of row (l % 8) of matrix (l / 8). Without
// .trans lane (g, t) receives row g, columns 2t..2t+1 of each; with .trans rows 2t..2t+1 of column g.
// The address is in the shared window (smem_addr), so that address arithmetic stays 32-bit.
__device__ __forceinline__ void ldsm4(u32* r, u32 a) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}
__device__ __forceinline__ void ldsm4t(u32* r, u32 a) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}

// Shared-window addresses for the fragment shapes read from a bf16 tile at shared address base (row stride rs), lane l:
// A of rows [r, r+16) x k [c, c+16), stored [row][k]                  -> a0..a3 (ldsm4)
__device__ __forceinline__ u32 a_addr(u32 base, int rs, int r, int c, int l) {
    return base + 2 * ((r + (l & 7) + 8 * ((l >> 3) & 1)) * rs + c + 8 * (l >> 4));
}
// A of rows [r, r+16) x k [c, c+16), stored [k][row] (read with .trans) -> a0..a3 (ldsm4t)
__device__ __forceinline__ u32 at_addr(u32 base, int rs, int r, int c, int l) {
    return base + 2 * ((c + (l & 7) + 8 * (l >> 4)) * rs + r + 8 * ((l >> 3) & 1));
}
// B of n-tiles [n, n+16) x k [c, c+16), stored [n][k] -> b0, b1 of tile n, b0, b1 of tile n+8 (ldsm4)
__device__ __forceinline__ u32 bn_addr(u32 base, int rs, int n, int c, int l) {
    return base + 2 * ((n + (l & 7) + 8 * (l >> 4)) * rs + c + 8 * ((l >> 3) & 1));
}
// B of k [c, c+16) x n-tiles [n, n+16), stored [k][n] (read with .trans) -> b0, b1 of tile n, b0, b1 of tile n+8 (ldsm4t)
__device__ __forceinline__ u32 bk_addr(u32 base, int rs, int c, int n, int l) {
    return base + 2 * ((c + (l & 7) + 8 * ((l >> 3) & 1)) * rs + n + 8 * (l >> 4));
}

// Rows [r0, r0 + rows) of a bf16 matrix (row stride ld elements, columns [c0, c0 + D)) into shared memory
// dst[r * rs + c] with cp.async; rows at or past `valid` are zero.
// ROWS and the block's THREADS are compile-time constants (ROWS * D / 8 a multiple of THREADS).
template <int D, int ROWS, int THREADS>
__device__ __forceinline__ void load_tile(u16* dst, int rs, const u16* src, long long ld, int c0, int r0, int valid) {
    constexpr int C = D / 8, STEP = THREADS / C;   // STEP rows per pass
    static_assert(ROWS * C % THREADS == 0 && THREADS % C == 0, "whole passes");
    const int r = threadIdx.x / C, c = 8 * (threadIdx.x % C);
    const u16* s = src + c0 + c;
    u16* d = dst + r * rs + c;
#pragma unroll
    for (int p = 0; p < ROWS / STEP; p++) {
        const int gr = r0 + r + p * STEP;
        const bool ok = gr < valid;
        cp_async16(d + p * STEP * rs, s + (long long) (ok ? gr : 0) * ld, ok);
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

// Warp-wide minimum and maximum.
__device__ __forceinline__ int warp_min(int x) {
    for (int o = 16; o > 0; o >>= 1) x = min(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}
__device__ __forceinline__ int warp_max(int x) {
    for (int o = 16; o > 0; o >>= 1) x = max(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

// ---------------------------------------------------------------------------------------------------------------
// Forward. Block: 4 warps, 128 queries (32 per warp: two m16 tiles) of one head; grid (hq, ceil(n / 128)): the heads
// vary fastest, so that blocks start in order of their query tile, the last (under a causal mask the longest) first,
// and blocks that start together read the same KV head. bf16 q
// [n, hq*D], k and v [>= kvLen, hkv*D]. Shared: the query tile [128][D+8] and two stages of a K and a V tile [64][D+8]
// (the next pair loads during the products). y [n, hq*D] float32 (every row written), also as bf16 into yb if not null;
// lse [hq][n] (log2 units) if not null.
// ---------------------------------------------------------------------------------------------------------------
template <int D>
__device__ __forceinline__ void flash_fwd2(const u16* q, const u16* k, const u16* v, float* y, u16* yb, float* lse, int n,
                                           int kvLen, int hq, int hkv, float scale, const int* seg, int nseg, int causal,
                                           int qoff) {
    constexpr int RS = D + 8, NT = D / 8, KT = D / 16, TILE = 64 * RS, QB = 128;
    extern __shared__ __align__(16) u16 fsm[];
    u16* Qs = fsm;              // [128][RS]
    u16* Ks = Qs + QB * RS;     // [2][64][RS]
    u16* Vs = Ks + 2 * TILE;    // [2][64][RS]
    int* Rl = (int*) (Vs + 2 * TILE);   // the key range [Rl, Rh) of each query of the block (read on masked tiles only)
    int* Rh = Rl + QB;
    int* Wb = Rh + QB;                  // per warp: [flo, fhi) (below; kept here to spare registers)
    const int h = blockIdx.x, kh = h / (hq / hkv), q0 = (gridDim.y - 1 - blockIdx.y) * QB;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const long long qs = (long long) hq * D, ks = (long long) hkv * D;
    const float sl2 = scale * 1.4426950408889634f;
    const int wr = 32 * warp;   // this warp's queries within the block; this lane's are wr + 16 mi + 8 hf + g (row r = 2 mi + hf)

    int tlo, thi, dummy;
    flash_key_range(q0, kvLen, seg, nseg, causal, qoff, &tlo, &dummy);
    flash_key_range(min(q0 + QB - 1, n - 1), kvLen, seg, nseg, causal, qoff, &dummy, &thi);
    const int tiles = thi > tlo ? (thi - tlo + 63) / 64 : 0;
    if (tiles > 0) {
        load_tile<D, QB, 128>(Qs, RS, q, qs, h * D, q0, n);
        load_tile<D, 64, 128>(Ks, RS, k, ks, kh * D, tlo, thi);
        load_tile<D, 64, 128>(Vs, RS, v, ks, kh * D, tlo, thi);
        cp_commit();
    }
    // key ranges of the warp's queries (past n: empty), and the keys every query of the warp sees, [flo, fhi): key
    // tiles inside it need no mask. (A warp runs every tile of the block, even one its queries cannot see: skipping
    // such tiles cost registers, and the block waits for its other warps there anyway.)
    {
        int flo = 0, fhi = 0x7fffffff;
        const int i = q0 + wr + lane;   // lane l: query wr + l of the block
        int a = 0, z = 0;
        if (i < n) {
            flash_key_range(i, kvLen, seg, nseg, causal, qoff, &a, &z);
            flo = a;
            fhi = z;
        }
        Rl[wr + lane] = a;
        Rh[wr + lane] = z;
        flo = warp_max(flo);
        fhi = warp_min(fhi);
        if (lane == 0) *(int2*) (Wb + 2 * warp) = make_int2(flo, fhi);
    }

    float o[2][NT][4];
#pragma unroll
    for (int mi = 0; mi < 2; mi++)
#pragma unroll
        for (int j = 0; j < NT; j++) o[mi][j][0] = o[mi][j][1] = o[mi][j][2] = o[mi][j][3] = 0.f;
    float m[4] = {NEG_INF, NEG_INF, NEG_INF, NEG_INF}, l[4] = {0.f, 0.f, 0.f, 0.f};

    for (int it = 0; it < tiles; it++) {
        const int j0 = tlo + 64 * it, b = it & 1;
        cp_wait_all();
        __syncthreads();   // tile it visible to all; every warp done with tile it - 1 (whose buffers the next load takes)
        if (it + 1 < tiles) {
            load_tile<D, 64, 128>(Ks + (b ^ 1) * TILE, RS, k, ks, kh * D, j0 + 64, thi);
            load_tile<D, 64, 128>(Vs + (b ^ 1) * TILE, RS, v, ks, kh * D, j0 + 64, thi);
            cp_commit();
        }
        const int2 wb = *(const int2*) (Wb + 2 * warp);
        const bool full = j0 >= wb.x && j0 + 64 <= wb.y;
        const u32 K = smem_addr(Ks + b * TILE), V = smem_addr(Vs + b * TILE), Q = smem_addr(Qs);
        float s[2][8][4];
#pragma unroll
        for (int mi = 0; mi < 2; mi++)
#pragma unroll
            for (int nt = 0; nt < 8; nt++) s[mi][nt][0] = s[mi][nt][1] = s[mi][nt][2] = s[mi][nt][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < KT; kk++) {
            u32 qa[2][4];
            ldsm4(qa[0], a_addr(Q, RS, wr, 16 * kk, lane));
            ldsm4(qa[1], a_addr(Q, RS, wr + 16, 16 * kk, lane));
#pragma unroll
            for (int nt = 0; nt < 8; nt += 2) {
                u32 bb[4];
                ldsm4(bb, bn_addr(K, RS, nt * 8, 16 * kk, lane));
#pragma unroll
                for (int mi = 0; mi < 2; mi++) {
                    mma16816(s[mi][nt], qa[mi], bb[0], bb[1]);
                    mma16816(s[mi][nt + 1], qa[mi], bb[2], bb[3]);
                }
            }
        }
        if (!full) {   // a tile that cuts some query's key range: keys outside it get -inf
#pragma unroll
            for (int r = 0; r < 4; r++) {
                // row r = 2 mi + hf is query wr + 8 r + g; its tile columns [a, z) are unmasked
                const int a = Rl[wr + 8 * r + g] - j0 - 2 * t, z = Rh[wr + 8 * r + g] - j0 - 2 * t;
#pragma unroll
                for (int nt = 0; nt < 8; nt++)
#pragma unroll
                    for (int e1 = 0; e1 < 2; e1++)
                        if (nt * 8 + e1 < a || nt * 8 + e1 >= z) s[r >> 1][nt][2 * (r & 1) + e1] = NEG_INF;
            }
        }
        float mx[4] = {NEG_INF, NEG_INF, NEG_INF, NEG_INF};
#pragma unroll
        for (int mi = 0; mi < 2; mi++)
#pragma unroll
            for (int nt = 0; nt < 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    s[mi][nt][e] *= sl2;
                    mx[2 * mi + (e >> 1)] = fmaxf(mx[2 * mi + (e >> 1)], s[mi][nt][e]);
                }
        float a[4], mb[4];
#pragma unroll
        for (int r = 0; r < 4; r++) {
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
            const float nm = fmaxf(m[r], mx[r]);
            a[r] = nm == NEG_INF ? 1.f : fast_exp2(m[r] - nm);
            mb[r] = nm == NEG_INF ? 0.f : nm;
            m[r] = nm;
            l[r] *= a[r];
        }
#pragma unroll
        for (int mi = 0; mi < 2; mi++)
#pragma unroll
            for (int j = 0; j < NT; j++) {
                o[mi][j][0] *= a[2 * mi]; o[mi][j][1] *= a[2 * mi]; o[mi][j][2] *= a[2 * mi + 1]; o[mi][j][3] *= a[2 * mi + 1];
            }
        // O += P V, 16 keys at a time (P made and rounded to bf16 as it is needed)
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            u32 pa[2][4];
#pragma unroll
            for (int mi = 0; mi < 2; mi++)
#pragma unroll
                for (int nt = 2 * kk; nt < 2 * kk + 2; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int r = 2 * mi + (e >> 1);
                        s[mi][nt][e] = fast_exp2(s[mi][nt][e] - mb[r]);
                        l[r] += s[mi][nt][e];
                    }
#pragma unroll
            for (int mi = 0; mi < 2; mi++) {
                pa[mi][0] = pack_bf16(s[mi][2 * kk][0], s[mi][2 * kk][1]);
                pa[mi][1] = pack_bf16(s[mi][2 * kk][2], s[mi][2 * kk][3]);
                pa[mi][2] = pack_bf16(s[mi][2 * kk + 1][0], s[mi][2 * kk + 1][1]);
                pa[mi][3] = pack_bf16(s[mi][2 * kk + 1][2], s[mi][2 * kk + 1][3]);
            }
#pragma unroll
            for (int nt = 0; nt < NT; nt += 2) {
                u32 bb[4];
                ldsm4t(bb, bk_addr(V, RS, 16 * kk, nt * 8, lane));
#pragma unroll
                for (int mi = 0; mi < 2; mi++) {
                    mma16816(o[mi][nt], pa[mi], bb[0], bb[1]);
                    mma16816(o[mi][nt + 1], pa[mi], bb[2], bb[3]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < 4; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
#pragma unroll
    for (int mi = 0; mi < 2; mi++) {
        const int i0 = q0 + wr + 16 * mi + g, i1 = i0 + 8;
        const float r0 = l[2 * mi] > 0.f ? 1.f / l[2 * mi] : 0.f, r1 = l[2 * mi + 1] > 0.f ? 1.f / l[2 * mi + 1] : 0.f;
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            const int c = h * D + nt * 8 + 2 * t;
            if (i0 < n) *(float2*) (y + i0 * qs + c) = make_float2(o[mi][nt][0] * r0, o[mi][nt][1] * r0);
            if (i1 < n) *(float2*) (y + i1 * qs + c) = make_float2(o[mi][nt][2] * r1, o[mi][nt][3] * r1);
            if (yb != nullptr) {   // the bf16 operand of the output projection, written alongside
                if (i0 < n) *(u32*) (yb + i0 * qs + c) = pack_bf16(o[mi][nt][0] * r0, o[mi][nt][1] * r0);
                if (i1 < n) *(u32*) (yb + i1 * qs + c) = pack_bf16(o[mi][nt][2] * r1, o[mi][nt][3] * r1);
            }
        }
        if (lse != nullptr && t == 0) {
            if (i0 < n) lse[(long long) h * n + i0] = l[2 * mi] > 0.f ? m[2 * mi] + log2f(l[2 * mi]) : NEG_INF;
            if (i1 < n) lse[(long long) h * n + i1] = l[2 * mi + 1] > 0.f ? m[2 * mi + 1] + log2f(l[2 * mi + 1]) : NEG_INF;
        }
    }
}

// The next 64-query tile at or after q0 with a query that sees a key of [k0, kEnd); n when none.
__device__ __forceinline__ int next_query_tile64(int q0, int n, int k0, int kEnd, int kvLen, const int* seg, int nseg,
                                                 int causal, int qoff) {
    for (; q0 < n; q0 += 64) {
        int flo, fhi, llo, lhi;
        flash_key_range(q0, kvLen, seg, nseg, causal, qoff, &flo, &fhi);
        flash_key_range(min(q0 + 63, n - 1), kvLen, seg, nseg, causal, qoff, &llo, &lhi);
        if (lhi > k0 && flo < kEnd) return q0;
    }
    return n;
}

// ---------------------------------------------------------------------------------------------------------------
// Backward. Block: 8 warps, 128 keys of one query head against every 64-query tile that can see them; grid
// (hq, ceil(kvLen / 128)): the heads vary fastest, so that blocks start in order of their keys (under a causal mask
// the first keys have the most queries) and blocks that start together read the same KV head. bf16 q, k, v, dO; with P = exp2(s - lse), dP = dO V^T, dS = P (dP - dvec): dV += P^T dO,
// dK += scale dS^T Q (in registers, added at the end), dQ += scale dS K (per tile, atomics). dq [n, hq*D], dk and dv
// [>= kvLen, hkv*D] float32 accumulate (+=) with atomics (grouped heads share dk/dv rows).
// Per tile, warp w: (1) S^T, dP^T for keys 32 (w % 4) + [0, 32) x queries 32 (w / 4) + [0, 32), P^T and dS^T into
// shared memory as bf16 [key][query]; (2) dV, dK for the same 32 keys x columns D/2 (w / 4) + [0, D/2) over the 64
// queries; (3) dQ for queries 32 (w % 2) + [0, 32) x columns D/4 (w / 2) + [0, D/4) over the 128 keys.
// ---------------------------------------------------------------------------------------------------------------
template <int D>
__device__ __forceinline__ void flash_bwd2(const u16* q, const u16* k, const u16* v, const u16* dout, const float* lse,
                                           const float* dvec, float* dq, float* dk, float* dv, int n, int kvLen, int hq,
                                           int hkv, float scale, const int* seg, int nseg, int causal, int qoff) {
    constexpr int RS = D + 8, PS = 72, KT = D / 16, KB = 128, QB = 64, QT = QB * RS;
    constexpr int HD = D / 2, NH = HD / 8, QD = D / 4, NQ = QD / 8;
    static_assert(D % 64 == 0, "head size a multiple of 64");
    extern __shared__ __align__(16) u16 bsm[];
    u16* Ks = bsm;                 // [128][RS]
    u16* Vs = Ks + KB * RS;        // [128][RS]
    u16* Qs = Vs + KB * RS;        // [2][64][RS]
    u16* Os = Qs + 2 * QT;         // dO [2][64][RS]
    u16* Ps = Os + 2 * QT;         // P^T [128][PS]
    u16* Ss = Ps + KB * PS;        // dS^T [128][PS]
    float* Ls = (float*) (Ss + KB * PS);   // lse [2][64]
    float* Dv = Ls + 2 * QB;                // dvec [2][64]
    int* Lo = (int*) (Dv + 2 * QB);         // key range [2][64]
    int* Hi = Lo + 2 * QB;

    const int h = blockIdx.x, kh = h / (hq / hkv), k0 = blockIdx.y * KB;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const long long qs = (long long) hq * D, ks = (long long) hkv * D;
    const float sl2 = scale * 1.4426950408889634f;
    const int kEnd = min(k0 + KB, kvLen);
    const int kr = 32 * (warp & 3), qc = 32 * (warp >> 2);        // (1): keys kr + [0, 32), queries qc + [0, 32)
    const int dh = HD * (warp >> 2);                              // (2): keys kr + [0, 32), columns dh + [0, D/2)
    const int qr = 32 * (warp & 1), dc = QD * (warp >> 1);        // (3): queries qr + [0, 32), columns dc + [0, D/4)

    float dka[2][NH][4], dva[2][NH][4];
#pragma unroll
    for (int mi = 0; mi < 2; mi++)
#pragma unroll
        for (int j = 0; j < NH; j++) {
            dka[mi][j][0] = dka[mi][j][1] = dka[mi][j][2] = dka[mi][j][3] = 0.f;
            dva[mi][j][0] = dva[mi][j][1] = dva[mi][j][2] = dva[mi][j][3] = 0.f;
        }
    int qt = next_query_tile64(0, n, k0, kEnd, kvLen, seg, nseg, causal, qoff);
    if (qt >= n) return;   // no query sees these keys: nothing to add
    load_tile<D, KB, 256>(Ks, RS, k, ks, kh * D, k0, kvLen);
    load_tile<D, KB, 256>(Vs, RS, v, ks, kh * D, k0, kvLen);
    // tile q0's rows and per-query arrays into buffer bb (threads 0..63 the small arrays)
    auto stage_rows = [&](int q0, int bb) {
        load_tile<D, QB, 256>(Qs + bb * QT, RS, q, qs, h * D, q0, n);
        load_tile<D, QB, 256>(Os + bb * QT, RS, dout, qs, h * D, q0, n);
        cp_commit();
        if (threadIdx.x < QB) {
            int i = q0 + threadIdx.x, lo = 0, hi = 0;
            if (i < n) flash_key_range(i, kvLen, seg, nseg, causal, qoff, &lo, &hi);
            Lo[bb * QB + threadIdx.x] = lo;
            Hi[bb * QB + threadIdx.x] = hi;
            Ls[bb * QB + threadIdx.x] = i < n ? lse[(long long) h * n + i] : 0.f;
            Dv[bb * QB + threadIdx.x] = i < n ? dvec[(long long) h * n + i] : 0.f;
        }
    };
    stage_rows(qt, 0);
    const int wk0 = k0 + kr, wk1 = min(wk0 + 32, kvLen);   // this warp's keys in (1) and (2)

    for (int b = 0; qt < n; b ^= 1) {
        cp_wait_all();
        __syncthreads();   // tile qt visible to all; every warp done with the previous tile (its buffers, P^T, dS^T)
        const int nxt = next_query_tile64(qt + QB, n, k0, kEnd, kvLen, seg, nseg, causal, qoff);
        if (nxt < n) stage_rows(nxt, b ^ 1);
        const u32 Q = smem_addr(Qs + b * QT), O = smem_addr(Os + b * QT), K = smem_addr(Ks), V = smem_addr(Vs),
                  P = smem_addr(Ps), S = smem_addr(Ss);
        const int* lo = Lo + b * QB;
        const int* hi = Hi + b * QB;
        const float* ls = Ls + b * QB;
        const float* dvv = Dv + b * QB;
        // (1) whether some (key, query) pair of this warp's 32 x 32 is unmasked, whether all are (queries past n aside;
        // lane l checks query qc + l)
        bool some, all;
        {
            const int a = lo[qc + lane], z = hi[qc + lane];
            some = __any_sync(0xffffffffu, a < wk1 && z > wk0 && a < z);
            all = __all_sync(0xffffffffu, qt + qc + lane >= n || (a <= wk0 && z >= wk0 + 32)) && wk0 + 32 <= kvLen;
        }
        float st[2][4][4], dp[2][4][4];
#pragma unroll
        for (int mi = 0; mi < 2; mi++)
#pragma unroll
            for (int nt = 0; nt < 4; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) st[mi][nt][e] = dp[mi][nt][e] = 0.f;
        if (some) {
            // S^T (32 keys x 32 queries) = K Q^T and dP^T = V dO^T
#pragma unroll
            for (int kk = 0; kk < KT; kk++) {
                u32 ka[2][4], va[2][4];
#pragma unroll
                for (int mi = 0; mi < 2; mi++) {
                    ldsm4(ka[mi], a_addr(K, RS, kr + 16 * mi, 16 * kk, lane));
                    ldsm4(va[mi], a_addr(V, RS, kr + 16 * mi, 16 * kk, lane));
                }
#pragma unroll
                for (int nt = 0; nt < 4; nt += 2) {
                    u32 qb[4], ob[4];
                    ldsm4(qb, bn_addr(Q, RS, qc + nt * 8, 16 * kk, lane));
                    ldsm4(ob, bn_addr(O, RS, qc + nt * 8, 16 * kk, lane));
#pragma unroll
                    for (int mi = 0; mi < 2; mi++) {
                        mma16816(st[mi][nt], ka[mi], qb[0], qb[1]);
                        mma16816(st[mi][nt + 1], ka[mi], qb[2], qb[3]);
                        mma16816(dp[mi][nt], va[mi], ob[0], ob[1]);
                        mma16816(dp[mi][nt + 1], va[mi], ob[2], ob[3]);
                    }
                }
            }
            // P^T and dS^T in place: c0 = (key g, query 2t), c1 = (g, 2t+1), c2 = (g+8, 2t), c3 = (g+8, 2t+1)
#pragma unroll
            for (int nt = 0; nt < 4; nt++)
#pragma unroll
                for (int e1 = 0; e1 < 2; e1++) {
                    const int qi = qc + nt * 8 + 2 * t + e1;
                    const float lq = ls[qi], dq_ = dvv[qi];
                    const int a = lo[qi], z = hi[qi];
#pragma unroll
                    for (int mi = 0; mi < 2; mi++)
#pragma unroll
                        for (int e2 = 0; e2 < 2; e2++) {
                            const int e = 2 * e2 + e1, key = wk0 + 16 * mi + 8 * e2 + g;
                            const bool in = all || (key >= a && key < z);
                            const float p = in ? fast_exp2(st[mi][nt][e] * sl2 - lq) : 0.f;
                            st[mi][nt][e] = p;
                            dp[mi][nt][e] = p * (dp[mi][nt][e] - dq_);
                        }
                }
        }
#pragma unroll
        for (int mi = 0; mi < 2; mi++)
#pragma unroll
            for (int nt = 0; nt < 4; nt++) {
                const int r0 = (kr + 16 * mi + g) * PS + qc + nt * 8 + 2 * t, r1 = r0 + 8 * PS;
                *(u32*) (Ps + r0) = pack_bf16(st[mi][nt][0], st[mi][nt][1]);
                *(u32*) (Ps + r1) = pack_bf16(st[mi][nt][2], st[mi][nt][3]);
                *(u32*) (Ss + r0) = pack_bf16(dp[mi][nt][0], dp[mi][nt][1]);
                *(u32*) (Ss + r1) = pack_bf16(dp[mi][nt][2], dp[mi][nt][3]);
            }
        __syncthreads();   // P^T and dS^T of the whole tile
        // (2) dV += P^T dO and dK += dS^T Q over the tile's 64 queries (four 16-wide steps)
#pragma unroll
        for (int kk = 0; kk < QB / 16; kk++) {
            u32 pa[2][4], sa[2][4];
#pragma unroll
            for (int mi = 0; mi < 2; mi++) {
                ldsm4(pa[mi], a_addr(P, PS, kr + 16 * mi, 16 * kk, lane));
                ldsm4(sa[mi], a_addr(S, PS, kr + 16 * mi, 16 * kk, lane));
            }
#pragma unroll
            for (int nt = 0; nt < NH; nt += 2) {
                u32 ob[4], qb[4];
                ldsm4t(ob, bk_addr(O, RS, 16 * kk, dh + nt * 8, lane));
                ldsm4t(qb, bk_addr(Q, RS, 16 * kk, dh + nt * 8, lane));
#pragma unroll
                for (int mi = 0; mi < 2; mi++) {
                    mma16816(dva[mi][nt], pa[mi], ob[0], ob[1]);
                    mma16816(dva[mi][nt + 1], pa[mi], ob[2], ob[3]);
                    mma16816(dka[mi][nt], sa[mi], qb[0], qb[1]);
                    mma16816(dka[mi][nt + 1], sa[mi], qb[2], qb[3]);
                }
            }
        }
        // (3) dQ (64 queries x D) += scale dS (64 x 128 keys) K (128 x D), dS read transposed from dS^T
        if (dq != nullptr) {
            float acc[2][NQ][4];
#pragma unroll
            for (int mi = 0; mi < 2; mi++)
#pragma unroll
                for (int j = 0; j < NQ; j++) acc[mi][j][0] = acc[mi][j][1] = acc[mi][j][2] = acc[mi][j][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < KB / 16; kk++) {
                u32 sa[2][4];
#pragma unroll
                for (int mi = 0; mi < 2; mi++) ldsm4t(sa[mi], at_addr(S, PS, qr + 16 * mi, 16 * kk, lane));
#pragma unroll
                for (int nt = 0; nt < NQ; nt += 2) {
                    u32 kb[4];
                    ldsm4t(kb, bk_addr(K, RS, 16 * kk, dc + nt * 8, lane));
#pragma unroll
                    for (int mi = 0; mi < 2; mi++) {
                        mma16816(acc[mi][nt], sa[mi], kb[0], kb[1]);
                        mma16816(acc[mi][nt + 1], sa[mi], kb[2], kb[3]);
                    }
                }
            }
#pragma unroll
            for (int mi = 0; mi < 2; mi++) {
                const int iq0 = qt + qr + 16 * mi + g, iq1 = iq0 + 8;
                float* r0 = dq + (long long) min(iq0, n - 1) * qs;
                float* r1 = dq + (long long) min(iq1, n - 1) * qs;
#pragma unroll
                for (int j = 0; j < NQ; j++)
                    red_rows(r0, iq0 < n, r1, iq1 < n, h * D + dc + j * 8, t, scale * acc[mi][j][0], scale * acc[mi][j][1],
                             scale * acc[mi][j][2], scale * acc[mi][j][3]);
            }
        }
        qt = nxt;
    }
#pragma unroll
    for (int mi = 0; mi < 2; mi++) {
        const int key0 = wk0 + 16 * mi + g, key1 = key0 + 8;
        const long long k0r = (long long) min(key0, kvLen - 1) * ks, k1r = (long long) min(key1, kvLen - 1) * ks;
#pragma unroll
        for (int nt = 0; nt < NH; nt++) {
            const int c = kh * D + dh + nt * 8;
            if (dk) red_rows(dk + k0r, key0 < kvLen, dk + k1r, key1 < kvLen, c, t, scale * dka[mi][nt][0],
                             scale * dka[mi][nt][1], scale * dka[mi][nt][2], scale * dka[mi][nt][3]);
            if (dv) red_rows(dv + k0r, key0 < kvLen, dv + k1r, key1 < kvLen, c, t, dva[mi][nt][0], dva[mi][nt][1],
                             dva[mi][nt][2], dva[mi][nt][3]);
        }
    }
}

#define FLASH2_ENTRIES(D)                                                                                                \
    extern "C" __global__ void __launch_bounds__(128, 2) flash_fwd2_##D(                                                 \
            const u16* q, const u16* k, const u16* v, float* y, u16* yb, float* lse, int n, int kvLen, int hq, int hkv,  \
            float scale, const int* seg, int nseg, int causal, int qoff) {                                                \
        flash_fwd2<D>(q, k, v, y, yb, lse, n, kvLen, hq, hkv, scale, seg, nseg, causal, qoff);                            \
    }                                                                                                                    \
    extern "C" __global__ void __launch_bounds__(256, 1) flash_bwd2_##D(                                                 \
            const u16* q, const u16* k, const u16* v, const u16* dout, const float* lse, const float* dvec,              \
            float* dq, float* dk, float* dv, int n, int kvLen, int hq, int hkv, float scale, const int* seg, int nseg,    \
            int causal, int qoff) {                                                                                       \
        flash_bwd2<D>(q, k, v, dout, lse, dvec, dq, dk, dv, n, kvLen, hq, hkv, scale, seg, nseg, causal, qoff);           \
    }

FLASH2_ENTRIES(64)
FLASH2_ENTRIES(128)
