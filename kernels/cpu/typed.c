/* typed.c — the CPU backend's kernel table on typed tensors.
 *
 * Each entry checks the dtypes and shapes it is handed, then runs the fp32 kernel of
 * kernels/cpu/ on them. An fp32 tensor is used in place (the fp32 path is the fp32
 * kernel itself, bit for bit). A 16-bit tensor is widened into one of the backend's
 * workspaces first and, if the kernel writes it, narrowed back (round to nearest even)
 * afterwards: OpenBLAS has no 16-bit arithmetic, so bf16 and fp16 store half the bytes
 * and compute in fp32 (kernels.h). Exceptions that skip the workspace: the embedding
 * lookup (reads a few rows of the table, not all of it), the non-finite count (looks at
 * exponent bits), and the linear layers on bf16 tensors where the CPU has AVX512_BF16
 * and oneDNN is built in (matmul16.c): their products run on bf16 inputs with fp32
 * sums, 1.5-2x faster than widening + AVX-512 sgemm and 3-4x faster than widening +
 * OpenBLAS's AVX2 "Haswell" kernels on a Zen 5 (tests/bench_gemm16.c). Their bits
 * differ from the widened path's (another summation order), not from run to run;
 * TRIDENT_BF16_GEMM=0 keeps the widened path.
 *
 * Workspace slots: every tensor of one call has its own (WS_*), so in-place arguments
 * (gelu_bwd, residual, xent_bwd) read and write distinct fp32 copies.
 */
#include <math.h>
#include <string.h>

#include "backend_impl.h"
#include "common.h"
#include "convert.h"
#include "cpu.h"

enum { WS_A, WS_B, WS_C, WS_D, WS_E, WS_F };

/* ---------------------------------------------------------------------------------- */
/* checks                                                                               */

static const char *shape_str(struct tensor t, char *buf, size_t len)
{
    if (!t.data) snprintf(buf, len, "absent");
    else snprintf(buf, len, "%s[%lld][%lld]", kdtype_name(t.dt), (long long)t.rows,
                  (long long)t.cols);
    return buf;
}

#define NEED(cond, kname, what, t)                                                       \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            char s_[64];                                                                 \
            TR_ABORT("%s: %s is %s (%s)", kname, what, shape_str(t, s_, sizeof s_),       \
                     #cond);                                                             \
        }                                                                                \
    } while (0)

static int is_float(struct tensor t) { return t.dt == KDT_F32 || kdtype_is_16bit(t.dt); }

#define NEED_FLOAT(kname, what, t) NEED(t.data && is_float(t), kname, what, t)
#define NEED_F32(kname, what, t)   NEED(t.data && t.dt == KDT_F32, kname, what, t)
#define NEED_I32(kname, what, t)   NEED(t.data && t.dt == KDT_I32, kname, what, t)
/* optional: absent, or of the activation dtype */
#define OPT_FLOAT(kname, what, t)  NEED(!t.data || is_float(t), kname, what, t)
#define OPT_F32(kname, what, t)    NEED(!t.data || t.dt == KDT_F32, kname, what, t)

/* ---------------------------------------------------------------------------------- */
/* widening and narrowing                                                               */

static void widen(float *dst, struct tensor t)
{
    long n = (long)tensor_numel(t);
    if (t.dt == KDT_BF16) cpu_bf16_to_f32(dst, t.data, n);
    else if (t.dt == KDT_F16) cpu_f16_to_f32(dst, t.data, n);
    else memcpy(dst, t.data, sizeof(float) * (size_t)n);
}

static void narrow(struct tensor t, const float *src)
{
    long n = (long)tensor_numel(t);
    if (t.dt == KDT_BF16) cpu_f32_to_bf16(t.data, src, n);
    else if (t.dt == KDT_F16) cpu_f32_to_f16(t.data, src, n);
    else memcpy(t.data, src, sizeof(float) * (size_t)n);
}

/* an fp32 view of t to read (NULL if absent) */
static const float *rd(struct backend *b, int slot, struct tensor t)
{
    if (!t.data) return NULL;
    if (t.dt == KDT_F32) return t.data;
    float *w = backend_workspace(b, slot, sizeof(float) * (size_t)tensor_numel(t));
    widen(w, t);
    return w;
}

/* an fp32 buffer the kernel writes t into; load: it reads t's values first (+=) */
static float *wr(struct backend *b, int slot, struct tensor t, int load)
{
    if (!t.data) return NULL;
    if (t.dt == KDT_F32) return t.data;
    float *w = backend_workspace(b, slot, sizeof(float) * (size_t)tensor_numel(t));
    if (load) widen(w, t);
    return w;
}

/* the kernel is done with the buffer wr gave for t */
static void done(struct tensor t, const float *w)
{
    if (t.data && t.dt != KDT_F32) narrow(t, w);
}

/* ---------------------------------------------------------------------------------- */
/* linear layers                                                                        */

static void t_matmul_fwd(struct backend *b, struct tensor out, struct tensor inp,
                         struct tensor w, struct tensor bias)
{
    const char *kn = "matmul_fwd";
    NEED_FLOAT(kn, "inp", inp);
    NEED(w.data && is_float(w) && w.cols == inp.cols, kn, "w", w);
    NEED(out.data && is_float(out) && out.rows == inp.rows && out.cols == w.rows, kn, "out",
         out);
    NEED(!bias.data || (is_float(bias) && tensor_numel(bias) == w.rows), kn, "bias", bias);
    const int M = (int)inp.rows, K = (int)inp.cols, N = (int)w.rows;
    if (inp.dt == KDT_BF16 && w.dt == KDT_BF16 && out.dt == KDT_BF16 &&
        (!bias.data || bias.dt == KDT_BF16 || bias.dt == KDT_F32) && cpu_gemm_bf16_ready() &&
        cpu_gemm_bf16(0, 1, M, N, K, inp.data, K, w.data, K, bias.data, bias.dt == KDT_BF16, 0,
                      out.data, 1, N) == 0)
        return;
    float *o = wr(b, WS_A, out, 0);
    cpu_matmul_fwd(o, rd(b, WS_B, inp), rd(b, WS_C, w), rd(b, WS_D, bias), M, K, N);
    done(out, o);
}

static void t_matmul_bwd(struct backend *b, struct tensor dinp, struct tensor dw,
                         struct tensor dbias, struct tensor dout, struct tensor inp,
                         struct tensor w)
{
    const char *kn = "matmul_bwd";
    NEED_FLOAT(kn, "inp", inp);
    NEED(w.data && is_float(w) && w.cols == inp.cols, kn, "w", w);
    NEED(dout.data && is_float(dout) && dout.rows == inp.rows && dout.cols == w.rows, kn,
         "dout", dout);
    NEED(!dinp.data || (is_float(dinp) && dinp.rows == inp.rows && dinp.cols == inp.cols),
         kn, "dinp", dinp);
    NEED(!dw.data || (dw.dt == KDT_F32 && dw.rows == w.rows && dw.cols == w.cols), kn, "dw",
         dw);
    NEED(!dbias.data || (dbias.dt == KDT_F32 && tensor_numel(dbias) == w.rows), kn, "dbias",
         dbias);
    const int M = (int)inp.rows, K = (int)inp.cols, N = (int)w.rows;
    if (dout.dt == KDT_BF16 && cpu_gemm_bf16_ready()) {
        /* each product the bf16 GEMM does is dropped from what the fp32 path does below */
        if (dinp.data && dinp.dt == KDT_BF16 && w.dt == KDT_BF16 &&
            cpu_gemm_bf16(0, 0, M, K, N, dout.data, N, w.data, K, NULL, 0, 0, dinp.data, 1,
                          K) == 0)
            dinp = TENSOR_NONE;
        if (dw.data && inp.dt == KDT_BF16 &&
            cpu_gemm_bf16(1, 0, N, K, M, dout.data, N, inp.data, K, NULL, 0, 1, dw.data, 0,
                          K) == 0)
            dw = TENSOR_NONE;
        if (!dinp.data && !dw.data) {  /* nothing left that needs dout in fp32 */
            if (dbias.data) cpu_matmul_dbias_bf16(dbias.data, dout.data, M, N);
            return;
        }
    }
    float *di = wr(b, WS_A, dinp, 0);
    cpu_matmul_bwd(di, dw.data, dbias.data, rd(b, WS_B, dout), dw.data ? rd(b, WS_C, inp) : NULL,
                   dinp.data ? rd(b, WS_D, w) : NULL, M, K, N);
    done(dinp, di);
}

/* ---------------------------------------------------------------------------------- */
/* LayerNorm, attention, GELU, residual                                                 */

static void t_layernorm_fwd(struct backend *b, struct tensor out, struct tensor mean,
                            struct tensor rstd, struct tensor inp, struct tensor w,
                            struct tensor bias)
{
    const char *kn = "layernorm_fwd";
    NEED_FLOAT(kn, "inp", inp);
    NEED(out.data && is_float(out) && out.rows == inp.rows && out.cols == inp.cols, kn,
         "out", out);
    NEED(mean.data && mean.dt == KDT_F32 && tensor_numel(mean) == inp.rows, kn, "mean", mean);
    NEED(rstd.data && rstd.dt == KDT_F32 && tensor_numel(rstd) == inp.rows, kn, "rstd", rstd);
    NEED(w.data && is_float(w) && tensor_numel(w) == inp.cols, kn, "w", w);
    NEED(bias.data && is_float(bias) && tensor_numel(bias) == inp.cols, kn, "bias", bias);
    float *o = wr(b, WS_A, out, 0);
    cpu_layernorm_fwd(o, mean.data, rstd.data, rd(b, WS_B, inp), rd(b, WS_C, w),
                      rd(b, WS_D, bias), (int)inp.rows, (int)inp.cols);
    done(out, o);
}

static void t_layernorm_bwd(struct backend *b, struct tensor dinp, struct tensor dw,
                            struct tensor db, struct tensor dout, struct tensor inp,
                            struct tensor w, struct tensor mean, struct tensor rstd)
{
    const char *kn = "layernorm_bwd";
    NEED_FLOAT(kn, "inp", inp);
    const int64_t N = inp.rows, C = inp.cols;
    NEED(dinp.data && is_float(dinp) && dinp.rows == N && dinp.cols == C, kn, "dinp", dinp);
    NEED(dout.data && is_float(dout) && dout.rows == N && dout.cols == C, kn, "dout", dout);
    NEED(dw.data && dw.dt == KDT_F32 && tensor_numel(dw) == C, kn, "dw", dw);
    NEED(db.data && db.dt == KDT_F32 && tensor_numel(db) == C, kn, "db", db);
    NEED(w.data && is_float(w) && tensor_numel(w) == C, kn, "w", w);
    NEED(mean.data && mean.dt == KDT_F32 && tensor_numel(mean) == N, kn, "mean", mean);
    NEED(rstd.data && rstd.dt == KDT_F32 && tensor_numel(rstd) == N, kn, "rstd", rstd);
    float *di = wr(b, WS_A, dinp, 1);
    cpu_layernorm_bwd(di, dw.data, db.data, rd(b, WS_B, dout), rd(b, WS_C, inp),
                      rd(b, WS_D, w), mean.data, rstd.data, (int)N, (int)C);
    done(dinp, di);
}

/* B, T, Cq of an attention call from qkv's shape; checks the others against them */
static void attn_dims(const char *kn, struct tensor qkv, struct tensor att, int B, int NH,
                      int *T, int *Cq)
{
    NEED(qkv.data && is_float(qkv) && B > 0 && qkv.rows % B == 0 && qkv.cols % 3 == 0 &&
             NH > 0 && (qkv.cols / 3) % NH == 0, kn, "qkv", qkv);
    *T = (int)(qkv.rows / B);
    *Cq = (int)(qkv.cols / 3);
    NEED(att.data && is_float(att) && att.rows == (int64_t)B * NH * *T && att.cols == *T, kn,
         "att", att);
}

static void t_attention_fwd(struct backend *b, struct tensor out, struct tensor att,
                            struct tensor qkv, int B, int NH)
{
    const char *kn = "attention_fwd";
    int T, Cq;
    attn_dims(kn, qkv, att, B, NH, &T, &Cq);
    NEED(out.data && is_float(out) && out.rows == qkv.rows && out.cols == Cq, kn, "out", out);
    float *o = wr(b, WS_A, out, 0), *a = wr(b, WS_B, att, 0);
    cpu_attention_fwd(o, a, rd(b, WS_C, qkv), B, T, Cq, NH);
    done(out, o);
    done(att, a);
}

static void t_attention_bwd(struct backend *b, struct tensor dqkv, struct tensor scratch,
                            struct tensor dout, struct tensor qkv, struct tensor att, int B,
                            int NH)
{
    const char *kn = "attention_bwd";
    int T, Cq;
    attn_dims(kn, qkv, att, B, NH, &T, &Cq);
    NEED(dqkv.data && is_float(dqkv) && dqkv.rows == qkv.rows && dqkv.cols == qkv.cols, kn,
         "dqkv", dqkv);
    NEED(dout.data && is_float(dout) && dout.rows == qkv.rows && dout.cols == Cq, kn, "dout",
         dout);
    NEED(scratch.data && is_float(scratch) && tensor_numel(scratch) >= tensor_numel(att), kn,
         "scratch", scratch);
    /* the scratch holds nothing between calls: its fp32 stand-in needs no narrowing */
    float *s = scratch.dt == KDT_F32
                   ? scratch.data
                   : backend_workspace(b, WS_E, sizeof(float) * (size_t)tensor_numel(att));
    float *dq = wr(b, WS_A, dqkv, 0);
    cpu_attention_bwd(dq, s, rd(b, WS_B, dout), rd(b, WS_C, qkv), rd(b, WS_D, att), B, T, Cq,
                      NH);
    done(dqkv, dq);
}

static void t_gelu_fwd(struct backend *b, struct tensor out, struct tensor inp)
{
    const char *kn = "gelu_fwd";
    NEED_FLOAT(kn, "inp", inp);
    NEED(out.data && is_float(out) && tensor_numel(out) == tensor_numel(inp), kn, "out", out);
    float *o = wr(b, WS_A, out, 0);
    cpu_gelu_fwd(o, rd(b, WS_B, inp), (long)tensor_numel(inp));
    done(out, o);
}

static void t_gelu_bwd(struct backend *b, struct tensor dinp, struct tensor inp,
                       struct tensor dout)
{
    const char *kn = "gelu_bwd";
    NEED_FLOAT(kn, "inp", inp);
    NEED(dinp.data && is_float(dinp) && tensor_numel(dinp) == tensor_numel(inp), kn, "dinp",
         dinp);
    NEED(dout.data && is_float(dout) && tensor_numel(dout) == tensor_numel(inp), kn, "dout",
         dout);
    float *di = wr(b, WS_A, dinp, 0);
    cpu_gelu_bwd(di, rd(b, WS_B, inp), rd(b, WS_C, dout), (long)tensor_numel(inp));
    done(dinp, di);
}

static void t_residual_fwd(struct backend *b, struct tensor out, struct tensor a,
                           struct tensor c)
{
    const char *kn = "residual_fwd";
    NEED_FLOAT(kn, "a", a);
    NEED(c.data && is_float(c) && tensor_numel(c) == tensor_numel(a), kn, "c", c);
    NEED(out.data && is_float(out) && tensor_numel(out) == tensor_numel(a), kn, "out", out);
    float *o = wr(b, WS_A, out, 0);
    cpu_residual_fwd(o, rd(b, WS_B, a), rd(b, WS_C, c), (long)tensor_numel(a));
    done(out, o);
}

/* ---------------------------------------------------------------------------------- */
/* embedding                                                                            */

static float ld(struct tensor t, size_t i)
{
    if (t.dt == KDT_BF16) return cvt_bf16_to_f32_1(((const uint16_t *)t.data)[i]);
    if (t.dt == KDT_F16) return cvt_f16_to_f32_1(((const uint16_t *)t.data)[i]);
    return ((const float *)t.data)[i];
}

static void st(struct tensor t, size_t i, float v)
{
    if (t.dt == KDT_BF16) ((uint16_t *)t.data)[i] = cvt_f32_to_bf16_1(v);
    else if (t.dt == KDT_F16) ((uint16_t *)t.data)[i] = cvt_f32_to_f16_1(v);
    else ((float *)t.data)[i] = v;
}

static void t_embedding_fwd(struct backend *b, struct tensor out, struct tensor tokens,
                            struct tensor wte, struct tensor wpe, int v0)
{
    const char *kn = "embedding_fwd";
    NEED_I32(kn, "tokens", tokens);
    const int B = (int)tokens.rows, T = (int)tokens.cols;
    NEED_FLOAT(kn, "wte", wte);
    const int C = (int)wte.cols, Vl = (int)wte.rows;
    NEED(out.data && is_float(out) && out.rows == (int64_t)B * T && out.cols == C, kn, "out",
         out);
    NEED(!wpe.data || (is_float(wpe) && wpe.rows >= T && wpe.cols == C), kn, "wpe", wpe);
    if (out.dt == KDT_F32 && wte.dt == KDT_F32 && (!wpe.data || wpe.dt == KDT_F32)) {
        cpu_embedding_fwd(out.data, tokens.data, wte.data, wpe.data, B, T, C, v0, Vl);
        return;
    }
    /* a lookup reads B·T rows of the table: convert those, not the table */
    const int32_t *tok = tokens.data;
#pragma omp parallel for schedule(static)
    for (int bt = 0; bt < B * T; bt++) {
        int v = tok[bt] - v0;
        int in_shard = v >= 0 && v < Vl;
        for (int c = 0; c < C; c++) {
            float x = in_shard ? ld(wte, (size_t)v * C + c) : 0.0f;
            if (wpe.data) x = in_shard ? x + ld(wpe, (size_t)(bt % T) * C + c)
                                       : ld(wpe, (size_t)(bt % T) * C + c);
            st(out, (size_t)bt * C + c, x);
        }
    }
}

static void t_embedding_bwd(struct backend *b, struct tensor dwte, struct tensor dwpe,
                            struct tensor dout, struct tensor tokens, int v0)
{
    const char *kn = "embedding_bwd";
    NEED_I32(kn, "tokens", tokens);
    const int B = (int)tokens.rows, T = (int)tokens.cols;
    NEED_F32(kn, "dwte", dwte);
    const int C = (int)dwte.cols, Vl = (int)dwte.rows;
    NEED(dout.data && is_float(dout) && dout.rows == (int64_t)B * T && dout.cols == C, kn,
         "dout", dout);
    NEED(!dwpe.data || (dwpe.dt == KDT_F32 && dwpe.rows >= T && dwpe.cols == C), kn, "dwpe",
         dwpe);
    cpu_embedding_bwd(dwte.data, dwpe.data, rd(b, WS_A, dout), tokens.data, B, T, C, v0, Vl);
}

/* ---------------------------------------------------------------------------------- */
/* cross-entropy                                                                        */

static void xent_rows(const char *kn, struct tensor logits, struct tensor row, const char *what)
{
    NEED_FLOAT(kn, "logits", logits);
    NEED(row.data && row.dt == KDT_F32 && tensor_numel(row) == logits.rows, kn, what, row);
}

static void t_xent_max(struct backend *b, struct tensor rowmax, struct tensor logits, int v0,
                       int V)
{
    xent_rows("xent_max", logits, rowmax, "rowmax");
    cpu_xent_max(rowmax.data, rd(b, WS_A, logits), (int)logits.rows, (int)logits.cols, v0, V);
}

static void t_xent_sumexp(struct backend *b, struct tensor sumexp, struct tensor logits,
                          struct tensor rowmax, int v0, int V)
{
    xent_rows("xent_sumexp", logits, sumexp, "sumexp");
    xent_rows("xent_sumexp", logits, rowmax, "rowmax");
    cpu_xent_sumexp(sumexp.data, rd(b, WS_A, logits), rowmax.data, (int)logits.rows,
                    (int)logits.cols, v0, V);
}

static void t_xent_target(struct backend *b, struct tensor tlogit, struct tensor logits,
                          struct tensor targets, int v0)
{
    xent_rows("xent_target", logits, tlogit, "tlogit");
    NEED(targets.data && targets.dt == KDT_I32 && tensor_numel(targets) == logits.rows,
         "xent_target", "targets", targets);
    cpu_xent_target(tlogit.data, rd(b, WS_A, logits), targets.data, (int)logits.rows,
                    (int)logits.cols, v0);
}

static void t_xent_bwd(struct backend *b, struct tensor logits, struct tensor rowmax,
                       struct tensor sumexp, struct tensor targets, float dloss, int v0, int V)
{
    xent_rows("xent_bwd", logits, rowmax, "rowmax");
    xent_rows("xent_bwd", logits, sumexp, "sumexp");
    NEED(targets.data && targets.dt == KDT_I32 && tensor_numel(targets) == logits.rows,
         "xent_bwd", "targets", targets);
    float *l = wr(b, WS_A, logits, 1);
    cpu_xent_bwd(l, rowmax.data, sumexp.data, targets.data, dloss, (int)logits.rows,
                 (int)logits.cols, v0, V);
    done(logits, l);
}

static double t_xent_loss(struct backend *b, struct tensor rowmax, struct tensor sumexp,
                          struct tensor tlogit)
{
    const char *kn = "xent_loss";
    NEED_F32(kn, "rowmax", rowmax);
    NEED(sumexp.data && sumexp.dt == KDT_F32 && tensor_numel(sumexp) == tensor_numel(rowmax),
         kn, "sumexp", sumexp);
    NEED(tlogit.data && tlogit.dt == KDT_F32 && tensor_numel(tlogit) == tensor_numel(rowmax),
         kn, "tlogit", tlogit);
    const float *mx = rowmax.data, *se = sumexp.data, *tl = tlogit.data;
    double loss = 0.0;
    for (int64_t n = 0; n < tensor_numel(rowmax); n++)  /* in row order: reproducible */
        loss += log((double)se[n]) + (double)mx[n] - (double)tl[n];
    return loss;
}

/* ---------------------------------------------------------------------------------- */
/* optimizer and whole-buffer operations                                                */

static void t_adamw(struct backend *b, struct tensor p, struct tensor grad, struct tensor m,
                    struct tensor v, float lr, float b1, float b2, float eps, float wd,
                    float grad_scale, int t)
{
    const char *kn = "adamw";
    NEED_F32(kn, "p", p);
    int64_t n = tensor_numel(p);
    NEED(grad.data && grad.dt == KDT_F32 && tensor_numel(grad) == n, kn, "grad", grad);
    NEED(m.data && m.dt == KDT_F32 && tensor_numel(m) == n, kn, "m", m);
    NEED(v.data && v.dt == KDT_F32 && tensor_numel(v) == n, kn, "v", v);
    cpu_adamw(p.data, grad.data, m.data, v.data, (long)n, lr, b1, b2, eps, wd, grad_scale, t);
}

static double t_sumsq(struct backend *b, struct tensor x)
{
    if (!x.data || !tensor_numel(x)) return 0.0;
    NEED_FLOAT("sumsq", "x", x);
    return cpu_sumsq(rd(b, WS_A, x), (long)tensor_numel(x));
}

static void t_scale(struct backend *b, struct tensor x, float s)
{
    if (!x.data || !tensor_numel(x)) return;
    NEED_FLOAT("scale", "x", x);
    float *w = wr(b, WS_A, x, 1);
    cpu_scale(w, s, (long)tensor_numel(x));
    done(x, w);
}

static void t_convert(struct backend *b, struct tensor dst, struct tensor src)
{
    const char *kn = "convert";
    NEED_FLOAT(kn, "src", src);
    NEED(dst.data && is_float(dst) && tensor_numel(dst) == tensor_numel(src), kn, "dst", dst);
    long n = (long)tensor_numel(src);
    if (dst.dt == src.dt) memmove(dst.data, src.data, tensor_bytes(src));
    else if (src.dt == KDT_F32) narrow(dst, src.data);
    else if (dst.dt == KDT_F32) widen(dst.data, src);
    else {  /* bf16 <-> fp16: through fp32, which holds either exactly */
        float *w = backend_workspace(b, WS_A, sizeof(float) * (size_t)n);
        widen(w, src);
        narrow(dst, w);
    }
}

static void t_accumulate(struct backend *b, struct tensor dst, struct tensor src)
{
    const char *kn = "accumulate";
    NEED_F32(kn, "dst", dst);
    NEED(src.data && is_float(src) && tensor_numel(src) == tensor_numel(dst), kn, "src", src);
    float *restrict d = dst.data;
    const float *restrict s = rd(b, WS_A, src);
    long n = (long)tensor_numel(dst);
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) d[i] += s[i];
}

static int64_t t_count_nonfinite(struct backend *b, struct tensor x)
{
    if (!x.data) return 0;
    NEED_FLOAT("count_nonfinite", "x", x);
    long n = (long)tensor_numel(x);
    int64_t bad = 0;
    if (x.dt == KDT_F32) {
        const float *p = x.data;
#pragma omp parallel for reduction(+ : bad) schedule(static)
        for (long i = 0; i < n; i++) bad += !isfinite(p[i]);
    } else {  /* every exponent bit set: inf or NaN */
        const uint16_t *p = x.data, e = x.dt == KDT_BF16 ? 0x7f80u : 0x7c00u;
#pragma omp parallel for reduction(+ : bad) schedule(static)
        for (long i = 0; i < n; i++) bad += (p[i] & e) == e;
    }
    return bad;
}

const struct kernels cpu_kernels = {
    .name            = "cpu",
    .matmul_fwd      = t_matmul_fwd,
    .matmul_bwd      = t_matmul_bwd,
    .layernorm_fwd   = t_layernorm_fwd,
    .layernorm_bwd   = t_layernorm_bwd,
    .attention_fwd   = t_attention_fwd,
    .attention_bwd   = t_attention_bwd,
    .gelu_fwd        = t_gelu_fwd,
    .gelu_bwd        = t_gelu_bwd,
    .residual_fwd    = t_residual_fwd,
    .embedding_fwd   = t_embedding_fwd,
    .embedding_bwd   = t_embedding_bwd,
    .xent_max        = t_xent_max,
    .xent_sumexp     = t_xent_sumexp,
    .xent_target     = t_xent_target,
    .xent_bwd        = t_xent_bwd,
    .xent_loss       = t_xent_loss,
    .adamw           = t_adamw,
    .adamw_state     = cpu_t_adamw_state,
    .lamb_moments    = cpu_t_lamb_moments,
    .lamb_apply      = cpu_t_lamb_apply,
    .lars_update     = cpu_t_lars_update,
    .sgd_update      = cpu_t_sgd_update,
    .state_to_f32    = cpu_t_state_to_f32,
    .state_from_f32  = cpu_t_state_from_f32,
    .sumsq           = t_sumsq,
    .scale           = t_scale,
    .convert         = t_convert,
    .accumulate      = t_accumulate,
    .count_nonfinite = t_count_nonfinite,
};
