/* SDR sealing core (no Python.h): the parent graph and layer labelling, version 1.
 *
 * The normative definition is proofs/reference/graph.py and sealing.py; this file must give
 * bit-identical results. Memory: two layers (previous, current) are allocated inside
 * sd_sdr_label; column digests are folded into the caller's col_out as running 32-byte states,
 * so a seal holds about 3 x 32 N bytes plus the caller's input and output, whatever L is. */
#ifndef STORAGED_SDR_H
#define STORAGED_SDR_H
#include <stddef.h>
#include <stdint.h>

#define SD_SDR_DRG_DEGREE 6
#define SD_SDR_EXP_DEGREE 8

/* log2(n_nodes) if n_nodes is a power of two >= 2, else -1. */
int sd_sdr_depth(uint64_t n_nodes);

/* The same-layer parents of v (v >= 1): 6 entries, out[0] = v - 1. Returns 0, or -1 if bad. */
int sd_sdr_drg_parents(uint64_t n_nodes, uint64_t v, uint64_t out[SD_SDR_DRG_DEGREE]);

/* The 8 previous-layer parents of v. Returns 0, or -1 if bad. */
int sd_sdr_expander_parents(uint64_t n_nodes, uint64_t v, uint64_t out[SD_SDR_EXP_DEGREE]);

/* Label n_layers layers under replica_id.
 * out (32 n bytes): the last layer, XORed with `in` if in != NULL (seal / unseal).
 * col_out (32 n bytes or NULL): the column digests.
 * keep (n_keep node indices) and keep_out (n_keep * n_layers * 32 bytes): the columns of those
 * nodes, layer 1 first. Returns 0, -1 on bad arguments, -2 if out of memory. */
int sd_sdr_label(const uint8_t replica_id[32], uint64_t n_nodes, unsigned n_layers,
                 const uint8_t *in, uint8_t *out, uint8_t *col_out, const uint64_t *keep,
                 size_t n_keep, uint8_t *keep_out);

/* Batch sealing: label `lanes` (1..SD_SDR_MAX_BATCH) sectors of the same n_nodes and n_layers
 * at once on one core, one sector per 32-bit lane of 8-way compressions (the parent graph
 * depends only on n, so every lane reads the same parents). Each lane's results equal
 * sd_sdr_label of that sector alone.
 * rids: lanes * 32 bytes, the replica ids in lane order.
 * in: NULL (no XOR), or lanes pointers of 32 n bytes each; out: lanes pointers of 32 n bytes,
 * the last layer XORed with in[i] (in[i] may equal out[i]).
 * cols: NULL, or lanes pointers of 32 n bytes for the column digests.
 * Memory: two lane-interleaved layers of 256 n bytes each, whatever `lanes` is.
 * Returns 0, -1 on bad arguments, -2 if out of memory. */
#define SD_SDR_MAX_BATCH 8
int sd_sdr_label_batch(const uint8_t *rids, unsigned lanes, uint64_t n_nodes, unsigned n_layers,
                       const uint8_t *const *in, uint8_t *const *out, uint8_t *const *cols);

/* Verify a PoRep proof (format v1, see proofs/reference/porep.py) for the given challenges
 * (computed by the caller from the seed). Returns 1 if valid, 0 if not, -1 on bad arguments. */
int sd_porep_verify(const uint8_t comm_d[32], const uint8_t comm_r[32],
                    const uint8_t replica_id[32], uint64_t n_nodes, unsigned n_layers,
                    const uint64_t *challenges, size_t k, const uint8_t *proof, size_t len);
#endif
