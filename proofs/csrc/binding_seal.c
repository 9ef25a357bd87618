/* CPython binding for the seal functions of the C core. */
#include "binding.h"

PyMethodDef sd_seal_methods[] = {
    {NULL, NULL, 0, NULL},
};
