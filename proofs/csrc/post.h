/* PoSt verification core (no Python.h), format v1: the normative definition is
 * proofs/reference/post.py (challenge derivation and proof layout); results are identical. */
#ifndef STORAGED_POST_H
#define STORAGED_POST_H
#include <stddef.h>
#include <stdint.h>

/* The k challenged leaves of `sector` for a window's randomness: leaf_j = u64 of
 * keyed_blake3(post challenge key, randomness || u64 sector || u32 j)[0..8] mod n_nodes.
 * Returns 0, or -1 if n_nodes is not a power of two >= 2. */
int sd_post_challenges(const uint8_t randomness[32], uint64_t sector, uint64_t k, uint64_t n_nodes,
                       uint64_t *out);

/* Verify one sector's PoSt proof: 1 if valid, 0 if not (wrong length, header, comm_r or any
 * opening), -1 on bad arguments (n_nodes not a power of two >= 2, k >= 2^32). Allocates nothing. */
int sd_post_verify(const uint8_t comm_r[32], uint64_t sector, const uint8_t randomness[32],
                   uint64_t k, uint64_t n_nodes, const uint8_t *proof, size_t len);

#endif
