/* CPython binding for the merkle functions of the C core. */
#include "binding.h"

PyMethodDef sd_merkle_methods[] = {
    {NULL, NULL, 0, NULL},
};
