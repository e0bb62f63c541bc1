/* tool_bitflip.c — corrupt one bit inside an HDF5 file, as a failing disk or network
 * would, without going through HDF5 (so no metadata knows about it).
 *
 *   bin/tool_bitflip FILE DATASET        a bit in the middle of a tensor's data
 *   bin/tool_bitflip FILE --attr NAME    a bit in the middle of root attribute NAME's value
 *                                        (e.g. config: "n_embd = 64" may read "n_embd = 66")
 *   bin/tool_bitflip FILE --dims DATASET a bit of the first dimension in the dataset's
 *                                        dataspace (its shape as stored in its header)
 *   bin/tool_bitflip FILE --meta SEED    a bit of a byte outside every dataset's data
 *                                        (superblock, headers, attributes, B-trees),
 *                                        chosen by SEED
 *
 * Prints the offset. Exit 0 on success, 2 on error. */
#include <fcntl.h>
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int flip_at(const char *path, off_t at, unsigned char mask, const char *what) {
    int fd = open(path, O_RDWR);
    unsigned char byte;
    if (fd < 0 || pread(fd, &byte, 1, at) != 1) { perror(path); return 2; }
    byte ^= mask;
    if (pwrite(fd, &byte, 1, at) != 1) { perror(path); return 2; }
    close(fd);
    printf("flipped a bit at byte %lld of %s (%s)\n", (long long)at, path, what);
    return 0;
}

static unsigned char *slurp(const char *path, size_t *n) {
    struct stat st;
    if (stat(path, &st) != 0) return NULL;
    unsigned char *buf = malloc((size_t)st.st_size + 1);
    int fd = open(path, O_RDONLY);
    if (!buf || fd < 0 || read(fd, buf, (size_t)st.st_size) != st.st_size) { free(buf); return NULL; }
    close(fd);
    *n = (size_t)st.st_size;
    return buf;
}

static off_t find_bytes(const unsigned char *hay, size_t n, size_t from, size_t to,
                        const void *needle, size_t len) {
    if (to > n) to = n;
    for (size_t i = from; i + len <= to; i++)
        if (memcmp(hay + i, needle, len) == 0) return (off_t)i;
    return -1;
}

/* raw-data ranges of every dataset, collected by H5Ovisit */
struct ranges { uint64_t lo[4096], hi[4096]; int n; };

static herr_t visit(hid_t obj, const char *name, const H5O_info_t *info, void *arg) {
    struct ranges *r = arg;
    if (info->type != H5O_TYPE_DATASET || r->n >= 4096) return 0;
    hid_t d = H5Dopen2(obj, name, H5P_DEFAULT);
    haddr_t off = H5Dget_offset(d);
    hsize_t size = H5Dget_storage_size(d);
    H5Dclose(d);
    if (off != HADDR_UNDEF && size > 0) {
        r->lo[r->n] = off;
        r->hi[r->n] = off + size;
        r->n++;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s FILE DATASET | FILE --attr NAME | FILE --dims DATASET | "
                "FILE --meta SEED\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) { fprintf(stderr, "cannot open %s\n", path); return 2; }
    if (argc == 3) {
        hid_t d = H5Dopen2(f, argv[2], H5P_DEFAULT);
        if (d < 0) { fprintf(stderr, "cannot open %s in %s\n", argv[2], path); return 2; }
        haddr_t off = H5Dget_offset(d);
        hsize_t size = H5Dget_storage_size(d);
        H5Dclose(d);
        H5Fclose(f);
        if (off == HADDR_UNDEF || size == 0) { fprintf(stderr, "dataset is not contiguous\n"); return 2; }
        return flip_at(path, (off_t)(off + size / 2), 0x10, argv[2]);
    }
    size_t n;
    unsigned char *file = slurp(path, &n);
    if (!file) { perror(path); return 2; }
    int rc = 2;
    if (strcmp(argv[2], "--attr") == 0) {
        /* the attribute's value as stored: find those bytes in the file */
        hid_t a = H5Aopen(f, argv[3], H5P_DEFAULT);
        if (a < 0) { fprintf(stderr, "no attribute %s\n", argv[3]); return 2; }
        hid_t t = H5Aget_type(a);
        size_t len = H5Tget_size(t);
        unsigned char *v = calloc(len + 1, 1);
        H5Aread(a, t, v);
        H5Tclose(t);
        H5Aclose(a);
        off_t at = find_bytes(file, n, 0, n, v, len);
        if (at < 0) fprintf(stderr, "attribute %s's value not found in the file\n", argv[3]);
        /* bit 1 of a digit keeps it a digit ('4' -> '6'), of a letter a letter */
        else rc = flip_at(path, at + (off_t)len / 2, 0x02, argv[3]);
        free(v);
    } else if (strcmp(argv[2], "--dims") == 0) {
        hid_t d = H5Dopen2(f, argv[3], H5P_DEFAULT);
        if (d < 0) { fprintf(stderr, "cannot open %s\n", argv[3]); return 2; }
        hid_t sp = H5Dget_space(d);
        hsize_t dims[8];
        int nd = H5Sget_simple_extent_dims(sp, dims, NULL);
        H5Sclose(sp);
        H5O_info_t info;
        H5Oget_info2(d, &info, H5O_INFO_BASIC);
        H5Dclose(d);
        uint64_t le[8];
        for (int i = 0; i < nd; i++) le[i] = (uint64_t)dims[i]; /* x86: little-endian */
        off_t at = find_bytes(file, n, (size_t)info.addr, (size_t)info.addr + 4096, le,
                              sizeof(uint64_t) * (size_t)nd);
        if (at < 0) fprintf(stderr, "dataspace of %s not found near its header\n", argv[3]);
        else rc = flip_at(path, at, 0x01, "dataspace dims");
    } else if (strcmp(argv[2], "--meta") == 0) {
        static struct ranges r;
        H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_INC, visit, &r, H5O_INFO_BASIC);
        uint64_t state = strtoull(argv[3], NULL, 10) * 0x9e3779b97f4a7c15ull + 1;
        for (int tries = 0; tries < 1000000 && rc == 2; tries++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            uint64_t at = (state >> 17) % n;
            int in_data = 0;
            for (int i = 0; i < r.n && !in_data; i++) in_data = at >= r.lo[i] && at < r.hi[i];
            if (in_data) continue;
            rc = flip_at(path, (off_t)at, (unsigned char)(1u << ((state >> 7) % 8)), "metadata");
        }
    }
    free(file);
    H5Fclose(f);
    return rc;
}
