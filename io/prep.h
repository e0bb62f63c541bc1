/* prep.h — `trident prep`: turn text files into a trident token file (HDF5).
 *
 *   trident prep --out FILE.h5 [--force] [--shards N] [--val-fraction F]
 *                [--split-on LINE] [--seed N] INPUT...
 *
 * The output is never one of the inputs, and an existing output is replaced only with
 * --force; it is written under a temporary name and renamed into place when complete.
 *
 * Every document becomes its bytes followed by TOK_EOT and goes, as a whole, to the
 * training or the validation split (so no document leaks across the two). The format
 * is described in README.md ("Token file format") and validated by dataset_open().
 *
 * --shards N writes N token files instead of one, named from --out with ".h5" dropped:
 *   FILE-00000-of-0000N.h5, FILE-00001-of-0000N.h5, ... FILE-<N-1>-of-0000N.h5
 * (5-digit, zero-padded index and count; 1 <= N <= 1000), read back as one corpus by
 * dataset_open("FILE-*-of-0000N.h5"), whose sorted order is the shard order. The split
 * of each document is the same as without --shards; the i-th document of a split goes
 * to shard i % N, so the shards are balanced and the corpus's training split is the
 * same documents in a different order. Each shard is a complete token file with its
 * own counts, plus the attributes `shard_index` (0-based) and `n_shards`; every split
 * of every shard holds at least one document (prep refuses N otherwise).
 */
#ifndef TRIDENT_PREP_H
#define TRIDENT_PREP_H

#include <stdint.h>

#define PREP_FORMAT         "trident-tokens"
#define PREP_FORMAT_VERSION 1

/* argv[0] is "prep". Returns 0 on success; bad input exits through tr_fail(). */
int prep_main(int argc, char **argv);

/* The number in [0, 1) that decides document `doc_index`'s split: validation when it is
 * below --val-fraction. A pure function of (seed, index), so a split can be re-derived
 * without the file and does not depend on the order documents are hashed in. */
double prep_doc_unit(uint64_t seed, int64_t doc_index);

#endif
