/* tool_bitflip.c — corrupt one bit of a tensor inside an HDF5 file, as a failing disk
 * or network would, without going through HDF5 (so no metadata knows about it).
 *
 *   bin/tool_bitflip FILE DATASET     e.g. ckpt-00000010.h5 /model/h.0.mlp.fc.w
 *
 * Finds the dataset's bytes in the file (contiguous layout), flips bit 4 of the byte in
 * the middle, prints the offset. Exit 0 on success, 2 on error. */
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s FILE DATASET\n", argv[0]);
        return 2;
    }
    hid_t f = H5Fopen(argv[1], H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = f < 0 ? -1 : H5Dopen2(f, argv[2], H5P_DEFAULT);
    if (d < 0) { fprintf(stderr, "cannot open %s in %s\n", argv[2], argv[1]); return 2; }
    haddr_t off = H5Dget_offset(d);
    hsize_t size = H5Dget_storage_size(d);
    H5Dclose(d);
    H5Fclose(f);
    if (off == HADDR_UNDEF || size == 0) { fprintf(stderr, "dataset is not contiguous\n"); return 2; }
    off_t at = (off_t)(off + size / 2);
    int fd = open(argv[1], O_RDWR);
    unsigned char byte;
    if (fd < 0 || pread(fd, &byte, 1, at) != 1) { perror(argv[1]); return 2; }
    byte ^= 0x10;
    if (pwrite(fd, &byte, 1, at) != 1) { perror(argv[1]); return 2; }
    close(fd);
    printf("flipped a bit at byte %lld of %s (%s)\n", (long long)at, argv[1], argv[2]);
    return 0;
}
