/* emu_attention.cpp — the flash-style attention (attention_k.cuh: forward, dQ, dK/dV) run
 * under the emulator with launch.c's plan, for every head size the backend has (16, 32, 64,
 * 128) and lengths T that leave ragged tiles: fp32 against a double reference (out, the
 * saved log-sum-exp, dq, dk, dv), and bf16 / fp16 against the CPU backend.
 * Tolerances: fp32 sums of up to T*hs products in another order than the reference:
 * 1e-4 absolute + relative on values of order 1 (the errors seen are ~1e-6; a wrong tile
 * bound or a lost key gives errors of order 0.1). 16-bit: both sides round their inputs
 * alike but their outputs once each, after different fp32 sums: two units of the format's
 * last place (bf16 2/256, fp16 2/2048) relative, with an absolute floor of the same size
 * times 1e-2 of the largest value for the outputs, and (gradients, which cancel) 1/64
 * (bf16) or 1/512 (fp16) relative and 1/128 or 1/1024 absolute. */
#include "emu.h"

#include <math.h>
#include <stdio.h>

#include "attention_k.cuh"

#include "emu_test.h"
#include "test.h"

#define EMU_OK(rc) CHECK_MSG((rc) == 0, "emulated launch failed: %s", emu_error())

/* the launcher's att_launch: the opt-in when the plan asks for it */
template <typename K>
static int att_launch(K kernel, const struct cuda_launch &l, const att_args &a)
{
    if (l.grid_x == 0) return 0;
    return l.smem_optin ? emu_launch_optin((unsigned)l.grid_x, l.threads, l.smem, kernel, a)
                        : emu_launch((unsigned)l.grid_x, l.threads, l.smem, kernel, a);
}

/* plans with the opt-in maximum of an A100/H100 (227 KiB) and runs forward and backward on
 * buffers of dtype dt (lse and D are fp32) */
template <int HS>
static bool run_attention(const void *qkv, void *out, float *lse, const void *dout, void *dqkv,
                          float *D, enum kdtype dt, int B, int NH, int T)
{
    att_args a{};
    a.qkv = qkv;
    a.qkv_dt = dt;
    a.out = out;
    a.out_dt = dt;
    a.lse = lse;
    a.dout = dout;
    a.dout_dt = dt;
    a.dqkv = dqkv;
    a.dqkv_dt = dt;
    a.D = D;
    a.T = T;
    a.NH = NH;
    a.Cq = NH * HS;
    struct cuda_attn_plan p;
    char err[512];
    const int rc = cuda_attention_plan(B, NH, T, HS, 227 * 1024, &p, err, sizeof err);
    CHECK_MSG(rc == 0, "cuda_attention_plan: %s", err);
    if (rc) return false;
    a.scale = 1.0f / sqrtf((float)HS);
    a.BH = p.BH;
    a.n_tiles = p.n_tiles;
    int e = att_launch(attention_fwd_kernel<HS>, p.fwd, a);
    EMU_OK(e);
    if (!e) EMU_OK(e = att_launch(attention_bwd_q_kernel<HS>, p.bwd_q, a));
    if (!e) EMU_OK(e = att_launch(attention_bwd_kv_kernel<HS>, p.bwd_kv, a));
    return e == 0;
}

template <int HS> static void fp32_case(int B, int NH, int T)
{
    const int Cq = NH * HS;
    const int64_t BT = (int64_t)B * T;
    std::vector<float> qkv(BT * 3 * Cq), dout(BT * Cq), out(BT * Cq, NAN), dqkv(BT * 3 * Cq, NAN);
    std::vector<float> lse((size_t)B * NH * T, NAN), D((size_t)B * NH * T, NAN);
    emu_rng r(1000 + HS + T);
    for (auto &x : qkv) x = 1.5f * r.uniform();
    for (auto &x : dout) x = r.uniform();
    if (!run_attention<HS>(qkv.data(), out.data(), lse.data(), dout.data(), dqkv.data(), D.data(),
                           KDT_F32, B, NH, T))
        return;
    /* the double reference */
    const double sc = 1.0 / sqrt((double)HS), tol = 1e-4;
    double worst = 0;
    const char *worst_what = "";
    auto near = [&](double ref, double got, const char *what) {
        const double e = fabs(ref - got) / (1.0 + fabs(ref));
        if (!(e <= worst)) {
            worst = e != e ? INFINITY : e;
            worst_what = what;
        }
    };
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            auto Q = [&](int t, int d) {
                return (double)qkv[((int64_t)b * T + t) * 3 * Cq + h * HS + d];
            };
            auto K = [&](int t, int d) {
                return (double)qkv[((int64_t)b * T + t) * 3 * Cq + Cq + h * HS + d];
            };
            auto V = [&](int t, int d) {
                return (double)qkv[((int64_t)b * T + t) * 3 * Cq + 2 * Cq + h * HS + d];
            };
            auto DO = [&](int t, int d) {
                return (double)dout[((int64_t)b * T + t) * Cq + h * HS + d];
            };
            std::vector<double> P((size_t)T * T, 0), dP((size_t)T * T, 0), Dr(T);
            std::vector<double> dq((size_t)T * HS, 0), dk((size_t)T * HS, 0), dv((size_t)T * HS, 0);
            for (int i = 0; i < T; i++) {
                double mx = -INFINITY;
                for (int j = 0; j <= i; j++) {
                    double s = 0;
                    for (int d = 0; d < HS; d++) s += Q(i, d) * K(j, d);
                    P[(size_t)i * T + j] = s * sc;
                    mx = fmax(mx, s * sc);
                }
                double sum = 0;
                for (int j = 0; j <= i; j++) sum += exp(P[(size_t)i * T + j] - mx);
                const double l = mx + log(sum);
                near(l, lse[((size_t)b * NH + h) * T + i], "lse");
                for (int j = 0; j <= i; j++) P[(size_t)i * T + j] = exp(P[(size_t)i * T + j] - l);
                for (int d = 0; d < HS; d++) {
                    double o = 0;
                    for (int j = 0; j <= i; j++) o += P[(size_t)i * T + j] * V(j, d);
                    near(o, out[((int64_t)b * T + i) * Cq + h * HS + d], "out");
                }
                double dd = 0;
                for (int j = 0; j <= i; j++) {
                    double s = 0;
                    for (int d = 0; d < HS; d++) s += DO(i, d) * V(j, d);
                    dP[(size_t)i * T + j] = s;
                    dd += s * P[(size_t)i * T + j];
                }
                Dr[i] = dd;
            }
            for (int i = 0; i < T; i++)
                for (int j = 0; j <= i; j++) {
                    const double pij = P[(size_t)i * T + j],
                                 ds = pij * (dP[(size_t)i * T + j] - Dr[i]) * sc;
                    for (int d = 0; d < HS; d++) {
                        dq[(size_t)i * HS + d] += ds * K(j, d);
                        dk[(size_t)j * HS + d] += ds * Q(i, d);
                        dv[(size_t)j * HS + d] += pij * DO(i, d);
                    }
                }
            for (int t = 0; t < T; t++)
                for (int d = 0; d < HS; d++) {
                    const int64_t row = ((int64_t)b * T + t) * 3 * Cq + h * HS + d;
                    near(dq[(size_t)t * HS + d], dqkv[row], "dq");
                    near(dk[(size_t)t * HS + d], dqkv[row + Cq], "dk");
                    near(dv[(size_t)t * HS + d], dqkv[row + 2 * Cq], "dv");
                }
        }
    CHECK_MSG(
        worst <= tol,
        "attention fp32 B %d NH %d T %d hs %d: %s off the double reference by %.3g (limit %g)", B,
        NH, T, HS, worst_what, worst, tol);
}

static void test_attention_fp32_matches_double_reference_every_head_size(void)
{
    fp32_case<16>(2, 2, 17);
    fp32_case<16>(1, 1, 1);
    fp32_case<32>(1, 2, 33);
    fp32_case<64>(1, 2, 50);
    fp32_case<128>(1, 1, 40);
}

/* worst excess of |got - cpu| over atol * max(amax, 1) + rtol |cpu| (<= 0 passes) */
static double excess(const std::vector<float> &g, const std::vector<float> &c, double rtol,
                     double atol)
{
    double amax = 0, w = -1e30;
    for (float x : c) amax = fmax(amax, fabs(x));
    for (size_t i = 0; i < c.size(); i++) {
        const double d = fabs((double)g[i] - c[i]);
        const double e = d - (atol * (amax > 1 ? amax : 1) + rtol * fabs(c[i]));
        w = e != e ? INFINITY : fmax(w, e);
    }
    return w;
}

template <int HS> static void half_case(enum kdtype dt, int B, int NH, int T)
{
    struct backend *cpu = emu_cpu();
    const struct kernels *k = backend_kernels(cpu);
    const int Cq = NH * HS;
    const int64_t BT = (int64_t)B * T, rows = (int64_t)B * NH * T;
    emu_rng r(2000 + HS + T);
    std::vector<float> qf(BT * 3 * Cq), df(BT * Cq);
    for (auto &x : qf) x = 1.5f * r.uniform();
    for (auto &x : df) x = r.uniform();
    std::vector<uint8_t> q = emu_from_f32(qf, dt), d = emu_from_f32(df, dt);
    const size_t es = kdtype_size(dt);
    /* the CPU backend keeps T x T probabilities in att and a T x T scratch */
    std::vector<uint8_t> oc(BT * Cq * es), gc(BT * 3 * Cq * es), att((size_t)(rows * T) * es);
    std::vector<float> scratch((size_t)(rows * T));
    k->attention_fwd(cpu, tensor_2d(oc.data(), dt, BT, Cq), tensor_2d(att.data(), dt, rows, T),
                     tensor_2d(q.data(), dt, BT, 3 * Cq), B, NH);
    k->attention_bwd(cpu, tensor_2d(gc.data(), dt, BT, 3 * Cq),
                     tensor_2d(scratch.data(), KDT_F32, rows, T), tensor_2d(d.data(), dt, BT, Cq),
                     tensor_2d(q.data(), dt, BT, 3 * Cq), tensor_2d(att.data(), dt, rows, T), B,
                     NH);
    std::vector<uint8_t> og(oc.size(), 0xff), gg(gc.size(), 0xff);
    std::vector<float> lse(rows, NAN), D(rows, NAN);
    if (!run_attention<HS>(q.data(), og.data(), lse.data(), d.data(), gg.data(), D.data(), dt, B,
                           NH, T))
        return;
    const bool bf = dt == KDT_BF16;
    const double eo = excess(emu_to_f32(og.data(), dt, BT * Cq), emu_to_f32(oc.data(), dt, BT * Cq),
                             bf ? 1e-4 + 2.0 / 256 : 1e-4 + 2.0 / 2048,
                             bf ? 1e-5 + 2.0 / 256 * 1e-2 : 1e-5 + 2.0 / 2048 * 1e-2);
    const double eg =
        excess(emu_to_f32(gg.data(), dt, BT * 3 * Cq), emu_to_f32(gc.data(), dt, BT * 3 * Cq),
               bf ? 1.0 / 64 : 1.0 / 512, bf ? 1.0 / 128 : 1.0 / 1024);
    CHECK_MSG(eo <= 0 && eg <= 0,
              "attention %s B %d NH %d T %d hs %d vs the CPU: out excess %.3g, dqkv excess %.3g",
              kdtype_name(dt), B, NH, T, HS, eo, eg);
}

static void test_attention_bf16_fp16_match_cpu(void)
{
    const enum kdtype dts[] = {KDT_BF16, KDT_F16};
    for (enum kdtype dt : dts) {
        half_case<16>(dt, 2, 2, 17);
        half_case<32>(dt, 1, 2, 33);
        half_case<64>(dt, 1, 1, 45);
        half_case<128>(dt, 1, 1, 40);
    }
}

void emu_suite_attention(int counts[3])
{
    RUN(test_attention_fp32_matches_double_reference_every_head_size);
    RUN(test_attention_bf16_fp16_match_cpu);
    EMU_SUITE_END(counts);
}
