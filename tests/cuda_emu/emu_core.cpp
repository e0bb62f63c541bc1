/* emu_core.cpp — the element-wise kernels (elementwise_k.cuh) and the optimizers
 * (optimizers_k.cuh) run under the emulator, against the CPU backend. Both files are built
 * with -fmad=false on the GPU and promise the CPU's results bit for bit (NaN for NaN: the
 * payload is the hardware's); the sums of squares are doubles summed in another order, so
 * they agree to a relative 1e-12. Launch shapes are the launchers' (elementwise.cu,
 * optimizers.cu). */
#include "emu.h"

#include <math.h>
#include <stdio.h>

#include "elementwise_k.cuh"
#include "optimizers_k.cuh"

#include "emu_test.h"
#include "test.h"

#define EMU_OK(rc) CHECK_MSG((rc) == 0, "emulated launch failed: %s", emu_error())

static unsigned ew_grid(int64_t n) /* elementwise.cu's grid_for */
{
    int64_t g = (n + EW_THREADS - 1) / EW_THREADS;
    return (unsigned)(g < 1 ? 1 : g > EW_MAX_BLOCKS ? EW_MAX_BLOCKS : g);
}

/* values that test the rounding: ties of bf16 and fp16, their largest finite values,
 * fp16 subnormals, NaN, inf, signed zero, then random ones of every magnitude */
static std::vector<float> special_values(int64_t n, uint64_t seed)
{
    const float sp[] = {1.0f + 0x1p-8f,
                        1.0f + 3 * 0x1p-8f,
                        -(1.0f + 0x1p-8f),
                        1.0f + 0x1p-11f,
                        1.0f + 3 * 0x1p-11f,
                        65504.0f,
                        65519.0f,
                        65520.0f,
                        -65520.0f,
                        3.3895e38f,
                        0x1p-24f,
                        0x1p-25f,
                        3 * 0x1p-26f,
                        0x1p-15f + 0x1p-25f,
                        5.96e-8f,
                        -0.0f,
                        NAN,
                        -NAN,
                        INFINITY,
                        -INFINITY,
                        1e-40f,
                        0x1.fffffep127f};
    std::vector<float> v(n);
    emu_rng r(seed);
    for (int64_t i = 0; i < n; i++) {
        const int k = (int)(sizeof sp / sizeof sp[0]);
        v[i] = i < k ? sp[i] : r.uniform() * ldexpf(1.0f, (int)(r.uniform() * 40.0f));
    }
    return v;
}

static std::vector<uint8_t> as_dt(const std::vector<float> &f, enum kdtype dt)
{
    return emu_from_f32(f, dt);
}

static void test_convert_matches_cpu_bits_incl_nan_inf_ties(void)
{
    const int64_t n = 3 * 256 + 29;
    const std::vector<float> f = special_values(n, 1);
    const enum kdtype dts[] = {KDT_F32, KDT_BF16, KDT_F16};
    for (enum kdtype s : dts)
        for (enum kdtype d : dts) {
            if (s == d) continue; /* the launcher copies: no kernel */
            std::vector<uint8_t> src = as_dt(f, s), cpu(n * kdtype_size(d)), gpu(cpu.size());
            backend_kernels(emu_cpu())->convert(emu_cpu(), tensor_1d(cpu.data(), d, n),
                                                tensor_1d(src.data(), s, n));
            EMU_OK(emu_launch(ew_grid(n), EW_THREADS, 0, convert_kernel, (void *)gpu.data(), d,
                              (const void *)src.data(), s, n));
            int64_t i = emu_first_diff(gpu.data(), cpu.data(), d, n);
            CHECK_MSG(i < 0, "convert %s -> %s: element %lld differs from the CPU's (input %a)",
                      kdtype_name(s), kdtype_name(d), (long long)i, (double)f[i < 0 ? 0 : i]);
            /* a grid capped below the data (EW_MAX_BLOCKS on large tensors): grid stride */
            std::vector<uint8_t> g2(cpu.size());
            EMU_OK(emu_launch(2, EW_THREADS, 0, convert_kernel, (void *)g2.data(), d,
                              (const void *)src.data(), s, n));
            i = emu_first_diff(g2.data(), cpu.data(), d, n);
            CHECK_MSG(i < 0, "convert %s -> %s on 2 blocks: element %lld differs", kdtype_name(s),
                      kdtype_name(d), (long long)i);
        }
}

static void test_scale_residual_accumulate_match_cpu_bits(void)
{
    const struct kernels *k = backend_kernels(emu_cpu());
    const int64_t n = 5 * 256 + 3;
    const enum kdtype dts[] = {KDT_F32, KDT_BF16, KDT_F16};
    for (enum kdtype dt : dts) {
        std::vector<float> fa = special_values(n, 2), fc = special_values(n, 3);
        std::vector<uint8_t> a = as_dt(fa, dt), c = as_dt(fc, dt);
        /* scale, in place */
        std::vector<uint8_t> xc = a, xg = a;
        k->scale(emu_cpu(), tensor_1d(xc.data(), dt, n), 0.7310586f);
        EMU_OK(emu_launch(ew_grid(n), EW_THREADS, 0, scale_kernel, (void *)xg.data(), dt,
                          0.7310586f, n));
        int64_t i = emu_first_diff(xg.data(), xc.data(), dt, n);
        CHECK_MSG(i < 0, "scale %s: element %lld differs", kdtype_name(dt), (long long)i);
        /* residual: out = a + c (out in each dtype) */
        for (enum kdtype od : dts) {
            std::vector<uint8_t> oc(n * kdtype_size(od)), og(oc.size());
            k->residual_fwd(emu_cpu(), tensor_1d(oc.data(), od, n), tensor_1d(a.data(), dt, n),
                            tensor_1d(c.data(), dt, n));
            EMU_OK(emu_launch(ew_grid(n), EW_THREADS, 0, residual_kernel, (void *)og.data(), od,
                              (const void *)a.data(), dt, (const void *)c.data(), dt, n));
            i = emu_first_diff(og.data(), oc.data(), od, n);
            CHECK_MSG(i < 0, "residual %s + %s -> %s: element %lld differs", kdtype_name(dt),
                      kdtype_name(dt), kdtype_name(od), (long long)i);
        }
        /* accumulate: fp32 dst += src */
        std::vector<float> dc = special_values(n, 4), dg = dc;
        k->accumulate(emu_cpu(), tensor_1d(dc.data(), KDT_F32, n), tensor_1d(a.data(), dt, n));
        EMU_OK(emu_launch(ew_grid(n), EW_THREADS, 0, accumulate_kernel, dg.data(),
                          (const void *)a.data(), dt, n));
        i = emu_first_diff(dg.data(), dc.data(), KDT_F32, n);
        CHECK_MSG(i < 0, "accumulate %s: element %lld differs", kdtype_name(dt), (long long)i);
    }
}

static void test_count_nonfinite_and_sumsq_match_cpu(void)
{
    const struct kernels *k = backend_kernels(emu_cpu());
    const int64_t sizes[] = {1, 255, 256 * 7 + 100}; /* the last: > 1024 blocks */
    const enum kdtype dts[] = {KDT_F32, KDT_BF16, KDT_F16};
    for (int64_t n : sizes)
        for (enum kdtype dt : dts) {
            std::vector<float> f(n);
            emu_rng r((uint64_t)n);
            for (auto &v : f) v = r.uniform() * 300.0f; /* fp16 overflows above 65504: x^2 fine */
            for (int64_t j = 3; j < n; j += 997) f[j] = j % 2 ? NAN : -INFINITY;
            std::vector<uint8_t> x = as_dt(f, dt);
            unsigned long long cnt = 0;
            EMU_OK(emu_launch(ew_grid(n), EW_THREADS, 0, nonfinite_kernel, &cnt,
                              (const void *)x.data(), dt, n));
            const int64_t want = k->count_nonfinite(emu_cpu(), tensor_1d(x.data(), dt, n));
            CHECK_MSG((int64_t)cnt == want, "count_nonfinite %s n %lld: %llu, the CPU %lld",
                      kdtype_name(dt), (long long)n, cnt, (long long)want);
            /* sumsq on finite data (the non-finite ones cleared) */
            for (int64_t j = 3; j < n; j += 997) f[j] = 1.5f;
            x = as_dt(f, dt);
            const int64_t g = (n + EW_THREADS - 1) / EW_THREADS;
            const unsigned blocks = (unsigned)(g > SUMSQ_BLOCKS ? SUMSQ_BLOCKS : g);
            std::vector<double> part(blocks + 1, NAN);
            EMU_OK(emu_launch(blocks, EW_THREADS, 0, sumsq_partial_kernel, part.data() + 1,
                              (const void *)x.data(), dt, n));
            EMU_OK(emu_launch(1, 1024, 0, sum_partials_f64, part.data(),
                              (const double *)part.data() + 1, (int64_t)blocks));
            const double cpu = k->sumsq(emu_cpu(), tensor_1d(x.data(), dt, n));
            CHECK_CLOSE(part[0], cpu, 1e-12, 0.0);
            /* a grid smaller than the data, as when n > SUMSQ_BLOCKS * 256 (too slow to
             * emulate at that size): each thread strides over several elements */
            if (n > 4 * EW_THREADS) {
                std::vector<double> p4(5, NAN);
                EMU_OK(emu_launch(4, EW_THREADS, 0, sumsq_partial_kernel, p4.data() + 1,
                                  (const void *)x.data(), dt, n));
                EMU_OK(emu_launch(1, 1024, 0, sum_partials_f64, p4.data(),
                                  (const double *)p4.data() + 1, (int64_t)4));
                CHECK_CLOSE(p4[0], cpu, 1e-12, 0.0);
                unsigned long long c4 = 0;
                EMU_OK(emu_launch(3, EW_THREADS, 0, nonfinite_kernel, &c4, (const void *)x.data(),
                                  dt, n));
                CHECK(c4 == 0);
            }
        }
}

/* ---------------------------------------------------------------------------------- */
/* optimizers                                                                           */

/* one optimizer state of n elements in form f (0 fp32, 1 bf16, 2 int8), host memory */
struct host_state {
    std::vector<uint8_t> q;
    std::vector<float> scale;
    enum kdtype dt;
    int64_t n;
    struct kstate ks()
    {
        struct kstate s;
        memset(&s, 0, sizeof s);
        if (dt == KDT_I32) {
            s.q = tensor_1d(q.data(), KDT_I32, (n + 3) / 4);
            s.scale = tensor_1d(scale.data(), KDT_F32, (int64_t)scale.size());
        } else
            s.q = tensor_1d(q.data(), dt, n);
        return s;
    }
    dstate ds(int role)
    {
        dstate d = {dt == KDT_F32    ? SF_F32
                    : dt == KDT_BF16 ? SF_BF16
                                     : SF_I8,
                    q.data(), dt == KDT_I32 ? scale.data() : NULL, role};
        return d;
    }
};

static host_state make_state(int form, int64_t n, int role, uint64_t seed)
{
    host_state s;
    s.n = n;
    s.dt = form == 0 ? KDT_F32 : form == 1 ? KDT_BF16 : KDT_I32;
    s.q.assign(form == 2 ? ((n + 3) / 4) * 4 : n * kdtype_size(s.dt), 0);
    if (form == 2) s.scale.assign((n + KSTATE_BLOCK - 1) / KSTATE_BLOCK, 0.0f);
    std::vector<float> f(n);
    emu_rng r(seed);
    for (auto &v : f) v = role ? 1e-3f * fabsf(r.uniform()) : 1e-2f * r.uniform();
    backend_kernels(emu_cpu())->state_from_f32(emu_cpu(), s.ks(), tensor_1d(f.data(), KDT_F32, n),
                                               role);
    return s;
}

static void check_state(const host_state &g, const host_state &c, const char *what, int form)
{
    const int64_t i = emu_first_diff(g.q.data(), c.q.data(),
                                     form == 0   ? KDT_F32
                                     : form == 1 ? KDT_BF16
                                                 : KDT_I32,
                                     form == 2 ? (int64_t)g.q.size() : g.n);
    CHECK_MSG(i < 0, "%s (form %d): element %lld of the state differs from the CPU's", what, form,
              (long long)i);
    if (form == 2) {
        const int64_t j =
            emu_first_diff(g.scale.data(), c.scale.data(), KDT_F32, (int64_t)g.scale.size());
        CHECK_MSG(j < 0, "%s: the scale of block %lld differs from the CPU's", what, (long long)j);
    }
}

static void bias_corr(float b1, float b2, int t, float *c1, float *c2) /* optimizers.cu's */
{
    *c1 = (float)(1.0 / (1.0 - pow(b1, t)));
    *c2 = (float)(1.0 / (1.0 - pow(b2, t)));
}

/* n: three full state blocks and a ragged tail; grad holds a NaN in block 1 (its int8
 * scale becomes NaN) and an inf in block 2 of the second variant */
static void make_pg(int64_t n, std::vector<float> &p, std::vector<float> &g, bool nonfinite)
{
    emu_rng r(77);
    p.resize(n);
    g.resize(n);
    for (int64_t i = 0; i < n; i++) {
        p[i] = r.uniform();
        g[i] = 0.1f * r.uniform();
    }
    if (nonfinite) {
        g[256 + 5] = NAN;
        g[512 + 9] = INFINITY;
    }
}

static void test_adamw_and_adamw_state_match_cpu_bits(void)
{
    const struct kernels *k = backend_kernels(emu_cpu());
    const int64_t n = 3 * 256 + 41;
    const float lr = 1e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gs = 0.5f;
    for (int nonfinite = 0; nonfinite < 2; nonfinite++)
        for (int t = 1; t <= 3; t += 2) {
            std::vector<float> p, g;
            make_pg(n, p, g, nonfinite);
            float c1, c2;
            bias_corr(b1, b2, t, &c1, &c2);
            /* plain fp32 adamw */
            {
                host_state m = make_state(0, n, 0, 5), v = make_state(0, n, 1, 6);
                host_state mg = m, vg = v;
                std::vector<float> pc = p, pg = p;
                k->adamw(emu_cpu(), tensor_1d(pc.data(), KDT_F32, n),
                         tensor_1d(g.data(), KDT_F32, n), m.ks().q, v.ks().q, lr, b1, b2, eps, wd,
                         gs, t);
                const int64_t blocks = (n + QB - 1) / QB;
                EMU_OK(emu_launch((unsigned)blocks, QB, 0, adamw_kernel, pg.data(),
                                  (const float *)g.data(), (float *)mg.q.data(),
                                  (float *)vg.q.data(), n, lr, b1, b2, eps, wd, gs, c1, c2));
                const int64_t i = emu_first_diff(pg.data(), pc.data(), KDT_F32, n);
                CHECK_MSG(i < 0, "adamw t %d: p[%lld] differs", t, (long long)i);
                check_state(mg, m, "adamw m", 0);
                check_state(vg, v, "adamw v", 0);
            }
            /* (m, v) forms: bf16, int8, and mixed ones (the launcher sends only fp32/fp32
             * to adamw_kernel) */
            const int forms[4][2] = {{1, 1}, {2, 2}, {0, 1}, {2, 0}};
            for (const auto &fm : forms) {
                const int form = fm[0], vform = fm[1];
                host_state m = make_state(form, n, 0, 5), v = make_state(vform, n, 1, 6);
                host_state mg = m, vg = v;
                std::vector<float> pc = p, pg = p;
                k->adamw_state(emu_cpu(), tensor_1d(pc.data(), KDT_F32, n),
                               tensor_1d(g.data(), KDT_F32, n), m.ks(), v.ks(), lr, b1, b2, eps, wd,
                               gs, t);
                EMU_OK(emu_launch((unsigned)((n + QB - 1) / QB), QB, 0, adamw_state_kernel,
                                  pg.data(), (const float *)g.data(), mg.ds(0), vg.ds(1), n, lr, b1,
                                  b2, eps, wd, gs, c1, c2));
                const int64_t i = emu_first_diff(pg.data(), pc.data(), KDT_F32, n);
                CHECK_MSG(i < 0, "adamw_state forms %d/%d t %d nonfinite %d: p[%lld] differs", form,
                          vform, t, nonfinite, (long long)i);
                check_state(mg, m, "adamw_state m", form);
                check_state(vg, v, "adamw_state v", vform);
            }
        }
}

static void test_lamb_lars_sgd_and_state_conversions_match_cpu(void)
{
    const struct kernels *k = backend_kernels(emu_cpu());
    const int64_t n = 4 * 256 + 100;
    const float lr = 2e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-6f, wd = 0.01f, gs = 1.0f;
    const int t = 2;
    float c1, c2;
    bias_corr(b1, b2, t, &c1, &c2);
    for (int nonfinite = 0; nonfinite < 2; nonfinite++)
        for (int form = 0; form <= 2; form++) {
            std::vector<float> p, g;
            make_pg(n, p, g, nonfinite);
            const int64_t nb = (n + QB - 1) / QB;
            /* LAMB: moments (owned range inside the buffer, ragged), then apply */
            {
                host_state m = make_state(form, n, 0, 8), v = make_state(form, n, 1, 9);
                host_state mg = m, vg = v;
                std::vector<float> pc = p, pg = p;
                const int64_t own0 = 100, own_n = n - 150;
                const double sc = k->lamb_moments(emu_cpu(), tensor_1d(pc.data(), KDT_F32, n),
                                                  tensor_1d(g.data(), KDT_F32, n), m.ks(), v.ks(),
                                                  b1, b2, eps, wd, gs, t, own0, own_n);
                std::vector<double> part(nb + 1, NAN);
                EMU_OK(emu_launch((unsigned)nb, QB, 0, lamb_moments_kernel, part.data() + 1,
                                  (const float *)pg.data(), (const float *)g.data(), mg.ds(0),
                                  vg.ds(1), n, b1, b2, eps, wd, gs, c1, c2, own0, own0 + own_n));
                EMU_OK(emu_launch(1, 1024, 0, sum_partials_f64, part.data(),
                                  (const double *)part.data() + 1, nb));
                if (nonfinite)
                    CHECK_MSG(part[0] != part[0] && sc != sc,
                              "lamb_moments with a NaN gradient: %g (CPU %g)", part[0], sc);
                else
                    CHECK_CLOSE(part[0], sc, 1e-12, 0.0);
                check_state(mg, m, "lamb_moments m", form);
                check_state(vg, v, "lamb_moments v", form);
                k->lamb_apply(emu_cpu(), tensor_1d(pc.data(), KDT_F32, n), m.ks(), v.ks(), lr, b1,
                              b2, eps, wd, t);
                EMU_OK(emu_launch((unsigned)nb, QB, 0, lamb_apply_kernel, pg.data(), mg.ds(0),
                                  vg.ds(1), n, lr, eps, wd, c1, c2));
                const int64_t i = emu_first_diff(pg.data(), pc.data(), KDT_F32, n);
                CHECK_MSG(i < 0, "lamb_apply form %d: p[%lld] differs", form, (long long)i);
            }
            /* LARS and SGD with momentum */
            for (int lars = 0; lars < 2; lars++) {
                host_state m = make_state(form, n, 0, 10), mg = m;
                std::vector<float> pc = p, pg = p;
                const float mu = 0.9f, llr = lars ? 0.37f : 1.0f;
                if (lars)
                    k->lars_update(emu_cpu(), tensor_1d(pc.data(), KDT_F32, n),
                                   tensor_1d(g.data(), KDT_F32, n), m.ks(), lr, llr, mu, wd, gs);
                else
                    k->sgd_update(emu_cpu(), tensor_1d(pc.data(), KDT_F32, n),
                                  tensor_1d(g.data(), KDT_F32, n), m.ks(), lr, mu, wd, gs);
                EMU_OK(emu_launch((unsigned)nb, QB, 0, momentum_kernel, pg.data(),
                                  (const float *)g.data(), mg.ds(0), n, lr, llr, mu, wd, gs));
                const int64_t i = emu_first_diff(pg.data(), pc.data(), KDT_F32, n);
                CHECK_MSG(i < 0, "%s form %d: p[%lld] differs", lars ? "lars" : "sgd", form,
                          (long long)i);
                check_state(mg, m, lars ? "lars momentum" : "sgd momentum", form);
            }
            /* state_from_f32 / state_to_f32, both roles, a NaN in block 2 when nonfinite */
            for (int role = 0; role < 2; role++) {
                std::vector<float> f(n);
                emu_rng r(11 + role);
                for (auto &x : f) x = role ? fabsf(r.uniform()) * 3.0f : r.uniform();
                f[200] = 0.0f;
                if (nonfinite) f[600] = NAN;
                host_state c = make_state(form, n, role, 12), gs_ = c;
                k->state_from_f32(emu_cpu(), c.ks(), tensor_1d(f.data(), KDT_F32, n), role);
                EMU_OK(emu_launch((unsigned)nb, QB, 0, state_from_f32_kernel, gs_.ds(role),
                                  (const float *)f.data(), n));
                check_state(gs_, c, "state_from_f32", form);
                std::vector<float> dc(n), dg(n);
                k->state_to_f32(emu_cpu(), tensor_1d(dc.data(), KDT_F32, n), c.ks(), role);
                EMU_OK(
                    emu_launch((unsigned)nb, QB, 0, state_to_f32_kernel, dg.data(), c.ds(role), n));
                const int64_t i = emu_first_diff(dg.data(), dc.data(), KDT_F32, n);
                CHECK_MSG(i < 0, "state_to_f32 form %d role %d: element %lld differs", form, role,
                          (long long)i);
            }
        }
}

void emu_suite_core(int counts[3])
{
    RUN(test_convert_matches_cpu_bits_incl_nan_inf_ties);
    RUN(test_scale_residual_accumulate_match_cpu_bits);
    RUN(test_count_nonfinite_and_sumsq_match_cpu);
    RUN(test_adamw_and_adamw_state_match_cpu_bits);
    RUN(test_lamb_lars_sgd_and_state_conversions_match_cpu);
    EMU_SUITE_END(counts);
}
