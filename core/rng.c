/*
 * xoshiro256** seeded through splitmix64, and a counter-based hash (see rng.h).
 */
#include "core/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void cu_rng_seed(cu_rng_t *rng, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

uint64_t cu_rng_next(cu_rng_t *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float cu_rng_uniform(cu_rng_t *rng) {
    return (float)(cu_rng_next(rng) >> 40) * (1.0f / 16777216.0f);
}

float cu_rng_normal(cu_rng_t *rng) {
    /* 1 - u keeps the log's argument in (0, 1]. */
    double u1 = 1.0 - (double)(cu_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
    double u2 = (double)(cu_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint64_t cu_rng_below(cu_rng_t *rng, uint64_t n) {
    /* Rejection keeps the draw unbiased for any n. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
        x = cu_rng_next(rng);
    } while (x >= limit);
    return x % n;
}

uint64_t cu_hash64(uint64_t key, uint64_t index) {
    uint64_t x = key ^ (index * 0xd1b54a32d192ed03ULL);
    uint64_t a = splitmix64(&x);
    return a ^ splitmix64(&x);
}
