// Emulated run of the flash kernels (scripts/cuda-emu/run.sh): the first and second kernels against each other and a float64 reference.
#include "emu.h"
#include "old.inc"
#include "new.inc"
#include <random>

static void key_range(int i, int kvLen, const std::vector<int>& seg, int causal, int qoff, int& lo, int& hi) {
    int nseg = seg.empty() ? 0 : (int) seg.size() - 1;
    if (nseg > 0) {
        int a = 0; while (a + 1 < nseg && seg[a + 1] <= i) a++;
        lo = seg[a]; hi = seg[a + 1]; if (causal) hi = i + 1;
    } else { lo = 0; hi = causal ? std::min(kvLen, qoff + i + 1) : kvLen; }
}
struct Res { std::vector<float> y, lse, dq, dk, dv; };
static double rel(const std::vector<float>& a, const std::vector<float>& b) {
    double m = 0, d = 0;
    for (size_t i = 0; i < a.size(); i++) { m = std::max(m, (double) std::fabs(b[i])); d = std::max(d, (double) std::fabs(a[i] - b[i])); }
    return m > 0 ? d / m : d;
}
static double relFinite(const std::vector<float>& a, const std::vector<float>& b) {   // lse: -inf where no keys
    double m = 0, d = 0;
    for (size_t i = 0; i < a.size(); i++) {
        if (std::isinf(a[i]) || std::isinf(b[i])) { if (a[i] != b[i]) return 1e9; continue; }
        m = std::max(m, (double) std::fabs(b[i])); d = std::max(d, (double) std::fabs(a[i] - b[i]));
    }
    return m > 0 ? d / m : d;
}

int main(int argc, char** argv) {
    struct Case { int n, kvLen, hq, hkv, d; std::vector<int> seg; int causal, qoff; float qscale; };
    std::vector<Case> cases = {
        {150, 150, 4, 2, 128, {}, 1, 0, 1.f},
        {200, 200, 2, 1, 128, {0, 5, 100, 200}, 1, 0, 1.f},
        {70, 110, 2, 2, 64, {}, 1, 40, 1.f},
        {1, 1, 2, 1, 128, {}, 1, 0, 1.f},
        {160, 160, 2, 2, 128, {0, 64, 130, 160}, 0, 0, 3.f},
        {1, 37, 2, 2, 128, {}, 1, 36, 1.f},
        {130, 130, 2, 1, 128, {}, 0, 0, 4.f},
        {257, 257, 2, 1, 128, {0, 5, 100, 257}, 1, 0, 1.f},
        {100, 300, 2, 1, 128, {}, 1, 200, 1.f},
        {50, 300, 2, 2, 128, {}, 0, 0, 2.f},
        {192, 192, 7, 1, 128, {}, 1, 0, 1.f},
        {90, 90, 2, 1, 64, {0, 33, 90}, 1, 0, 1.f},
        {20, 20, 2, 1, 128, {0, 3, 4, 20}, 0, 0, 1.f},
    };
    int only = argc > 1 ? atoi(argv[1]) : -1;
    bool fail = false;
    for (size_t ci = 0; ci < cases.size(); ci++) {
        if (only >= 0 && (int) ci != only) continue;
        Case& c = cases[ci];
        int n = c.n, kvLen = c.kvLen, hq = c.hq, hkv = c.hkv, D = c.d, kr = kvLen + 3;
        std::mt19937 rng(11 + ci);
        std::normal_distribution<float> nd;
        auto rnd = [&](size_t cnt, float sc) { std::vector<u16> v(cnt); for (auto& x : v) x = emu_bf16(nd(rng) * sc); return v; };
        std::vector<u16> q = rnd((size_t) n * hq * D, c.qscale), k = rnd((size_t) kr * hkv * D, 1), v = rnd((size_t) kr * hkv * D, 1),
                         dO = rnd((size_t) n * hq * D, 1);
        float scale = 1.f / std::sqrt((float) D);
        int nseg = c.seg.empty() ? 0 : (int) c.seg.size() - 1;
        const int* seg = c.seg.empty() ? nullptr : c.seg.data();
        // reference in double
        Res ref; ref.y.assign((size_t) n * hq * D, 0); ref.lse.assign((size_t) hq * n, 0);
        ref.dq.assign((size_t) n * hq * D, 0); ref.dk.assign((size_t) kr * hkv * D, 0); ref.dv.assign((size_t) kr * hkv * D, 0);
        for (int h = 0; h < hq; h++) {
            int kh = h / (hq / hkv);
            for (int i = 0; i < n; i++) {
                int lo, hi; key_range(i, kvLen, c.seg, c.causal, c.qoff, lo, hi);
                std::vector<double> s(std::max(hi - lo, 0));
                double mx = -INFINITY;
                for (int j = lo; j < hi; j++) {
                    double a = 0; for (int e = 0; e < D; e++) a += (double) emu_f(q[(size_t) i * hq * D + h * D + e]) * emu_f(k[(size_t) j * hkv * D + kh * D + e]);
                    s[j - lo] = a * scale; mx = std::max(mx, s[j - lo]);
                }
                double sum = 0; for (auto& x : s) { x = std::exp(x - mx); sum += x; }
                ref.lse[(size_t) h * n + i] = hi > lo ? (float) ((mx + std::log(sum)) / std::log(2.0)) : -INFINITY;
                std::vector<double> o(D, 0);
                for (int j = lo; j < hi; j++) for (int e = 0; e < D; e++) o[e] += s[j - lo] / sum * emu_f(v[(size_t) j * hkv * D + kh * D + e]);
                for (int e = 0; e < D; e++) ref.y[(size_t) i * hq * D + h * D + e] = (float) o[e];
                // backward: dP = dO v, dS = P (dP - sum dO o)
                double dd = 0; for (int e = 0; e < D; e++) dd += (double) emu_f(dO[(size_t) i * hq * D + h * D + e]) * o[e];
                for (int j = lo; j < hi; j++) {
                    double p = s[j - lo] / sum, dp = 0;
                    for (int e = 0; e < D; e++) dp += (double) emu_f(dO[(size_t) i * hq * D + h * D + e]) * emu_f(v[(size_t) j * hkv * D + kh * D + e]);
                    double ds = p * (dp - dd);
                    for (int e = 0; e < D; e++) {
                        ref.dv[(size_t) j * hkv * D + kh * D + e] += (float) (p * emu_f(dO[(size_t) i * hq * D + h * D + e]));
                        ref.dq[(size_t) i * hq * D + h * D + e] += (float) (scale * ds * emu_f(k[(size_t) j * hkv * D + kh * D + e]));
                        ref.dk[(size_t) j * hkv * D + kh * D + e] += (float) (scale * ds * emu_f(q[(size_t) i * hq * D + h * D + e]));
                    }
                }
            }
        }
        Res r[2];
        for (int var = 0; var < 2; var++) {
            Res& x = r[var];
            x.y.assign((size_t) n * hq * D, 7.f); x.lse.assign((size_t) hq * n, 7.f);
            std::vector<u16> yb((size_t) n * hq * D);
            float* Y = x.y.data(); float* L = x.lse.data(); u16* YB = yb.data();
            if (var == 0)
                emu_launch((n + 63) / 64, hq, 128, [&] {
                    if (D == 128) oldk::flash_fwd_128(q.data(), k.data(), v.data(), Y, YB, L, n, kvLen, hq, hkv, scale, seg, nseg, c.causal, c.qoff);
                    else oldk::flash_fwd_64(q.data(), k.data(), v.data(), Y, YB, L, n, kvLen, hq, hkv, scale, seg, nseg, c.causal, c.qoff);
                });
            else
                emu_launch(hq, (n + 127) / 128, 128, [&] {
                    if (D == 128) newk::flash_fwd2_128(q.data(), k.data(), v.data(), Y, YB, L, n, kvLen, hq, hkv, scale, seg, nseg, c.causal, c.qoff);
                    else newk::flash_fwd2_64(q.data(), k.data(), v.data(), Y, YB, L, n, kvLen, hq, hkv, scale, seg, nseg, c.causal, c.qoff);
                });
            for (size_t i = 0; i < yb.size(); i++) if (yb[i] != emu_bf16(x.y[i])) { printf("yb mismatch\n"); fail = true; break; }
            // dvec from this variant's output
            std::vector<float> dvec((size_t) hq * n);
            for (int h = 0; h < hq; h++) for (int i = 0; i < n; i++) {
                float s = 0; for (int e = 0; e < D; e++) s += emu_f(dO[(size_t) i * hq * D + h * D + e]) * x.y[(size_t) i * hq * D + h * D + e];
                dvec[(size_t) h * n + i] = s;
            }
            x.dq.assign((size_t) n * hq * D, 0.f); x.dk.assign((size_t) kr * hkv * D, 0.f); x.dv.assign((size_t) kr * hkv * D, 0.f);
            float *DQ = x.dq.data(), *DK = x.dk.data(), *DV = x.dv.data();
            if (var == 0)
                emu_launch((kvLen + 63) / 64, hq, 128, [&] {
                    if (D == 128) oldk::flash_bwd_128(q.data(), k.data(), v.data(), dO.data(), L, dvec.data(), DQ, DK, DV, n, kvLen, hq, hkv, scale, seg, nseg, c.causal, c.qoff);
                    else oldk::flash_bwd_64(q.data(), k.data(), v.data(), dO.data(), L, dvec.data(), DQ, DK, DV, n, kvLen, hq, hkv, scale, seg, nseg, c.causal, c.qoff);
                });
            else
                emu_launch(hq, (kvLen + 127) / 128, 256, [&] {
                    if (D == 128) newk::flash_bwd2_128(q.data(), k.data(), v.data(), dO.data(), L, dvec.data(), DQ, DK, DV, n, kvLen, hq, hkv, scale, seg, nseg, c.causal, c.qoff);
                    else newk::flash_bwd2_64(q.data(), k.data(), v.data(), dO.data(), L, dvec.data(), DQ, DK, DV, n, kvLen, hq, hkv, scale, seg, nseg, c.causal, c.qoff);
                });
        }
        printf("case %zu n=%d kv=%d heads %d/%d d=%d nseg=%d causal=%d qoff=%d\n", ci, n, kvLen, hq, hkv, D, nseg, c.causal, c.qoff);
        const char* nm[] = {"y", "lse", "dq", "dk", "dv"};
        for (int f = 0; f < 5; f++) {
            auto get = [&](Res& x) -> std::vector<float>& { return f == 0 ? x.y : f == 1 ? x.lse : f == 2 ? x.dq : f == 3 ? x.dk : x.dv; };
            double on = f == 1 ? relFinite(get(r[1]), get(r[0])) : rel(get(r[1]), get(r[0]));
            double oref = f == 1 ? relFinite(get(r[0]), get(ref)) : rel(get(r[0]), get(ref));
            double nref = f == 1 ? relFinite(get(r[1]), get(ref)) : rel(get(r[1]), get(ref));
            bool bad = on > 2e-3 || nref > 1.5e-2;
            fail |= bad;
            printf("  %-3s new-old %.2e  old-ref %.2e  new-ref %.2e%s\n", nm[f], on, oref, nref, bad ? "  <-- BAD" : "");
        }
        fflush(stdout);
    }
    printf(fail ? "FAIL\n" : "OK\n");
    return fail;
}
