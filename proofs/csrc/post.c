/* PoSt verification: see post.h and proofs/reference/post.py (the spec). */
#include "post.h"

#include <string.h>

#include "blake3.h"
#include "merkle.h"

#define KEY_CTX "storaged proofs v1 key"

/* Keys derived once per process; racing first callers write identical bytes. */
static uint8_t challenge_key[32], comm_r_key[32];
static int keys_ready = 0;

static void init_keys(void) {
    if (__atomic_load_n(&keys_ready, __ATOMIC_ACQUIRE)) return;
    static const char ch[] = "post challenge", cr[] = "comm_r";
    sd_b3_derive_key(KEY_CTX, (const uint8_t *)ch, sizeof ch - 1, challenge_key);
    sd_b3_derive_key(KEY_CTX, (const uint8_t *)cr, sizeof cr - 1, comm_r_key);
    __atomic_store_n(&keys_ready, 1, __ATOMIC_RELEASE);
}

static void put_le(uint8_t *p, uint64_t x, unsigned n) {
    for (unsigned i = 0; i < n; i++) p[i] = (uint8_t)(x >> (8 * i));
}

static uint64_t le(const uint8_t *p, unsigned n) {
    uint64_t x = 0;
    for (unsigned i = 0; i < n; i++) x |= (uint64_t)p[i] << (8 * i);
    return x;
}

static int depth_of(uint64_t n) {
    if (n < 2 || (n & (n - 1)) || n > ((uint64_t)1 << 60)) return -1;
    return sd_merkle_depth((size_t)n);
}

static uint64_t challenge(const uint8_t randomness[32], uint64_t sector, uint64_t j, uint64_t n) {
    uint8_t msg[44], h[32];
    memcpy(msg, randomness, 32);
    put_le(msg + 32, sector, 8);
    put_le(msg + 40, j, 4);
    sd_b3_keyed_hash(challenge_key, msg, sizeof msg, h);
    /* n is a power of two: mod is a mask. */
    return le(h, 8) & (n - 1);
}

int sd_post_challenges(const uint8_t randomness[32], uint64_t sector, uint64_t k, uint64_t n,
                       uint64_t *out) {
    if (depth_of(n) < 0 || k > 0xFFFFFFFFu) return -1;
    init_keys();
    for (uint64_t j = 0; j < k; j++) out[j] = challenge(randomness, sector, j, n);
    return 0;
}

int sd_post_verify(const uint8_t comm_r[32], uint64_t sector, const uint8_t randomness[32],
                   uint64_t k, uint64_t n, const uint8_t *proof, size_t len) {
    int d = depth_of(n);
    if (d < 0 || k > 0xFFFFFFFFu) return -1;
    init_keys();
    size_t step = 32 * (1 + (size_t)d);
    if (len != 76 + (size_t)k * step) return 0;
    const uint8_t head[8] = {'S', 'D', 'P', 'S', 1, (uint8_t)d, 0, 0};
    if (memcmp(proof, head, 8) != 0 || le(proof + 8, 4) != k) return 0;
    uint8_t cr[32];
    sd_b3_keyed_hash(comm_r_key, proof + 12, 64, cr);
    if (memcmp(cr, comm_r, 32) != 0) return 0;
    const uint8_t *comm_r_last = proof + 44;
    for (uint64_t j = 0; j < k; j++) {
        const uint8_t *at = proof + 76 + (size_t)j * step;
        if (sd_merkle_verify(comm_r_last, (size_t)n, (size_t)challenge(randomness, sector, j, n),
                             at, at + 32) != 1)
            return 0;
    }
    return 1;
}
