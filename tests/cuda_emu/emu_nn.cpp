/* emu_nn.cpp — LayerNorm, GELU, cross-entropy and the embedding (layernorm_k.cuh,
 * gelu_k.cuh, crossentropy_k.cuh, embedding_k.cuh) run under the emulator with the
 * launchers' shapes (launch.c), against the CPU backend in fp32 and bf16.
 * Tolerances: these kernels sum in another order than the CPU (a lane's strided columns,
 * then a butterfly or tree) and the GPU build may fuse multiply-adds, so fp32 results agree
 * to a few ulps times the length of the sums (rtol 2e-5); a 16-bit output may then round
 * to the neighbouring value (one bf16 ulp, 2^-8 relative, plus an absolute term where a
 * result is a difference of O(1) terms). Exact where no arithmetic differs (max, gathers,
 * the embedding forward). The embedding's sort uses cub on the GPU; cub itself is not
 * emulated: std::stable_sort on the same (token, position) keys gives what a stable radix
 * sort gives. */
#include "emu.h"

#include <math.h>
#include <stdio.h>

#include <algorithm>
#include <numeric>

#include "crossentropy_k.cuh"
#include "embedding_k.cuh"
#include "gelu_k.cuh"
#include "layernorm_k.cuh"

#include "emu_test.h"
#include "test.h"

#define EMU_OK(rc) CHECK_MSG((rc) == 0, "emulated launch failed: %s", emu_error())

static const enum kdtype ACT[] = {KDT_F32, KDT_BF16};
static double rtol_of(enum kdtype dt) { return dt == KDT_F32 ? 2e-5 : 1.0 / 128; }

static std::vector<float> rnd(int64_t n, float amp, uint64_t seed)
{
    std::vector<float> v(n);
    emu_rng r(seed);
    for (auto &x : v) x = amp * r.uniform();
    return v;
}

#define CHECK_NEAR_VEC(got, want, rtol, atol, ...)                                                 \
    do {                                                                                           \
        const int64_t i_ = emu_first_far(got, want, rtol, atol);                                   \
        CHECK_MSG(i_ < 0, __VA_ARGS__);                                                            \
        if (i_ >= 0)                                                                               \
            fprintf(stderr, "    element %lld: %.9g, the CPU %.9g\n", (long long)i_,               \
                    (double)(got)[i_], (double)(want)[i_]);                                        \
    } while (0)

static void layernorm_case(int64_t N, int C, enum kdtype dt)
{
    const struct kernels *k = backend_kernels(emu_cpu());
    const size_t es = kdtype_size(dt);
    std::vector<float> xf = rnd(N * C, 2.0f, 1 + C);
    for (auto &v : xf) v += 0.3f; /* rows off zero mean */
    std::vector<uint8_t> x = emu_from_f32(xf, dt);
    std::vector<uint8_t> w = emu_from_f32(rnd(C, 1.0f, 3), dt),
                         bias = emu_from_f32(rnd(C, 1.0f, 4), dt);
    std::vector<uint8_t> g = emu_from_f32(rnd(N * C, 1.0f, 5), dt);
    std::vector<uint8_t> oc(N * C * es), og(N * C * es);
    std::vector<float> mc(N), rc(N), mg(N, NAN), rg(N, NAN);
    k->layernorm_fwd(emu_cpu(), tensor_2d(oc.data(), dt, N, C), tensor_1d(mc.data(), KDT_F32, N),
                     tensor_1d(rc.data(), KDT_F32, N), tensor_2d(x.data(), dt, N, C),
                     tensor_1d(w.data(), dt, C), tensor_1d(bias.data(), dt, C));
    struct cuda_launch l = cuda_launch_warp_rows(N);
    EMU_OK(emu_launch((unsigned)l.grid_x, l.threads, 0, layernorm_fwd_kernel, (void *)og.data(), dt,
                      mg.data(), rg.data(), (const void *)x.data(), dt, (const void *)w.data(), dt,
                      (const void *)bias.data(), dt, N, C));
    CHECK_NEAR_VEC(mg, mc, 1e-5, 1e-6, "layernorm_fwd N %lld C %d %s: mean", (long long)N, C,
                   kdtype_name(dt));
    CHECK_NEAR_VEC(rg, rc, 1e-5, 0.0, "layernorm_fwd N %lld C %d %s: rstd", (long long)N, C,
                   kdtype_name(dt));
    CHECK_NEAR_VEC(emu_to_f32(og.data(), dt, N * C), emu_to_f32(oc.data(), dt, N * C), rtol_of(dt),
                   dt == KDT_F32 ? 1e-5 : 1.0 / 64, "layernorm_fwd N %lld C %d %s: out",
                   (long long)N, C, kdtype_name(dt));
    /* backward from the CPU's statistics (both sides read the same mean, rstd) */
    std::vector<uint8_t> dic = emu_from_f32(rnd(N * C, 1.0f, 6), dt), dig = dic;
    std::vector<float> dwc = rnd(C, 1.0f, 7), dbc = rnd(C, 1.0f, 8), dwg = dwc, dbg = dbc;
    k->layernorm_bwd(emu_cpu(), tensor_2d(dic.data(), dt, N, C), tensor_1d(dwc.data(), KDT_F32, C),
                     tensor_1d(dbc.data(), KDT_F32, C), tensor_2d(g.data(), dt, N, C),
                     tensor_2d(x.data(), dt, N, C), tensor_1d(w.data(), dt, C),
                     tensor_1d(mc.data(), KDT_F32, N), tensor_1d(rc.data(), KDT_F32, N));
    struct cuda_ln_bwd_plan p;
    char err[256];
    CHECK_MSG(cuda_ln_bwd_plan(N, C, &p, err, sizeof err) == 0, "%s", err);
    std::vector<float> part(p.ws_bytes / sizeof(float), NAN);
    EMU_OK(emu_launch((unsigned)p.rows.grid_x, p.rows.threads, 0, layernorm_bwd_inp_kernel,
                      (void *)dig.data(), dt, (const void *)g.data(), dt, (const void *)x.data(),
                      dt, (const void *)w.data(), dt, (const float *)mc.data(),
                      (const float *)rc.data(), N, C));
    EMU_OK(emu_launch(dim3((unsigned)p.partial.grid_x, (unsigned)p.partial.grid_y),
                      p.partial.threads, 0, layernorm_bwd_partial_kernel, part.data(),
                      (const void *)g.data(), dt, (const void *)x.data(), dt,
                      (const float *)mc.data(), (const float *)rc.data(), N, C));
    EMU_OK(emu_launch((unsigned)p.finish.grid_x, p.finish.threads, 0, layernorm_bwd_finish_kernel,
                      dwg.data(), dbg.data(), (const float *)part.data(), p.n_chunks, C));
    CHECK_NEAR_VEC(emu_to_f32(dig.data(), dt, N * C), emu_to_f32(dic.data(), dt, N * C),
                   rtol_of(dt), dt == KDT_F32 ? 2e-5 : 1.0 / 32,
                   "layernorm_bwd N %lld C %d %s: dinp", (long long)N, C, kdtype_name(dt));
    /* dw, db: sums over N rows of O(1) terms: absolute error ~ N ulps of the partial sums */
    CHECK_NEAR_VEC(dwg, dwc, 1e-5, 1e-6 * N, "layernorm_bwd N %lld C %d %s: dw", (long long)N, C,
                   kdtype_name(dt));
    CHECK_NEAR_VEC(dbg, dbc, 1e-5, 1e-6 * N, "layernorm_bwd N %lld C %d %s: db", (long long)N, C,
                   kdtype_name(dt));
}

static void test_layernorm_fwd_bwd_match_cpu(void)
{
    for (enum kdtype dt : ACT) {
        layernorm_case(37, 100, dt); /* ragged rows per block, C not a multiple of 32 */
        layernorm_case(5, 768, dt);
        layernorm_case(300, 64, dt); /* two dw/db chunks (256 rows each), the second ragged */
        layernorm_case(1, 33, dt);
    }
}

static void test_gelu_fwd_bwd_match_cpu(void)
{
    const struct kernels *k = backend_kernels(emu_cpu());
    const int64_t n = 4 * 256 + 77;
    for (enum kdtype dt : ACT) {
        const size_t es = kdtype_size(dt);
        std::vector<uint8_t> x = emu_from_f32(rnd(n, 6.0f, 21), dt), oc(n * es), og(n * es);
        k->gelu_fwd(emu_cpu(), tensor_1d(oc.data(), dt, n), tensor_1d(x.data(), dt, n));
        struct cuda_launch l = cuda_launch_elementwise(n);
        EMU_OK(emu_launch((unsigned)l.grid_x, l.threads, 0, gelu_fwd_kernel, (void *)og.data(), dt,
                          (const void *)x.data(), dt, n));
        CHECK_NEAR_VEC(emu_to_f32(og.data(), dt, n), emu_to_f32(oc.data(), dt, n), rtol_of(dt),
                       dt == KDT_F32 ? 1e-6 : 1e-3, "gelu_fwd %s", kdtype_name(dt));
        /* backward in place on dout, as the model calls it */
        std::vector<uint8_t> gc = emu_from_f32(rnd(n, 1.0f, 22), dt), gg = gc;
        k->gelu_bwd(emu_cpu(), tensor_1d(gc.data(), dt, n), tensor_1d(x.data(), dt, n),
                    tensor_1d(gc.data(), dt, n));
        EMU_OK(emu_launch((unsigned)l.grid_x, l.threads, 0, gelu_bwd_kernel, (void *)gg.data(), dt,
                          (const void *)x.data(), dt, (const void *)gg.data(), dt, n));
        CHECK_NEAR_VEC(emu_to_f32(gg.data(), dt, n), emu_to_f32(gc.data(), dt, n), rtol_of(dt),
                       dt == KDT_F32 ? 1e-6 : 1e-3, "gelu_bwd %s", kdtype_name(dt));
    }
}

static int n_real(int64_t Vl, int v0, int V) /* crossentropy.cu's xent_n_real */
{
    const int64_t n = (int64_t)V - v0;
    return (int)(n < 0 ? 0 : n > Vl ? Vl : n);
}

static void xent_case(int N, int Vl, int v0, int V, enum kdtype dt)
{
    const struct kernels *k = backend_kernels(emu_cpu());
    std::vector<uint8_t> L = emu_from_f32(rnd((int64_t)N * Vl, 8.0f, 31 + Vl), dt);
    std::vector<int32_t> tg(N);
    for (int n = 0; n < N; n++) tg[n] = (n * 131 + 7) % V;
    tg[0] = v0; /* at least one target in the shard */
    const int nr = n_real(Vl, v0, V);
    std::vector<float> mc(N), sc(N), tc(N), mg(N, NAN), sg(N, NAN), tgt(N, NAN);
    struct tensor lt = tensor_2d(L.data(), dt, N, Vl);
    k->xent_max(emu_cpu(), tensor_1d(mc.data(), KDT_F32, N), lt, v0, V);
    k->xent_sumexp(emu_cpu(), tensor_1d(sc.data(), KDT_F32, N), lt,
                   tensor_1d(mc.data(), KDT_F32, N), v0, V);
    k->xent_target(emu_cpu(), tensor_1d(tc.data(), KDT_F32, N), lt,
                   tensor_1d(tg.data(), KDT_I32, N), v0);
    const double lossc =
        k->xent_loss(emu_cpu(), tensor_1d(mc.data(), KDT_F32, N), tensor_1d(sc.data(), KDT_F32, N),
                     tensor_1d(tc.data(), KDT_F32, N));
    struct cuda_launch lr = cuda_launch_block_rows(N), le = cuda_launch_elementwise(N);
    EMU_OK(emu_launch((unsigned)lr.grid_x, lr.threads, 0, xent_max_kernel, mg.data(),
                      (const void *)L.data(), dt, (int64_t)Vl, nr));
    EMU_OK(emu_launch((unsigned)lr.grid_x, lr.threads, 0, xent_sumexp_kernel, sg.data(),
                      (const void *)L.data(), dt, (const float *)mg.data(), (int64_t)Vl, nr));
    EMU_OK(emu_launch((unsigned)le.grid_x, le.threads, 0, xent_target_kernel, tgt.data(),
                      (const void *)L.data(), dt, (const int32_t *)tg.data(), (int64_t)N,
                      (int64_t)Vl, v0));
    double lossg = NAN;
    EMU_OK(emu_launch(1, CUDA_ELEM_THREADS, 0, xent_loss_kernel, &lossg, (const float *)mg.data(),
                      (const float *)sg.data(), (const float *)tgt.data(), (int64_t)N));
    const char *dn = kdtype_name(dt);
    for (int n = 0; n < N; n++)
        CHECK_MSG(emu_same_f32(mg[n], mc[n]), "xent_max %s row %d: %g, the CPU %g", dn, n, mg[n],
                  mc[n]);
    CHECK_NEAR_VEC(sg, sc, 2e-6 + 1e-7 * nr, 0.0, "xent_sumexp N %d Vl %d v0 %d V %d %s", N, Vl, v0,
                   V, dn);
    for (int n = 0; n < N; n++)
        CHECK_MSG(tgt[n] == tc[n], "xent_target %s row %d: %g, the CPU %g", dn, n, tgt[n], tc[n]);
    if (nr) CHECK_CLOSE(lossg, lossc, 1e-6, 1e-6);
    /* backward in place; the padding after the real columns must become 0 */
    std::vector<uint8_t> Lg = L;
    k->xent_bwd(emu_cpu(), lt, tensor_1d(mc.data(), KDT_F32, N), tensor_1d(sc.data(), KDT_F32, N),
                tensor_1d(tg.data(), KDT_I32, N), 0.25f, v0, V);
    EMU_OK(emu_launch((unsigned)lr.grid_x, lr.threads, 0, xent_bwd_kernel, (void *)Lg.data(), dt,
                      (const float *)mc.data(), (const float *)sc.data(),
                      (const int32_t *)tg.data(), 0.25f, (int64_t)Vl, nr, v0));
    CHECK_NEAR_VEC(emu_to_f32(Lg.data(), dt, (int64_t)N * Vl),
                   emu_to_f32(L.data(), dt, (int64_t)N * Vl), rtol_of(dt),
                   dt == KDT_F32 ? 1e-7 : 1e-4, "xent_bwd N %d Vl %d v0 %d V %d %s", N, Vl, v0, V,
                   dn);
}

static void test_crossentropy_matches_cpu_with_padding_and_shards(void)
{
    for (enum kdtype dt : ACT) {
        xent_case(9, 37, 30, 60, dt);       /* 30 real columns, 7 padded */
        xent_case(3, 1000, 2000, 2900, dt); /* more columns than threads */
        xent_case(5, 16, 64, 60, dt);       /* a shard past V: no real column */
        xent_case(4, 300, 0, 300, dt);
    }
}

static void emb_case(int B, int T, int C, int Vl, int v0, bool with_wpe, enum kdtype dt)
{
    const struct kernels *k = backend_kernels(emu_cpu());
    const size_t es = kdtype_size(dt);
    const int nt = B * T;
    std::vector<int32_t> tok(nt);
    for (int i = 0; i < nt; i++) tok[i] = (i * 7 + i / 5) % (v0 + Vl + 6); /* some outside */
    tok[5 % nt] = tok[6 % nt] = v0 + 1;                                    /* a repeated token */
    std::vector<uint8_t> wte = emu_from_f32(rnd((int64_t)Vl * C, 1.0f, 41), dt);
    std::vector<uint8_t> wpe = emu_from_f32(rnd((int64_t)T * C, 1.0f, 42), dt);
    std::vector<uint8_t> oc((size_t)nt * C * es), og(oc.size());
    struct tensor wpe_t = with_wpe ? tensor_2d(wpe.data(), dt, T, C) : tensor_2d(NULL, dt, 0, 0);
    k->embedding_fwd(emu_cpu(), tensor_2d(oc.data(), dt, nt, C),
                     tensor_2d(tok.data(), KDT_I32, B, T), tensor_2d(wte.data(), dt, Vl, C), wpe_t,
                     v0);
    const int64_t n = (int64_t)nt * C;
    struct cuda_launch l = cuda_launch_elementwise(n);
    EMU_OK(emu_launch((unsigned)l.grid_x, l.threads, 0, embedding_fwd_kernel, (void *)og.data(), dt,
                      (const int32_t *)tok.data(), (const void *)wte.data(), dt,
                      (const void *)(with_wpe ? wpe.data() : NULL), dt, T, C, v0, Vl, n));
    const int64_t d = emu_first_diff(og.data(), oc.data(), dt, n);
    CHECK_MSG(d < 0, "embedding_fwd B %d T %d C %d Vl %d v0 %d %s: element %lld differs", B, T, C,
              Vl, v0, kdtype_name(dt), (long long)d);
    /* backward */
    std::vector<uint8_t> g = emu_from_f32(rnd(n, 1.0f, 43), dt);
    std::vector<float> dwc = rnd((int64_t)Vl * C, 1.0f, 44), dpc = rnd((int64_t)T * C, 1.0f, 45);
    std::vector<float> dwg = dwc, dpg = dpc;
    k->embedding_bwd(emu_cpu(), tensor_2d(dwc.data(), KDT_F32, Vl, C),
                     with_wpe ? tensor_2d(dpc.data(), KDT_F32, T, C)
                              : tensor_2d(NULL, KDT_F32, 0, 0),
                     tensor_2d(g.data(), dt, nt, C), tensor_2d(tok.data(), KDT_I32, B, T), v0);
    if (with_wpe) {
        struct cuda_launch lp = cuda_launch_elementwise((int64_t)T * C);
        EMU_OK(emu_launch((unsigned)lp.grid_x, lp.threads, 0, embedding_dwpe_kernel, dpg.data(),
                          (const void *)g.data(), dt, B, T, C));
    }
    std::vector<int32_t> keys(nt), pos(nt), ks(nt), ps(nt);
    struct cuda_launch lk = cuda_launch_elementwise(nt);
    EMU_OK(emu_launch((unsigned)lk.grid_x, lk.threads, 0, embedding_keys_kernel, keys.data(),
                      pos.data(), (const int32_t *)tok.data(), v0, Vl, nt));
    /* cub::DeviceRadixSort::SortPairs is not emulated: a stable sort by key gives its result */
    std::vector<int> idx(nt);
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return keys[a] < keys[b]; });
    for (int i = 0; i < nt; i++) {
        ks[i] = keys[idx[i]];
        ps[i] = pos[idx[i]];
    }
    struct cuda_launch lr;
    char err[256];
    CHECK_MSG(cuda_embedding_bwd_launch(nt, C, &lr, err, sizeof err) == 0, "%s", err);
    EMU_OK(emu_launch(dim3((unsigned)lr.grid_x, (unsigned)lr.grid_y), lr.threads, 0,
                      embedding_dwte_kernel, dwg.data(), (const int32_t *)ks.data(),
                      (const int32_t *)ps.data(), (const void *)g.data(), dt, C, Vl, nt));
    /* sums of a few O(1) terms in another order: a few fp32 ulps */
    CHECK_NEAR_VEC(dwg, dwc, 1e-6, 1e-6, "embedding_bwd dwte B %d T %d C %d Vl %d v0 %d %s", B, T,
                   C, Vl, v0, kdtype_name(dt));
    if (with_wpe)
        CHECK_NEAR_VEC(dpg, dpc, 1e-6, 1e-6, "embedding_bwd dwpe B %d T %d C %d %s", B, T, C,
                       kdtype_name(dt));
}

static void test_embedding_matches_cpu_on_a_shard(void)
{
    for (enum kdtype dt : ACT) {
        emb_case(3, 37, 50, 13, 10, true, dt);
        emb_case(3, 37, 50, 13, 10, false, dt);
        emb_case(2, 5, 200, 40, 0, true, dt); /* C over CUDA_EMB_COLS: two column blocks */
    }
}

void emu_suite_nn(int counts[3])
{
    RUN(test_layernorm_fwd_bwd_match_cpu);
    RUN(test_gelu_fwd_bwd_match_cpu);
    RUN(test_crossentropy_matches_cpu_with_padding_and_shards);
    RUN(test_embedding_matches_cpu_on_a_shard);
    EMU_SUITE_END(counts);
}
