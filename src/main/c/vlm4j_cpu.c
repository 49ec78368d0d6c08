/*
 * vlm4j native CPU kernels (linux-x86_64, AVX-512F/BW/VL + F16C; the VNNI kernel only where the CPU has AVX512-VNNI,
 * checked by the caller), called from Java through the FFM API
 * (dev.vlm4j.compute.cpu.NativeKernels). Built by scripts/build-native.sh into
 * src/main/resources/native/linux-x86_64/libvlm4j_cpu.so; no libc, no global state.
 *
 * Why native at all: a Q8_0 matrix-vector product must convert each int8 weight to float, which costs about four
 * times the vector operations per byte of a bf16 one. With that much work per cache line the out-of-order window
 * covers too few lines to keep enough memory reads in flight, and the hardware prefetcher does not run far enough
 * ahead, so the kernel reaches only about half the read bandwidth (Java and C alike). A software prefetch a few
 * KiB ahead fixes it; Java has no prefetch instruction. The bf16 kernel (about 0.8 of the bandwidth in Java) gains
 * from the same prefetch. Integer dot products (vpdpbusd) then cut the Q8_0 kernel's vector work per byte to about
 * a half. See docs/BENCHMARKS.md, "Native decode kernels with a software prefetch".
 */
#include <immintrin.h>
#include <stdint.h>

#define BLK 32
#define INLINE static inline __attribute__((always_inline))

INLINE __m512 q8_lanes(const int8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *) p)));
}

/*
 * Software prefetch for a group of R weight rows read side by side (row i at w + i * pin, all at offset o): dist bytes
 * ahead in reading order is dist / R ahead in each row, continuing into the same row of a later group of R rows once
 * past the row end (the rows of consecutive groups are contiguous). AHEAD splits dist / R into whole groups (as a byte
 * offset, g) and the rest (r < pin) once per call; PREFETCH_ROWS then issues one line per row, hint T0 (into L1) or
 * T1 (into L2).
 */
#define AHEAD(dist, R, pin, g, r) long g = (dist) / (R) / (pin) * (R) * (long) (pin), r = (dist) / (R) % (pin)
#define PREFETCH_ROWS(w, o, pin, R, g, r, hint) do { \
        long po_ = (o) + (r); \
        const int8_t *p_ = (w) + (g) + (po_ < (pin) ? po_ : (R) * (long) (pin) + po_ - (pin)); \
        _Pragma("GCC unroll 4") \
        for (int i_ = 0; i_ < (R); i_++) _mm_prefetch((const char *) (p_ + i_ * (long) (pin)), hint); \
    } while (0)

/*
 * Weight rows [j, j + R) (R <= 4; quant bytes at q + row * pin, f16 block scales at s + row * nb) against N <= 4
 * zero-padded activation rows x + r * pin; y[r * out + row]. Per block and pair (activation row, weight row): one
 * multiply and two FMAs, the second with the block scale (the same sums as the Java kernel Gemv.dot4Q8).
 */
INLINE void rows_block(const float *x, int N, int pin, const int8_t *q, const uint16_t *s, int nb, long j, int R,
                       int out, float *y, long pf, long pf2) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) acc[r][i] = _mm512_setzero_ps();
    const int8_t *w = q + j * pin;
    const uint16_t *sc = s + j * nb;
    AHEAD(pf, R, pin, g1, r1);
    AHEAD(pf2, R, pin, g2, r2);
    for (int b = 0; b < nb; b++) {
        long o = (long) b * BLK;
        if ((b & 1) == 0) {
            if (pf > 0) PREFETCH_ROWS(w, o, pin, R, g1, r1, _MM_HINT_T0);
            if (pf2 > 0) PREFETCH_ROWS(w, o, pin, R, g2, r2, _MM_HINT_T1);
        }
        __m512 wl[4], wh[4], d[4];
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            wl[i] = q8_lanes(w + i * (long) pin + o);
            wh[i] = q8_lanes(w + i * (long) pin + o + 16);
            d[i] = _mm512_set1_ps(_cvtsh_ss(sc[i * (long) nb + b]));
        }
#pragma GCC unroll 4
        for (int r = 0; r < N; r++) {
            __m512 xl = _mm512_loadu_ps(x + r * (long) pin + o), xh = _mm512_loadu_ps(x + r * (long) pin + o + 16);
#pragma GCC unroll 4
            for (int i = 0; i < R; i++)
                acc[r][i] = _mm512_fmadd_ps(_mm512_fmadd_ps(xh, wh[i], _mm512_mul_ps(xl, wl[i])), d[i], acc[r][i]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < N; r++)
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) y[r * (long) out + j + i] = _mm512_reduce_add_ps(acc[r][i]);
}

/*
 * Weight rows [j0, j1) in groups of R = 4 (single rows at the end) against the n activation rows in groups of N <= 4:
 * each (N, R) pair a call of KERNEL(N, R) with constant arguments, so the compiler specialises the inlined kernel.
 */
#define FOR_ROW_GROUPS(KERNEL) \
    for (long j = j0; j < j1;) { \
        int R = j1 - j >= 4 ? 4 : 1; \
        for (int r0 = 0; r0 < n;) { \
            int N = n - r0 >= 4 ? 4 : n - r0; \
            switch (R * 8 + N) { \
                case 36: KERNEL(4, 4); break; \
                case 35: KERNEL(3, 4); break; \
                case 34: KERNEL(2, 4); break; \
                case 33: KERNEL(1, 4); break; \
                case 12: KERNEL(4, 1); break; \
                case 11: KERNEL(3, 1); break; \
                case 10: KERNEL(2, 1); break; \
                default: KERNEL(1, 1); break; \
            } \
            r0 += N; \
        } \
        j += R; \
    }

#define CASE(N, R) rows_block(x + r0 * (long) pin, N, pin, q, s, nb, j, R, out, y + r0 * (long) out, pf, pf2)

/*
 * y[r * out + j] = sum_k x[r * pin + k] * w[j, k] for r in [0, n), j in [j0, j1); w is a Q8_0 matrix of nb blocks per
 * row (pin = nb * 32 quant bytes per row from q, f16 scales from s). pf: prefetch distance into L1 in bytes (0: none);
 * pf2: a second, longer one into L2 (0: none): where rows are short, the hardware prefetcher, which stops at each
 * 4 KiB page and restarts on every row, leaves the memory reads too few in flight.
 */
void vlm4j_q8_0_gemv(const float *x, int n, int pin, const int8_t *q, const uint16_t *s, int nb, int j0, int j1,
                     int out, float *y, long pf, long pf2) {
    FOR_ROW_GROUPS(CASE)
}

/* ---- Q8_0 x Q8 activations with VNNI (vpdpbusd): the activation rows quantized per 32-block like the weights ---- */

/*
 * Each activation as two signed 8-bit digits of one block scale: x / d = q1 + q2 / 256 with d = max|x| / 127 over its
 * 32-block (0 for an all-zero block), q1 = round(x / d), q2 = round((x / d - q1) * 256) clamped to [-127, 127], so
 * the activation keeps about 15 bits (float activations' products are matched to ~1e-5 of the block's largest
 * value; one 8-bit digit alone measurably changed decoded tokens of the fixture model). Round half away from zero.
 * vpdpbusd multiplies unsigned by signed bytes, so the kernel reads the weights offset, w + 128 (one xor), and the
 * offset's share comes from the activation side:
 *   xq[r * pin + k] = q1, xq[(n + r) * pin + k] = q2 (signed bytes, n zero-padded rows of pin = nb * 32 floats each);
 *   c1[r * pin / 4 + l] = -128 * (sum of q1 over the 4 activations of int32 lane l), the first product's start value;
 *   xd[r * nb + b] = d; xd[(n + r) * nb + b] = 128 * (sum of q2 over block b), subtracted once per block.
 */
/* Rounds half away from zero and clamps to [-127, 127], as the scalar definition above: (int) (t +- 0.5). */
INLINE __m512i round_clamp127(__m512 t) {
    __m512 half = _mm512_castsi512_ps(_mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(t), _mm512_set1_epi32((int) 0x80000000)),
                                                      _mm512_castps_si512(_mm512_set1_ps(0.5f))));
    __m512i q = _mm512_cvttps_epi32(_mm512_add_ps(t, half));
    return _mm512_max_epi32(_mm512_min_epi32(q, _mm512_set1_epi32(127)), _mm512_set1_epi32(-127));
}

void vlm4j_q8_quantize_rows(const float *x, int n, int pin, int8_t *xq, int32_t *c1, float *xd) {
    int nb = pin / BLK;
    for (long r = 0; r < n; r++)
        for (int b = 0; b < nb; b++) {
            const float *v = x + r * pin + b * BLK;
            __m512 v0 = _mm512_loadu_ps(v), v1 = _mm512_loadu_ps(v + 16);
            float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
            float d = amax / 127.f;
            __m512i q0 = _mm512_setzero_si512(), q1 = q0, p0 = q0, p1 = q0;
            if (d > 0) {   /* the same IEEE operations per element as the scalar form: t = x / d, u = (t - q) * 256 */
                __m512 dv = _mm512_set1_ps(d), t0 = _mm512_div_ps(v0, dv), t1 = _mm512_div_ps(v1, dv);
                q0 = round_clamp127(t0);
                q1 = round_clamp127(t1);
                p0 = round_clamp127(_mm512_mul_ps(_mm512_sub_ps(t0, _mm512_cvtepi32_ps(q0)), _mm512_set1_ps(256.f)));
                p1 = round_clamp127(_mm512_mul_ps(_mm512_sub_ps(t1, _mm512_cvtepi32_ps(q1)), _mm512_set1_ps(256.f)));
            }
            int8_t *o1 = xq + r * pin + b * BLK, *o2 = xq + ((long) n + r) * pin + b * BLK;
            _mm_storeu_si128((__m128i *) o1, _mm512_cvtepi32_epi8(q0));
            _mm_storeu_si128((__m128i *) (o1 + 16), _mm512_cvtepi32_epi8(q1));
            _mm_storeu_si128((__m128i *) o2, _mm512_cvtepi32_epi8(p0));
            _mm_storeu_si128((__m128i *) (o2 + 16), _mm512_cvtepi32_epi8(p1));
            /* c1: -128 x the sum of each int32 lane's 4 first digits (8 lanes per block) */
            int32_t *c = c1 + (r * pin + b * BLK) / 4;
            for (int l = 0; l < BLK / 4; l++) c[l] = -128 * (o1[4 * l] + o1[4 * l + 1] + o1[4 * l + 2] + o1[4 * l + 3]);
            xd[r * nb + b] = d;
            xd[((long) n + r) * nb + b] = 128.f * (float) _mm512_reduce_add_epi32(_mm512_add_epi32(p0, p1));
        }
}

/* Lanes 0-7 = lane 2k of v, lanes 8-15 = lane 2k + 1: the two blocks of pair k of a 16-block scale pack. */
INLINE __m512 pair_lanes(__m512 v, int k) {
    __m512i idx = _mm512_set_epi32(2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1,
                                   2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k);
    return _mm512_permutexvar_ps(idx, v);
}

/*
 * Weight rows [j, j + R) against N quantized activation rows, per pair of blocks (64 bytes of a row), with u = w + 128:
 *   h = c1 + u . q1 = w . q1 (exact),  D = (h << 8) + u . q2 = 256 w . q1 + w . q2 + 128 (sums of q2 per lane),
 * |D| < 2^24, so its float is exact; then D times (weight scale x activation scale / 256) of its block. The q2 offsets
 * (xd's second half times the same scale) are subtracted once per 16 blocks. Seven vector operations per 64 bytes of
 * a row at N = 1 (the older form, with the offsets removed from each product, took eleven).
 */
#define VNNI __attribute__((target("avx512vnni")))

INLINE VNNI void rows_vnni(const int8_t *x1, const int8_t *x2, const int32_t *c1, const float *xd, const float *xk, int N,
                           int pin, const int8_t *q, const uint16_t *s, int nb, long j, int R, int out, float *y, long pf,
                           long pf2) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) acc[r][i] = _mm512_setzero_ps();
    const int8_t *w = q + j * pin;
    const uint16_t *sc = s + j * nb;
    AHEAD(pf, R, pin, g1, r1);
    AHEAD(pf2, R, pin, g2, r2);
    const __m512i c128 = _mm512_set1_epi8((char) 0x80);
    for (int b0 = 0; b0 < nb; b0 += 16) {          /* 16 blocks: one pack of scales, 8 pairs */
        int left = nb - b0 < 16 ? nb - b0 : 16;
        __mmask16 sm = (__mmask16) ((1u << left) - 1);
        __m512 sc16[4][4];
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            __m512 sw = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(sm, sc + i * (long) nb + b0));
#pragma GCC unroll 4
            for (int r = 0; r < N; r++) {
                sc16[r][i] = _mm512_mul_ps(sw, _mm512_mul_ps(_mm512_maskz_loadu_ps(sm, xd + r * (long) nb + b0), _mm512_set1_ps(1.f / 256.f)));
                acc[r][i] = _mm512_fnmadd_ps(sc16[r][i], _mm512_maskz_loadu_ps(sm, xk + r * (long) nb + b0), acc[r][i]);
            }
        }
        for (int k = 0; k < 8 && 2 * k < left; k++) {
            long o = (long) (b0 + 2 * k) * BLK;
            __mmask64 bm = left - 2 * k >= 2 ? ~(__mmask64) 0 : (__mmask64) 0xffffffffu;   /* the last block alone */
            __mmask16 lm = left - 2 * k >= 2 ? (__mmask16) 0xffff : (__mmask16) 0xff;
            if (pf > 0) PREFETCH_ROWS(w, o, pin, R, g1, r1, _MM_HINT_T0);
            if (pf2 > 0) PREFETCH_ROWS(w, o, pin, R, g2, r2, _MM_HINT_T1);
            __m512i wu[4];
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) wu[i] = _mm512_xor_si512(_mm512_maskz_loadu_epi8(bm, w + i * (long) pin + o), c128);
#pragma GCC unroll 4
            for (int r = 0; r < N; r++) {
                __m512i a1 = _mm512_maskz_loadu_epi8(bm, x1 + r * (long) pin + o), a2 = _mm512_maskz_loadu_epi8(bm, x2 + r * (long) pin + o);
                __m512i h0 = _mm512_maskz_loadu_epi32(lm, c1 + (r * (long) pin + o) / 4);
#pragma GCC unroll 4
                for (int i = 0; i < R; i++) {
                    __m512i h = _mm512_dpbusd_epi32(h0, wu[i], a1);
                    __m512i d = _mm512_dpbusd_epi32(_mm512_slli_epi32(h, 8), wu[i], a2);
                    acc[r][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), pair_lanes(sc16[r][i], k), acc[r][i]);
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < N; r++)
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) y[r * (long) out + j + i] = _mm512_reduce_add_ps(acc[r][i]);
}

#define VCASE(N, R) rows_vnni(xq + r0 * (long) pin, xq + ((long) n + r0) * pin, c1 + r0 * (long) pin / 4, xd + r0 * (long) nb, \
                              xd + ((long) n + r0) * nb, N, pin, q, s, nb, j, R, out, y + r0 * (long) out, pf, pf2)

/*
 * As vlm4j_q8_0_gemv with the n activation rows quantized by vlm4j_q8_quantize_rows (xq: 2 * n * pin bytes,
 * c1: n * pin / 4 ints, xd: 2 * n * nb floats): integer block dot products (exact), scaled in float32. Needs
 * AVX512-VNNI.
 */
VNNI void vlm4j_q8_0_gemv_vnni(const int8_t *xq, const int32_t *c1, const float *xd, int n, int pin, const int8_t *q,
                               const uint16_t *s, int nb, int j0, int j1, int out, float *y, long pf, long pf2) {
    FOR_ROW_GROUPS(VCASE)
}

INLINE __m512 bf16_lanes(const uint16_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *) p)), 16));
}

/* The lane tree of GemvBf16: lane l + lane l ^ 8, then ^ 4, ^ 2, ^ 1; lane 0 holds the sum. */
INLINE float lane_tree(__m512 a) {
    a = _mm512_add_ps(a, _mm512_shuffle_f32x4(a, a, _MM_SHUFFLE(1, 0, 3, 2)));
    a = _mm512_add_ps(a, _mm512_shuffle_f32x4(a, a, _MM_SHUFFLE(2, 3, 0, 1)));
    a = _mm512_add_ps(a, _mm512_permute_ps(a, _MM_SHUFFLE(1, 0, 3, 2)));
    a = _mm512_add_ps(a, _mm512_permute_ps(a, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm512_cvtss_f32(a);
}

/*
 * y[yo + i] = the vector part of x[xo ..] . w[i, ..] for the count (a multiple of 4) bf16 weight rows from w, in
 * values apart: one 16-lane FMA accumulator per row over k < kv (a multiple of 16) in order, then the lane tree,
 * exactly as GemvBf16 computes every output (so results do not depend on the kernel or the batch size); the Java
 * caller adds the in % 16 leftover products. pf, pf2: prefetch distances in bytes into L1 and L2 (0: none), as in
 * vlm4j_q8_0_gemv.
 */
void vlm4j_bf16_rows(const float *x, int xo, int kv, const uint16_t *w, long in, int count, float *y, int yo, long pf,
                     long pf2) {
    x += xo;
    y += yo;
    long rowBytes = 2 * in;
    AHEAD(pf, 4, rowBytes, g1, r1);
    AHEAD(pf2, 4, rowBytes, g2, r2);
    for (int j = 0; j < count; j += 4) {
        const uint16_t *r0 = w + j * in;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int k = 0; k < kv; k += 16) {
            if ((k & 31) == 0) {   /* 64 bytes of each of the 4 rows read together */
                if (pf > 0) PREFETCH_ROWS((const int8_t *) r0, 2L * k, rowBytes, 4, g1, r1, _MM_HINT_T0);
                if (pf2 > 0) PREFETCH_ROWS((const int8_t *) r0, 2L * k, rowBytes, 4, g2, r2, _MM_HINT_T1);
            }
            __m512 xv = _mm512_loadu_ps(x + k);
            a0 = _mm512_fmadd_ps(xv, bf16_lanes(r0 + k), a0);
            a1 = _mm512_fmadd_ps(xv, bf16_lanes(r0 + in + k), a1);
            a2 = _mm512_fmadd_ps(xv, bf16_lanes(r0 + 2 * in + k), a2);
            a3 = _mm512_fmadd_ps(xv, bf16_lanes(r0 + 3 * in + k), a3);
        }
        y[j] = lane_tree(a0);
        y[j + 1] = lane_tree(a1);
        y[j + 2] = lane_tree(a2);
        y[j + 3] = lane_tree(a3);
    }
}

/*
 * The GEMM micro-kernel of dev.vlm4j.compute.cpu.Gemm: c[M x 32] (+)= a[M rows, kc] * p[kc, 32], M = 6 or 12, with a
 * k-major 6-row micro-panel (ap[k * 6 + i]; the second six rows at a2) and a k-major panel slice (p[k * 32 + j]).
 * One FMA per (row, 16 columns, k), in k order, from c (acc) or zero: exactly the Java kernel's operations, so the
 * results are bit-identical to it. Rows of c are ldc apart.
 */
#define GEMM_TILE(M)                                                                                          \
    INLINE void gemm_tile##M(const float *a, const float *a2, const float *p, int kc, float *c, long ldc, int acc) { \
        __m512 c0[M], c1[M];                                                                                   \
        _Pragma("GCC unroll 12") for (int i = 0; i < M; i++) {                                                 \
            c0[i] = acc ? _mm512_loadu_ps(c + i * ldc) : _mm512_setzero_ps();                                  \
            c1[i] = acc ? _mm512_loadu_ps(c + i * ldc + 16) : _mm512_setzero_ps();                             \
        }                                                                                                      \
        for (int k = 0; k < kc; k++) {                                                                         \
            __m512 w0 = _mm512_loadu_ps(p + k * 32), w1 = _mm512_loadu_ps(p + k * 32 + 16);                    \
            _Pragma("GCC unroll 12") for (int i = 0; i < M; i++) {                                             \
                __m512 b = _mm512_set1_ps(i < 6 ? a[k * 6 + i] : a2[k * 6 + i - 6]);                            \
                c0[i] = _mm512_fmadd_ps(w0, b, c0[i]);                                                         \
                c1[i] = _mm512_fmadd_ps(w1, b, c1[i]);                                                         \
            }                                                                                                  \
        }                                                                                                      \
        _Pragma("GCC unroll 12") for (int i = 0; i < M; i++) {                                                 \
            _mm512_storeu_ps(c + i * ldc, c0[i]);                                                              \
            _mm512_storeu_ps(c + i * ldc + 16, c1[i]);                                                         \
        }                                                                                                      \
    }
GEMM_TILE(6)
GEMM_TILE(12)

/*
 * One panel of 32 weight columns [j0, j0 + cols) and one k-slice [k0, k0 + kc) of Gemm.gemm against the 6-row
 * activation blocks [b0, b1): a = the packed activations (block b at a + (b * in + k) * 6), p + po = the panel slice,
 * y[n, out] (+)= (acc) the products. Two full blocks at a time where they exist; a partial block or panel goes
 * through a tile and adds its valid part, as the Java code does.
 */
void vlm4j_gemm_panel(const float *a, int b0, int b1, int in, int k0, int kc, const float *p, int po, float *y, int n,
                      int out, int j0, int cols, int acc) {
    float tile[6 * 32];
    p += po;
    for (int b = b0; b < b1;) {
        int i0 = b * 6;
        const float *ab = a + ((long) b * in + k0) * 6;
        float *yb = y + (long) i0 * out + j0;
        if (cols == 32 && b + 1 < b1 && n - i0 >= 12) {
            gemm_tile12(ab, ab + 6L * in, p, kc, yb, out, acc);
            b += 2;
            continue;
        }
        int r = n - i0 < 6 ? n - i0 : 6;
        if (r == 6 && cols == 32) {
            gemm_tile6(ab, ab, p, kc, yb, out, acc);
        } else {
            gemm_tile6(ab, ab, p, kc, tile, 32, 0);
            for (int i = 0; i < r; i++)
                for (int c = 0; c < cols; c++) yb[(long) i * out + c] = (acc ? yb[(long) i * out + c] : 0.f) + tile[i * 32 + c];
        }
        b++;
    }
}

/* In-register transpose of a 16 x 16 float block: r[i] lane j -> r[j] lane i. */
INLINE void transpose16(__m512 r[16]) {
    __m512 t[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
        t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xDD);
        t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
        t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xDD);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
        r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xDD);
        r[4 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0x88);
        r[12 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0xDD);
    }
}

/*
 * Packs one panel slice for vlm4j_gemm_panel: panel[po + kk * 32 + c] = w[j0 + c, k0 + kk] as float32 for kk < kc,
 * c < cols, and 0 for cols <= c < 32. dt 0: f32 rows of in values at w; 1: bf16 rows; 2: Q8_0, quant rows of nb
 * 32-byte blocks at w and f16 block scales so bytes after w (k0 a multiple of 32). The same floats as Gemm.packB
 * (f32 and bf16 exact, Q8_0 float(q) * float(scale)): 16 x 16 blocks loaded row-wise (masked at a k tail),
 * transposed in registers, stored k-major.
 */
void vlm4j_gemm_pack(int dt, const void *w, long so, int in, int nb, int j0, int cols, int k0, int kc, float *panel, int po) {
    panel += po;
    for (int c0 = 0; c0 < 32; c0 += 16)
        for (int kk = 0; kk < kc; kk += 16) {
            int m = kc - kk < 16 ? kc - kk : 16, k = k0 + kk;
            __mmask16 mask = (__mmask16) ((1u << m) - 1);
            __m512 r[16];
            for (int i = 0; i < 16; i++) {
                long j = (long) j0 + c0 + i;
                if (c0 + i >= cols) {
                    r[i] = _mm512_setzero_ps();
                } else if (dt == 0) {
                    r[i] = _mm512_maskz_loadu_ps(mask, (const float *) w + j * in + k);
                } else if (dt == 1) {
                    __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, (const uint16_t *) w + j * in + k));
                    r[i] = _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
                } else {
                    long blk = j * nb + k / BLK;
                    uint16_t h;
                    __builtin_memcpy(&h, (const char *) w + so + 2 * blk, 2);
                    __m128i q = _mm_maskz_loadu_epi8(mask, (const int8_t *) w + blk * BLK + k % BLK);
                    r[i] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), _mm512_set1_ps(_cvtsh_ss(h)));
                }
            }
            transpose16(r);
            for (int i = 0; i < m; i++) _mm512_storeu_ps(panel + (long) (kk + i) * 32 + c0, r[i]);
        }
}

/*
 * dst[c * ld + j] = src[j * stride + c] for j < rows, c < cols (cols a multiple of 16): the keys of one attention head
 * transposed for vlm4j_attention, 16 x 16 blocks through registers. Rows are written in whole blocks of 16, so dst
 * needs ld >= rows rounded up to 16 (the extra columns get zeros).
 */
void vlm4j_transpose_rows(const float *src, int rows, long stride, int cols, float *dst, long ld) {
    for (int j0 = 0; j0 < rows; j0 += 16) {
        int m = rows - j0 < 16 ? rows - j0 : 16;
        for (int c0 = 0; c0 < cols; c0 += 16) {
            __m512 r[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) r[i] = i < m ? _mm512_loadu_ps(src + (j0 + i) * stride + c0) : _mm512_setzero_ps();
            transpose16(r);
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) _mm512_storeu_ps(dst + (c0 + i) * ld + j0, r[i]);
        }
    }
}

/*
 * exp(x) for lanes x <= 0 (as softmax weights need): Cody-Waite reduction x = n ln2 + r and the degree-6 polynomial
 * of Cephes' expf (about 1 ulp), scaled by 2^n with scalef; x below -104 gives 0 (or a denormal).
 */
INLINE __m512 exp_nonpositive(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
    return _mm512_scalef_ps(_mm512_add_ps(p, _mm512_set1_ps(1.f)), n);
}

#define AQ 8    /* queries per call */
#define AT 32   /* keys per tile */

/*
 * acc[e * d + 16 h + i] += sum over t < valid of pb[e * AT + t] * v[t * w + 16 h + i] for the AQ queries e and the
 * H (1 or 2, a constant where inlined) 16-wide column chunks h: one value load per chunk and key, AQ * H FMAs.
 */
INLINE void attention_values(float *acc, int d, const float *pb, const float *v, int w, int valid, int H) {
    __m512 r[2][AQ];
#pragma GCC unroll 2
    for (int h = 0; h < H; h++)
#pragma GCC unroll 8
        for (int e = 0; e < AQ; e++) r[h][e] = _mm512_loadu_ps(acc + e * d + 16 * h);
    for (int t = 0; t < valid; t++) {
        __m512 x[2];
#pragma GCC unroll 2
        for (int h = 0; h < H; h++) x[h] = _mm512_loadu_ps(v + (long) t * w + 16 * h);
#pragma GCC unroll 8
        for (int e = 0; e < AQ; e++) {
            __m512 p = _mm512_set1_ps(pb[e * AT + t]);
#pragma GCC unroll 2
            for (int h = 0; h < H; h++) r[h][e] = _mm512_fmadd_ps(x[h], p, r[h][e]);
        }
    }
#pragma GCC unroll 2
    for (int h = 0; h < H; h++)
#pragma GCC unroll 8
        for (int e = 0; e < AQ; e++) _mm512_storeu_ps(acc + e * d + 16 * h, r[h][e]);
}

/*
 * Online-softmax attention of AQ queries over the keys [lo, hi) of one KV head (the tiled kernel of
 * dev.vlm4j.compute.cpu.Attention, in C): q = AQ scaled query rows of d floats (d a multiple of 16, at most 256),
 * kt = that head's keys transposed (kt[c * ld + j], readable up to j = hi + 31), v rows of the head at v + j * w,
 * out = AQ rows of d, normalised. Per tile of 32 keys: scores by d broadcast FMAs (16 accumulators), one max and
 * one rescale per query, exp, then the weighted values into the accumulators two 16-wide column chunks at a time.
 */
void vlm4j_attention(const float *q, const float *kt, int ld, const float *v, int w, int d, int lo, int hi, float *out) {
    float acc[AQ * 256], pb[AQ * AT], m[AQ], l[AQ];
    /* A decode step's keys and values come from memory (the weights streamed since evicted them), from d rows of kt
       and a row of v per key: requested all at once here, the first two tiles' lines are in flight together
       instead of as far as the out-of-order window reaches (a 3B decode step's attention 1.63/1.66 -> 1.46/1.27 ms,
       alternating runs, docs/BENCHMARKS.md). */
    int pend = hi - lo > 2 * AT ? lo + 2 * AT : hi;
    for (int c = 0; c < d; c++)
        for (int j = lo; j < pend; j += 16) _mm_prefetch((const char *) (kt + (long) c * ld + j), _MM_HINT_T0);
    for (int j = lo; j < pend; j++)
        for (int c = 0; c < d; c += 16) _mm_prefetch((const char *) (v + (long) j * w + c), _MM_HINT_T0);
    for (int i = 0; i < AQ * d; i++) acc[i] = 0.f;
    for (int e = 0; e < AQ; e++) { m[e] = -__builtin_inff(); l[e] = 0.f; }
    const __m512 ninf = _mm512_set1_ps(-__builtin_inff());
    for (int j0 = lo; j0 < hi; j0 += AT) {
        int valid = hi - j0 < AT ? hi - j0 : AT;
        __mmask16 v0 = valid >= 16 ? 0xFFFF : (__mmask16) ((1u << valid) - 1);
        __mmask16 v1 = valid >= 32 ? 0xFFFF : valid <= 16 ? 0 : (__mmask16) ((1u << (valid - 16)) - 1);
        __m512 s0[AQ], s1[AQ];
#pragma GCC unroll 8
        for (int e = 0; e < AQ; e++) s0[e] = s1[e] = _mm512_setzero_ps();
        for (int c = 0; c < d; c++) {
            __m512 k0 = _mm512_loadu_ps(kt + (long) c * ld + j0), k1 = _mm512_loadu_ps(kt + (long) c * ld + j0 + 16);
#pragma GCC unroll 8
            for (int e = 0; e < AQ; e++) {
                __m512 b = _mm512_set1_ps(q[e * d + c]);
                s0[e] = _mm512_fmadd_ps(k0, b, s0[e]);
                s1[e] = _mm512_fmadd_ps(k1, b, s1[e]);
            }
        }
        for (int e = 0; e < AQ; e++) {
            __m512 a = _mm512_mask_blend_ps(v0, ninf, s0[e]), b = _mm512_mask_blend_ps(v1, ninf, s1[e]);
            float tmax = _mm512_reduce_max_ps(_mm512_max_ps(a, b));
            if (tmax > m[e]) {
                if (m[e] != -__builtin_inff()) {
                    float corr = _mm512_cvtss_f32(exp_nonpositive(_mm512_set1_ps(m[e] - tmax)));
                    l[e] *= corr;
                    __m512 cv = _mm512_set1_ps(corr);
                    for (int c = 0; c < d; c += 16) _mm512_storeu_ps(acc + e * d + c, _mm512_mul_ps(_mm512_loadu_ps(acc + e * d + c), cv));
                }
                m[e] = tmax;
            }
            __m512 mv = _mm512_set1_ps(m[e]);
            __m512 p0 = _mm512_maskz_mov_ps(v0, exp_nonpositive(_mm512_sub_ps(a, mv)));
            __m512 p1 = _mm512_maskz_mov_ps(v1, exp_nonpositive(_mm512_sub_ps(b, mv)));
            l[e] += _mm512_reduce_add_ps(_mm512_add_ps(p0, p1));
            _mm512_storeu_ps(pb + e * AT, p0);
            _mm512_storeu_ps(pb + e * AT + 16, p1);
        }
        const float *vj = v + (long) j0 * w;
        int c0 = 0;
        for (; c0 + 32 <= d; c0 += 32) attention_values(acc + c0, d, pb, vj + c0, w, valid, 2);
        if (c0 < d) attention_values(acc + c0, d, pb, vj + c0, w, valid, 1);
    }
    for (int e = 0; e < AQ; e++) {
        __m512 inv = _mm512_set1_ps(1.f / l[e]);
        for (int c = 0; c < d; c += 16) _mm512_storeu_ps(out + e * d + c, _mm512_mul_ps(_mm512_loadu_ps(acc + e * d + c), inv));
    }
}

/*
 * The machine's FMA peak probe: iters rounds of 12 independent 16-lane FMA chains (enough to cover the latency of two
 * FMA ports), 384 FLOP a round; returns a sum so that nothing is optimised away. The same loop in Java reads 10-20%
 * lower on the build machine, which would overstate every efficiency measured against it.
 */
float vlm4j_fma_peak(long iters, float seed) {
    __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f), a[12];
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps(seed + i);
    for (long r = 0; r < iters; r++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], m, c);
        __asm__ volatile("" : "+v"(a[0]), "+v"(a[1]), "+v"(a[2]), "+v"(a[3]), "+v"(a[4]), "+v"(a[5]));
    }
    __m512 s = a[0];
#pragma GCC unroll 12
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);
}

/*
 * The machine's read bandwidth probe: sums bytes (a multiple of 256) from p with four 64-byte loads a round and the
 * decode kernels' software prefetches, pf bytes ahead into L1 and pf2 ahead into L2 (0: none), so that the bandwidth
 * the kernels are measured against is the one they can reach (without the prefetch a plain loop reads well below it
 * on the build machine).
 */
/* One round's four lines of vlm4j_read_sum, dist bytes ahead, with the given hint. */
#define PREFETCH_ROUND(at, dist, hint) do { \
        const char *q_ = (const char *) (at) + (dist); \
        _Pragma("GCC unroll 4") \
        for (int l_ = 0; l_ < 4; l_++) _mm_prefetch(q_ + 64 * l_, hint); \
    } while (0)

float vlm4j_read_sum(const float *p, long bytes, long pf, long pf2) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    long n = bytes / 4;
    for (long i = 0; i < n; i += 64) {
        if (pf > 0) PREFETCH_ROUND(p + i, pf, _MM_HINT_T0);
        if (pf2 > 0) PREFETCH_ROUND(p + i, pf2, _MM_HINT_T1);
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(p + i));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(p + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_loadu_ps(p + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_loadu_ps(p + i + 48));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

/* The version of this file's interface; NativeKernels refuses a library that reports another one. */
int vlm4j_cpu_abi(void) { return 13; }
