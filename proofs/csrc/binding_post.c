/* CPython binding of the PoSt core (post.h): verify_post, verify_post_batch, post_challenges.
 * Argument errors raise ProofError (or TypeError / OverflowError from argument parsing) the
 * way the twin in proofs/reference/post.py does; a bad proof returns False. */
#include <stdlib.h>

#include "binding.h"
#include "post.h"

static int check_args(const Py_buffer *rnd, unsigned long long n, const char *fn) {
    if (rnd->len != 32) {
        PyErr_Format(sd_proof_error_class ? sd_proof_error_class : PyExc_ValueError,
                     "%s: randomness must be 32 bytes", fn);
        return -1;
    }
    if (n < 2 || (n & (n - 1)) || n > (1ULL << 60)) {
        PyErr_Format(sd_proof_error_class ? sd_proof_error_class : PyExc_ValueError,
                     "%s: node count must be a power of two >= 2, got %llu", fn, n);
        return -1;
    }
    return 0;
}

/* Python int -> uint64 (OverflowError for negatives, like int.to_bytes in the twin). */
static int as_u64(PyObject *o, uint64_t *out) {
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    *out = v;
    return 0;
}

/* n_nodes as a Python int: anything that is not a u64 (negative, >= 2^64) is a bad node count
 * (ProofError, like the twin), not a silently wrapped one. */
static int node_count(PyObject *o, unsigned long long *out, const char *fn) {
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s: n_nodes must be an int", fn);
        return -1;
    }
    *out = PyLong_AsUnsignedLongLong(o);
    if (*out == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
        PyErr_Clear();
        *out = 0; /* rejected by check_args */
    }
    return 0;
}

/* k outside 0 .. 2^32-1 can never match a proof's u32 count: the twin returns False. */
static int k_in_range(long long k) { return k >= 0 && k <= 0xFFFFFFFFLL; }

/* verify_post(comm_r, sector, randomness, k, n_nodes, proof) -> bool */
static PyObject *py_verify_post(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer cr, rnd, proof;
    PyObject *sector_obj;
    PyObject *n_obj;
    long long k;
    unsigned long long n;
    if (!PyArg_ParseTuple(args, "y*Oy*LOy*:verify_post", &cr, &sector_obj, &rnd, &k, &n_obj,
                          &proof))
        return NULL;
    PyObject *res = NULL;
    uint64_t sector;
    if (node_count(n_obj, &n, "verify_post") != 0 || check_args(&rnd, n, "verify_post") != 0 ||
        as_u64(sector_obj, &sector) != 0)
        goto done;
    if (cr.len != 32 || !k_in_range(k)) {
        res = PyBool_FromLong(0);
        goto done;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = sd_post_verify(cr.buf, sector, rnd.buf, (uint64_t)k, n, proof.buf, (size_t)proof.len);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        sd_raise_proof_error("verify_post: invalid parameters");
    else
        res = PyBool_FromLong(rc);
done:
    PyBuffer_Release(&cr);
    PyBuffer_Release(&rnd);
    PyBuffer_Release(&proof);
    return res;
}

typedef struct {
    Py_buffer cr, proof;
    uint64_t sector;
    int held, result;
} item_t;

/* verify_post_batch(items, randomness, k, n_nodes) -> list[bool]; items: (comm_r, sector, proof).
 * All items are parsed (buffers held) first, then verified with the GIL released. */
static PyObject *py_verify_post_batch(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *items_obj, *n_obj;
    Py_buffer rnd;
    long long k;
    unsigned long long n;
    if (!PyArg_ParseTuple(args, "Oy*LO:verify_post_batch", &items_obj, &rnd, &k, &n_obj))
        return NULL;
    PyObject *res = NULL, *seq = NULL;
    item_t *items = NULL;
    Py_ssize_t count = 0;
    if (node_count(n_obj, &n, "verify_post_batch") != 0 ||
        check_args(&rnd, n, "verify_post_batch") != 0)
        goto done;
    seq = PySequence_Fast(items_obj, "verify_post_batch: items must be a sequence");
    if (seq == NULL) goto done;
    count = PySequence_Fast_GET_SIZE(seq);
    items = calloc((size_t)(count ? count : 1), sizeof(item_t));
    if (items == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        item_t *it = &items[i];
        PyObject *sector_obj;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "y*Oy*:verify_post_batch item",
                              &it->cr, &sector_obj, &it->proof))
            goto done;
        it->held = 1;
        if (as_u64(sector_obj, &it->sector) != 0) goto done;
    }
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++) {
        item_t *it = &items[i];
        if (it->cr.len != 32 || !k_in_range(k)) {
            it->result = 0;
            continue;
        }
        it->result = sd_post_verify(it->cr.buf, it->sector, rnd.buf, (uint64_t)k, n,
                                    it->proof.buf, (size_t)it->proof.len);
        if (it->result < 0) bad = 1;
    }
    Py_END_ALLOW_THREADS
    if (bad) {
        sd_raise_proof_error("verify_post_batch: invalid parameters");
        goto done;
    }
    res = PyList_New(count);
    for (Py_ssize_t i = 0; res != NULL && i < count; i++)
        PyList_SET_ITEM(res, i, PyBool_FromLong(items[i].result));
done:
    for (Py_ssize_t i = 0; items != NULL && i < count; i++) {
        if (items[i].held) {
            PyBuffer_Release(&items[i].cr);
            PyBuffer_Release(&items[i].proof);
        }
    }
    free(items);
    Py_XDECREF(seq);
    PyBuffer_Release(&rnd);
    return res;
}

/* post_challenges(randomness, sector, k, n_nodes) -> list[int] */
static PyObject *py_post_challenges(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer rnd;
    PyObject *sector_obj, *n_obj;
    long long k;
    unsigned long long n;
    if (!PyArg_ParseTuple(args, "y*OLO:post_challenges", &rnd, &sector_obj, &k, &n_obj))
        return NULL;
    PyObject *res = NULL;
    uint64_t sector, *out = NULL;
    if (node_count(n_obj, &n, "post_challenges") != 0 ||
        check_args(&rnd, n, "post_challenges") != 0 || as_u64(sector_obj, &sector) != 0)
        goto done;
    if (k < 0) k = 0; /* the twin's range(k) is empty */
    if (k > 0xFFFFFFFFLL) {
        sd_raise_proof_error("post_challenges: k must be < 2^32");
        goto done;
    }
    out = malloc(sizeof(uint64_t) * (size_t)(k ? k : 1));
    if (out == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    sd_post_challenges(rnd.buf, sector, (uint64_t)k, n, out);
    res = PyList_New((Py_ssize_t)k);
    for (long long j = 0; res != NULL && j < k; j++) {
        PyObject *v = PyLong_FromUnsignedLongLong(out[j]);
        if (v == NULL) {
            Py_CLEAR(res);
            break;
        }
        PyList_SET_ITEM(res, (Py_ssize_t)j, v);
    }
done:
    free(out);
    PyBuffer_Release(&rnd);
    return res;
}

PyMethodDef sd_post_methods[] = {
    {"verify_post", py_verify_post, METH_VARARGS,
     "verify_post(comm_r, sector, randomness, k, n_nodes, proof) -> bool"},
    {"verify_post_batch", py_verify_post_batch, METH_VARARGS,
     "verify_post_batch([(comm_r, sector, proof)], randomness, k, n_nodes) -> list[bool]"},
    {"post_challenges", py_post_challenges, METH_VARARGS,
     "post_challenges(randomness, sector, k, n_nodes) -> list[int]"},
    {NULL, NULL, 0, NULL},
};
