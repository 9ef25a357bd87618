/* SDR internals shared by sdr.c (one sector) and sdr_batch*.c (up to 8 sectors per core):
 * the graph keys, parent sampling and layer buffers (no Python.h). Spec:
 * proofs/reference/graph.py. The parent functions are static inline because they sit in the
 * labelling loops. */
#ifndef STORAGED_SDR_IMPL_H
#define STORAGED_SDR_IMPL_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "blake3.h"
#include "blake3_impl.h"
#include "sdr.h"

#define KEY_CTX "storaged proofs v1 key"
#define PERM_ROUNDS 4

typedef struct {
    uint8_t drg[32], exp[32], label[32], column[32];
    uint32_t drg_w[8], label_w[8], column_w[8]; /* the same keys as words */
    uint64_t add[PERM_ROUNDS], mul[PERM_ROUNDS];
    unsigned bits, shift;
    uint64_t mask;
} keys_t;

static inline void named_key(const char *name, uint8_t out[32]) {
    sd_b3_derive_key(KEY_CTX, (const uint8_t *)name, strlen(name), out);
}

static inline uint64_t le(const uint8_t *p, unsigned n) {
    uint64_t x = 0;
    for (unsigned i = 0; i < n; i++) x |= (uint64_t)p[i] << (8 * i);
    return x;
}

static inline void put_le(uint8_t *p, uint64_t x, unsigned n) {
    for (unsigned i = 0; i < n; i++) p[i] = (uint8_t)(x >> (8 * i));
}

/* Fill k for n nodes. Returns 0, or -1 if n is not a power of two in 2..2^60. */
int sd_sdr_init_keys(keys_t *k, uint64_t n);

/* Parents from the node's 32-byte sampling seed H_drg(u64 n || u64 v). */
static inline void drg_from_seed(const uint8_t seed[32], uint64_t v, uint64_t out[6]) {
    out[0] = v - 1;
    uint64_t m = 0;
    while (m < 64 && (v >> m)) m++; /* bit length of v */
    for (int i = 1; i < 6; i++) {
        uint64_t r = le(seed + 6 * (i - 1), 6);
        uint64_t bucket = 1 + (r & 0xFFFF) % m;
        uint64_t upper = bucket >= 63 ? v : ((1ULL << bucket) < v ? (1ULL << bucket) : v);
        out[i] = v - (1 + (r >> 16) % upper);
    }
}

static inline void expander(const keys_t *k, uint64_t v, uint64_t out[8]) {
    for (uint64_t j = 0; j < 8; j++) {
        uint64_t x = 8 * v + j;
        for (int r = 0; r < PERM_ROUNDS; r++) {
            x = (x + k->add[r]) & k->mask;
            x = (x * k->mul[r]) & k->mask;
            x ^= x >> k->shift;
        }
        out[j] = x / 8;
    }
}

/* A layer buffer. Parent reads are random over the whole previous layer (and, for the
 * long back-edges, the current one), so with 4 KiB pages nearly every such read of a large
 * sector is also a TLB miss, and in a VM a two-dimensional page walk, which a software
 * prefetch has to finish before it can retire. Layers of 4 MiB and more are therefore mapped
 * 2 MiB-aligned and advised as transparent huge pages (advisory: without them the result is
 * the same, only slower). */
#define HUGE_PAGE ((size_t)2 << 20)

typedef struct {
    uint8_t *p; /* 64-byte aligned */
    void *map;
    size_t map_len;
} sd_sdr_layer;

/* Allocate a len-byte layer buffer. Returns 0, or -1 if out of memory. */
int sd_sdr_layer_alloc(sd_sdr_layer *b, size_t len);
void sd_sdr_layer_free(sd_sdr_layer *b);

/* ---- batch sealing (sdr_batch.c, sdr_batch_avx2.c) ----
 *
 * A batch layer is lane-interleaved, word-major: word j (0..7) of node v's label in lane i
 * (0..7) is the little-endian u32 at 256 v + 32 j + 4 i. Word j of one parent for all 8
 * lanes is one aligned 32-byte load, so the message vectors of an 8-way compression come
 * straight from memory, and every parent read fetches 4 whole cache lines used fully. */
#define SD_SDR_NODE_BYTES 256
#define SD_SDR_RING 16 /* parent sets kept: nodes v .. v + 15 */
#define SD_SDR_AHEAD 4 /* the parents of node v + 4 are prefetched while v is labelled */

typedef struct {
    uint64_t p[SD_SDR_DRG_DEGREE + SD_SDR_EXP_DEGREE]; /* 6 same-layer, then 8 expander */
} sd_sdr_parents;

/* The parents of nodes first .. first + 7 (those < n) into ring[v % SD_SDR_RING]; node 0's
 * same-layer slots are 0 (its label uses zero bytes there, never reads them). */
void sd_sdr_batch_parents(const keys_t *k, uint64_t n, uint64_t first, sd_sdr_parents *ring);

/* Label one batch layer into cur (prev: the previous batch layer, NULL for layer 1) and fold
 * it into each lane's column states cols[i] (cols NULL: no columns). Lanes >= `lanes` are
 * computed on zero replica ids and never stored outside the layers. */
void sd_sdr_batch_layer_avx2(const keys_t *k, uint64_t n, unsigned lanes, unsigned layer,
                             const uint8_t *rids, const uint8_t *prev, uint8_t *cur,
                             uint8_t *const *cols);

/* out[i] = lane i of the batch layer `last`, XORed with in[i] if in != NULL. */
void sd_sdr_batch_out_avx2(uint64_t n, unsigned lanes, const uint8_t *last,
                           const uint8_t *const *in, uint8_t *const *out);
#endif
