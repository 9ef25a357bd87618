/* BLAKE3, written here from the published specification (no Python.h).
 *
 * This header is the contract between the BLAKE3 implementation (blake3*.c) and its users
 * (merkle.c, sealing). Results are bit-identical to the reference BLAKE3 (and the `blake3`
 * Python package): hash, keyed_hash and derive_key modes, any input length, 32-byte output.
 * SIMD paths (AVX2, AVX-512 where present) are chosen at run time; sd_b3_backend() names it. */
#ifndef STORAGED_BLAKE3_H
#define STORAGED_BLAKE3_H
#include <stddef.h>
#include <stdint.h>

#define SD_B3_OUT_LEN 32
#define SD_B3_KEY_LEN 32
#define SD_B3_BLOCK_LEN 64
#define SD_B3_CHUNK_LEN 1024

/* One-shot hashes. */
void sd_b3_hash(const uint8_t *in, size_t len, uint8_t out[SD_B3_OUT_LEN]);
void sd_b3_keyed_hash(const uint8_t key[SD_B3_KEY_LEN], const uint8_t *in, size_t len,
                      uint8_t out[SD_B3_OUT_LEN]);
void sd_b3_derive_key(const char *context, const uint8_t *material, size_t len,
                      uint8_t out[SD_B3_OUT_LEN]);

/* The key that derive_key(context, .) uses internally: derive_key(context, m) ==
 * the derive-key-material hash under this context key. Compute once, reuse per call. */
void sd_b3_context_key(const char *context, uint8_t key[SD_B3_KEY_LEN]);

/* Many messages of the same length at once (the SIMD path):
 * out + 32*i = keyed_hash(key, msgs[i][0..len)) for i < n. */
void sd_b3_keyed_hash_many(const uint8_t key[SD_B3_KEY_LEN], const uint8_t *const *msgs,
                           size_t n, size_t len, uint8_t *out);

/* Incremental keyed hashing (for long or scattered messages). */
typedef struct sd_b3_hasher sd_b3_hasher; /* defined in blake3_impl.h */
size_t sd_b3_hasher_size(void);
void sd_b3_hasher_init_keyed(sd_b3_hasher *h, const uint8_t key[SD_B3_KEY_LEN]);
void sd_b3_hasher_init(sd_b3_hasher *h);
void sd_b3_hasher_update(sd_b3_hasher *h, const uint8_t *in, size_t len);
void sd_b3_hasher_finalize(const sd_b3_hasher *h, uint8_t out[SD_B3_OUT_LEN]);

/* "avx512", "avx2", "sse41" or "portable": the widest path this CPU runs. */
const char *sd_b3_backend(void);

#endif
