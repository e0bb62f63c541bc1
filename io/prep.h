/* prep.h — `trident prep`: turn text files into a trident token file (HDF5).
 *
 *   trident prep --out FILE.h5 [--val-fraction F] [--split-on LINE] [--seed N] INPUT...
 *
 * Every document becomes its bytes followed by TOK_EOT and goes, as a whole, to the
 * training or the validation split (so no document leaks across the two). The format
 * is described in README.md ("Token file format") and validated by dataset_open().
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
