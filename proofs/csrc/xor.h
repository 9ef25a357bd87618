/* Byte-wise XOR used to turn the last label layer into a replica (and back). No Python.h. */
#ifndef STORAGED_XOR_H
#define STORAGED_XOR_H
#include <stddef.h>
#include <stdint.h>

/* out[i] = a[i] ^ b[i] for i < len. out may alias a or b. */
void sd_xor(uint8_t *out, const uint8_t *a, const uint8_t *b, size_t len);

#endif
