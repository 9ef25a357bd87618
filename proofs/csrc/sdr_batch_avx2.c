/* Batch sealing, the 8-way AVX2 kernel (see sdr_batch.c and the layout in sdr_impl.h).
 *
 * Node v of all 8 lanes is 8 compressions of 8 lanes each: block 0 (replica id, layer, v),
 * blocks 1..3 (6 same-layer parents), blocks 4..7 (8 previous-layer parents). Message word
 * w of a parent label is one 32-byte load at parent * 256 + 32 w, used in place as the
 * compression's memory operand (no copy, no transpose; label v-1 was just stored and is read
 * back from L1). The column step (state || label, one more compression) runs on the label
 * still in registers; only the per-sector column states need an 8x8 transpose in and out, as
 * they live in each sector's own buffer. Compiled with a target attribute and only called
 * after sd_b3_use_avx2(). */
#include <string.h>

#include "sdr_impl.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include "blake3_avx2_round.h"

TGT static inline __m256i word_of(const uint8_t *layer, uint64_t node, int w) {
    return _mm256_load_si256(
        (const __m256i *)(const void *)(layer + SD_SDR_NODE_BYTES * node + 32 * w));
}

TGT static inline void prefetch_node(const uint8_t *layer, uint64_t node) {
    const char *p = (const char *)(layer + SD_SDR_NODE_BYTES * node);
    _mm_prefetch(p, _MM_HINT_T0);
    _mm_prefetch(p + 64, _MM_HINT_T0);
    _mm_prefetch(p + 128, _MM_HINT_T0);
    _mm_prefetch(p + 192, _MM_HINT_T0);
}

/* Rows (32 bytes each) of the live lanes in, word vectors out; dead lanes read zeros. */
TGT static inline void load_rows(uint8_t *const *rows, uint64_t off, unsigned lanes,
                                 __m256i w[8]) {
    __m256i r[8];
    for (unsigned i = 0; i < 8; i++)
        r[i] = i < lanes ? _mm256_loadu_si256((const __m256i *)(const void *)(rows[i] + off))
                         : _mm256_setzero_si256();
    sd_b3_transpose8_avx2(r, w);
}

TGT void sd_sdr_batch_layer_avx2(const keys_t *k, uint64_t n, unsigned lanes, unsigned layer,
                                 const uint8_t *rids, const uint8_t *prev, uint8_t *cur,
                                 uint8_t *const *cols) {
    const uint32_t keyed = SD_B3_KEYED_HASH;
    const uint32_t whole = keyed | SD_B3_CHUNK_START | SD_B3_CHUNK_END | SD_B3_ROOT;
    const __m256i zero = _mm256_setzero_si256();
    /* Block 0's message: replica ids (words 0..7), then u64 layer, u64 v and 16 zero bytes. */
    __m256i rid[8], hdr[8], zeros[8], h[8], st[8], cmsg[16];
    {
        uint32_t rw[8][8] = {{0}};
        for (unsigned i = 0; i < lanes; i++)
            for (int j = 0; j < 8; j++) rw[j][i] = sd_b3_load32(rids + 32 * i + 4 * j);
        for (int j = 0; j < 8; j++) {
            rid[j] = _mm256_loadu_si256((const __m256i *)(void *)rw[j]);
            hdr[j] = zeros[j] = zero;
        }
        hdr[0] = _mm256_set1_epi32((int)layer);
    }
    sd_sdr_parents ring[SD_SDR_RING];
    sd_sdr_batch_parents(k, n, 0, ring);
    if (n > 8) sd_sdr_batch_parents(k, n, 8, ring);
    for (uint64_t u = 1; u < SD_SDR_AHEAD && u < n; u++) {
        const uint64_t *p = ring[u].p;
        for (int d = 1; d < SD_SDR_DRG_DEGREE; d++) prefetch_node(cur, p[d]);
        if (prev != NULL)
            for (int e = 0; e < SD_SDR_EXP_DEGREE; e++) prefetch_node(prev, p[SD_SDR_DRG_DEGREE + e]);
    }
#define NODE(layer_, node_) ((const __m256i *)(const void *)((layer_) + SD_SDR_NODE_BYTES * (node_)))
    for (uint64_t v = 0; v < n; v++) {
        /* The ring holds v .. v + 15; refill the half that v - 8 .. v - 1 used. */
        if (v % 8 == 0 && v > 0 && v + 8 < n) sd_sdr_batch_parents(k, n, v + 8, ring);
        const uint64_t ahead = v + SD_SDR_AHEAD;
        if (ahead < n) {
            const uint64_t *p = ring[ahead % SD_SDR_RING].p;
            for (int d = 1; d < SD_SDR_DRG_DEGREE; d++) prefetch_node(cur, p[d]);
            if (prev != NULL)
                for (int e = 0; e < SD_SDR_EXP_DEGREE; e++)
                    prefetch_node(prev, p[SD_SDR_DRG_DEGREE + e]);
        }
        const uint64_t *p = ring[v % SD_SDR_RING].p;
        hdr[2] = _mm256_set1_epi32((int)(uint32_t)v);
        hdr[3] = _mm256_set1_epi32((int)(uint32_t)(v >> 32));
        /* Block 0: the header; blocks 1..3: the same-layer parents v - 1 and p[1..5] (zero
         * for node 0); blocks 4..7: the previous-layer parents (zero in layer 1). Message
         * words are read in place from the layers; one compression call site, so the
         * always-inlined kernel is emitted once. */
        for (int j = 0; j < 8; j++) h[j] = _mm256_set1_epi32((int)k->label_w[j]);
        for (int b = 0; b < 8; b++) {
            const __m256i *lo = zeros, *hi = zeros;
            uint32_t flags = keyed;
            if (b == 0) {
                lo = rid;
                hi = hdr;
                flags |= SD_B3_CHUNK_START;
            } else if (b <= 3 && v > 0) {
                lo = NODE(cur, p[2 * b - 2]);
                hi = NODE(cur, p[2 * b - 1]);
            } else if (b >= 4 && prev != NULL) {
                lo = NODE(prev, p[SD_SDR_DRG_DEGREE + 2 * (b - 4)]);
                hi = NODE(prev, p[SD_SDR_DRG_DEGREE + 2 * (b - 4) + 1]);
            }
            if (b == 7) flags |= SD_B3_CHUNK_END | SD_B3_ROOT;
            sd_b3_compress8_lohi_avx2(h, lo, hi, 64, flags);
        }
        uint8_t *dst = cur + SD_SDR_NODE_BYTES * v;
        for (int j = 0; j < 8; j++) _mm256_store_si256((__m256i *)(void *)(dst + 32 * j), h[j]);
        if (cols != NULL) {
            /* c_l = H_column(c_(l-1) || label): c_0 is zero, so layer 1 reads nothing. */
            if (layer == 1)
                for (int j = 0; j < 8; j++) cmsg[j] = zero;
            else
                load_rows(cols, 32 * v, lanes, cmsg);
            for (int j = 0; j < 8; j++) {
                cmsg[8 + j] = h[j];
                st[j] = _mm256_set1_epi32((int)k->column_w[j]);
            }
            sd_b3_compress8_avx2(st, cmsg, 64, whole);
            __m256i rows[8];
            sd_b3_transpose8_avx2(st, rows);
            for (unsigned i = 0; i < lanes; i++)
                _mm256_storeu_si256((__m256i *)(void *)(cols[i] + 32 * v), rows[i]);
        }
    }
#undef NODE
}

TGT void sd_sdr_batch_out_avx2(uint64_t n, unsigned lanes, const uint8_t *last,
                               const uint8_t *const *in, uint8_t *const *out) {
    for (uint64_t v = 0; v < n; v++) {
        __m256i w[8], rows[8];
        for (int j = 0; j < 8; j++) w[j] = word_of(last, v, j);
        sd_b3_transpose8_avx2(w, rows);
        for (unsigned i = 0; i < lanes; i++) {
            __m256i x = rows[i];
            if (in != NULL)
                x = _mm256_xor_si256(
                    x, _mm256_loadu_si256((const __m256i *)(const void *)(in[i] + 32 * v)));
            _mm256_storeu_si256((__m256i *)(void *)(out[i] + 32 * v), x);
        }
    }
}
#endif
