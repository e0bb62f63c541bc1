/* test_precision.c — 16-bit conversions (kernels/cpu/convert.c) and dynamic loss
 * scaling (src/loss_scale.c).
 *
 * The conversions are checked against references written here from the IEEE 754
 * definitions in double precision (sign, biased exponent, mantissa; rounding by rint()
 * on an exactly scaled value), never by calling convert.h:
 *  - 16 -> 32: every one of the 2^16 patterns of each format;
 *  - 32 -> 16: every halfway point between two neighbouring finite 16-bit values of
 *    each sign (ties to even) and the fp32 values one ulp either side of it, every
 *    16-bit value itself, the overflow threshold (the halfway point above the largest
 *    finite value), specials and fp32 subnormals, then a strided sample of all 2^32
 *    fp32 patterns;
 *  - the array (OpenMP, SIMD) functions give the scalar functions' bits on large
 *    random arrays with specials planted, at unaligned offsets and odd lengths.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/convert.h"
#include "loss_scale.h"
#include "test.h"

/* ---------------------------------------------------------------------------------- */
/* helpers                                                                            */

static uint64_t rng_next(uint64_t *s)  /* splitmix64 */
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint32_t f2u(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static float u2f(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }

/* An IEEE binary format with 1 sign bit, ebits exponent bits and mbits mantissa bits. */
struct fmt {
    const char *name;
    int ebits, mbits;
};
static const struct fmt BF16 = { "bf16", 8, 7 };
static const struct fmt F16 = { "fp16", 5, 10 };

static int fmt_bias(const struct fmt *f) { return (1 << (f->ebits - 1)) - 1; }

/* The value of a pattern, from the definition: (-1)^s 2^(e-bias) (1 + m/2^mbits) for a
 * normal number, (-1)^s 2^(1-bias) (m/2^mbits) for a subnormal one (e = 0), inf or NaN
 * for e all ones. */
static double ref_value(const struct fmt *f, uint16_t h)
{
    int s = h >> 15, e = (h >> f->mbits) & ((1 << f->ebits) - 1), m = h & ((1 << f->mbits) - 1);
    double v;
    if (e == (1 << f->ebits) - 1) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp((double)m, 1 - fmt_bias(f) - f->mbits);
    else v = ldexp(1.0 + ldexp((double)m, -f->mbits), e - fmt_bias(f));
    return s ? -v : v;
}

/* x (finite or inf, not NaN) rounded to the format, to nearest with ties to even. The
 * quantum (unit in the last place) of the binade of |x|, floored at the subnormal one,
 * is a power of two, so |x|/quantum is exact in double and rint() rounds it to nearest
 * even; a result at 2^(emax+1) or more is an overflow, to inf. */
static uint16_t ref_round(const struct fmt *f, double x)
{
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    int bias = fmt_bias(f), emin = 1 - bias, emax = bias;
    uint16_t inf = (uint16_t)(((1 << f->ebits) - 1) << f->mbits);
    double a = fabs(x);
    if (isinf(a)) return sign | inf;
    if (a == 0) return sign;
    int ex;
    frexp(a, &ex);
    ex -= 1;  /* a in [2^ex, 2^(ex+1)) */
    if (ex < emin) ex = emin;
    double n = rint(ldexp(a, f->mbits - ex));  /* units of 2^(ex - mbits) */
    if (n >= ldexp(1.0, f->mbits + 1)) { n /= 2; ex++; }  /* rounded up into the next binade */
    if (ex > emax) return sign | inf;
    long ni = (long)n;
    if (ni < (1L << f->mbits)) return sign | (uint16_t)ni;  /* subnormal (ex == emin) */
    return sign | (uint16_t)(((ex + bias) << f->mbits) | (ni - (1L << f->mbits)));
}

/* What convert.h promises for NaN, from its documentation: sign kept, quiet bit set,
 * the top payload bits that fit kept. */
static int nan_ok(const struct fmt *f, float in, uint16_t out)
{
    uint32_t u = f2u(in);
    int shift = 23 - f->mbits;
    uint16_t want = (uint16_t)(((u >> 31) << 15) | (((1u << f->ebits) - 1) << f->mbits) |
                               (1u << (f->mbits - 1)) |
                               ((u & 0x7fffffu) >> shift & ((1u << (f->mbits - 1)) - 1)));
    return out == want;
}

static uint16_t scalar_to16(const struct fmt *f, float x)
{
    return f == &BF16 ? cvt_f32_to_bf16_1(x) : cvt_f32_to_f16_1(x);
}

static float scalar_from16(const struct fmt *f, uint16_t h)
{
    return f == &BF16 ? cvt_bf16_to_f32_1(h) : cvt_f16_to_f32_1(h);
}

static void array_to16(const struct fmt *f, uint16_t *dst, const float *src, long n)
{
    if (f == &BF16) cpu_f32_to_bf16(dst, src, n);
    else cpu_f32_to_f16(dst, src, n);
}

static void array_from16(const struct fmt *f, float *dst, const uint16_t *src, long n)
{
    if (f == &BF16) cpu_bf16_to_f32(dst, src, n);
    else cpu_f16_to_f32(dst, src, n);
}

/* ---------------------------------------------------------------------------------- */
/* 16 -> 32                                                                           */

/* fp32 bits expected for a 16-bit NaN: bf16 is the top half of an fp32 (pattern kept);
 * fp16's payload moves to the top of the fp32 mantissa and the quiet bit is set. */
static uint32_t want_nan32(const struct fmt *f, uint16_t h)
{
    if (f == &BF16) return (uint32_t)h << 16;
    return ((uint32_t)(h >> 15) << 31) | 0x7f800000u | 0x400000u |
           ((uint32_t)(h & 0x3ff) << 13);
}

static void check_all_patterns_to_f32(const struct fmt *f)
{
    float *arr = malloc(65536 * sizeof *arr);
    uint16_t *h = malloc(65536 * sizeof *h);
    for (long i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    array_from16(f, arr, h, 65536);
    int bad = 0;
    for (long i = 0; i < 65536; i++) {
        double want = ref_value(f, h[i]);
        float got[2] = { scalar_from16(f, h[i]), arr[i] };
        for (int k = 0; k < 2; k++) {
            int ok = isnan(want) ? f2u(got[k]) == want_nan32(f, h[i])
                                 : (double)got[k] == want && !signbit(got[k]) == !signbit(want);
            if (!ok && bad++ < 5)
                CHECK_MSG(0, "%s 0x%04lx -> %s 0x%08x (%.9g), expected %.17g", f->name, i,
                          k ? "array" : "scalar", f2u(got[k]), got[k], want);
        }
    }
    CHECK(bad == 0);
    free(arr);
    free(h);
}

static void test_bf16_to_f32_is_exact_on_all_65536_patterns(void)
{
    check_all_patterns_to_f32(&BF16);
}

static void test_f16_to_f32_is_exact_on_all_65536_patterns(void)
{
    check_all_patterns_to_f32(&F16);
}

/* ---------------------------------------------------------------------------------- */
/* 32 -> 16: ties, neighbours, specials                                               */

/* For every finite non-negative pattern h (and its negative) with upper neighbour h+1
 * (for the largest finite value: 2^(emax+1), where inf begins): the midpoint must go
 * to the neighbour whose last mantissa bit is 0, the fp32 just below it to h, the fp32
 * just above it to h+1; h's own value must come back as h. */
static void check_ties(const struct fmt *f)
{
    uint16_t inf = (uint16_t)(((1 << f->ebits) - 1) << f->mbits);
    long n_pat = inf, n = 2 * n_pat * 4;  /* patterns 0 .. inf-1, both signs, 4 inputs */
    float *x = malloc((size_t)n * sizeof *x);
    uint16_t *want = malloc((size_t)n * sizeof *want), *got = malloc((size_t)n * sizeof *got);
    long k = 0;
    int bad = 0;
    for (int s = 0; s < 2; s++) {
        for (long h = 0; h < n_pat; h++) {
            double lo = ref_value(f, (uint16_t)h);
            double hi = h + 1 == inf ? ldexp(1.0, fmt_bias(f) + 1) : ref_value(f, (uint16_t)(h + 1));
            double mid = (lo + hi) / 2;
            float midf = (float)mid;
            if ((double)midf != mid && bad++ < 5)
                CHECK_MSG(0, "%s: midpoint above 0x%04lx is not an fp32", f->name, h);
            uint16_t sg = s ? 0x8000 : 0, even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
            float v[4] = { (float)lo, midf, nextafterf(midf, 0.0f), nextafterf(midf, INFINITY) };
            uint16_t w[4] = { (uint16_t)h, even, (uint16_t)h, (uint16_t)(h + 1) };
            for (int j = 0; j < 4; j++) {
                x[k] = s ? -v[j] : v[j];
                want[k] = sg | w[j];
                k++;
            }
        }
    }
    array_to16(f, got, x, n);
    for (long i = 0; i < n; i++) {
        uint16_t sc = scalar_to16(f, x[i]), rf = ref_round(f, x[i]);
        if ((sc != want[i] || got[i] != want[i] || rf != want[i]) && bad++ < 8)
            CHECK_MSG(0, "%s: %a (0x%08x) -> scalar 0x%04x array 0x%04x reference 0x%04x, "
                      "expected 0x%04x", f->name, x[i], f2u(x[i]), sc, got[i], rf, want[i]);
    }
    CHECK(bad == 0);
    free(x);
    free(want);
    free(got);
}

static void test_f32_to_bf16_ties_to_even_and_neighbours_of_every_bf16(void)
{
    check_ties(&BF16);
}

static void test_f32_to_f16_ties_to_even_and_neighbours_of_every_f16(void)
{
    check_ties(&F16);
}

/* Each input through the scalar and the array function, against an expected pattern. */
static void check_cases(const struct fmt *f, const float *x, const uint16_t *want, int n)
{
    uint16_t got[64];
    array_to16(f, got, x, n);
    for (int i = 0; i < n; i++) {
        uint16_t sc = scalar_to16(f, x[i]);
        CHECK_MSG(sc == want[i] && got[i] == want[i],
                  "%s: %a (0x%08x) -> scalar 0x%04x array 0x%04x, expected 0x%04x",
                  f->name, x[i], f2u(x[i]), sc, got[i], want[i]);
    }
}

static void test_f32_to_16_specials_overflow_and_subnormals(void)
{
    const float fmin = FLT_MIN, tmin = FLT_TRUE_MIN;
    float xb[] = { INFINITY, -INFINITY, 0.0f, -0.0f, FLT_MAX, -FLT_MAX,
                   u2f(0x7f7f0000), u2f(0x7f7f7fff), u2f(0x7f7f8000), u2f(0x7f7effff),
                   tmin, -tmin, u2f(0x00008000), u2f(0x00008001), u2f(0x00018000),
                   u2f(0x007fffff), fmin, 1.0f, u2f(0x3f808000), u2f(0x3f818000) };
    uint16_t wb[] = { 0x7f80, 0xff80, 0x0000, 0x8000, 0x7f80, 0xff80,
                      0x7f7f, 0x7f7f, 0x7f80, 0x7f7f,
                      0x0000, 0x8000, 0x0000, 0x0001, 0x0002,
                      0x0080, 0x0080, 0x3f80, 0x3f80, 0x3f82 };
    check_cases(&BF16, xb, wb, (int)(sizeof xb / sizeof xb[0]));

    float xh[] = { INFINITY, -INFINITY, 0.0f, -0.0f, FLT_MAX, -FLT_MAX,
                   65504.0f, 65519.0f, nextafterf(65520.0f, 0.0f), 65520.0f, -65520.0f,
                   65536.0f, 1e10f, tmin, -tmin, fmin, -fmin,
                   0x1p-24f, 0x1p-25f, -0x1p-25f, nextafterf(0x1p-25f, 1.0f),
                   0x1.8p-24f, 0x1.4p-23f, 0x1p-14f, 0x1.ff8p-15f, 0x1.ffcp-15f,
                   nextafterf(0x1p-14f, 0.0f), 1.0f, 0x1.002p0f, 0x1.006p0f, 2049.0f };
    uint16_t wh[] = { 0x7c00, 0xfc00, 0x0000, 0x8000, 0x7c00, 0xfc00,
                      0x7bff, 0x7bff, 0x7bff, 0x7c00, 0xfc00,
                      0x7c00, 0x7c00, 0x0000, 0x8000, 0x0000, 0x8000,
                      0x0001, 0x0000, 0x8000, 0x0001,
                      0x0002, 0x0002, 0x0400, 0x03ff, 0x0400,
                      0x0400, 0x3c00, 0x3c00, 0x3c02, 0x6800 };
    check_cases(&F16, xh, wh, (int)(sizeof xh / sizeof xh[0]));
}

static void test_f32_nan_stays_quiet_nan_with_sign_and_top_payload(void)
{
    uint32_t nans[] = { 0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fa00000,
                        0x7fbfffff, 0x7fffffff, 0xffffffff, 0x7f802000, 0x7f810000,
                        0x7fc00001, 0x7fd55555 };
    const struct fmt *fs[2] = { &BF16, &F16 };
    int n = (int)(sizeof nans / sizeof nans[0]);
    for (int j = 0; j < 2; j++) {
        float x[16];
        uint16_t got[16];
        for (int i = 0; i < n; i++) x[i] = u2f(nans[i]);
        array_to16(fs[j], got, x, n);
        for (int i = 0; i < n; i++) {
            uint16_t sc = scalar_to16(fs[j], x[i]);
            CHECK_MSG(nan_ok(fs[j], x[i], sc) && nan_ok(fs[j], x[i], got[i]),
                      "%s: NaN 0x%08x -> scalar 0x%04x array 0x%04x", fs[j]->name, nans[i],
                      sc, got[i]);
            CHECK(isnan(scalar_from16(fs[j], sc)));
        }
    }
}

/* A strided walk over all 2^32 fp32 patterns (every NaN, inf, subnormal and normal
 * range is visited), scalar against the double reference. */
static void check_sample(const struct fmt *f)
{
    const uint64_t stride = 131;  /* prime: the low bits vary along the walk */
    long bad = 0, n = 0;
#pragma omp parallel for reduction(+ : bad, n) schedule(static)
    for (uint64_t u = 0; u < (1ULL << 32); u += stride) {
        float x = u2f((uint32_t)u);
        uint16_t got = scalar_to16(f, x);
        int ok = isnan(x) ? nan_ok(f, x, got) : got == ref_round(f, x);
        bad += !ok;
        n++;
    }
    CHECK_MSG(bad == 0, "%s: %ld of %ld sampled fp32 patterns rounded wrongly", f->name, bad, n);
}

static void test_f32_to_bf16_matches_reference_on_strided_sample_of_all_fp32(void)
{
    check_sample(&BF16);
}

static void test_f32_to_f16_matches_reference_on_strided_sample_of_all_fp32(void)
{
    check_sample(&F16);
}

/* ---------------------------------------------------------------------------------- */
/* array functions against the scalar ones                                            */

static float random_float(uint64_t *s)
{
    static const uint32_t special[] = { 0x7f800000, 0xff800000, 0x7fc00000, 0xff800001,
                                        0x7fa00000, 0x00000000, 0x80000000, 0x00000001,
                                        0x807fffff, 0x7f7fffff, 0x477ff000, 0xc77ff000,
                                        0x33000000, 0x38800000, 0x7f7f8000, 0x00008000 };
    uint64_t r = rng_next(s);
    switch (r & 3) {
    case 0: return u2f((uint32_t)(r >> 32));               /* any pattern */
    case 1: return (float)((double)(r >> 11) * 0x1p-53 * 200.0 - 100.0);  /* typical */
    case 2: /* near the fp16 range: exponents 2^-30 .. 2^20 */
        return ldexpf((float)((r >> 40) & 0xffffff) * 0x1p-24f + 1.0f,
                      (int)((r >> 8) % 51) - 30) * ((r >> 7 & 1) ? -1.0f : 1.0f);
    default: return u2f(special[(r >> 8) % (sizeof special / sizeof special[0])]);
    }
}

static void test_array_conversions_equal_scalar_bit_for_bit(void)
{
    const long n = (1L << 21) + 13;
    uint64_t s = 42;
    float *x = malloc((size_t)(n + 1) * sizeof *x), *y = malloc((size_t)(n + 1) * sizeof *y);
    uint16_t *h = malloc((size_t)(n + 1) * sizeof *h), *r = malloc((size_t)(n + 1) * sizeof *r);
    for (long i = 0; i < n + 1; i++) {
        x[i] = random_float(&s);
        r[i] = (uint16_t)rng_next(&s);
    }
    const struct fmt *fs[2] = { &BF16, &F16 };
    for (int j = 0; j < 2; j++) {
        const struct fmt *f = fs[j];
        /* offset 1: src and dst unaligned for the vector loads and stores; lengths that
         * end in every tail size, below and above the parallel threshold */
        long lens[] = { 0, 1, 7, 15, 16, 17, 31, 33, 1000, 16383, 16385, 32767, 32768, 100003, n };
        long bad = 0;
        for (size_t t = 0; t < sizeof lens / sizeof lens[0]; t++) {
            long m = lens[t];
            memset(h, 0xaa, (size_t)(n + 1) * sizeof *h);
            array_to16(f, h + 1, x + 1, m);
            for (long i = 0; i < m; i++) bad += h[i + 1] != scalar_to16(f, x[i + 1]);
            bad += h[0] != 0xaaaa || (m < n && h[m + 1] != 0xaaaa);  /* no write outside */
            array_from16(f, y + 1, r + 1, m);
            for (long i = 0; i < m; i++)
                bad += f2u(y[i + 1]) != f2u(scalar_from16(f, r[i + 1]));
        }
        CHECK_MSG(bad == 0, "%s: %ld elements differ between array and scalar", f->name, bad);
    }
    free(x);
    free(y);
    free(h);
    free(r);
}

/* ---------------------------------------------------------------------------------- */
/* loss scaling                                                                       */

static struct loss_scale ls_make(int interval, double init, double min, double max)
{
    struct loss_scale_opts o = LOSS_SCALE_OPTS_DEFAULT;
    o.growth_interval = interval;
    o.init_scale = init;
    o.min_scale = min;
    o.max_scale = max;
    struct loss_scale ls;
    if (loss_scale_init(&ls, &o, NULL, 0) != 0) memset(&ls, 0, sizeof ls);
    return ls;
}

static void test_loss_scale_defaults(void)
{
    struct loss_scale ls;
    CHECK(loss_scale_init(&ls, NULL, NULL, 0) == 0);
    CHECK(ls.scale == 65536.0 && ls.good_steps == 0 && ls.skipped == 0);
    CHECK(ls.opts.growth_interval == 2000 && ls.opts.growth == 2.0 && ls.opts.backoff == 0.5);
    CHECK(ls.opts.min_scale == 1.0 && ls.opts.max_scale == 16777216.0);
}

static void test_loss_scale_grows_after_exactly_interval_clean_steps(void)
{
    struct loss_scale ls;
    CHECK(loss_scale_init(&ls, NULL, NULL, 0) == 0);
    for (int i = 1; i < 2000; i++) CHECK(loss_scale_update(&ls, 0) == 1);
    CHECK(ls.scale == 65536.0 && ls.good_steps == 1999);
    CHECK(loss_scale_update(&ls, 0) == 1);  /* the 2000th is applied, then the scale grows */
    CHECK(ls.scale == 131072.0 && ls.good_steps == 0);
    for (int i = 0; i < 2000; i++) loss_scale_update(&ls, 0);
    CHECK(ls.scale == 262144.0 && ls.good_steps == 0 && ls.skipped == 0);
}

static void test_loss_scale_overflow_skips_backs_off_and_restarts_the_count(void)
{
    struct loss_scale ls = ls_make(5, 1024, 1, 1 << 24);
    for (int i = 0; i < 4; i++) CHECK(loss_scale_update(&ls, 0) == 1);
    CHECK(loss_scale_update(&ls, 1) == 0);
    CHECK(ls.scale == 512 && ls.good_steps == 0 && ls.skipped == 1);
    CHECK(loss_scale_update(&ls, 1) == 0);
    CHECK(ls.scale == 256 && ls.skipped == 2);
    for (int i = 0; i < 4; i++) loss_scale_update(&ls, 0);
    CHECK(ls.scale == 256);  /* 4 clean steps since the overflow: not yet */
    CHECK(loss_scale_update(&ls, 0) == 1);
    CHECK(ls.scale == 512 && ls.skipped == 2);
}

static void test_loss_scale_clamps_and_rejects_bad_options(void)
{
    struct loss_scale ls = ls_make(1, 4, 1, 64);
    for (int i = 0; i < 5; i++) CHECK(loss_scale_update(&ls, 1) == 0);
    CHECK(ls.scale == 1 && ls.skipped == 5);  /* 2, 1, 1, 1, 1 */
    for (int i = 0; i < 10; i++) CHECK(loss_scale_update(&ls, 0) == 1);
    CHECK(ls.scale == 64);  /* 2, 4, ... 64, 64 */
    ls = ls_make(1, 1e9, 1, 64);
    CHECK(ls.scale == 64);  /* init clamped */
    ls = ls_make(1, 0.25, 1, 64);
    CHECK(ls.scale == 1);

    struct loss_scale_opts bad[7];
    for (int i = 0; i < 7; i++) bad[i] = LOSS_SCALE_OPTS_DEFAULT;
    bad[0].min_scale = 0;
    bad[1].max_scale = 0.5;
    bad[2].init_scale = NAN;
    bad[3].growth = 1.0;
    bad[4].backoff = 1.0;
    bad[5].growth_interval = 0;
    bad[6].max_scale = INFINITY;
    for (int i = 0; i < 7; i++) {
        char err[128] = "";
        struct loss_scale x = { .scale = 7 };
        CHECK_MSG(loss_scale_init(&x, &bad[i], err, sizeof err) == -1 && err[0] && x.scale == 7,
                  "bad option set %d accepted", i);
    }
}

static void test_loss_scale_text_round_trips_and_rejects_malformed(void)
{
    struct loss_scale a = ls_make(3, 65536, 1, 1 << 24), b;
    for (int i = 0; i < 7; i++) loss_scale_update(&a, i == 4);
    char buf[LOSS_SCALE_TEXT_MAX], err[128];
    CHECK(loss_scale_format(&a, buf, sizeof buf) > 0);
    CHECK(strcmp(buf, "scale=65536 good_steps=2 skipped=1") == 0);
    b = ls_make(3, 1, 1, 1 << 24);
    CHECK(loss_scale_parse(&b, buf, err, sizeof err) == 0);
    CHECK(b.scale == a.scale && b.good_steps == a.good_steps && b.skipped == a.skipped);
    CHECK(loss_scale_update(&b, 0) == loss_scale_update(&a, 0) && b.scale == a.scale);

    /* a scale that is not a power of two survives exactly (%.17g) */
    a.scale = 1.0 / 3.0 * 65536;
    CHECK(loss_scale_format(&a, buf, sizeof buf) > 0);
    CHECK(loss_scale_parse(&b, buf, err, sizeof err) == 0 && b.scale == a.scale);
    CHECK(loss_scale_format(&a, buf, 10) == -1);

    CHECK(loss_scale_parse(&b, "scale=65536 good_steps=12 skipped=3", err, sizeof err) == 0);
    CHECK(b.scale == 65536 && b.good_steps == 12 && b.skipped == 3);
    CHECK(loss_scale_parse(&b, "scale=1e30 good_steps=0 skipped=0", err, sizeof err) == 0);
    CHECK(b.scale == 16777216.0);  /* clamped to this run's max */

    const char *bad[] = { "", "scale=", "scale=65536", "scale=65536 good_steps=1",
                          "scale=-1 good_steps=0 skipped=0", "scale=0 good_steps=0 skipped=0",
                          "scale=nan good_steps=0 skipped=0", "scale=inf good_steps=0 skipped=0",
                          "scale=1e999 good_steps=0 skipped=0",
                          "scale=2 good_steps=-1 skipped=0", "scale=2 good_steps=1 skipped=+1",
                          "scale=2 good_steps=1 skipped=1 ", "scale=2 good_steps=1 skipped=1x",
                          "scale=2  good_steps=1 skipped=1", "good_steps=1 scale=2 skipped=1",
                          "scale=2 good_steps=1 skipped=99999999999999999999",
                          "scale=2 good_steps=1 bogus=1" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct loss_scale c = b;
        err[0] = 0;
        CHECK_MSG(loss_scale_parse(&c, bad[i], err, sizeof err) == -1 && err[0] &&
                      c.scale == b.scale && c.good_steps == b.good_steps &&
                      c.skipped == b.skipped,
                  "accepted or changed state on \"%s\"", bad[i]);
    }
}

static void test_loss_scale_overflow_local_finds_inf_and_nan_anywhere(void)
{
    const long n = (1L << 20) + 7;
    uint64_t s = 7;
    float *g = malloc((size_t)n * sizeof *g);
    for (long i = 0; i < n; i++) {
        g[i] = random_float(&s);
        if (!isfinite(g[i])) g[i] = (i & 1) ? FLT_MAX : -FLT_TRUE_MIN;
    }
    CHECK(loss_scale_overflow_local(g, n) == 0);
    CHECK(loss_scale_overflow_local(g, 0) == 0);
    const uint32_t bad[] = { 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001,
                             0x7fffffff };
    long misses = 0;
    for (int t = 0; t < 60; t++) {
        long pos = t == 0 ? 0 : t == 1 ? n - 1 : (long)(rng_next(&s) % (uint64_t)n);
        long len = t % 3 == 0 ? n : pos + 1 + (long)(rng_next(&s) % 40);  /* tails too */
        if (len > n) len = n;
        float keep = g[pos];
        g[pos] = u2f(bad[t % 6]);
        misses += loss_scale_overflow_local(g, len) != 1;
        misses += pos > 0 && loss_scale_overflow_local(g, pos) != 0;  /* stops before it */
        g[pos] = keep;
    }
    CHECK_MSG(misses == 0, "%ld wrong answers", misses);
    CHECK(loss_scale_overflow_local(g, n) == 0);
    free(g);
}

int main(void)
{
    RUN(test_bf16_to_f32_is_exact_on_all_65536_patterns);
    RUN(test_f16_to_f32_is_exact_on_all_65536_patterns);
    RUN(test_f32_to_bf16_ties_to_even_and_neighbours_of_every_bf16);
    RUN(test_f32_to_f16_ties_to_even_and_neighbours_of_every_f16);
    RUN(test_f32_to_16_specials_overflow_and_subnormals);
    RUN(test_f32_nan_stays_quiet_nan_with_sign_and_top_payload);
    RUN(test_f32_to_bf16_matches_reference_on_strided_sample_of_all_fp32);
    RUN(test_f32_to_f16_matches_reference_on_strided_sample_of_all_fp32);
    RUN(test_array_conversions_equal_scalar_bit_for_bit);
    RUN(test_loss_scale_defaults);
    RUN(test_loss_scale_grows_after_exactly_interval_clean_steps);
    RUN(test_loss_scale_overflow_skips_backs_off_and_restarts_the_count);
    RUN(test_loss_scale_clamps_and_rejects_bad_options);
    RUN(test_loss_scale_text_round_trips_and_rejects_malformed);
    RUN(test_loss_scale_overflow_local_finds_inf_and_nan_anywhere);
    return test_summary();
}
