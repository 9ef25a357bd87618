/* Binary Merkle trees over 32-byte leaves (no Python.h).
 *
 * This header is the contract between merkle.c and its users (sealing, PoRep, PoSt).
 * n_leaves is a power of two >= 1. Internal node = keyed BLAKE3 of (left || right) under the
 * node key (a derive_key context, see merkle.c), which separates nodes from leaves; leaves are
 * the raw 32-byte values. The stored tree holds the internal rows bottom-up (row 1 = parents of
 * the leaves, ..., root last); the lowest `drop` internal rows may be left out to save memory,
 * in which case openings rebuild the needed subtree from the leaves. All functions return 0 on
 * success and -1 on bad arguments unless stated otherwise. */
#ifndef STORAGED_MERKLE_H
#define STORAGED_MERKLE_H
#include <stddef.h>
#include <stdint.h>

/* log2(n_leaves), or -1 if n_leaves is not a power of two >= 1. */
int sd_merkle_depth(size_t n_leaves);

/* node = keyed_blake3(node_key, left || right). */
void sd_merkle_hash_pair(const uint8_t left[32], const uint8_t right[32], uint8_t out[32]);

/* Number of 32-byte nodes sd_merkle_build writes for n_leaves with `drop` rows left out
 * (0 if the arguments are invalid; drop must be < depth unless n_leaves == 1). */
size_t sd_merkle_tree_nodes(size_t n_leaves, unsigned drop);

/* Build the tree; `tree` has room for sd_merkle_tree_nodes(n_leaves, drop) * 32 bytes. */
int sd_merkle_build(const uint8_t *leaves, size_t n_leaves, unsigned drop, uint8_t *tree);
/* (sd_merkle_build also returns -2 if it cannot allocate its 64 KiB-scale scratch.) */

/* The root of a built tree (for n_leaves == 1 the root is the single leaf). */
int sd_merkle_root(const uint8_t *leaves, const uint8_t *tree, size_t n_leaves, unsigned drop,
                   uint8_t root[32]);

/* The root over n_leaves leaves without storing the tree (memory: one 2^12-leaf batch and
 * n_leaves / 2^12 batch roots; no fresh output pages to fault in). -2 if out of memory. */
int sd_merkle_root_of(const uint8_t *leaves, size_t n_leaves, uint8_t root[32]);

/* The opening path of leaf `index`: depth sibling hashes, bottom-up, written to `path`
 * (32 * depth bytes). `leaves` is needed only when drop > 0. */
int sd_merkle_path(const uint8_t *leaves, const uint8_t *tree, size_t n_leaves, unsigned drop,
                   size_t index, uint8_t *path);

/* 1 if leaf at index with path hashes up to root, 0 if not, -1 on bad arguments. */
int sd_merkle_verify(const uint8_t root[32], size_t n_leaves, size_t index,
                     const uint8_t leaf[32], const uint8_t *path);

/* Added after the pinned API (same conventions; -2 means out of memory). */

/* The derive_key context string of the node key, e.g. "storaged 2026-11 merkle node v1". */
const char *sd_merkle_node_context(void);

/* Openings of `count` leaves: path i (32 * depth bytes) at paths + 32 * depth * i. Indices are
 * all checked before anything is written. With drop > 0 each opening rebuilds one
 * 2^(drop+1)-leaf subtree (2^(drop+1) - 2 compressions). */
int sd_merkle_paths(const uint8_t *leaves, const uint8_t *tree, size_t n_leaves, unsigned drop,
                    const uint64_t *indices, size_t count, uint8_t *paths);

/* 1 if every leaf_values[i] (32 bytes each) with its path hashes up to root, 0 if any does not,
 * -1 on bad arguments (n_leaves not a power of two, an index out of range). */
int sd_merkle_verify_many(const uint8_t root[32], size_t n_leaves, const uint64_t *indices,
                          size_t count, const uint8_t *leaf_values, const uint8_t *paths);

#endif
