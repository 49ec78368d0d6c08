/*
 * Manual probe (not part of the build): the production Q8_0 x Q8 VNNI matrix-vector kernel (vlm4j_q8_0_gemv_vnni,
 * compiled in from src/main/c/vlm4j_cpu.c) against a candidate layout in which each row's 16 consecutive 32-blocks are
 * interleaved 4 bytes at a time (zmm lane l = block l), so that 8 vpdpbusd per activation digit give 16 whole-block
 * dot products in one register, scaled by one 16-lane scale vector. Same quantized inputs, outputs compared, weight
 * GB/s over a matrix larger than the caches, with 1 and 2 threads.
 *   gcc -O3 -fopenmp -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mf16c -mfma -o /tmp/q8p src/test/c/q8_interleave_probe.c
 *   /tmp/q8p [rows=131072] [in=2048] [passes=5]
 */
#include "../../main/c/vlm4j_cpu.c"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <omp.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

/* Interleaved weights: row-major, per row per group g of 16 blocks, 512 bytes [step s][lane l][4] = block 16g+l bytes
   4s..4s+3, stored as w + 128 (unsigned). Scales as f32 [row][nb]. Activation digits permuted the same way. */
__attribute__((target("avx512vnni")))
static void gemv_interleaved(const uint8_t *wi, const float *sw, const int8_t *x1, const int8_t *x2, const int32_t *c1b,
                             const int32_t *off2, const float *sx, int pin, int nb, long j0, long j1, float *y) {
    int groups = nb / 16;
    for (long j = j0; j < j1; j += 4) {
        __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        for (int g = 0; g < groups; g++) {
            const __m512i *a1 = (const __m512i *) (x1 + (long) g * 512), *a2 = (const __m512i *) (x2 + (long) g * 512);
            __m512i h0 = _mm512_loadu_si512(c1b + g * 16), o2 = _mm512_loadu_si512(off2 + g * 16);
            __m512 s16 = _mm512_loadu_ps(sx + g * 16);
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                const __m512i *w = (const __m512i *) (wi + (j + i) * (long) pin + (long) g * 512);
                _mm_prefetch((const char *) (w + 64), _MM_HINT_T0);   /* 4 KiB ahead */
                _mm_prefetch((const char *) (w + 65), _MM_HINT_T0);
                _mm_prefetch((const char *) (w + 66), _MM_HINT_T0);
                _mm_prefetch((const char *) (w + 67), _MM_HINT_T0);
                _mm_prefetch((const char *) (w + 68), _MM_HINT_T0);
                _mm_prefetch((const char *) (w + 69), _MM_HINT_T0);
                _mm_prefetch((const char *) (w + 70), _MM_HINT_T0);
                _mm_prefetch((const char *) (w + 71), _MM_HINT_T0);
                __m512i h = h0, d = _mm512_setzero_si512();
#pragma GCC unroll 8
                for (int s = 0; s < 8; s++) h = _mm512_dpbusd_epi32(h, _mm512_load_si512(w + s), _mm512_load_si512(a1 + s));
#pragma GCC unroll 8
                for (int s = 0; s < 8; s++) d = _mm512_dpbusd_epi32(d, _mm512_load_si512(w + s), _mm512_load_si512(a2 + s));
                __m512i D = _mm512_sub_epi32(_mm512_add_epi32(_mm512_slli_epi32(h, 8), d), o2);
                __m512 scale = _mm512_mul_ps(_mm512_loadu_ps(sw + (j + i) * (long) nb + g * 16), s16);
                acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(D), scale, acc[i]);
            }
        }
        for (int i = 0; i < 4; i++) y[j + i] = _mm512_reduce_add_ps(acc[i]);
    }
}

int main(int argc, char **argv) {
    long rows = argc > 1 ? atol(argv[1]) : 131072;
    int pin = argc > 2 ? atoi(argv[2]) : 2048, passes = argc > 3 ? atoi(argv[3]) : 5, nb = pin / 32;
    int8_t *q = aligned_alloc(64, rows * (long) pin);
    uint8_t *wi = aligned_alloc(64, rows * (long) pin);
    uint16_t *s = aligned_alloc(64, rows * (long) nb * 2 + 64);
    float *sw = aligned_alloc(64, rows * (long) nb * 4 + 64);
    srand(7);
    for (long i = 0; i < rows * (long) pin; i++) q[i] = (int8_t) (rand() % 255 - 127);
    for (long i = 0; i < rows * (long) nb; i++) { float v = 0.001f + (rand() % 1000) * 1e-5f; s[i] = _cvtss_sh(v, 0); sw[i] = _cvtsh_ss(s[i]); }
    for (long r = 0; r < rows; r++)
        for (int g = 0; g < nb / 16; g++)
            for (int st = 0; st < 8; st++)
                for (int l = 0; l < 16; l++)
                    for (int b = 0; b < 4; b++)
                        wi[r * pin + g * 512 + st * 64 + l * 4 + b] = (uint8_t) (q[r * pin + (long) (16 * g + l) * 32 + 4 * st + b] + 128);
    float *x = malloc(pin * 4);
    for (int k = 0; k < pin; k++) x[k] = (float) (rand() % 2001 - 1000) / 1000.f;
    int8_t *xq = aligned_alloc(64, 2L * pin + 64);
    int32_t *c1 = aligned_alloc(64, pin + 64);
    float *xd = aligned_alloc(64, 2L * nb * 4 + 64);
    vlm4j_q8_quantize_rows(x, 1, pin, xq, c1, xd);
    /* the interleaved activation: the same digits, permuted; per block the q1 start value and the q2 offset */
    int8_t *x1 = aligned_alloc(64, pin), *x2 = aligned_alloc(64, pin);
    int32_t *c1b = aligned_alloc(64, nb * 4 + 64), *off2 = aligned_alloc(64, nb * 4 + 64);
    float *sx = aligned_alloc(64, nb * 4 + 64);
    for (int g = 0; g < nb / 16; g++)
        for (int st = 0; st < 8; st++)
            for (int l = 0; l < 16; l++)
                for (int b = 0; b < 4; b++) {
                    long src = (long) (16 * g + l) * 32 + 4 * st + b;
                    x1[g * 512 + st * 64 + l * 4 + b] = xq[src];
                    x2[g * 512 + st * 64 + l * 4 + b] = xq[pin + src];
                }
    for (int b = 0; b < nb; b++) {
        int s1 = 0;
        for (int k = 0; k < 32; k++) s1 += xq[b * 32 + k];
        c1b[b] = -128 * s1;
        off2[b] = (int32_t) xd[nb + b];   /* 128 * sum of q2 over the block */
        sx[b] = xd[b] / 256.f;
    }
    float *y0 = calloc(rows, 4), *y1 = calloc(rows, 4);
    double bytes = (double) rows * pin + rows * (double) nb * 2;
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        for (int variant = 0; variant < 2; variant++) {
            double best = 1e9;
            for (int p = 0; p < passes; p++) {
                double t0 = now();
#pragma omp parallel
                {
                    int t = omp_get_thread_num(), T = omp_get_num_threads();
                    long a = rows * t / T / 4 * 4, b = rows * (t + 1) / T / 4 * 4;
                    if (variant == 0) vlm4j_q8_0_gemv_vnni(xq, c1, xd, 1, pin, q, s, nb, a, b, (int) rows, y0, 4096);
                    else gemv_interleaved(wi, sw, x1, x2, c1b, off2, sx, pin, nb, a, b, y1);
                }
                double t = now() - t0;
                if (t < best) best = t;
            }
            printf("%d thread(s), %s: %.2f GB/s of weights (%.1f ms a pass over %.0f MB)\n", threads,
                   variant == 0 ? "production VNNI kernel " : "interleaved 16-block kernel", bytes / best / 1e9, best * 1e3, bytes / 1e6);
        }
    }
    double md = 0, mx = 0;
    for (long r = 0; r < rows; r++) { double e = y0[r] - y1[r]; if (e < 0) e = -e; if (e > md) md = e; double a = y0[r] < 0 ? -y0[r] : y0[r]; if (a > mx) mx = a; }
    printf("max |interleaved - production| = %.3g (largest output %.3g)\n", md, mx);
    return 0;
}
