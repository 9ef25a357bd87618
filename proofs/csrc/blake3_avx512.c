/* BLAKE3 16-lane AVX-512 kernel: sixteen independent single-block compressions at once (the
 * Merkle row kernel on AVX-512 machines). UNTESTED on real hardware when written (the
 * development machine has no AVX-512): blake3.c only enables it after a start-up self-test
 * against the portable compression passes, and falls back to AVX2 otherwise. Loads use
 * gathers and stores scatters: simple, and cheap enough next to 7 rounds of 16 lanes. */
#include "blake3_impl.h"

#if (defined(__x86_64__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define TGT __attribute__((target("avx512f")))

#define ADD _mm512_add_epi32
#define XOR _mm512_xor_si512
#define G16(a, b, c, d, x, y)                           \
    do {                                                \
        v[a] = ADD(ADD(v[a], v[b]), x);                 \
        v[d] = _mm512_ror_epi32(XOR(v[d], v[a]), 16);   \
        v[c] = ADD(v[c], v[d]);                         \
        v[b] = _mm512_ror_epi32(XOR(v[b], v[c]), 12);   \
        v[a] = ADD(ADD(v[a], v[b]), y);                 \
        v[d] = _mm512_ror_epi32(XOR(v[d], v[a]), 8);    \
        v[c] = ADD(v[c], v[d]);                         \
        v[b] = _mm512_ror_epi32(XOR(v[b], v[c]), 7);    \
    } while (0)

/* Sixteen 64-byte messages at in + 64*j; sixteen 32-byte outputs at out + 32*j. */
TGT static void hash16(const uint32_t key[8], const uint8_t *in, uint8_t *out) {
    __m512i m[16], v[16];
    /* Lane j reads message j: word w at byte 64*j + 4*w (index in 4-byte units: 16*j + w). */
    const __m512i in_idx = _mm512_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176,
                                             192, 208, 224, 240);
    for (int w = 0; w < 16; w++)
        m[w] = _mm512_i32gather_epi32(in_idx, (const void *)(in + 4 * w), 4);
    for (int i = 0; i < 8; i++) v[i] = _mm512_set1_epi32((int)key[i]);
    for (int i = 0; i < 4; i++) v[8 + i] = _mm512_set1_epi32((int)sd_b3_iv[i]);
    v[12] = _mm512_setzero_si512();
    v[13] = _mm512_setzero_si512();
    v[14] = _mm512_set1_epi32(64);
    v[15] = _mm512_set1_epi32(SD_B3_CHUNK_START | SD_B3_CHUNK_END | SD_B3_ROOT |
                              SD_B3_KEYED_HASH);
#pragma GCC unroll 7
    for (int r = 0; r < 7; r++) {
        const uint8_t *s = sd_b3_schedule[r];
        G16(0, 4, 8, 12, m[s[0]], m[s[1]]);
        G16(1, 5, 9, 13, m[s[2]], m[s[3]]);
        G16(2, 6, 10, 14, m[s[4]], m[s[5]]);
        G16(3, 7, 11, 15, m[s[6]], m[s[7]]);
        G16(0, 5, 10, 15, m[s[8]], m[s[9]]);
        G16(1, 6, 11, 12, m[s[10]], m[s[11]]);
        G16(2, 7, 8, 13, m[s[12]], m[s[13]]);
        G16(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    /* Lane j writes output j: word i at byte 32*j + 4*i (index in 4-byte units: 8*j + i). */
    const __m512i out_idx = _mm512_setr_epi32(0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96,
                                              104, 112, 120);
    for (int i = 0; i < 8; i++)
        _mm512_i32scatter_epi32((void *)(out + 4 * i), out_idx, XOR(v[i], v[i + 8]), 4);
}

TGT void sd_b3_keyed_hash64_many_avx512(const uint32_t key[8], const uint8_t *in, size_t n,
                                        uint8_t *out) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) hash16(key, in + 64 * i, out + 32 * i);
    if (i < n) sd_b3_keyed_hash64_many_avx2(key, in + 64 * i, n - i, out + 32 * i);
}
#endif
