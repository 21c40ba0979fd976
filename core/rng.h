/*
 * Deterministic random numbers. Two kinds:
 *  - cu_rng_t, a small sequential generator (xoshiro256**) whose whole state
 *    is four words, so a checkpoint can save and restore it exactly;
 *  - cu_hash_uniform(), a stateless counter-based draw: the same (key, index)
 *    always gives the same number. Dropout masks and data order use it, so
 *    they can be regenerated in the backward pass and after a resume instead
 *    of being stored.
 */
#ifndef CU_CORE_RNG_H
#define CU_CORE_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} cu_rng_t;

void cu_rng_seed(cu_rng_t *rng, uint64_t seed);
uint64_t cu_rng_next(cu_rng_t *rng);
/* Uniform in [0, 1) with 24 bits of precision. */
float cu_rng_uniform(cu_rng_t *rng);
/* Standard normal (Box-Muller). */
float cu_rng_normal(cu_rng_t *rng);
/* Uniform integer in [0, n). */
uint64_t cu_rng_below(cu_rng_t *rng, uint64_t n);

/* A 64-bit mix of (key, index): splitmix64's finaliser over both. */
uint64_t cu_hash64(uint64_t key, uint64_t index);
/* Uniform in [0, 1) from (key, index). */
static inline float cu_hash_uniform(uint64_t key, uint64_t index) {
    return (float)(cu_hash64(key, index) >> 40) * (1.0f / 16777216.0f);
}

#endif
