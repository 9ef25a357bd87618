/* Thin CPython binding for the proofs C core: buffers in, bytes out, the GIL released on long
 * calls. All logic lives in the core files (no Python.h there). Errors are raised as
 * proofs.ProofError, which proofs/__init__.py injects with set_error_class(). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "xor.h"

static PyObject *ProofErrorClass = NULL;

static PyObject *raise_proof_error(const char *msg) {
    PyErr_SetString(ProofErrorClass ? ProofErrorClass : PyExc_ValueError, msg);
    return NULL;
}

static PyObject *py_set_error_class(PyObject *self, PyObject *cls) {
    (void)self;
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, (PyTypeObject *)PyExc_Exception)) {
        PyErr_SetString(PyExc_TypeError, "set_error_class needs an Exception subclass");
        return NULL;
    }
    Py_XDECREF(ProofErrorClass);
    Py_INCREF(cls);
    ProofErrorClass = cls;
    Py_RETURN_NONE;
}

/* xor_bytes(a, b) -> bytes: a XOR b, both of the same length. */
static PyObject *py_xor_bytes(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer a, b;
    if (!PyArg_ParseTuple(args, "y*y*", &a, &b)) return NULL;
    PyObject *out = NULL;
    if (a.len != b.len) {
        raise_proof_error("xor_bytes: inputs differ in length");
        goto done;
    }
    out = PyBytes_FromStringAndSize(NULL, a.len);
    if (!out) goto done;
    uint8_t *dst = (uint8_t *)PyBytes_AS_STRING(out);
    Py_BEGIN_ALLOW_THREADS
    sd_xor(dst, a.buf, b.buf, (size_t)a.len);
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    return out;
}

static PyMethodDef methods[] = {
    {"set_error_class", py_set_error_class, METH_O, "Set the exception class raised on proof errors."},
    {"xor_bytes", py_xor_bytes, METH_VARARGS, "xor_bytes(a, b) -> bytes"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "proofs._native", "storaged proofs C core binding", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
