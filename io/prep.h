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

/* Each token dataset (/train/tokens, /val/tokens) carries two attributes that let a
 * reader check the data before training on it (dataset_open does):
 *   checksum   uint64: the wrapping sum over i of prep_token_mix(i, tokens[i]);
 *   max_token  int64:  the largest token id in the array (-1 when it is empty).
 * The mix is a bijection of (index, token), so changing, moving or swapping tokens
 * changes the sum; a sum splits into parts over any ranges of the array. */
static inline uint64_t prep_token_mix(uint64_t index, uint16_t token) {
    uint64_t x = ((index << 16) | token) * 0x9e3779b97f4a7c15ull;
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ull;
    return x ^ (x >> 32);
}

/* argv[0] is "prep". Returns 0 on success; bad input exits through tr_fail(). */
int prep_main(int argc, char **argv);

/* The number in [0, 1) that decides document `doc_index`'s split: validation when it is
 * below --val-fraction. A pure function of (seed, index), so a split can be re-derived
 * without the file and does not depend on the order documents are hashed in. */
double prep_doc_unit(uint64_t seed, int64_t doc_index);

#endif
