// Minimal CPU emulation of the CUDA features the flash kernels use: lanes are ucontext fibers, warps run in lockstep
// between warp collectives (ldmatrix, mma.sync, shuffles, votes), blocks run one after another.
#pragma once
#include <ucontext.h>
#include <cstdint>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <algorithm>
#include <functional>
using std::min; using std::max;
typedef unsigned int u32;
typedef unsigned short u16;
struct dim3e { unsigned x, y, z; };
struct float2 { float x, y; };
static inline float2 make_float2(float a, float b) { return {a, b}; }
struct int2 { int x, y; };
static inline int2 make_int2(int a, int b) { return {a, b}; }
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
static inline unsigned f2u(float f) { unsigned u; memcpy(&u, &f, 4); return u; }

enum Kind { K_NONE, K_LDSM, K_LDSMT, K_MMA, K_SHFL, K_ANY, K_ALL, K_BAR, K_DONE };
struct Lane {
    ucontext_t ctx; char* stack; dim3e tid;
    Kind kind; u32 addr; u32 a[4], b0, b1; float c[4]; u32 val; int off; bool vote;
    u32 r[4]; float co[4]; u32 res; bool vres;
};
static Lane* emu_cur;
static ucontext_t emu_sched;
static dim3e emu_block, emu_bdim, emu_grid;
alignas(16) static unsigned char emu_smem[240 * 1024];
#define threadIdx (emu_cur->tid)
#define blockIdx emu_block
#define blockDim emu_bdim
#define gridDim emu_grid

static inline void emu_yield(Kind k) { emu_cur->kind = k; swapcontext(&emu_cur->ctx, &emu_sched); }
static inline void __syncthreads() { emu_yield(K_BAR); }
template <typename T> static inline T __shfl_xor_sync(unsigned, T v, int o) {
    u32 u = 0; memcpy(&u, &v, sizeof(T)); emu_cur->val = u; emu_cur->off = o; emu_yield(K_SHFL);
    T r; memcpy(&r, &emu_cur->res, sizeof(T)); return r;
}
static inline bool __any_sync(unsigned, bool p) { emu_cur->vote = p; emu_yield(K_ANY); return emu_cur->vres; }
static inline bool __all_sync(unsigned, bool p) { emu_cur->vote = p; emu_yield(K_ALL); return emu_cur->vres; }
static inline float atomicAdd(float* p, float v) { float o = *p; *p = o + v; return o; }   // fibers: no preemption

static inline u16 emu_bf16(float f) {
    unsigned u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u16) ((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (u16) (u >> 16);
}
static inline float emu_f(u16 h) { return __uint_as_float(((unsigned) h) << 16); }
static inline u32 pack_bf16(float lo, float hi) { return (u32) emu_bf16(lo) | ((u32) emu_bf16(hi) << 16); }
static inline float fast_exp2(float x) { return exp2f(x); }
static inline void mma16816(float* c, const u32* a, u32 b0, u32 b1) {
    Lane* L = emu_cur;
    memcpy(L->a, a, 16); L->b0 = b0; L->b1 = b1; memcpy(L->c, c, 16);
    emu_yield(K_MMA);
    memcpy(c, L->co, 16);
}
static inline unsigned smem_addr(const void* p) { return (unsigned) ((const unsigned char*) p - emu_smem); }
static inline void cp_async16(void* dst, const void* src, bool valid) {
    if (valid) memcpy(dst, src, 16); else memset(dst, 0, 16);
}
static inline void cp_commit() {}
static inline void cp_wait_all() {}
static inline void cp_wait_one() {}
static inline void ldsm4(u32* r, u32 a) { emu_cur->addr = a; emu_yield(K_LDSM); memcpy(r, emu_cur->r, 16); }
static inline void ldsm4t(u32* r, u32 a) { emu_cur->addr = a; emu_yield(K_LDSMT); memcpy(r, emu_cur->r, 16); }
static inline void ldsm4(u32* r, const u16* p) { ldsm4(r, smem_addr(p)); }
static inline void ldsm4t(u32* r, const u16* p) { ldsm4t(r, smem_addr(p)); }

static inline u16 sm16(u32 byteaddr) { u16 v; memcpy(&v, emu_smem + byteaddr, 2); return v; }

static void emu_warp_op(Lane* w) {
    Kind k = w[0].kind;
    for (int l = 1; l < 32; l++) if (w[l].kind != k) { fprintf(stderr, "divergent warp: %d vs %d\n", w[l].kind, k); abort(); }
    if (k == K_LDSM || k == K_LDSMT) {
        for (int l = 0; l < 32; l++) {
            int g = l >> 2, t = l & 3;
            for (int i = 0; i < 4; i++) {
                u16 e0, e1;
                if (k == K_LDSM) { u32 a = w[8 * i + g].addr; e0 = sm16(a + 4 * t); e1 = sm16(a + 4 * t + 2); }
                else { e0 = sm16(w[8 * i + 2 * t].addr + 2 * g); e1 = sm16(w[8 * i + 2 * t + 1].addr + 2 * g); }
                w[l].r[i] = (u32) e0 | ((u32) e1 << 16);
            }
        }
    } else if (k == K_MMA) {
        float A[16][16], B[16][8];
        for (int l = 0; l < 32; l++) {
            int g = l >> 2, t = l & 3;
            auto lo = [](u32 x) { return emu_f((u16) (x & 0xffff)); };
            auto hi = [](u32 x) { return emu_f((u16) (x >> 16)); };
            A[g][2 * t] = lo(w[l].a[0]); A[g][2 * t + 1] = hi(w[l].a[0]);
            A[g + 8][2 * t] = lo(w[l].a[1]); A[g + 8][2 * t + 1] = hi(w[l].a[1]);
            A[g][2 * t + 8] = lo(w[l].a[2]); A[g][2 * t + 9] = hi(w[l].a[2]);
            A[g + 8][2 * t + 8] = lo(w[l].a[3]); A[g + 8][2 * t + 9] = hi(w[l].a[3]);
            B[2 * t][g] = lo(w[l].b0); B[2 * t + 1][g] = hi(w[l].b0);
            B[2 * t + 8][g] = lo(w[l].b1); B[2 * t + 9][g] = hi(w[l].b1);
        }
        for (int l = 0; l < 32; l++) {
            int g = l >> 2, t = l & 3;
            for (int e = 0; e < 4; e++) {
                int row = g + 8 * (e >> 1), col = 2 * t + (e & 1);
                float s = w[l].c[e];
                for (int kk = 0; kk < 16; kk++) s += A[row][kk] * B[kk][col];
                w[l].co[e] = s;
            }
        }
    } else if (k == K_SHFL) {
        for (int l = 0; l < 32; l++) w[l].res = w[l ^ w[l].off].val;
    } else if (k == K_ANY || k == K_ALL) {
        bool any = false, all = true;
        for (int l = 0; l < 32; l++) { any |= w[l].vote; all &= w[l].vote; }
        for (int l = 0; l < 32; l++) w[l].vres = k == K_ANY ? any : all;
    }
}

static std::function<void()> emu_body;
static void emu_entry() { emu_body(); emu_cur->kind = K_DONE; swapcontext(&emu_cur->ctx, &emu_sched); }

// Runs body (a kernel call) over the grid.
static void emu_launch(int gx, int gy, int threads, std::function<void()> body) {
    emu_body = body;
    emu_grid = {(unsigned) gx, (unsigned) gy, 1}; emu_bdim = {(unsigned) threads, 1, 1};
    int nw = threads / 32;
    std::vector<Lane> lanes(threads);
    const size_t STACK = 512 * 1024;
    for (auto& L : lanes) L.stack = (char*) malloc(STACK);
    for (int by = 0; by < gy; by++)
        for (int bx = 0; bx < gx; bx++) {
            emu_block = {(unsigned) bx, (unsigned) by, 0};
            memset(emu_smem, 0xcd, sizeof emu_smem);   // garbage, as uninitialised shared memory
            for (int i = 0; i < threads; i++) {
                Lane& L = lanes[i];
                L.tid = {(unsigned) i, 0, 0}; L.kind = K_NONE;
                getcontext(&L.ctx); L.ctx.uc_stack.ss_sp = L.stack; L.ctx.uc_stack.ss_size = STACK; L.ctx.uc_link = nullptr;
                makecontext(&L.ctx, emu_entry, 0);
            }
            std::vector<int> state(nw, 0);   // 0 running, 1 at barrier, 2 done
            while (true) {
                bool progress = false;
                for (int w = 0; w < nw; w++) {
                    if (state[w] != 0) continue;
                    Lane* W = &lanes[32 * w];
                    for (int l = 0; l < 32; l++) { emu_cur = &W[l]; swapcontext(&emu_sched, &W[l].ctx); }
                    progress = true;
                    Kind k = W[0].kind;
                    for (int l = 1; l < 32; l++) if (W[l].kind != k) { fprintf(stderr, "divergence at block %d,%d warp %d: lane %d kind %d vs %d\n", bx, by, w, l, W[l].kind, k); abort(); }
                    if (k == K_BAR) state[w] = 1;
                    else if (k == K_DONE) state[w] = 2;
                    else emu_warp_op(W);
                }
                int atBar = 0, done = 0;
                for (int w = 0; w < nw; w++) { atBar += state[w] == 1; done += state[w] == 2; }
                if (done == nw) break;
                if (atBar + done == nw) {
                    if (done > 0) { fprintf(stderr, "barrier with exited warps\n"); abort(); }
                    for (int w = 0; w < nw; w++) state[w] = 0;
                } else if (!progress) { fprintf(stderr, "deadlock\n"); abort(); }
            }
        }
    for (auto& L : lanes) free(L.stack);
}
static inline void emu_red4(float* p, float a, float b, float c, float d) { p[0] += a; p[1] += b; p[2] += c; p[3] += d; }
#define __CUDA_ARCH__ 900
