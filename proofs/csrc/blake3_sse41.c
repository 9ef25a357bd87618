/* BLAKE3 single-message compression with 128-bit vectors (SSE4.1), row-parallel: the four
 * state rows are four vectors, one G step runs the four columns (then the four diagonals)
 * at once. This speeds up sequential hashing (sealing's chains of short messages), where
 * there are no independent messages to spread across lanes. Only called after blake3.c has
 * checked the CPU supports SSE4.1. */
#include "blake3_impl.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define TGT __attribute__((target("sse4.1")))

TGT static inline __m128i rot16(__m128i x) {
    return _mm_shuffle_epi8(x, _mm_setr_epi8(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13));
}
TGT static inline __m128i rot8(__m128i x) {
    return _mm_shuffle_epi8(x, _mm_setr_epi8(1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12));
}
TGT static inline __m128i rot12(__m128i x) {
    return _mm_or_si128(_mm_srli_epi32(x, 12), _mm_slli_epi32(x, 20));
}
TGT static inline __m128i rot7(__m128i x) {
    return _mm_or_si128(_mm_srli_epi32(x, 7), _mm_slli_epi32(x, 25));
}

/* a + m first: it does not wait for b, so only one add sits on the critical path (the
 * sequential label chain is latency-bound, not throughput-bound). */
#define G4(mx, my)                                          \
    do {                                                    \
        a = _mm_add_epi32(_mm_add_epi32(a, mx), b);         \
        d = rot16(_mm_xor_si128(d, a));                     \
        c = _mm_add_epi32(c, d);                            \
        b = rot12(_mm_xor_si128(b, c));                     \
        a = _mm_add_epi32(_mm_add_epi32(a, my), b);         \
        d = rot8(_mm_xor_si128(d, a));                      \
        c = _mm_add_epi32(c, d);                            \
        b = rot7(_mm_xor_si128(b, c));                      \
    } while (0)

TGT static inline __attribute__((always_inline)) void
compress_body(const uint32_t cv[8], const uint8_t block[SD_B3_BLOCK_LEN], uint64_t counter,
              uint32_t block_len, uint32_t flags, uint32_t out[8]) {
    uint32_t m[16];
    for (int i = 0; i < 16; i++) m[i] = sd_b3_load32(block + 4 * i);
    __m128i a = _mm_loadu_si128((const __m128i *)(const void *)cv);
    __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(cv + 4));
    __m128i c = _mm_loadu_si128((const __m128i *)(const void *)sd_b3_iv);
    __m128i d = _mm_setr_epi32((int)(uint32_t)counter, (int)(uint32_t)(counter >> 32),
                               (int)block_len, (int)flags);
#pragma GCC unroll 7
    for (int r = 0; r < 7; r++) {
        const uint8_t *s = sd_b3_schedule[r];
        /* Columns: G(0,4,8,12) .. G(3,7,11,15) in lanes 0..3. */
        G4(_mm_setr_epi32((int)m[s[0]], (int)m[s[2]], (int)m[s[4]], (int)m[s[6]]),
           _mm_setr_epi32((int)m[s[1]], (int)m[s[3]], (int)m[s[5]], (int)m[s[7]]));
        /* Rotate rows so the diagonals G(0,5,10,15) .. G(3,4,9,14) line up in lanes 0..3. */
        b = _mm_shuffle_epi32(b, _MM_SHUFFLE(0, 3, 2, 1));
        c = _mm_shuffle_epi32(c, _MM_SHUFFLE(1, 0, 3, 2));
        d = _mm_shuffle_epi32(d, _MM_SHUFFLE(2, 1, 0, 3));
        G4(_mm_setr_epi32((int)m[s[8]], (int)m[s[10]], (int)m[s[12]], (int)m[s[14]]),
           _mm_setr_epi32((int)m[s[9]], (int)m[s[11]], (int)m[s[13]], (int)m[s[15]]));
        b = _mm_shuffle_epi32(b, _MM_SHUFFLE(2, 1, 0, 3));
        c = _mm_shuffle_epi32(c, _MM_SHUFFLE(1, 0, 3, 2));
        d = _mm_shuffle_epi32(d, _MM_SHUFFLE(0, 3, 2, 1));
    }
    _mm_storeu_si128((__m128i *)(void *)out, _mm_xor_si128(a, c));
    _mm_storeu_si128((__m128i *)(void *)(out + 4), _mm_xor_si128(b, d));
}

TGT void sd_b3_compress_cv_sse41(const uint32_t cv[8], const uint8_t block[SD_B3_BLOCK_LEN],
                                 uint64_t counter, uint32_t block_len, uint32_t flags,
                                 uint32_t out[8]) {
    compress_body(cv, block, counter, block_len, flags, out);
}

/* The same code with VEX encoding (three-operand forms, no register copies): about a tenth
 * fewer instructions on the sealing critical path. Called only on CPUs with AVX2. */
__attribute__((target("avx2"))) void sd_b3_compress_cv_avx(const uint32_t cv[8],
                                                           const uint8_t block[SD_B3_BLOCK_LEN],
                                                           uint64_t counter, uint32_t block_len,
                                                           uint32_t flags, uint32_t out[8]) {
    compress_body(cv, block, counter, block_len, flags, out);
}
/* ---- two independent compressions in the two 128-bit halves of 256-bit vectors ----
 * The sealing label chain is latency-bound: one row-parallel compression leaves most vector
 * ports idle. Running an unrelated compression (a column step, a parent-sampling seed, the
 * first block of a later label) in the upper half costs almost nothing on top of the chain. */
#define A2 __attribute__((target("avx2")))

A2 static inline __m256i rot16x2(__m256i x) {
    const __m256i m = _mm256_setr_epi8(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13, 2,
                                       3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
    return _mm256_shuffle_epi8(x, m);
}
A2 static inline __m256i rot8x2(__m256i x) {
    const __m256i m = _mm256_setr_epi8(1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12, 1,
                                       2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12);
    return _mm256_shuffle_epi8(x, m);
}
#define ROTX2(x, n) _mm256_or_si256(_mm256_srli_epi32(x, n), _mm256_slli_epi32(x, 32 - (n)))

#define G4X2(mx, my)                                              \
    do {                                                          \
        a = _mm256_add_epi32(_mm256_add_epi32(a, mx), b);         \
        d = rot16x2(_mm256_xor_si256(d, a));                      \
        c = _mm256_add_epi32(c, d);                               \
        b = ROTX2(_mm256_xor_si256(b, c), 12);                    \
        a = _mm256_add_epi32(_mm256_add_epi32(a, my), b);         \
        d = rot8x2(_mm256_xor_si256(d, a));                       \
        c = _mm256_add_epi32(c, d);                               \
        b = ROTX2(_mm256_xor_si256(b, c), 7);                     \
    } while (0)

#define MX2(i0, i1, i2, i3)                                                                  \
    _mm256_setr_epi32((int)ma[s[i0]], (int)ma[s[i1]], (int)ma[s[i2]], (int)ma[s[i3]],        \
                      (int)mb[s[i0]], (int)mb[s[i1]], (int)mb[s[i2]], (int)mb[s[i3]])

A2 void sd_b3_compress2_avx2(const sd_b3_job *ja, const sd_b3_job *jb) {
    uint32_t ma[16], mb[16];
    for (int i = 0; i < 16; i++) {
        ma[i] = sd_b3_load32(ja->block + 4 * i);
        mb[i] = sd_b3_load32(jb->block + 4 * i);
    }
    __m256i a = _mm256_setr_m128i(_mm_loadu_si128((const __m128i *)(const void *)ja->cv),
                                  _mm_loadu_si128((const __m128i *)(const void *)jb->cv));
    __m256i b = _mm256_setr_m128i(_mm_loadu_si128((const __m128i *)(const void *)(ja->cv + 4)),
                                  _mm_loadu_si128((const __m128i *)(const void *)(jb->cv + 4)));
    __m256i c = _mm256_broadcastsi128_si256(
        _mm_loadu_si128((const __m128i *)(const void *)sd_b3_iv));
    __m256i d = _mm256_setr_epi32(0, 0, (int)ja->block_len, (int)ja->flags, 0, 0,
                                  (int)jb->block_len, (int)jb->flags);
#pragma GCC unroll 7
    for (int r = 0; r < 7; r++) {
        const uint8_t *s = sd_b3_schedule[r];
        G4X2(MX2(0, 2, 4, 6), MX2(1, 3, 5, 7));
        b = _mm256_shuffle_epi32(b, _MM_SHUFFLE(0, 3, 2, 1));
        c = _mm256_shuffle_epi32(c, _MM_SHUFFLE(1, 0, 3, 2));
        d = _mm256_shuffle_epi32(d, _MM_SHUFFLE(2, 1, 0, 3));
        G4X2(MX2(8, 10, 12, 14), MX2(9, 11, 13, 15));
        b = _mm256_shuffle_epi32(b, _MM_SHUFFLE(2, 1, 0, 3));
        c = _mm256_shuffle_epi32(c, _MM_SHUFFLE(1, 0, 3, 2));
        d = _mm256_shuffle_epi32(d, _MM_SHUFFLE(0, 3, 2, 1));
    }
    __m256i lo = _mm256_xor_si256(a, c), hi = _mm256_xor_si256(b, d);
    _mm_storeu_si128((__m128i *)(void *)ja->out, _mm256_castsi256_si128(lo));
    _mm_storeu_si128((__m128i *)(void *)(ja->out + 4), _mm256_castsi256_si128(hi));
    _mm_storeu_si128((__m128i *)(void *)jb->out, _mm256_extracti128_si256(lo, 1));
    _mm_storeu_si128((__m128i *)(void *)(jb->out + 4), _mm256_extracti128_si256(hi, 1));
}
#endif
