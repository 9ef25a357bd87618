/* The AVX2 8-lane BLAKE3 round, shared by the kernels that run eight independent
 * compressions at once, one per 32-bit lane (blake3_avx2.c: Merkle rows and short messages;
 * sdr_batch_avx2.c: batch sealing). Every function is static inline with the avx2 target
 * attribute, so it is only ever executed after blake3.c has checked the CPU runs AVX2.
 * Include only on x86 with GCC or clang. */
#ifndef STORAGED_BLAKE3_AVX2_ROUND_H
#define STORAGED_BLAKE3_AVX2_ROUND_H
#include <immintrin.h>

#include "blake3_impl.h"

#define TGT __attribute__((target("avx2")))

TGT static inline __m256i rot16(__m256i x) {
    const __m256i m = _mm256_setr_epi8(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13, 2,
                                       3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
    return _mm256_shuffle_epi8(x, m);
}
TGT static inline __m256i rot8(__m256i x) {
    const __m256i m = _mm256_setr_epi8(1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12, 1,
                                       2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12);
    return _mm256_shuffle_epi8(x, m);
}
TGT static inline __m256i rot12(__m256i x) {
    return _mm256_or_si256(_mm256_srli_epi32(x, 12), _mm256_slli_epi32(x, 20));
}
TGT static inline __m256i rot7(__m256i x) {
    return _mm256_or_si256(_mm256_srli_epi32(x, 7), _mm256_slli_epi32(x, 25));
}

#define ADD _mm256_add_epi32
#define XOR _mm256_xor_si256
#define G8(a, b, c, d, x, y)          \
    do {                              \
        v[a] = ADD(ADD(v[a], v[b]), x); \
        v[d] = rot16(XOR(v[d], v[a]));  \
        v[c] = ADD(v[c], v[d]);         \
        v[b] = rot12(XOR(v[b], v[c]));  \
        v[a] = ADD(ADD(v[a], v[b]), y); \
        v[d] = rot8(XOR(v[d], v[a]));   \
        v[c] = ADD(v[c], v[d]);         \
        v[b] = rot7(XOR(v[b], v[c]));   \
    } while (0)

/* 8x8 transpose of 32-bit words: out[j] lane i = in[i] lane j. */
TGT static inline void sd_b3_transpose8_avx2(const __m256i h[8], __m256i o[8]) {
    __m256i t0 = _mm256_unpacklo_epi32(h[0], h[1]), t1 = _mm256_unpackhi_epi32(h[0], h[1]);
    __m256i t2 = _mm256_unpacklo_epi32(h[2], h[3]), t3 = _mm256_unpackhi_epi32(h[2], h[3]);
    __m256i t4 = _mm256_unpacklo_epi32(h[4], h[5]), t5 = _mm256_unpackhi_epi32(h[4], h[5]);
    __m256i t6 = _mm256_unpacklo_epi32(h[6], h[7]), t7 = _mm256_unpackhi_epi32(h[6], h[7]);
    __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
    __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
    /* u0 holds lane 0 (low half) and lane 4 (high half) of in[0..3]; u4 of in[4..7]. */
    o[0] = _mm256_permute2x128_si256(u0, u4, 0x20);
    o[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
    o[1] = _mm256_permute2x128_si256(u1, u5, 0x20);
    o[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
    o[2] = _mm256_permute2x128_si256(u2, u6, 0x20);
    o[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
    o[3] = _mm256_permute2x128_si256(u3, u7, 0x20);
    o[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

/* One block compression in each of 8 lanes, chaining values in and out of h (counter 0:
 * every message here is a single chunk). Message word w of every lane is lo[w] for w < 8,
 * hi[w - 8] after: two pointers, so callers can hash straight out of memory laid out word
 * by word (sdr_batch_avx2.c's layers) without copying. Always inlined: an out-of-line copy
 * passes the state through memory (GCC split it into 128-bit stores read back as 256-bit
 * loads, a store-forwarding stall on every word); callers keep the number of call sites
 * small (one per loop). */
TGT __attribute__((always_inline)) static inline void sd_b3_compress8_lohi_avx2(
    __m256i h[8], const __m256i *lo, const __m256i *hi, uint32_t block_len, uint32_t flags) {
    __m256i v[16];
    for (int i = 0; i < 8; i++) v[i] = h[i];
    for (int i = 0; i < 4; i++) v[8 + i] = _mm256_set1_epi32((int)sd_b3_iv[i]);
    v[12] = _mm256_setzero_si256();
    v[13] = _mm256_setzero_si256();
    v[14] = _mm256_set1_epi32((int)block_len);
    v[15] = _mm256_set1_epi32((int)flags);
#define MW(i) ((i) < 8 ? _mm256_load_si256(lo + (i)) : _mm256_load_si256(hi + (i) - 8))
#pragma GCC unroll 7
    for (int r = 0; r < 7; r++) {
        const uint8_t *s = sd_b3_schedule[r];
        G8(0, 4, 8, 12, MW(s[0]), MW(s[1]));
        G8(1, 5, 9, 13, MW(s[2]), MW(s[3]));
        G8(2, 6, 10, 14, MW(s[4]), MW(s[5]));
        G8(3, 7, 11, 15, MW(s[6]), MW(s[7]));
        G8(0, 5, 10, 15, MW(s[8]), MW(s[9]));
        G8(1, 6, 11, 12, MW(s[10]), MW(s[11]));
        G8(2, 7, 8, 13, MW(s[12]), MW(s[13]));
        G8(3, 4, 9, 14, MW(s[14]), MW(s[15]));
    }
#undef MW
    for (int i = 0; i < 8; i++) h[i] = XOR(v[i], v[i + 8]);
}

/* The same with the message in m[0..15] (32-byte aligned). */
TGT __attribute__((always_inline)) static inline void sd_b3_compress8_avx2(
    __m256i h[8], const __m256i m[16], uint32_t block_len, uint32_t flags) {
    sd_b3_compress8_lohi_avx2(h, m, m + 8, block_len, flags);
}
#endif
