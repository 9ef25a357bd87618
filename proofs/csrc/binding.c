/* Thin CPython binding for the proofs C core: module set-up and shared helpers.
 *
 * All logic lives in the core files (no Python.h there). Each topic has its own binding file
 * (binding_*.c) exporting a NULL-terminated PyMethodDef table declared in binding.h; this file
 * concatenates them into one module. Errors are raised as proofs.ProofError, which
 * proofs/__init__.py injects with set_error_class(). */
#include "binding.h"

#include "xor.h"

PyObject *sd_proof_error_class = NULL;

PyObject *sd_raise_proof_error(const char *msg) {
    PyErr_SetString(sd_proof_error_class ? sd_proof_error_class : PyExc_ValueError, msg);
    return NULL;
}

static PyObject *py_set_error_class(PyObject *self, PyObject *cls) {
    (void)self;
    if (!PyType_Check(cls) ||
        !PyType_IsSubtype((PyTypeObject *)cls, (PyTypeObject *)PyExc_Exception)) {
        PyErr_SetString(PyExc_TypeError, "set_error_class needs an Exception subclass");
        return NULL;
    }
    Py_XDECREF(sd_proof_error_class);
    Py_INCREF(cls);
    sd_proof_error_class = cls;
    Py_RETURN_NONE;
}

/* xor_bytes(a, b) -> bytes: a XOR b, both of the same length. */
static PyObject *py_xor_bytes(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer a, b;
    if (!PyArg_ParseTuple(args, "y*y*", &a, &b)) return NULL;
    PyObject *out = NULL;
    if (a.len != b.len) {
        sd_raise_proof_error("xor_bytes: inputs differ in length");
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

static PyMethodDef base_methods[] = {
    {"set_error_class", py_set_error_class, METH_O,
     "Set the exception class raised on proof errors."},
    {"xor_bytes", py_xor_bytes, METH_VARARGS, "xor_bytes(a, b) -> bytes"},
    {NULL, NULL, 0, NULL},
};

/* Every topic's table; add a new binding_*.c table here and in binding.h. */
static PyMethodDef *const tables[] = {base_methods, sd_merkle_methods, sd_seal_methods,
                                            sd_post_methods};

static PyMethodDef all_methods[256];

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "proofs._native", "storaged proofs C core binding", -1, all_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
    size_t n = 0;
    for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
        for (PyMethodDef *m = tables[t]; m->ml_name != NULL; m++) {
            if (n + 1 >= sizeof(all_methods) / sizeof(all_methods[0])) {
                PyErr_SetString(PyExc_RuntimeError, "proofs._native: too many methods");
                return NULL;
            }
            all_methods[n++] = *m;
        }
    }
    all_methods[n] = (PyMethodDef){NULL, NULL, 0, NULL};
    return PyModule_Create(&module);
}
