/* Shared declarations of the CPython binding files (the only files that include Python.h). */
#ifndef STORAGED_BINDING_H
#define STORAGED_BINDING_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* The class set by set_error_class (proofs.ProofError); NULL until set. */
extern PyObject *sd_proof_error_class;

/* Raise proofs.ProofError(msg) and return NULL. */
PyObject *sd_raise_proof_error(const char *msg);

/* NULL-terminated method tables, one per topic, concatenated by binding.c. */
extern PyMethodDef sd_merkle_methods[]; /* binding_merkle.c: BLAKE3 and Merkle trees */
extern PyMethodDef sd_seal_methods[];   /* binding_seal.c: sealing, PoRep */
extern PyMethodDef sd_post_methods[];   /* binding_post.c: PoSt challenges and verification */

#endif
