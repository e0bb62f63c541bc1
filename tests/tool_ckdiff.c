/* tool_ckdiff.c — compare the tensors of two trident checkpoints.
 *
 *   bin/tool_ckdiff A.h5 B.h5 [TOL] [GROUP]
 *
 * Every dataset under GROUP (default /model) must exist in both files with the same
 * shape; prints the largest absolute difference and where it is. Exit 0 when it is
 * <= TOL (default 0: bit-identical), 1 otherwise, 2 on a read error. Attributes (such as
 * per-tensor checksums, which differ whenever a value does) are not compared. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct diff { hid_t b; double worst; char where[256]; int missing; };

static herr_t visit(hid_t a_group, const char *name, const H5L_info_t *info, void *ctx) {
    struct diff *d = ctx;
    (void)info;
    hid_t da = H5Dopen2(a_group, name, H5P_DEFAULT);
    if (da < 0) return 0; /* a sub-group: H5Lvisit descends into it by itself */
    hid_t db = H5Dopen2(d->b, name, H5P_DEFAULT);
    if (db < 0) {
        fprintf(stderr, "tensor %s missing in the second file\n", name);
        d->missing = 1;
        H5Dclose(da);
        return 0;
    }
    hssize_t na = H5Sget_simple_extent_npoints(H5Dget_space(da));
    hssize_t nb = H5Sget_simple_extent_npoints(H5Dget_space(db));
    if (na != nb) {
        fprintf(stderr, "tensor %s: %lld vs %lld elements\n", name, (long long)na, (long long)nb);
        d->missing = 1;
    } else {
        float *x = malloc(sizeof(float) * (size_t)na), *y = malloc(sizeof(float) * (size_t)na);
        H5Dread(da, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
        H5Dread(db, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, y);
        for (hssize_t i = 0; i < na; i++) {
            double e = fabs((double)x[i] - (double)y[i]);
            if (memcmp(&x[i], &y[i], sizeof(float)) != 0 && e == 0) e = 1e-45; /* -0 vs 0 */
            if (e > d->worst || (e != e)) {
                d->worst = e != e ? INFINITY : e;
                snprintf(d->where, sizeof d->where, "%s[%lld]: %.9g vs %.9g", name,
                         (long long)i, x[i], y[i]);
            }
        }
        free(x);
        free(y);
    }
    H5Dclose(da);
    H5Dclose(db);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s A.h5 B.h5 [TOL] [GROUP]\n", argv[0]);
        return 2;
    }
    double tol = argc > 3 ? atof(argv[3]) : 0.0;
    const char *group = argc > 4 ? argv[4] : "/model";
    hid_t fa = H5Fopen(argv[1], H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t fb = H5Fopen(argv[2], H5F_ACC_RDONLY, H5P_DEFAULT);
    if (fa < 0 || fb < 0) { fprintf(stderr, "cannot open the checkpoints\n"); return 2; }
    hid_t ga = H5Gopen2(fa, group, H5P_DEFAULT), gb = H5Gopen2(fb, group, H5P_DEFAULT);
    if (ga < 0 || gb < 0) { fprintf(stderr, "no group %s\n", group); return 2; }
    struct diff d = {.b = gb, .worst = 0, .where = "", .missing = 0};
    H5Lvisit(ga, H5_INDEX_NAME, H5_ITER_INC, visit, &d);
    printf("max |difference| %.3g%s%s\n", d.worst, d.where[0] ? " at " : "", d.where);
    H5Gclose(ga); H5Gclose(gb); H5Fclose(fa); H5Fclose(fb);
    return (d.missing || d.worst > tol) ? 1 : 0;
}
