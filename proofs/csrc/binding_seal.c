/* CPython binding for the SDR sealing core (sdr.h).
 *
 * Buffers in, bytes (or the caller's writable buffer) out; sizes are checked here so bad input
 * raises proofs.ProofError naming what is wrong. The GIL is released around every labelling
 * call (any sector takes well over a millisecond to label). */
#include <stdlib.h>
#include <string.h>

#include "binding.h"
#include "sdr.h"

#define FAIL(...) \
    ((void)PyErr_Format(sd_proof_error_class ? sd_proof_error_class : PyExc_ValueError, __VA_ARGS__))

static PyObject *list_u64(const uint64_t *xs, int n) {
    PyObject *l = PyList_New(n);
    for (int i = 0; l != NULL && i < n; i++) {
        PyObject *x = PyLong_FromUnsignedLongLong(xs[i]);
        if (x == NULL) {
            Py_CLEAR(l);
            break;
        }
        PyList_SET_ITEM(l, i, x);
    }
    return l;
}

static int check_graph(unsigned long long n, unsigned long long v, const char *fn) {
    if (sd_sdr_depth(n) < 0 || sd_sdr_depth(n) > 60) {
        FAIL("%s: node count must be a power of two >= 2, got %llu", fn, n);
        return -1;
    }
    if (v >= n) {
        FAIL("%s: node %llu out of range for %llu nodes", fn, v, n);
        return -1;
    }
    return 0;
}

static PyObject *py_drg_parents(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long n, v;
    if (!PyArg_ParseTuple(args, "KK:drg_parents", &n, &v)) return NULL;
    if (check_graph(n, v, "drg_parents") != 0) return NULL;
    if (v == 0) return PyList_New(0);
    uint64_t p[SD_SDR_DRG_DEGREE];
    sd_sdr_drg_parents(n, v, p);
    return list_u64(p, SD_SDR_DRG_DEGREE);
}

static PyObject *py_expander_parents(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long n, v;
    if (!PyArg_ParseTuple(args, "KK:expander_parents", &n, &v)) return NULL;
    if (check_graph(n, v, "expander_parents") != 0) return NULL;
    uint64_t p[SD_SDR_EXP_DEGREE];
    sd_sdr_expander_parents(n, v, p);
    return list_u64(p, SD_SDR_EXP_DEGREE);
}

/* sdr_label(replica_id, n_nodes, layers, in_or_None, out_writable, want_columns, keep_list)
 *   -> (column digests bytes or None, kept columns bytes) */
static PyObject *py_sdr_label(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer rid, out, in = {0};
    PyObject *in_obj, *keep_obj;
    unsigned long long n;
    unsigned int layers;
    int want_cols;
    if (!PyArg_ParseTuple(args, "y*KIOw*pO:sdr_label", &rid, &n, &layers, &in_obj, &out,
                          &want_cols, &keep_obj))
        return NULL;
    PyObject *res = NULL, *cols = NULL, *kept = NULL;
    uint64_t *keep = NULL;
    int have_in = 0;
    if (rid.len != 32) {
        FAIL("sdr_label: replica id must be 32 bytes, got %zd", rid.len);
        goto done;
    }
    if (check_graph(n, 0, "sdr_label") != 0) goto done;
    if (layers < 1 || layers > 255) {
        FAIL("sdr_label: layer count must be in 1..255, got %u", layers);
        goto done;
    }
    if ((unsigned long long)out.len != n * 32) {
        FAIL("sdr_label: output buffer is %zd bytes, expected %llu", out.len, n * 32);
        goto done;
    }
    if (in_obj != Py_None) {
        if (PyObject_GetBuffer(in_obj, &in, PyBUF_SIMPLE) != 0) goto done;
        have_in = 1;
        if ((unsigned long long)in.len != n * 32) {
            FAIL("sdr_label: input buffer is %zd bytes, expected %llu", in.len, n * 32);
            goto done;
        }
    }
    PyObject *seq = PySequence_Fast(keep_obj, "sdr_label: keep must be a sequence of ints");
    if (seq == NULL) goto done;
    Py_ssize_t n_keep = PySequence_Fast_GET_SIZE(seq);
    keep = malloc(sizeof(uint64_t) * (size_t)(n_keep ? n_keep : 1));
    for (Py_ssize_t i = 0; keep != NULL && i < n_keep; i++) {
        unsigned long long x = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(seq, i));
        if (PyErr_Occurred() || x >= n) {
            Py_DECREF(seq);
            if (!PyErr_Occurred()) FAIL("sdr_label: kept node %llu out of range", x);
            goto done;
        }
        keep[i] = x;
    }
    Py_DECREF(seq);
    if (keep == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    uint8_t *cbuf = NULL, *kbuf;
    if (want_cols) {
        cols = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n * 32));
        if (cols == NULL) goto done;
        cbuf = (uint8_t *)PyBytes_AS_STRING(cols);
    }
    kept = PyBytes_FromStringAndSize(NULL, n_keep * (Py_ssize_t)layers * 32);
    if (kept == NULL) goto done;
    kbuf = (uint8_t *)PyBytes_AS_STRING(kept);
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = sd_sdr_label(rid.buf, n, layers, have_in ? in.buf : NULL, out.buf, cbuf, keep,
                      (size_t)n_keep, kbuf);
    Py_END_ALLOW_THREADS
    if (rc == -2) {
        PyErr_NoMemory();
        goto done;
    }
    if (rc != 0) {
        FAIL("sdr_label: invalid arguments");
        goto done;
    }
    res = Py_BuildValue("(OO)", cols ? cols : Py_None, kept);
done:
    Py_XDECREF(cols);
    Py_XDECREF(kept);
    free(keep);
    if (have_in) PyBuffer_Release(&in);
    PyBuffer_Release(&rid);
    PyBuffer_Release(&out);
    return res;
}

/* sdr_label_batch(replica_ids, n_nodes, layers, datas_or_None, outs, want_columns)
 *   -> list of column digests bytes (one per sector), or None. Up to 8 sectors at once. */
static PyObject *py_sdr_label_batch(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *rids_obj, *ins_obj, *outs_obj;
    unsigned long long n;
    unsigned int layers;
    int want_cols;
    if (!PyArg_ParseTuple(args, "OKIOOp:sdr_label_batch", &rids_obj, &n, &layers, &ins_obj,
                          &outs_obj, &want_cols))
        return NULL;
    Py_buffer in[SD_SDR_MAX_BATCH], out[SD_SDR_MAX_BATCH];
    Py_ssize_t n_in = 0, n_out = 0, lanes = 0;
    PyObject *rids_seq = NULL, *ins_seq = NULL, *outs_seq = NULL, *cols = NULL, *res = NULL;
    uint8_t rids[32 * SD_SDR_MAX_BATCH];
    const uint8_t *in_p[SD_SDR_MAX_BATCH];
    uint8_t *out_p[SD_SDR_MAX_BATCH], *col_p[SD_SDR_MAX_BATCH];
    if (check_graph(n, 0, "sdr_label_batch") != 0) return NULL;
    if (layers < 1 || layers > 255) {
        FAIL("sdr_label_batch: layer count must be in 1..255, got %u", layers);
        return NULL;
    }
    rids_seq = PySequence_Fast(rids_obj, "sdr_label_batch: replica ids must be a sequence");
    outs_seq = PySequence_Fast(outs_obj, "sdr_label_batch: outs must be a sequence");
    if (rids_seq == NULL || outs_seq == NULL) goto done;
    lanes = PySequence_Fast_GET_SIZE(rids_seq);
    if (lanes < 1 || lanes > SD_SDR_MAX_BATCH) {
        FAIL("sdr_label_batch: a batch is 1..%d sectors, got %zd", SD_SDR_MAX_BATCH, lanes);
        goto done;
    }
    if (PySequence_Fast_GET_SIZE(outs_seq) != lanes) {
        FAIL("sdr_label_batch: %zd replica ids but %zd output buffers", lanes,
             PySequence_Fast_GET_SIZE(outs_seq));
        goto done;
    }
    if (ins_obj != Py_None) {
        ins_seq = PySequence_Fast(ins_obj, "sdr_label_batch: datas must be a sequence or None");
        if (ins_seq == NULL) goto done;
        if (PySequence_Fast_GET_SIZE(ins_seq) != lanes) {
            FAIL("sdr_label_batch: %zd replica ids but %zd input buffers", lanes,
                 PySequence_Fast_GET_SIZE(ins_seq));
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < lanes; i++) {
        PyObject *r = PySequence_Fast_GET_ITEM(rids_seq, i);
        if (!PyBytes_Check(r) || PyBytes_GET_SIZE(r) != 32) {
            FAIL("sdr_label_batch: replica id %zd must be 32 bytes", i);
            goto done;
        }
        memcpy(rids + 32 * i, PyBytes_AS_STRING(r), 32);
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(outs_seq, i), &out[i], PyBUF_WRITABLE) != 0)
            goto done;
        n_out++;
        if ((unsigned long long)out[i].len != n * 32) {
            FAIL("sdr_label_batch: output buffer %zd is %zd bytes, expected %llu", i, out[i].len,
                 n * 32);
            goto done;
        }
        out_p[i] = out[i].buf;
        if (ins_seq != NULL) {
            if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(ins_seq, i), &in[i], PyBUF_SIMPLE) != 0)
                goto done;
            n_in++;
            if ((unsigned long long)in[i].len != n * 32) {
                FAIL("sdr_label_batch: input buffer %zd is %zd bytes, expected %llu", i,
                     in[i].len, n * 32);
                goto done;
            }
            in_p[i] = in[i].buf;
        }
    }
    if (want_cols) {
        cols = PyList_New(lanes);
        if (cols == NULL) goto done;
        for (Py_ssize_t i = 0; i < lanes; i++) {
            PyObject *c = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n * 32));
            if (c == NULL) goto done;
            PyList_SET_ITEM(cols, i, c);
            col_p[i] = (uint8_t *)PyBytes_AS_STRING(c);
        }
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = sd_sdr_label_batch(rids, (unsigned)lanes, n, layers, ins_seq ? in_p : NULL, out_p,
                            want_cols ? col_p : NULL);
    Py_END_ALLOW_THREADS
    if (rc == -2) {
        PyErr_NoMemory();
        goto done;
    }
    if (rc != 0) {
        FAIL("sdr_label_batch: invalid arguments");
        goto done;
    }
    res = cols != NULL ? cols : Py_None;
    Py_INCREF(res);
done:
    Py_XDECREF(cols);
    for (Py_ssize_t i = 0; i < n_in; i++) PyBuffer_Release(&in[i]);
    for (Py_ssize_t i = 0; i < n_out; i++) PyBuffer_Release(&out[i]);
    Py_XDECREF(rids_seq);
    Py_XDECREF(ins_seq);
    Py_XDECREF(outs_seq);
    return res;
}

/* porep_verify(comm_d, comm_r, replica_id, n_nodes, layers, challenges, proof) -> bool */
static PyObject *py_porep_verify(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer cd, cr, rid, proof;
    unsigned long long n;
    unsigned int layers;
    PyObject *chal_obj;
    if (!PyArg_ParseTuple(args, "y*y*y*KIOy*:porep_verify", &cd, &cr, &rid, &n, &layers,
                          &chal_obj, &proof))
        return NULL;
    PyObject *res = NULL;
    uint64_t *chals = NULL;
    if (cd.len != 32 || cr.len != 32 || rid.len != 32) {
        FAIL("porep_verify: comm_d, comm_r and replica id must be 32 bytes each");
        goto done;
    }
    if (check_graph(n, 0, "porep_verify") != 0) goto done;
    if (layers < 1 || layers > 255) {
        FAIL("porep_verify: layer count must be in 1..255, got %u", layers);
        goto done;
    }
    PyObject *seq = PySequence_Fast(chal_obj, "porep_verify: challenges must be a sequence");
    if (seq == NULL) goto done;
    Py_ssize_t k = PySequence_Fast_GET_SIZE(seq);
    chals = malloc(sizeof(uint64_t) * (size_t)(k ? k : 1));
    for (Py_ssize_t i = 0; chals != NULL && i < k; i++) {
        chals[i] = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(seq, i));
        if (PyErr_Occurred()) {
            Py_DECREF(seq);
            goto done;
        }
    }
    Py_DECREF(seq);
    if (chals == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = sd_porep_verify(cd.buf, cr.buf, rid.buf, n, layers, chals, (size_t)k, proof.buf,
                         (size_t)proof.len);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        FAIL("porep_verify: invalid parameters");
    else
        res = PyBool_FromLong(rc);
done:
    free(chals);
    PyBuffer_Release(&cd);
    PyBuffer_Release(&cr);
    PyBuffer_Release(&rid);
    PyBuffer_Release(&proof);
    return res;
}

PyMethodDef sd_seal_methods[] = {
    {"porep_verify", py_porep_verify, METH_VARARGS,
     "porep_verify(comm_d, comm_r, replica_id, n_nodes, layers, challenges, proof) -> bool"},
    {"drg_parents", py_drg_parents, METH_VARARGS, "drg_parents(n_nodes, v) -> 6 same-layer parents"},
    {"expander_parents", py_expander_parents, METH_VARARGS,
     "expander_parents(n_nodes, v) -> 8 previous-layer parents"},
    {"sdr_label", py_sdr_label, METH_VARARGS,
     "sdr_label(replica_id, n_nodes, layers, data_or_None, out, want_columns, keep) -> "
     "(column digests or None, kept columns)"},
    {"sdr_label_batch", py_sdr_label_batch, METH_VARARGS,
     "sdr_label_batch(replica_ids, n_nodes, layers, datas_or_None, outs, want_columns) -> "
     "list of column digests or None (1..8 sectors at once, one per SIMD lane)"},
    {NULL, NULL, 0, NULL},
};
