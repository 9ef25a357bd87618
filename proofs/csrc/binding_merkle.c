/* CPython binding for BLAKE3 and the Merkle trees of the C core (blake3.h, merkle.h).
 *
 * Buffers in ("y*"), bytes out; every size and index is checked here before the core runs, so
 * bad input raises proofs.ProofError naming what is wrong. The GIL is released around any
 * call that may take longer than about a millisecond. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

#include "binding.h"
#include "blake3.h"
#include "merkle.h"

/* Hashing under ~64 KiB takes well under a millisecond: not worth a GIL round trip. */
#define NOGIL_BYTES (64 * 1024)

static PyObject *new_bytes(Py_ssize_t len, uint8_t **buf) {
    PyObject *o = PyBytes_FromStringAndSize(NULL, len);
    if (o != NULL) *buf = (uint8_t *)PyBytes_AS_STRING(o);
    return o;
}

/* Ask for transparent huge pages on a large fresh output buffer: first-touch page faults on
 * 4 KiB pages cost more than hashing on some machines (measured: 256 MiB of faults ~ 200 ms,
 * the tree itself ~ 230 ms). Advisory only; errors are ignored. */
static void advise_huge(uint8_t *buf, size_t len) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)2 << 20;
    if (len < 2 * huge) return;
    uintptr_t start = ((uintptr_t)buf + huge - 1) & ~(huge - 1);
    uintptr_t end = ((uintptr_t)buf + len) & ~(huge - 1);
    if (end > start) (void)madvise((void *)start, end - start, MADV_HUGEPAGE);
#else
    (void)buf;
    (void)len;
#endif
}

static int check_key(const Py_buffer *key, const char *fn) {
    if (key->len != SD_B3_KEY_LEN) {
        PyErr_Format(sd_proof_error_class ? sd_proof_error_class : PyExc_ValueError,
                     "%s: key must be 32 bytes, got %zd", fn, key->len);
        return -1;
    }
    return 0;
}

/* Raise ProofError with a formatted message; returns NULL. */
#define FAIL(...) \
    ((void)PyErr_Format(sd_proof_error_class ? sd_proof_error_class : PyExc_ValueError, __VA_ARGS__))

static PyObject *py_blake3_hash(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*:blake3_hash", &data)) return NULL;
    uint8_t *out;
    PyObject *res = new_bytes(32, &out);
    if (res != NULL) {
        if (data.len >= NOGIL_BYTES) {
            Py_BEGIN_ALLOW_THREADS
            sd_b3_hash(data.buf, (size_t)data.len, out);
            Py_END_ALLOW_THREADS
        } else {
            sd_b3_hash(data.buf, (size_t)data.len, out);
        }
    }
    PyBuffer_Release(&data);
    return res;
}

static PyObject *py_blake3_keyed_hash(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer key, data;
    if (!PyArg_ParseTuple(args, "y*y*:blake3_keyed_hash", &key, &data)) return NULL;
    PyObject *res = NULL;
    uint8_t *out;
    if (check_key(&key, "blake3_keyed_hash") == 0 && (res = new_bytes(32, &out)) != NULL) {
        if (data.len >= NOGIL_BYTES) {
            Py_BEGIN_ALLOW_THREADS
            sd_b3_keyed_hash(key.buf, data.buf, (size_t)data.len, out);
            Py_END_ALLOW_THREADS
        } else {
            sd_b3_keyed_hash(key.buf, data.buf, (size_t)data.len, out);
        }
    }
    PyBuffer_Release(&key);
    PyBuffer_Release(&data);
    return res;
}

static PyObject *py_blake3_derive_key(PyObject *self, PyObject *args) {
    (void)self;
    const char *ctx;
    Py_ssize_t ctx_len;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "s#y*:blake3_derive_key", &ctx, &ctx_len, &data)) return NULL;
    PyObject *res = NULL;
    uint8_t *out;
    if ((size_t)ctx_len != strlen(ctx)) {
        FAIL("blake3_derive_key: context must not contain NUL characters");
    } else if ((res = new_bytes(32, &out)) != NULL) {
        Py_BEGIN_ALLOW_THREADS
        sd_b3_derive_key(ctx, data.buf, (size_t)data.len, out);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&data);
    return res;
}

static PyObject *py_blake3_keyed_hash_many(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer key, data;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "y*y*n:blake3_keyed_hash_many", &key, &data, &count))
        return NULL;
    PyObject *res = NULL;
    const uint8_t **msgs = NULL;
    uint8_t *out;
    if (check_key(&key, "blake3_keyed_hash_many") != 0) goto done;
    if (count < 0) {
        FAIL("blake3_keyed_hash_many: count must be >= 0, got %zd", count);
        goto done;
    }
    if (count == 0 ? data.len != 0 : data.len % count != 0) {
        FAIL("blake3_keyed_hash_many: %zd bytes do not split into %zd equal messages",
             data.len, count);
        goto done;
    }
    size_t len = count ? (size_t)(data.len / count) : 0;
    msgs = PyMem_Malloc(sizeof(*msgs) * (size_t)(count ? count : 1));
    if (msgs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) msgs[i] = (const uint8_t *)data.buf + len * (size_t)i;
    if ((res = new_bytes(32 * count, &out)) == NULL) goto done;
    Py_BEGIN_ALLOW_THREADS
    sd_b3_keyed_hash_many(key.buf, msgs, (size_t)count, len, out);
    Py_END_ALLOW_THREADS
done:
    PyMem_Free(msgs);
    PyBuffer_Release(&key);
    PyBuffer_Release(&data);
    return res;
}

static PyObject *py_blake3_backend(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    return PyUnicode_FromString(sd_b3_backend());
}

static PyObject *py_merkle_node_context(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    return PyUnicode_FromString(sd_merkle_node_context());
}

static PyObject *py_merkle_hash_pair(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer l, r;
    if (!PyArg_ParseTuple(args, "y*y*:merkle_hash_pair", &l, &r)) return NULL;
    PyObject *res = NULL;
    uint8_t *out;
    if (l.len != 32 || r.len != 32)
        FAIL("merkle_hash_pair: nodes must be 32 bytes, got %zd and %zd", l.len, r.len);
    else if ((res = new_bytes(32, &out)) != NULL)
        sd_merkle_hash_pair(l.buf, r.buf, out);
    PyBuffer_Release(&l);
    PyBuffer_Release(&r);
    return res;
}

/* Check leaves and drop; return n_leaves or 0 with ProofError set. */
static size_t check_leaves(const Py_buffer *leaves, Py_ssize_t drop, const char *fn) {
    if (leaves->len == 0 || leaves->len % 32 != 0) {
        FAIL("%s: leaves must be a non-empty multiple of 32 bytes, got %zd", fn, leaves->len);
        return 0;
    }
    size_t n = (size_t)leaves->len / 32;
    int d = sd_merkle_depth(n);
    if (d < 0) {
        FAIL("%s: number of leaves must be a power of two, got %zu", fn, n);
        return 0;
    }
    if (drop < 0 || (d == 0 ? drop != 0 : drop >= d)) {
        FAIL("%s: drop must be in [0, %d) for %zu leaves, got %zd", fn, d ? d : 1, n, drop);
        return 0;
    }
    return n;
}

static PyObject *py_merkle_tree(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"leaves", "drop", NULL};
    Py_buffer leaves;
    Py_ssize_t drop = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*|n:merkle_tree", kwlist, &leaves, &drop))
        return NULL;
    PyObject *res = NULL;
    uint8_t *out;
    int rc = 0;
    size_t n = check_leaves(&leaves, drop, "merkle_tree");
    if (n == 0) goto done;
    size_t nodes = sd_merkle_tree_nodes(n, (unsigned)drop);
    if ((res = new_bytes((Py_ssize_t)(nodes * 32), &out)) == NULL) goto done;
    Py_BEGIN_ALLOW_THREADS
    advise_huge(out, nodes * 32);
    rc = sd_merkle_build(leaves.buf, n, (unsigned)drop, out);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        Py_CLEAR(res);
        if (rc == -2)
            PyErr_NoMemory();
        else
            FAIL("merkle_tree: invalid arguments");
    }
done:
    PyBuffer_Release(&leaves);
    return res;
}

/* merkle_tree_into(leaves, out, drop=0) -> None: build into a writable buffer of exactly the
 * tree's size (a reused buffer or an mmap'd file: no fresh pages to fault in). */
static PyObject *py_merkle_tree_into(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"leaves", "out", "drop", NULL};
    Py_buffer leaves, out;
    Py_ssize_t drop = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*w*|n:merkle_tree_into", kwlist, &leaves, &out,
                                     &drop))
        return NULL;
    PyObject *res = NULL;
    int rc = 0;
    size_t n = check_leaves(&leaves, drop, "merkle_tree_into");
    if (n == 0) goto done;
    size_t want = sd_merkle_tree_nodes(n, (unsigned)drop) * 32;
    if ((size_t)out.len != want) {
        FAIL("merkle_tree_into: out must be %zu bytes for %zu leaves with drop %zd, got %zd",
             want, n, drop, out.len);
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = sd_merkle_build(leaves.buf, n, (unsigned)drop, out.buf);
    Py_END_ALLOW_THREADS
    if (rc == -2)
        PyErr_NoMemory();
    else if (rc != 0)
        FAIL("merkle_tree_into: invalid arguments");
    else
        res = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&leaves);
    PyBuffer_Release(&out);
    return res;
}

static int check_tree(const Py_buffer *tree, size_t n, Py_ssize_t drop, const char *fn) {
    size_t want = sd_merkle_tree_nodes(n, (unsigned)drop) * 32;
    if ((size_t)tree->len != want) {
        FAIL("%s: tree must be %zu bytes for %zu leaves with drop %zd, got %zd", fn, want, n,
             drop, tree->len);
        return -1;
    }
    return 0;
}

static PyObject *py_merkle_root(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"leaves", "tree", "drop", NULL};
    Py_buffer leaves, tree;
    Py_ssize_t drop = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*y*|n:merkle_root", kwlist, &leaves, &tree,
                                     &drop))
        return NULL;
    PyObject *res = NULL;
    uint8_t *out;
    size_t n = check_leaves(&leaves, drop, "merkle_root");
    if (n == 0 || check_tree(&tree, n, drop, "merkle_root") != 0) goto done;
    if ((res = new_bytes(32, &out)) == NULL) goto done;
    if (sd_merkle_root(leaves.buf, tree.buf, n, (unsigned)drop, out) != 0) {
        Py_CLEAR(res);
        FAIL("merkle_root: invalid arguments");
    }
done:
    PyBuffer_Release(&leaves);
    PyBuffer_Release(&tree);
    return res;
}

/* merkle_root_of(leaves) -> 32 bytes: the root without storing the tree (GIL released). */
static PyObject *py_merkle_root_of(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer leaves;
    if (!PyArg_ParseTuple(args, "y*:merkle_root_of", &leaves)) return NULL;
    PyObject *res = NULL;
    uint8_t *out;
    int rc;
    size_t n = check_leaves(&leaves, 0, "merkle_root_of");
    if (n == 0) goto done;
    if ((res = new_bytes(32, &out)) == NULL) goto done;
    Py_BEGIN_ALLOW_THREADS
    rc = sd_merkle_root_of(leaves.buf, n, out);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        Py_CLEAR(res);
        if (rc == -2)
            PyErr_NoMemory();
        else
            FAIL("merkle_root_of: invalid arguments");
    }
done:
    PyBuffer_Release(&leaves);
    return res;
}

/* indices (a sequence of ints) -> malloc'd uint64 array, each checked < n. */
static uint64_t *parse_indices(PyObject *seq, size_t n, Py_ssize_t *count, const char *fn) {
    PyObject *fast = PySequence_Fast(seq, "indices must be a sequence of ints");
    if (fast == NULL) return NULL;
    Py_ssize_t k = PySequence_Fast_GET_SIZE(fast);
    uint64_t *idx = PyMem_Malloc(sizeof(uint64_t) * (size_t)(k ? k : 1));
    if (idx == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyLong_Check(item)) {
            PyErr_Format(PyExc_TypeError, "%s: indices[%zd] is not an int", fn, i);
            goto fail;
        }
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(item, &overflow);
        if (v == -1 && PyErr_Occurred()) goto fail;
        if (overflow != 0 || v < 0 || (unsigned long long)v >= n) {
            FAIL("%s: index %S out of range for %zu leaves", fn, item, n);
            goto fail;
        }
        idx[i] = (uint64_t)v;
    }
    Py_DECREF(fast);
    *count = k;
    return idx;
fail:
    Py_DECREF(fast);
    PyMem_Free(idx);
    return NULL;
}

static PyObject *py_merkle_paths(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer leaves, tree;
    Py_ssize_t drop;
    PyObject *seq;
    if (!PyArg_ParseTuple(args, "y*y*nO:merkle_paths", &leaves, &tree, &drop, &seq))
        return NULL;
    PyObject *res = NULL;
    uint64_t *idx = NULL;
    Py_ssize_t count = 0;
    uint8_t *out;
    int rc = 0;
    size_t n = check_leaves(&leaves, drop, "merkle_paths");
    if (n == 0 || check_tree(&tree, n, drop, "merkle_paths") != 0) goto done;
    if ((idx = parse_indices(seq, n, &count, "merkle_paths")) == NULL) goto done;
    size_t d = (size_t)sd_merkle_depth(n);
    if ((res = new_bytes((Py_ssize_t)(32 * d * (size_t)count), &out)) == NULL) goto done;
    Py_BEGIN_ALLOW_THREADS
    rc = sd_merkle_paths(leaves.buf, tree.buf, n, (unsigned)drop, idx, (size_t)count, out);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        Py_CLEAR(res);
        if (rc == -2)
            PyErr_NoMemory();
        else
            FAIL("merkle_paths: invalid arguments");
    }
done:
    PyMem_Free(idx);
    PyBuffer_Release(&leaves);
    PyBuffer_Release(&tree);
    return res;
}

static PyObject *py_merkle_verify_paths(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer root, values, paths;
    Py_ssize_t n_leaves;
    PyObject *seq;
    if (!PyArg_ParseTuple(args, "y*nOy*y*:merkle_verify_paths", &root, &n_leaves, &seq, &values,
                          &paths))
        return NULL;
    PyObject *res = NULL;
    uint64_t *idx = NULL;
    Py_ssize_t count = 0;
    int rc = 0;
    int d = n_leaves > 0 ? sd_merkle_depth((size_t)n_leaves) : -1;
    if (root.len != 32) {
        FAIL("merkle_verify_paths: root must be 32 bytes, got %zd", root.len);
        goto done;
    }
    if (d < 0) {
        FAIL("merkle_verify_paths: n_leaves must be a power of two >= 1, got %zd", n_leaves);
        goto done;
    }
    if ((idx = parse_indices(seq, (size_t)n_leaves, &count, "merkle_verify_paths")) == NULL)
        goto done;
    if (values.len != 32 * count) {
        FAIL("merkle_verify_paths: leaf_values must be %zd bytes for %zd indices, got %zd",
             32 * count, count, values.len);
        goto done;
    }
    if (paths.len != 32 * (Py_ssize_t)d * count) {
        FAIL("merkle_verify_paths: paths must be %zd bytes (%zd paths of depth %d), got %zd",
             32 * (Py_ssize_t)d * count, count, d, paths.len);
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = sd_merkle_verify_many(root.buf, (size_t)n_leaves, idx, (size_t)count, values.buf,
                               paths.buf);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        FAIL("merkle_verify_paths: invalid arguments");
    else
        res = PyBool_FromLong(rc);
done:
    PyMem_Free(idx);
    PyBuffer_Release(&root);
    PyBuffer_Release(&values);
    PyBuffer_Release(&paths);
    return res;
}

PyMethodDef sd_merkle_methods[] = {
    {"blake3_hash", py_blake3_hash, METH_VARARGS, "blake3_hash(data) -> 32 bytes"},
    {"blake3_keyed_hash", py_blake3_keyed_hash, METH_VARARGS,
     "blake3_keyed_hash(key, data) -> 32 bytes"},
    {"blake3_derive_key", py_blake3_derive_key, METH_VARARGS,
     "blake3_derive_key(context, material) -> 32 bytes"},
    {"blake3_keyed_hash_many", py_blake3_keyed_hash_many, METH_VARARGS,
     "blake3_keyed_hash_many(key, data, count) -> 32*count bytes"},
    {"blake3_backend", py_blake3_backend, METH_NOARGS, "blake3_backend() -> str"},
    {"merkle_node_context", py_merkle_node_context, METH_NOARGS, "merkle_node_context() -> str"},
    {"merkle_hash_pair", py_merkle_hash_pair, METH_VARARGS,
     "merkle_hash_pair(left, right) -> 32 bytes"},
    {"merkle_tree", (PyCFunction)(void (*)(void))py_merkle_tree, METH_VARARGS | METH_KEYWORDS,
     "merkle_tree(leaves, drop=0) -> bytes"},
    {"merkle_tree_into", (PyCFunction)(void (*)(void))py_merkle_tree_into,
     METH_VARARGS | METH_KEYWORDS, "merkle_tree_into(leaves, out, drop=0) -> None"},
    {"merkle_root", (PyCFunction)(void (*)(void))py_merkle_root, METH_VARARGS | METH_KEYWORDS,
     "merkle_root(leaves, tree, drop=0) -> 32 bytes"},
    {"merkle_root_of", py_merkle_root_of, METH_VARARGS,
     "merkle_root_of(leaves) -> root, without storing the tree"},
    {"merkle_paths", py_merkle_paths, METH_VARARGS,
     "merkle_paths(leaves, tree, drop, indices) -> concatenated paths"},
    {"merkle_verify_paths", py_merkle_verify_paths, METH_VARARGS,
     "merkle_verify_paths(root, n_leaves, indices, leaf_values, paths) -> bool"},
    {NULL, NULL, 0, NULL},
};
