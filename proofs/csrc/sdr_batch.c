/* Batch sealing (no Python.h): up to 8 sectors of the same size and layer count labelled
 * together on one core, one sector per 32-bit lane, as Filecoin's supraseal does.
 *
 * One sector's labels form one chain of dependent compressions (blocks 1..7 of label v need
 * label v-1), so sd_sdr_label is latency-bound and leaves the vector ports mostly idle. Eight
 * sectors' chains are independent, and because the parent graph depends only on n they all
 * read the same parents: node v of all lanes is one 8-way compression per block, on message
 * vectors loaded straight from the lane-interleaved layers (sdr_impl.h). This file holds the
 * driver, the parent ring and the portable path (one lane at a time through the ordinary
 * keyed hash, bit-identical); sdr_batch_avx2.c the 8-way kernel. */
#include <stdlib.h>
#include <string.h>

#include "sdr.h"
#include "sdr_impl.h"

void sd_sdr_batch_parents(const keys_t *k, uint64_t n, uint64_t first, sd_sdr_parents *ring) {
    uint8_t msgs[8][16], seeds[8 * 32];
    const uint8_t *ptrs[8] = {0};
    size_t count = 0;
    for (uint64_t v = first; v < n && count < 8; v++, count++) {
        put_le(msgs[count], n, 8);
        put_le(msgs[count] + 8, v, 8);
        ptrs[count] = msgs[count];
    }
    /* The sampling seeds H_drg(u64 n || u64 v), 8 at a time (one 8-way compression). */
    sd_b3_keyed_hash_many(k->drg, ptrs, count, 16, seeds);
    for (size_t i = 0; i < count; i++) {
        uint64_t v = first + i;
        sd_sdr_parents *p = &ring[v % SD_SDR_RING];
        if (v == 0)
            memset(p->p, 0, sizeof(uint64_t) * SD_SDR_DRG_DEGREE);
        else
            drg_from_seed(seeds + 32 * i, v, p->p);
        expander(k, v, p->p + SD_SDR_DRG_DEGREE);
    }
}

/* Copy lane `lane` of node p of a batch layer (32 bytes) to dst. */
static void gather(const uint8_t *layer, uint64_t p, unsigned lane, uint8_t *dst) {
    const uint8_t *src = layer + SD_SDR_NODE_BYTES * p + 4 * lane;
    for (int j = 0; j < 8; j++) memcpy(dst + 4 * j, src + 32 * j, 4);
}

/* The portable batch layer: each lane's label is the ordinary 512-byte keyed hash (the same
 * message sd_sdr_label builds), gathered from and scattered to the interleaved layers. */
static void batch_layer_portable(const keys_t *k, uint64_t n, unsigned lanes, unsigned layer,
                                 const uint8_t *rids, const uint8_t *prev, uint8_t *cur,
                                 uint8_t *const *cols) {
    sd_sdr_parents ring[SD_SDR_RING];
    uint8_t msg[512], lab[32], cblk[64];
    for (uint64_t v = 0; v < n; v++) {
        if (v % 8 == 0) sd_sdr_batch_parents(k, n, v, ring);
        const uint64_t *p = ring[v % SD_SDR_RING].p;
        for (unsigned i = 0; i < lanes; i++) {
            memset(msg, 0, sizeof msg);
            memcpy(msg, rids + 32 * i, 32);
            put_le(msg + 32, layer, 8);
            put_le(msg + 40, v, 8);
            if (v > 0)
                for (int d = 0; d < SD_SDR_DRG_DEGREE; d++) gather(cur, p[d], i, msg + 64 + 32 * d);
            if (prev != NULL)
                for (int e = 0; e < SD_SDR_EXP_DEGREE; e++)
                    gather(prev, p[SD_SDR_DRG_DEGREE + e], i, msg + 256 + 32 * e);
            sd_b3_keyed_hash(k->label, msg, sizeof msg, lab);
            uint8_t *dst = cur + SD_SDR_NODE_BYTES * v + 4 * i;
            for (int j = 0; j < 8; j++) memcpy(dst + 32 * j, lab + 4 * j, 4);
            if (cols != NULL) {
                uint8_t *state = cols[i] + 32 * v;
                if (layer == 1)
                    memset(cblk, 0, 32);
                else
                    memcpy(cblk, state, 32);
                memcpy(cblk + 32, lab, 32);
                sd_b3_keyed_hash(k->column, cblk, 64, state);
            }
        }
    }
}

static void batch_out_portable(uint64_t n, unsigned lanes, const uint8_t *last,
                               const uint8_t *const *in, uint8_t *const *out) {
    uint8_t lab[32];
    for (uint64_t v = 0; v < n; v++)
        for (unsigned i = 0; i < lanes; i++) {
            gather(last, v, i, lab);
            uint8_t *o = out[i] + 32 * v;
            if (in == NULL) {
                memcpy(o, lab, 32);
            } else {
                const uint8_t *d = in[i] + 32 * v;
                for (int b = 0; b < 32; b++) o[b] = (uint8_t)(d[b] ^ lab[b]);
            }
        }
}

int sd_sdr_label_batch(const uint8_t *rids, unsigned lanes, uint64_t n, unsigned n_layers,
                       const uint8_t *const *in, uint8_t *const *out, uint8_t *const *cols) {
    keys_t k;
    if (sd_sdr_init_keys(&k, n) != 0 || rids == NULL || lanes < 1 || lanes > SD_SDR_MAX_BATCH ||
        n_layers < 1 || out == NULL)
        return -1;
    for (unsigned i = 0; i < lanes; i++)
        if (out[i] == NULL || (in != NULL && in[i] == NULL) || (cols != NULL && cols[i] == NULL))
            return -1;
    if (n > SIZE_MAX / SD_SDR_NODE_BYTES) return -2;
    const size_t len = (size_t)n * SD_SDR_NODE_BYTES;
    sd_sdr_layer bufs[2];
    if (sd_sdr_layer_alloc(&bufs[0], len) != 0) return -2;
    if (sd_sdr_layer_alloc(&bufs[1], len) != 0) {
        sd_sdr_layer_free(&bufs[0]);
        return -2;
    }
    uint8_t *prev = bufs[0].p, *cur = bufs[1].p;
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    const int simd = sd_b3_use_avx2();
#else
    const int simd = 0;
#endif
    for (unsigned layer = 1; layer <= n_layers; layer++) {
        const uint8_t *below = layer > 1 ? prev : NULL;
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
        if (simd)
            sd_sdr_batch_layer_avx2(&k, n, lanes, layer, rids, below, cur, cols);
        else
#endif
            batch_layer_portable(&k, n, lanes, layer, rids, below, cur, cols);
        uint8_t *t = prev;
        prev = cur;
        cur = t;
    }
    /* prev now holds the last layer. */
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    if (simd)
        sd_sdr_batch_out_avx2(n, lanes, prev, in, out);
    else
#endif
        batch_out_portable(n, lanes, prev, in, out);
    (void)simd;
    sd_sdr_layer_free(&bufs[0]);
    sd_sdr_layer_free(&bufs[1]);
    return 0;
}
