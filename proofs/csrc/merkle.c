/* Binary Merkle trees over 32-byte leaves (no Python.h); the contract is merkle.h.
 *
 * Node key: derive_key(SD_MERKLE_NODE_CONTEXT, "") computed once; every internal node is
 * keyed_blake3(node_key, left || right), a single 64-byte-block compression, so each row is
 * hashed by the 8-lane SIMD kernel. Leaves are never hashed: a leaf (32 bytes) and a node input
 * (64 bytes) differ in length, and nodes are keyed, so nodes and leaves are domain-separated.
 *
 * Stored layout (v1): rows drop+1 .. depth, bottom-up, each row left to right, root last;
 * row r has n >> r nodes. The bottom is built in cache-sized batches of leaves. */
#include "merkle.h"

#include <stdlib.h>
#include <string.h>

#include "blake3_impl.h"

/* Versioned: changing it changes every root. */
#define SD_MERKLE_NODE_CONTEXT "storaged 2026-11 merkle node v1"

/* Leaves per batch in the bottom-up build: 2^12 leaves = 128 KiB, fits in L2 with its row. */
#define BATCH_LOG 12

static uint32_t node_key[8];
static int node_key_ready = 0;

static const uint32_t *get_node_key(void) {
    if (!__atomic_load_n(&node_key_ready, __ATOMIC_ACQUIRE)) {
        uint8_t material = 0;
        uint8_t k[32];
        uint32_t w[8];
        sd_b3_derive_key(SD_MERKLE_NODE_CONTEXT, &material, 0, k);
        sd_b3_key_words(k, w);
        /* Racing threads write identical words. */
        memcpy(node_key, w, sizeof w);
        __atomic_store_n(&node_key_ready, 1, __ATOMIC_RELEASE);
    }
    return node_key;
}

const char *sd_merkle_node_context(void) { return SD_MERKLE_NODE_CONTEXT; }

int sd_merkle_depth(size_t n_leaves) {
    if (n_leaves == 0 || (n_leaves & (n_leaves - 1)) != 0) return -1;
    int d = 0;
    while (((size_t)1 << d) < n_leaves) d++;
    return d;
}

void sd_merkle_hash_pair(const uint8_t left[32], const uint8_t right[32], uint8_t out[32]) {
    uint8_t block[64];
    memcpy(block, left, 32);
    memcpy(block + 32, right, 32);
    sd_b3_keyed_hash64_many(get_node_key(), block, 1, out);
}

/* Valid (n_leaves, drop)? Returns the depth or -1. */
static int check(size_t n_leaves, unsigned drop) {
    int d = sd_merkle_depth(n_leaves);
    if (d < 0) return -1;
    if (d == 0 ? drop != 0 : drop >= (unsigned)d) return -1;
    return d;
}

size_t sd_merkle_tree_nodes(size_t n_leaves, unsigned drop) {
    if (check(n_leaves, drop) < 0) return 0;
    /* sum of n >> r for r = drop+1 .. depth */
    return (n_leaves >> drop) - 1;
}

/* Offset (in nodes) of stored row r (drop < r <= depth). */
static size_t row_offset(size_t n, unsigned drop, unsigned r) {
    return (n >> drop) - (n >> (r - 1));
}

/* Reduce `count` nodes (a power of two) at `in` by `levels` rows into `out` (count >> levels
 * nodes); `scratch` holds count/2 nodes. out may be scratch. */
static void reduce(const uint8_t *in, size_t count, unsigned levels, uint8_t *scratch,
                   uint8_t *out) {
    const uint32_t *key = get_node_key();
    const uint8_t *src = in;
    for (unsigned l = 0; l < levels; l++) {
        count /= 2;
        uint8_t *dst = (l + 1 == levels) ? out : scratch;
        sd_b3_keyed_hash64_many(key, src, count, dst);
        src = dst;
    }
}

int sd_merkle_build(const uint8_t *leaves, size_t n_leaves, unsigned drop, uint8_t *tree) {
    int d = check(n_leaves, drop);
    if (d < 0 || leaves == NULL || (tree == NULL && d > 0)) return -1;
    if (d == 0) return 0;
    const uint32_t *key = get_node_key();
    /* Bottom: batches of leaves reduced to the first stored row (drop + 1). */
    unsigned first = drop + 1;
    unsigned blog = first > BATCH_LOG ? first : BATCH_LOG;
    if (blog > (unsigned)d) blog = (unsigned)d;
    size_t batch = (size_t)1 << blog;
    uint8_t *scratch = malloc(batch / 2 * 32);
    if (scratch == NULL) return -2;
    for (size_t b = 0; b < n_leaves; b += batch) {
        reduce(leaves + 32 * b, batch, first, scratch, tree + 32 * (b >> first));
        /* Rows above `first` inside this batch, while still in cache. */
        for (unsigned r = first + 1; r <= blog; r++) {
            size_t off_in = row_offset(n_leaves, drop, r - 1) + (b >> (r - 1));
            size_t off_out = row_offset(n_leaves, drop, r) + (b >> r);
            sd_b3_keyed_hash64_many(key, tree + 32 * off_in, batch >> r, tree + 32 * off_out);
        }
    }
    free(scratch);
    /* Remaining rows span several batches. */
    for (unsigned r = blog + 1; r <= (unsigned)d; r++) {
        sd_b3_keyed_hash64_many(key, tree + 32 * row_offset(n_leaves, drop, r - 1),
                                n_leaves >> r, tree + 32 * row_offset(n_leaves, drop, r));
    }
    return 0;
}

int sd_merkle_root_of(const uint8_t *leaves, size_t n_leaves, uint8_t root[32]) {
    int d = sd_merkle_depth(n_leaves);
    if (d < 0 || leaves == NULL) return -1;
    if (d == 0) {
        memcpy(root, leaves, 32);
        return 0;
    }
    /* Each batch of 2^blog leaves reduces (in L2) to one node in `tops`; then tops reduce. */
    unsigned blog = (unsigned)d < BATCH_LOG ? (unsigned)d : BATCH_LOG;
    size_t batch = (size_t)1 << blog, n_tops = n_leaves >> blog;
    uint8_t *scratch = malloc(batch / 2 * 32), *tops = malloc(n_tops * 32);
    if (scratch == NULL || tops == NULL) {
        free(scratch);
        free(tops);
        return -2;
    }
    for (size_t b = 0; b < n_tops; b++)
        reduce(leaves + 32 * (b << blog), batch, blog, scratch, tops + 32 * b);
    if (n_tops > 1) {
        unsigned up = (unsigned)d - blog;
        reduce(tops, n_tops, up, tops, tops);
    }
    memcpy(root, tops, 32);
    free(scratch);
    free(tops);
    return 0;
}

int sd_merkle_root(const uint8_t *leaves, const uint8_t *tree, size_t n_leaves, unsigned drop,
                   uint8_t root[32]) {
    int d = check(n_leaves, drop);
    if (d < 0) return -1;
    if (d == 0) {
        if (leaves == NULL) return -1;
        memcpy(root, leaves, 32);
        return 0;
    }
    if (tree == NULL) return -1;
    memcpy(root, tree + 32 * (sd_merkle_tree_nodes(n_leaves, drop) - 1), 32);
    return 0;
}

/* Path with a caller-provided scratch of 2^drop nodes (for rebuilding dropped rows). */
static void path_into(const uint8_t *leaves, const uint8_t *tree, size_t n, unsigned drop,
                      int d, size_t index, uint8_t *path, uint8_t *scratch) {
    /* Level 0: the sibling leaf. */
    memcpy(path, leaves + 32 * (index ^ 1), 32);
    if (drop > 0) {
        /* Rebuild rows 1..drop of the 2^(drop+1)-leaf subtree holding index: the sibling at
         * row drop is the root of the neighbouring 2^drop-leaf block, so both are needed. */
        const uint32_t *key = get_node_key();
        size_t sub = (size_t)1 << (drop + 1);
        size_t base = index & ~(sub - 1);
        const uint8_t *src = leaves + 32 * base;
        size_t count = sub;
        for (unsigned r = 1; r <= drop; r++) {
            count /= 2;
            sd_b3_keyed_hash64_many(key, src, count, scratch);
            size_t local = ((index - base) >> r) ^ 1;
            memcpy(path + 32 * r, scratch + 32 * local, 32);
            src = scratch;
        }
    }
    for (unsigned r = drop + 1; r < (unsigned)d; r++) {
        size_t sib = (index >> r) ^ 1;
        memcpy(path + 32 * r, tree + 32 * (row_offset(n, drop, r) + sib), 32);
    }
}

int sd_merkle_paths(const uint8_t *leaves, const uint8_t *tree, size_t n_leaves, unsigned drop,
                    const uint64_t *indices, size_t count, uint8_t *paths) {
    int d = check(n_leaves, drop);
    if (d < 0 || leaves == NULL || (tree == NULL && d > 1)) return -1;
    for (size_t i = 0; i < count; i++)
        if (indices[i] >= n_leaves) return -1;
    if (d == 0) return 0;
    uint8_t *scratch = NULL;
    if (drop > 0) {
        scratch = malloc(((size_t)1 << drop) * 32); /* half of the 2^(drop+1) leaves */
        if (scratch == NULL) return -2;
    }
    for (size_t i = 0; i < count; i++)
        path_into(leaves, tree, n_leaves, drop, d, (size_t)indices[i], paths + 32 * d * i,
                  scratch);
    free(scratch);
    return 0;
}

int sd_merkle_path(const uint8_t *leaves, const uint8_t *tree, size_t n_leaves, unsigned drop,
                   size_t index, uint8_t *path) {
    int d = check(n_leaves, drop);
    if (d < 0 || index >= n_leaves) return -1;
    if (d == 0) return 0;
    /* The sibling leaf is always needed; the stored tree is needed above row drop. */
    if (leaves == NULL || (tree == NULL && d > 1)) return -1;
    uint64_t idx = index;
    return sd_merkle_paths(leaves, tree, n_leaves, drop, &idx, 1, path);
}

int sd_merkle_verify(const uint8_t root[32], size_t n_leaves, size_t index,
                     const uint8_t leaf[32], const uint8_t *path) {
    int d = sd_merkle_depth(n_leaves);
    if (d < 0 || index >= n_leaves || root == NULL || leaf == NULL || (path == NULL && d > 0))
        return -1;
    uint8_t cur[32];
    memcpy(cur, leaf, 32);
    for (int r = 0; r < d; r++) {
        if ((index >> r) & 1)
            sd_merkle_hash_pair(path + 32 * r, cur, cur);
        else
            sd_merkle_hash_pair(cur, path + 32 * r, cur);
    }
    /* Constant-time compare: a root is public, but there is no reason to leak where it differs. */
    uint8_t diff = 0;
    for (int i = 0; i < 32; i++) diff |= (uint8_t)(cur[i] ^ root[i]);
    return diff == 0;
}

int sd_merkle_verify_many(const uint8_t root[32], size_t n_leaves, const uint64_t *indices,
                          size_t count, const uint8_t *leaf_values, const uint8_t *paths) {
    int d = sd_merkle_depth(n_leaves);
    if (d < 0) return -1;
    for (size_t i = 0; i < count; i++)
        if (indices[i] >= n_leaves) return -1;
    int ok = 1;
    for (size_t i = 0; i < count; i++) {
        int r = sd_merkle_verify(root, n_leaves, (size_t)indices[i], leaf_values + 32 * i,
                                 paths + 32 * (size_t)d * i);
        if (r < 0) return -1;
        ok &= r;
    }
    return ok;
}
