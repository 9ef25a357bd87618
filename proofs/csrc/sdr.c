/* SDR sealing core: see sdr.h and proofs/reference/{graph,sealing}.py (the spec). */
#if defined(__linux__) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE /* mmap's MAP_ANONYMOUS and madvise under -std=c11 */
#endif
#include "sdr.h"

#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

#include "blake3.h"
#include "blake3_impl.h"
#include "merkle.h"
#include "sdr_impl.h"

int sd_sdr_depth(uint64_t n) {
    if (n < 2 || (n & (n - 1))) return -1;
    int d = 0;
    while ((1ULL << d) < n) d++;
    return d;
}

int sd_sdr_init_keys(keys_t *k, uint64_t n) {
    int d = sd_sdr_depth(n);
    if (d < 0 || d > 60) return -1;
    named_key("storaged sdr v1 drg", k->drg);
    named_key("storaged sdr v1 expander", k->exp);
    named_key("label", k->label);
    named_key("column", k->column);
    sd_b3_key_words(k->drg, k->drg_w);
    sd_b3_key_words(k->label, k->label_w);
    sd_b3_key_words(k->column, k->column_w);
    uint8_t nb[8], seed[32];
    put_le(nb, n, 8);
    sd_b3_keyed_hash(k->exp, nb, 8, seed);
    for (int r = 0; r < PERM_ROUNDS; r++) {
        k->add[r] = le(seed + 8 * r, 4);
        k->mul[r] = le(seed + 8 * r + 4, 4) | 1;
    }
    k->bits = (unsigned)d + 3;
    k->mask = (1ULL << k->bits) - 1;
    k->shift = (k->bits + 1) / 2;
    return 0;
}

static void drg(const keys_t *k, uint64_t n, uint64_t v, uint64_t out[6]) {
    uint8_t msg[16], seed[32];
    put_le(msg, n, 8);
    put_le(msg + 8, v, 8);
    sd_b3_keyed_hash(k->drg, msg, 16, seed);
    drg_from_seed(seed, v, out);
}

int sd_sdr_layer_alloc(sd_sdr_layer *b, size_t len) {
    b->map = NULL;
    b->map_len = 0;
#if defined(__linux__) && defined(MAP_ANONYMOUS)
    if (len >= 2 * HUGE_PAGE) {
        size_t map_len = len + HUGE_PAGE;
        void *m = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m != MAP_FAILED) {
            uintptr_t start = ((uintptr_t)m + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
#ifdef MADV_HUGEPAGE
            (void)madvise((void *)start, (len + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1), MADV_HUGEPAGE);
#endif
            b->map = m;
            b->map_len = map_len;
            b->p = (uint8_t *)start;
            return 0;
        }
    }
#endif
    /* Aligned for whole-vector loads (len is a multiple of 64: 32 n bytes, n >= 2). */
    b->p = aligned_alloc(64, (len + 63) & ~(size_t)63);
    return b->p == NULL ? -1 : 0;
}

void sd_sdr_layer_free(sd_sdr_layer *b) {
#if defined(__linux__) && defined(MAP_ANONYMOUS)
    if (b->map != NULL) {
        (void)munmap(b->map, b->map_len);
        return;
    }
#endif
    free(b->p);
}

int sd_sdr_drg_parents(uint64_t n, uint64_t v, uint64_t out[6]) {
    keys_t k;
    if (sd_sdr_init_keys(&k, n) != 0 || v == 0 || v >= n) return -1;
    drg(&k, n, v, out);
    return 0;
}

int sd_sdr_expander_parents(uint64_t n, uint64_t v, uint64_t out[8]) {
    keys_t k;
    if (sd_sdr_init_keys(&k, n) != 0 || v >= n) return -1;
    expander(&k, v, out);
    return 0;
}

/* Label one layer into cur (prev: the previous layer, NULL for layer 1) and fold it into the
 * column states (col, NULL if not wanted).
 *
 * The label of v is keyed_hash(label key, 512-byte message), eight chained compressions; blocks
 * 1..7 need label v-1 (block 1 holds parent v-1), so the labels of a layer form one long chain
 * of dependent compressions and the core is latency-bound. Every other compression is
 * independent of that chain and rides along in the other half of a two-way compression
 * (sd_b3_compress2): block 0 of label v+1 (replica id, layer, v+1), the parent-sampling seed
 * of v+2, and the column step of v-1. The parents of v+1 are prefetched while v is hashed. */
static void label_layer(const keys_t *k, const uint8_t rid[32], uint64_t n, unsigned layer,
                        const uint8_t *prev, uint8_t *cur, uint8_t *col) {
    const uint32_t keyed = SD_B3_KEYED_HASH, whole = keyed | SD_B3_CHUNK_START |
                                                       SD_B3_CHUNK_END | SD_B3_ROOT;
    uint32_t cv0[2][8], seed_w[8], col_w[8], cv[8];
    uint8_t seeds[4][32], b0[64] = {0}, sblk[64] = {0}, cblk[64], msg[512];
    uint64_t drg_p[2][6], exp_p[2][8];
    memcpy(b0, rid, 32);
    put_le(b0 + 32, layer, 8);
    put_le(sblk, n, 8);
    /* Prologue: block 0 of label 0 and the seed of node 1. */
    sd_b3_job j0 = {k->label_w, b0, 64, keyed | SD_B3_CHUNK_START, cv0[0]};
    put_le(sblk + 8, 1, 8);
    sd_b3_job js = {k->drg_w, sblk, 16, whole, seed_w};
    sd_b3_compress2(&j0, &js);
    sd_b3_cv_bytes(seed_w, seeds[1]);
    if (prev != NULL) expander(k, 0, exp_p[0]);
    for (uint64_t v = 0; v < n; v++) {
        const unsigned s = (unsigned)(v & 1);
        /* Prefetch the parents of v + 1 (its seed was made while hashing v - 1). */
        if (v + 1 < n) {
            drg_from_seed(seeds[(v + 1) & 3], v + 1, drg_p[s ^ 1]);
            for (int i = 1; i < 6; i++) __builtin_prefetch(cur + 32 * drg_p[s ^ 1][i]);
            if (prev != NULL) {
                expander(k, v + 1, exp_p[s ^ 1]);
                for (int i = 0; i < 8; i++) __builtin_prefetch(prev + 32 * exp_p[s ^ 1][i]);
            }
        }
        /* Blocks 1..7 of label v. */
        if (v == 0) {
            memset(msg + 64, 0, 6 * 32);
        } else {
            for (int i = 0; i < 6; i++) memcpy(msg + 64 + 32 * i, cur + 32 * drg_p[s][i], 32);
        }
        if (prev == NULL) {
            memset(msg + 256, 0, 8 * 32);
        } else {
            for (int i = 0; i < 8; i++) memcpy(msg + 256 + 32 * i, prev + 32 * exp_p[s][i], 32);
        }
        /* The side jobs of this label. */
        sd_b3_job side[3];
        int n_side = 0;
        if (v + 1 < n) {
            put_le(b0 + 40, v + 1, 8);
            side[n_side++] = (sd_b3_job){k->label_w, b0, 64, keyed | SD_B3_CHUNK_START, cv0[s ^ 1]};
        }
        if (v + 2 < n) {
            put_le(sblk + 8, v + 2, 8);
            side[n_side++] = (sd_b3_job){k->drg_w, sblk, 16, whole, seed_w};
        }
        if (col != NULL && v >= 1) {
            memcpy(cblk, col + 32 * (v - 1), 32);
            memcpy(cblk + 32, cur + 32 * (v - 1), 32);
            side[n_side++] = (sd_b3_job){k->column_w, cblk, 64, whole, col_w};
        }
        memcpy(cv, cv0[s], sizeof cv);
        for (int b = 1; b <= 7; b++) {
            sd_b3_job chain = {cv, msg + 64 * b, 64,
                               b == 7 ? keyed | SD_B3_CHUNK_END | SD_B3_ROOT : keyed, cv};
            if (b <= n_side)
                sd_b3_compress2(&chain, &side[b - 1]);
            else
                sd_b3_compress_cv(cv, msg + 64 * b, 0, 64, chain.flags, cv);
        }
        sd_b3_cv_bytes(cv, cur + 32 * v);
        if (v + 2 < n) sd_b3_cv_bytes(seed_w, seeds[(v + 2) & 3]);
        if (col != NULL && v >= 1) sd_b3_cv_bytes(col_w, col + 32 * (v - 1));
    }
    if (col != NULL) {
        memcpy(cblk, col + 32 * (n - 1), 32);
        memcpy(cblk + 32, cur + 32 * (n - 1), 32);
        sd_b3_compress_cv(k->column_w, cblk, 0, 64, whole, col_w);
        sd_b3_cv_bytes(col_w, col + 32 * (n - 1));
    }
}

int sd_sdr_label(const uint8_t rid[32], uint64_t n, unsigned n_layers, const uint8_t *in,
                 uint8_t *out, uint8_t *col_out, const uint64_t *keep, size_t n_keep,
                 uint8_t *keep_out) {
    keys_t k;
    if (sd_sdr_init_keys(&k, n) != 0 || n_layers < 1 || out == NULL) return -1;
    for (size_t i = 0; i < n_keep; i++)
        if (keep[i] >= n) return -1;
    sd_sdr_layer bufs[2];
    if (sd_sdr_layer_alloc(&bufs[0], n * 32) != 0) return -2;
    if (sd_sdr_layer_alloc(&bufs[1], n * 32) != 0) {
        sd_sdr_layer_free(&bufs[0]);
        return -2;
    }
    uint8_t *prev = bufs[0].p, *cur = bufs[1].p;
    if (col_out != NULL) memset(col_out, 0, n * 32);
    for (unsigned layer = 1; layer <= n_layers; layer++) {
        label_layer(&k, rid, n, layer, layer > 1 ? prev : NULL, cur, col_out);
        for (size_t i = 0; i < n_keep; i++)
            memcpy(keep_out + 32 * ((size_t)n_layers * i + layer - 1), cur + 32 * keep[i], 32);
        uint8_t *t = prev;
        prev = cur;
        cur = t;
    }
    /* prev now holds the last layer. */
    if (in != NULL) {
        for (uint64_t i = 0; i < n * 32; i++) out[i] = in[i] ^ prev[i];
    } else {
        memcpy(out, prev, n * 32);
    }
    sd_sdr_layer_free(&bufs[0]);
    sd_sdr_layer_free(&bufs[1]);
    return 0;
}

/* ---- PoRep verification (spec: proofs/reference/porep.py verify_porep) ---- */

static int verify_column(const keys_t *k, const uint8_t comm_c[32], uint64_t n, unsigned layers,
                         uint64_t node, const uint8_t *col, const uint8_t *path) {
    uint8_t state[64] = {0};
    for (unsigned l = 0; l < layers; l++) {
        memcpy(state + 32, col + 32 * l, 32);
        sd_b3_keyed_hash(k->column, state, 64, state);
    }
    return sd_merkle_verify(comm_c, n, node, state, path) == 1;
}

int sd_porep_verify(const uint8_t comm_d[32], const uint8_t comm_r[32], const uint8_t rid[32],
                    uint64_t n, unsigned layers, const uint64_t *chals, size_t k,
                    const uint8_t *proof, size_t len) {
    keys_t keys;
    if (sd_sdr_init_keys(&keys, n) != 0 || layers < 1 || layers > 255 || k > 0xFFFFFFFFu) return -1;
    size_t depth = (size_t)sd_sdr_depth(n);
    size_t col_len = 32 * (size_t)layers, path_len = 32 * depth;
    size_t per = 8 + 15 * (col_len + path_len) + 2 * (32 + path_len);
    /* No proof of more than SIZE_MAX bytes exists: reject such a k before 76 + k * per wraps
     * (it cannot on 64-bit hosts with k < 2^32, but a 32-bit build could). */
    if (k > (SIZE_MAX - 76) / per || len != 76 + k * per) return 0;
    const uint8_t head[8] = {'S', 'D', 'R', 'P', 1, (uint8_t)layers, (uint8_t)depth, 0};
    if (memcmp(proof, head, 8) != 0 || le(proof + 8, 4) != k) return 0;
    const uint8_t *comm_c = proof + 12, *comm_r_last = proof + 44;
    uint8_t key_r[32], cr[32];
    named_key("comm_r", key_r);
    sd_b3_keyed_hash(key_r, proof + 12, 64, cr);
    if (memcmp(cr, comm_r, 32) != 0) return 0;
    const uint8_t *p = proof + 76;
    uint8_t msg[512], lab[32];
    for (size_t j = 0; j < k; j++) {
        uint64_t c = chals[j];
        if (c == 0 || c >= n || le(p, 8) != c) return 0;
        p += 8;
        uint64_t nodes[15];
        const uint8_t *cols[15];
        nodes[0] = c;
        drg(&keys, n, c, nodes + 1);
        expander(&keys, c, nodes + 7);
        for (int i = 0; i < 15; i++) {
            cols[i] = p;
            if (!verify_column(&keys, comm_c, n, layers, nodes[i], p, p + col_len)) return 0;
            p += col_len + path_len;
        }
        for (unsigned l = 1; l <= layers; l++) {
            memset(msg, 0, 64);
            memcpy(msg, rid, 32);
            put_le(msg + 32, l, 8);
            put_le(msg + 40, c, 8);
            for (int i = 0; i < 6; i++) memcpy(msg + 64 + 32 * i, cols[1 + i] + 32 * (l - 1), 32);
            for (int i = 0; i < 8; i++) {
                if (l == 1)
                    memset(msg + 256 + 32 * i, 0, 32);
                else
                    memcpy(msg + 256 + 32 * i, cols[7 + i] + 32 * (l - 2), 32);
            }
            sd_b3_keyed_hash(keys.label, msg, sizeof msg, lab);
            if (memcmp(lab, cols[0] + 32 * (l - 1), 32) != 0) return 0;
        }
        const uint8_t *d_leaf = p, *d_path = p + 32, *r_leaf = p + 32 + path_len,
                      *r_path = p + 64 + path_len;
        p += 2 * (32 + path_len);
        if (sd_merkle_verify(comm_d, n, c, d_leaf, d_path) != 1) return 0;
        if (sd_merkle_verify(comm_r_last, n, c, r_leaf, r_path) != 1) return 0;
        const uint8_t *last = cols[0] + 32 * (layers - 1);
        for (int i = 0; i < 32; i++)
            if ((uint8_t)(d_leaf[i] ^ last[i]) != r_leaf[i]) return 0;
    }
    return 1;
}
