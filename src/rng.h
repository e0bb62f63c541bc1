/* rng.h — counter-based random numbers: a value is a pure function of its key.
 *
 * Nothing is drawn "in order": a weight is N(0,1) of (seed, tensor, element index), a
 * training window is uniform of (seed, step, sample index). So any shard of any layout
 * computes exactly its slice of the same numbers, and a resumed run needs no RNG state
 * beyond the seed and the step.
 */
#ifndef TRIDENT_RNG_H
#define TRIDENT_RNG_H

#include <math.h>
#include <stdint.h>

/* splitmix64 finaliser: a bijective 64-bit mixer with good avalanche. */
static inline uint64_t rng_mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static inline uint64_t rng_key3(uint64_t a, uint64_t b, uint64_t c) {
    return rng_mix(a ^ rng_mix(b ^ rng_mix(c)));
}

/* uniform in (0, 1], 53 bits */
static inline double rng_uniform(uint64_t key) {
    return ((double)(rng_mix(key) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
}

/* standard normal (Box-Muller on two independent keys derived from `key`) */
static inline double rng_normal(uint64_t key) {
    double u1 = rng_uniform(key ^ 0x5bd1e9955bd1e995ull);
    double u2 = rng_uniform(key + 0x2545f4914f6cdd1dull);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* uniform integer in [0, n) */
static inline uint64_t rng_below(uint64_t key, uint64_t n) {
    return (uint64_t)(rng_uniform(key) * (double)n) % n;
}

#endif
