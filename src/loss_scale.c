/* loss_scale.c — dynamic loss scaling (see loss_scale.h). */
#include "loss_scale.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double clamp(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }

static int fail(char *err, size_t err_size, const char *msg)
{
    if (err && err_size) snprintf(err, err_size, "%s", msg);
    return -1;
}

int loss_scale_init(struct loss_scale *ls, const struct loss_scale_opts *opts, char *err,
                    size_t err_size)
{
    struct loss_scale_opts o = opts ? *opts : LOSS_SCALE_OPTS_DEFAULT;
    /* written so that NaN fails every test */
    if (!(o.min_scale > 0 && isfinite(o.min_scale)))
        return fail(err, err_size, "loss scale: min_scale must be finite and > 0");
    if (!(o.max_scale >= o.min_scale && isfinite(o.max_scale)))
        return fail(err, err_size, "loss scale: max_scale must be finite and >= min_scale");
    if (!(o.init_scale > 0 && isfinite(o.init_scale)))
        return fail(err, err_size, "loss scale: init_scale must be finite and > 0");
    if (!(o.growth > 1 && isfinite(o.growth)))
        return fail(err, err_size, "loss scale: growth must be finite and > 1");
    if (!(o.backoff > 0 && o.backoff < 1))
        return fail(err, err_size, "loss scale: backoff must be in (0, 1)");
    if (o.growth_interval < 1)
        return fail(err, err_size, "loss scale: growth_interval must be >= 1");
    ls->opts = o;
    ls->scale = clamp(o.init_scale, o.min_scale, o.max_scale);
    ls->good_steps = 0;
    ls->skipped = 0;
    return 0;
}

int loss_scale_update(struct loss_scale *ls, int overflow_anywhere)
{
    const struct loss_scale_opts *o = &ls->opts;
    if (overflow_anywhere) {
        ls->scale = clamp(ls->scale * o->backoff, o->min_scale, o->max_scale);
        ls->good_steps = 0;
        ls->skipped++;
        return 0;
    }
    /* >= rather than ==: a resumed run may have a shorter interval than its checkpoint */
    if (++ls->good_steps >= o->growth_interval) {
        ls->scale = clamp(ls->scale * o->growth, o->min_scale, o->max_scale);
        ls->good_steps = 0;
    }
    return 1;
}

int loss_scale_overflow_local(const float *grads, long n)
{
    /* An exponent of all ones is inf or NaN. A bit test rather than isfinite() keeps
     * the loop branch-free, so it vectorises; no early exit: the scan is memory-bound
     * and an overflow is the rare case. */
    const uint32_t *bits = (const uint32_t *)(const void *)grads;
    int any = 0;
#pragma omp parallel for simd schedule(static) reduction(| : any) if (n >= (1 << 15))
    for (long i = 0; i < n; i++) any |= (bits[i] & 0x7f800000u) == 0x7f800000u;
    return any;
}

int loss_scale_format(const struct loss_scale *ls, char *buf, size_t size)
{
    int len = snprintf(buf, size, "scale=%.17g good_steps=%ld skipped=%ld", ls->scale,
                       ls->good_steps, ls->skipped);
    return len < 0 || (size_t)len >= size ? -1 : len;
}

/* "key=" at *p; advances *p past it (strncmp stops at the end of the text). */
static int parse_key(const char **p, const char *key)
{
    size_t len = strlen(key);
    if (strncmp(*p, key, len) != 0 || (*p)[len] != '=') return -1;
    *p += len + 1;
    return 0;
}

static int parse_long(const char **p, long *out)
{
    char *end;
    if (**p < '0' || **p > '9') return -1;  /* strtol would take spaces and signs */
    errno = 0;
    long v = strtol(*p, &end, 10);
    if (errno) return -1;
    *p = end;
    *out = v;
    return 0;
}

int loss_scale_parse(struct loss_scale *ls, const char *text, char *err, size_t err_size)
{
    const char *p = text;
    char *end;
    double scale;
    long good, skipped;
    if (parse_key(&p, "scale")) return fail(err, err_size, "loss scale: expected 'scale='");
    if ((*p < '0' || *p > '9') && *p != '.')
        return fail(err, err_size, "loss scale: scale is not a positive number");
    scale = strtod(p, &end);
    if (end == p || !isfinite(scale) || !(scale > 0))
        return fail(err, err_size, "loss scale: scale is not a finite number > 0");
    p = end;
    if (parse_key(&p, " good_steps") || parse_long(&p, &good))
        return fail(err, err_size, "loss scale: expected ' good_steps=<count>'");
    if (parse_key(&p, " skipped") || parse_long(&p, &skipped))
        return fail(err, err_size, "loss scale: expected ' skipped=<count>'");
    if (*p != '\0') return fail(err, err_size, "loss scale: unexpected text after skipped=");
    ls->scale = clamp(scale, ls->opts.min_scale, ls->opts.max_scale);
    ls->good_steps = good;
    ls->skipped = skipped;
    return 0;
}
