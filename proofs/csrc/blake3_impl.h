/* BLAKE3 internals shared by blake3*.c and merkle.c (no Python.h).
 *
 * Written from the BLAKE3 specification (Aumasson, Neves, O'Connor, Wilcox-O'Hearn, 2020):
 * section 2 (compression function, flags, chunk and tree modes). */
#ifndef STORAGED_BLAKE3_IMPL_H
#define STORAGED_BLAKE3_IMPL_H
#include "blake3.h"

/* Domain flags (spec table 3). */
enum {
    SD_B3_CHUNK_START = 1u << 0,
    SD_B3_CHUNK_END = 1u << 1,
    SD_B3_PARENT = 1u << 2,
    SD_B3_ROOT = 1u << 3,
    SD_B3_KEYED_HASH = 1u << 4,
    SD_B3_DERIVE_KEY_CONTEXT = 1u << 5,
    SD_B3_DERIVE_KEY_MATERIAL = 1u << 6,
};

/* Deep enough for 2^54 chunks (2^64 bytes): one CV per level of the lazy merge stack. */
#define SD_B3_MAX_DEPTH 54

struct sd_b3_hasher {
    uint32_t key[8];           /* key words (IV for plain hash) */
    uint32_t cv[8];            /* chaining value of the current chunk */
    uint64_t chunk_counter;    /* index of the current chunk */
    uint8_t buf[SD_B3_BLOCK_LEN];
    uint8_t buf_len;           /* bytes waiting in buf (a full block is kept until more input) */
    uint8_t blocks_compressed; /* blocks of the current chunk already compressed */
    uint8_t flags;             /* mode flags: 0, KEYED_HASH, or a DERIVE_KEY_* flag */
    uint8_t stack_len;
    uint32_t stack[SD_B3_MAX_DEPTH][8]; /* CVs of completed subtrees, lazily merged */
};

extern const uint32_t sd_b3_iv[8];

/* Message word order for each of the 7 rounds: the spec's permutation applied r times.
 * Static in every file that includes it, so the compiler sees the constants and folds the
 * schedule into the unrolled rounds (an extern table would cost a load per word). */
static const uint8_t sd_b3_schedule[7][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8},
    {3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1},
    {10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6},
    {12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4},
    {9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7},
    {11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13},
};

/* The compression function, truncated to the 8-word chaining value (dispatches to SSE4.1
 * where available; every mode and the hasher go through it). */
void sd_b3_compress_cv(const uint32_t cv[8], const uint8_t block[SD_B3_BLOCK_LEN],
                       uint64_t counter, uint32_t block_len, uint32_t flags, uint32_t out[8]);

/* Init a hasher with explicit key words and mode flags (derive_key uses this). */
void sd_b3_hasher_init_raw(sd_b3_hasher *h, const uint32_t key[8], uint8_t flags);

/* For i < n: out + 32*i = keyed_hash(key, in + 64*i, 64), i.e. one compression per message
 * with CHUNK_START|CHUNK_END|ROOT|KEYED_HASH. `out` may alias `in` (out[i] lands at or before
 * the bytes of message i, which are read first). This is the Merkle row kernel. */
void sd_b3_keyed_hash64_many(const uint32_t key[8], const uint8_t *in, size_t n, uint8_t *out);

/* One single-block compression with counter 0: out = first 8 words of
 * compress(cv, block, 0, block_len, flags). `out` may alias `cv`; block is read before out
 * is written. */
typedef struct {
    const uint32_t *cv;
    const uint8_t *block;
    uint32_t block_len, flags;
    uint32_t *out;
} sd_b3_job;

/* Run two unrelated jobs; on AVX2 CPUs side by side in one instruction stream (about the
 * latency of one), elsewhere one after the other. */
void sd_b3_compress2(const sd_b3_job *a, const sd_b3_job *b);
void sd_b3_compress2_avx2(const sd_b3_job *a, const sd_b3_job *b);

/* 1 if the AVX2 kernels may run (the CPU has AVX2, and STORAGED_BLAKE3_PORTABLE is not
 * set), else 0: other files' 8-lane kernels (sdr_batch_avx2.c) dispatch on it. */
int sd_b3_use_avx2(void);

/* Per-backend kernels (blake3_avx2.c, blake3_sse41.c), selected by blake3.c at run time. */
/* 8 messages of equal length len <= SD_B3_CHUNK_LEN; outputs at out + 32*j. */
void sd_b3_keyed_hash_short8_avx2(const uint32_t key[8], const uint8_t *const msgs[8],
                                  size_t len, uint8_t *out);
void sd_b3_keyed_hash64_many_avx512(const uint32_t key[8], const uint8_t *in, size_t n,
                                    uint8_t *out);
void sd_b3_compress_cv_sse41(const uint32_t cv[8], const uint8_t block[SD_B3_BLOCK_LEN],
                             uint64_t counter, uint32_t block_len, uint32_t flags,
                             uint32_t out[8]);
void sd_b3_compress_cv_avx(const uint32_t cv[8], const uint8_t block[SD_B3_BLOCK_LEN],
                           uint64_t counter, uint32_t block_len, uint32_t flags, uint32_t out[8]);
void sd_b3_keyed_hash64_many_avx2(const uint32_t key[8], const uint8_t *in, size_t n,
                                  uint8_t *out);

static inline uint32_t sd_b3_load32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static inline void sd_b3_store32(uint8_t *p, uint32_t w) {
    p[0] = (uint8_t)w;
    p[1] = (uint8_t)(w >> 8);
    p[2] = (uint8_t)(w >> 16);
    p[3] = (uint8_t)(w >> 24);
}

static inline void sd_b3_key_words(const uint8_t key[SD_B3_KEY_LEN], uint32_t w[8]) {
    for (int i = 0; i < 8; i++) w[i] = sd_b3_load32(key + 4 * i);
}

static inline void sd_b3_cv_bytes(const uint32_t w[8], uint8_t out[SD_B3_OUT_LEN]) {
    for (int i = 0; i < 8; i++) sd_b3_store32(out + 4 * i, w[i]);
}

#endif
