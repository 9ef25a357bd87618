#include "xor.h"

#include <string.h>

void sd_xor(uint8_t *out, const uint8_t *a, const uint8_t *b, size_t len) {
    size_t i = 0;
    /* Word at a time; memcpy keeps it alignment-safe and compiles to plain loads. */
    for (; i + 8 <= len; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        x ^= y;
        memcpy(out + i, &x, 8);
    }
    for (; i < len; i++) out[i] = a[i] ^ b[i];
}
