/* BLAKE3 8-lane AVX2 kernel: eight independent single-block compressions at once, one
 * message per 32-bit lane (the Merkle row kernel). Compiled with a target attribute and only
 * called after blake3.c has checked the CPU supports AVX2; portable builds compile nothing. */
#include <string.h>

#include "blake3_impl.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include "blake3_avx2_round.h"

/* Words 4q..4q+3 (at `at` = in + 16 q) of eight 64-byte messages, one word per vector with
 * message j in lane j. Messages j and j + 4 share a load (the 128-bit halves), so a 4x4
 * in-lane transpose finishes the job: the cross-lane permutes of a full 8x8 transpose are
 * not needed (the shuffle ports are this kernel's bottleneck). */
TGT static inline void load_words4(const uint8_t *at, __m256i o[4]) {
    __m256i x[4];
    for (int j = 0; j < 4; j++)
        x[j] = _mm256_loadu2_m128i((const __m128i *)(const void *)(at + 64 * (j + 4)),
                                   (const __m128i *)(const void *)(at + 64 * j));
    __m256i t0 = _mm256_unpacklo_epi32(x[0], x[1]), t1 = _mm256_unpackhi_epi32(x[0], x[1]);
    __m256i t2 = _mm256_unpacklo_epi32(x[2], x[3]), t3 = _mm256_unpackhi_epi32(x[2], x[3]);
    o[0] = _mm256_unpacklo_epi64(t0, t2);
    o[1] = _mm256_unpackhi_epi64(t0, t2);
    o[2] = _mm256_unpacklo_epi64(t1, t3);
    o[3] = _mm256_unpackhi_epi64(t1, t3);
}

/* The inverse of load_words4 for outputs: words 4q..4q+3 of the eight outputs (one word per
 * vector, output j in lane j) go to out + 32 j + 16 q; output j and j + 4 share the two
 * 128-bit halves of one in-lane transposed vector, stored half by half. */
TGT static inline void store_words4(const __m256i w[4], uint8_t *at) {
    __m256i t0 = _mm256_unpacklo_epi32(w[0], w[1]), t1 = _mm256_unpackhi_epi32(w[0], w[1]);
    __m256i t2 = _mm256_unpacklo_epi32(w[2], w[3]), t3 = _mm256_unpackhi_epi32(w[2], w[3]);
    __m256i x[4] = {_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2),
                    _mm256_unpacklo_epi64(t1, t3), _mm256_unpackhi_epi64(t1, t3)};
    for (int j = 0; j < 4; j++)
        _mm256_storeu2_m128i((__m128i *)(void *)(at + 32 * (j + 4)),
                             (__m128i *)(void *)(at + 32 * j), x[j]);
}

/* Eight messages of 64 bytes at in + 64*j; eight 32-byte outputs at out + 32*j. */
TGT static void hash8(const uint32_t key[8], const uint8_t *in, uint8_t *out) {
    __m256i m[16], v[16];
    /* Load each message's two halves and transpose to one word per vector (cheaper than
     * 16 gathers). */
    for (int q = 0; q < 4; q++) load_words4(in + 16 * q, m + 4 * q);
    for (int i = 0; i < 8; i++) v[i] = _mm256_set1_epi32((int)key[i]);
    for (int i = 0; i < 4; i++) v[8 + i] = _mm256_set1_epi32((int)sd_b3_iv[i]);
    v[12] = _mm256_setzero_si256();
    v[13] = _mm256_setzero_si256();
    v[14] = _mm256_set1_epi32(64);
    v[15] = _mm256_set1_epi32(SD_B3_CHUNK_START | SD_B3_CHUNK_END | SD_B3_ROOT |
                              SD_B3_KEYED_HASH);
#pragma GCC unroll 7
    for (int r = 0; r < 7; r++) {
        const uint8_t *s = sd_b3_schedule[r];
        G8(0, 4, 8, 12, m[s[0]], m[s[1]]);
        G8(1, 5, 9, 13, m[s[2]], m[s[3]]);
        G8(2, 6, 10, 14, m[s[4]], m[s[5]]);
        G8(3, 7, 11, 15, m[s[6]], m[s[7]]);
        G8(0, 5, 10, 15, m[s[8]], m[s[9]]);
        G8(1, 6, 11, 12, m[s[10]], m[s[11]]);
        G8(2, 7, 8, 13, m[s[12]], m[s[13]]);
        G8(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    /* Transpose 8 words x 8 lanes into 8 contiguous 32-byte outputs. */
    __m256i h[8];
    for (int i = 0; i < 8; i++) h[i] = XOR(v[i], v[i + 8]);
    store_words4(h, out);
    store_words4(h + 4, out + 16);
}

TGT void sd_b3_keyed_hash64_many_avx2(const uint32_t key[8], const uint8_t *in, size_t n,
                                      uint8_t *out) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) hash8(key, in + 64 * i, out + 32 * i);
    const uint32_t flags = SD_B3_CHUNK_START | SD_B3_CHUNK_END | SD_B3_ROOT | SD_B3_KEYED_HASH;
    for (; i < n; i++) {
        uint32_t w[8];
        sd_b3_compress_cv(key, in + 64 * i, 0, 64, flags, w);
        sd_b3_cv_bytes(w, out + 32 * i);
    }
}
/* Keyed hashes of 8 messages of the same length len <= 1024 (one chunk each, so each is its
 * own root): block b of all 8 messages is compressed at once. Outputs at out + 32*j. */
TGT void sd_b3_keyed_hash_short8_avx2(const uint32_t key[8], const uint8_t *const msgs[8],
                                      size_t len, uint8_t *out) {
    __m256i h[8], m[16], lo[8], hi[8];
    uint8_t pad[8][SD_B3_BLOCK_LEN];
    for (int i = 0; i < 8; i++) h[i] = _mm256_set1_epi32((int)key[i]);
    size_t nblocks = len == 0 ? 1 : (len + SD_B3_BLOCK_LEN - 1) / SD_B3_BLOCK_LEN;
    for (size_t b = 0; b < nblocks; b++) {
        size_t off = b * SD_B3_BLOCK_LEN;
        size_t blen = len - off < SD_B3_BLOCK_LEN ? len - off : SD_B3_BLOCK_LEN;
        for (int j = 0; j < 8; j++) {
            const uint8_t *p = msgs[j] + off;
            if (blen < SD_B3_BLOCK_LEN) { /* the last, partial block: zero-padded copy */
                memset(pad[j], 0, SD_B3_BLOCK_LEN);
                if (blen > 0) memcpy(pad[j], p, blen);
                p = pad[j];
            }
            lo[j] = _mm256_loadu_si256((const __m256i *)(const void *)p);
            hi[j] = _mm256_loadu_si256((const __m256i *)(const void *)(p + 32));
        }
        sd_b3_transpose8_avx2(lo, m);
        sd_b3_transpose8_avx2(hi, m + 8);
        uint32_t flags = SD_B3_KEYED_HASH | (b == 0 ? SD_B3_CHUNK_START : 0) |
                         (b + 1 == nblocks ? SD_B3_CHUNK_END | SD_B3_ROOT : 0);
        sd_b3_compress8_avx2(h, m, (uint32_t)blen, flags);
    }
    __m256i o[8];
    sd_b3_transpose8_avx2(h, o);
    for (int j = 0; j < 8; j++) _mm256_storeu_si256((__m256i *)(void *)(out + 32 * j), o[j]);
}
#endif
