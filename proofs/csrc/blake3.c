/* BLAKE3: portable compression, chunk/tree modes, incremental hasher and back-end dispatch.
 *
 * Written from the BLAKE3 specification; bit-identical to the reference (tests compare every
 * length 0..2100 and random ones with the `blake3` package). The run-time choice of SIMD
 * kernel is made once; STORAGED_BLAKE3_PORTABLE=1 in the environment forces the portable
 * path so tests can check both paths agree. */
#include <stdlib.h>
#include <string.h>

#include "blake3_impl.h"

const uint32_t sd_b3_iv[8] = {0x6A09E667u, 0xBB67AE85u, 0x3C6EF372u, 0xA54FF53Au,
                              0x510E527Fu, 0x9B05688Cu, 0x1F83D9ABu, 0x5BE0CD19u};

static inline uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

#define G(a, b, c, d, x, y)          \
    do {                             \
        a = a + b + (x);             \
        d = rotr(d ^ a, 16);         \
        c = c + d;                   \
        b = rotr(b ^ c, 12);         \
        a = a + b + (y);             \
        d = rotr(d ^ a, 8);          \
        c = c + d;                   \
        b = rotr(b ^ c, 7);          \
    } while (0)

static void compress_portable(const uint32_t cv[8], const uint8_t block[SD_B3_BLOCK_LEN],
                              uint64_t counter, uint32_t block_len, uint32_t flags,
                              uint32_t out[8]) {
    uint32_t m[16];
    for (int i = 0; i < 16; i++) m[i] = sd_b3_load32(block + 4 * i);
    uint32_t v[16] = {cv[0], cv[1], cv[2], cv[3], cv[4], cv[5], cv[6], cv[7],
                      sd_b3_iv[0], sd_b3_iv[1], sd_b3_iv[2], sd_b3_iv[3],
                      (uint32_t)counter, (uint32_t)(counter >> 32), block_len, flags};
    for (int r = 0; r < 7; r++) {
        const uint8_t *s = sd_b3_schedule[r];
        G(v[0], v[4], v[8], v[12], m[s[0]], m[s[1]]);
        G(v[1], v[5], v[9], v[13], m[s[2]], m[s[3]]);
        G(v[2], v[6], v[10], v[14], m[s[4]], m[s[5]]);
        G(v[3], v[7], v[11], v[15], m[s[6]], m[s[7]]);
        G(v[0], v[5], v[10], v[15], m[s[8]], m[s[9]]);
        G(v[1], v[6], v[11], v[12], m[s[10]], m[s[11]]);
        G(v[2], v[7], v[8], v[13], m[s[12]], m[s[13]]);
        G(v[3], v[4], v[9], v[14], m[s[14]], m[s[15]]);
    }
    for (int i = 0; i < 8; i++) out[i] = v[i] ^ v[i + 8];
}

/* ---- run-time back-end selection ---- */

enum { B_UNSET, B_PORTABLE, B_SSE41, B_AVX2, B_AVX512 }; /* each implies the ones before */
static int backend = B_UNSET;

static void keyed_hash64_many_portable(const uint32_t key[8], const uint8_t *in, size_t n,
                                       uint8_t *out);

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* The AVX-512 kernel was written without AVX-512 hardware to test on, so it must prove itself
 * before use: 35 messages (two full 16-lane batches and a tail) against the portable path. A
 * wrong kernel would silently change every Merkle root, so on any mismatch AVX2 is used. */
static int avx512_self_test(void) {
    uint8_t in[35 * 64], want[35 * 32], got[35 * 32];
    uint32_t key[8];
    for (size_t i = 0; i < sizeof in; i++) in[i] = (uint8_t)(i * 131 + 7);
    for (int i = 0; i < 8; i++) key[i] = sd_b3_iv[i] ^ (0x01010101u * (uint32_t)i);
    keyed_hash64_many_portable(key, in, 35, want);
    sd_b3_keyed_hash64_many_avx512(key, in, 35, got);
    return memcmp(want, got, sizeof want) == 0;
}
#endif

static int choose_backend(void) {
    int b = B_PORTABLE;
    const char *force = getenv("STORAGED_BLAKE3_PORTABLE");
    if (force != NULL && force[0] != '\0' && strcmp(force, "0") != 0) return B_PORTABLE;
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.1")) b = B_SSE41;
    if (b == B_SSE41 && __builtin_cpu_supports("avx2")) b = B_AVX2;
#if defined(__x86_64__)
    if (b == B_AVX2 && __builtin_cpu_supports("avx512f")) {
        /* The AVX-512 kernel hashes a batch's tail through sd_b3_compress_cv, which asks for
         * the back end: publish AVX2 first, or the self test recurses into itself until the
         * stack overflows (it did, on the first AVX-512 machine this ran on). */
        __atomic_store_n(&backend, B_AVX2, __ATOMIC_RELAXED);
        if (avx512_self_test()) b = B_AVX512;
    }
#endif
#endif
    return b;
}

/* Racing threads compute the same answer, so a plain int store is benign. */
static inline int get_backend(void) {
    int b = __atomic_load_n(&backend, __ATOMIC_RELAXED);
    if (b == B_UNSET) {
        b = choose_backend();
        __atomic_store_n(&backend, b, __ATOMIC_RELAXED);
    }
    return b;
}

int sd_b3_use_avx2(void) { return get_backend() >= B_AVX2; }

const char *sd_b3_backend(void) {
    switch (get_backend()) {
    case B_AVX512: return "avx512";
    case B_AVX2: return "avx2";
    case B_SSE41: return "sse41";
    default: return "portable";
    }
}

void sd_b3_compress_cv(const uint32_t cv[8], const uint8_t block[SD_B3_BLOCK_LEN],
                       uint64_t counter, uint32_t block_len, uint32_t flags, uint32_t out[8]) {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    int b = get_backend();
    if (b >= B_AVX2) {
        sd_b3_compress_cv_avx(cv, block, counter, block_len, flags, out);
        return;
    }
    if (b >= B_SSE41) {
        sd_b3_compress_cv_sse41(cv, block, counter, block_len, flags, out);
        return;
    }
#endif
    compress_portable(cv, block, counter, block_len, flags, out);
}

void sd_b3_compress2(const sd_b3_job *a, const sd_b3_job *b) {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    if (get_backend() >= B_AVX2) {
        sd_b3_compress2_avx2(a, b);
        return;
    }
#endif
    sd_b3_compress_cv(a->cv, a->block, 0, a->block_len, a->flags, a->out);
    sd_b3_compress_cv(b->cv, b->block, 0, b->block_len, b->flags, b->out);
}

static void keyed_hash64_many_portable(const uint32_t key[8], const uint8_t *in, size_t n,
                                       uint8_t *out) {
    const uint32_t flags = SD_B3_CHUNK_START | SD_B3_CHUNK_END | SD_B3_ROOT | SD_B3_KEYED_HASH;
    for (size_t i = 0; i < n; i++) {
        uint32_t w[8];
        compress_portable(key, in + 64 * i, 0, 64, flags, w);
        sd_b3_cv_bytes(w, out + 32 * i);
    }
}

void sd_b3_keyed_hash64_many(const uint32_t key[8], const uint8_t *in, size_t n, uint8_t *out) {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    int b = get_backend();
#if defined(__x86_64__)
    if (b == B_AVX512) {
        sd_b3_keyed_hash64_many_avx512(key, in, n, out);
        return;
    }
#endif
    if (b == B_AVX2) {
        sd_b3_keyed_hash64_many_avx2(key, in, n, out);
        return;
    }
#endif
    keyed_hash64_many_portable(key, in, n, out);
}

/* ---- incremental hasher (spec section 2.4-2.6) ---- */

void sd_b3_hasher_init_raw(sd_b3_hasher *h, const uint32_t key[8], uint8_t flags) {
    memcpy(h->key, key, sizeof h->key);
    memcpy(h->cv, key, sizeof h->cv);
    h->chunk_counter = 0;
    h->buf_len = 0;
    h->blocks_compressed = 0;
    h->flags = flags;
    h->stack_len = 0;
}

size_t sd_b3_hasher_size(void) { return sizeof(sd_b3_hasher); }

void sd_b3_hasher_init(sd_b3_hasher *h) { sd_b3_hasher_init_raw(h, sd_b3_iv, 0); }

void sd_b3_hasher_init_keyed(sd_b3_hasher *h, const uint8_t key[SD_B3_KEY_LEN]) {
    uint32_t w[8];
    sd_b3_key_words(key, w);
    sd_b3_hasher_init_raw(h, w, SD_B3_KEYED_HASH);
}

static inline uint32_t start_flag(const sd_b3_hasher *h) {
    return h->blocks_compressed == 0 ? SD_B3_CHUNK_START : 0;
}

/* Push a finished chunk's CV; merge while the chunk count (after this one) is even, which
 * keeps exactly one CV per set bit of the count (spec section 5.1.2, lazy merging). */
static void push_chunk_cv(sd_b3_hasher *h, uint32_t cv[8], uint64_t total_chunks) {
    while ((total_chunks & 1) == 0) {
        uint8_t block[64];
        h->stack_len--;
        sd_b3_cv_bytes(h->stack[h->stack_len], block);
        sd_b3_cv_bytes(cv, block + 32);
        sd_b3_compress_cv(h->key, block, 0, 64, h->flags | SD_B3_PARENT, cv);
        total_chunks >>= 1;
    }
    memcpy(h->stack[h->stack_len], cv, 32);
    h->stack_len++;
}

void sd_b3_hasher_update(sd_b3_hasher *h, const uint8_t *in, size_t len) {
    while (len > 0) {
        /* The chunk is complete and more input follows: it is not the root, finish it. */
        if (h->blocks_compressed * SD_B3_BLOCK_LEN + h->buf_len == SD_B3_CHUNK_LEN) {
            uint32_t cv[8];
            sd_b3_compress_cv(h->cv, h->buf, h->chunk_counter, SD_B3_BLOCK_LEN,
                              h->flags | start_flag(h) | SD_B3_CHUNK_END, cv);
            h->chunk_counter++;
            push_chunk_cv(h, cv, h->chunk_counter);
            memcpy(h->cv, h->key, sizeof h->cv);
            h->blocks_compressed = 0;
            h->buf_len = 0;
        }
        /* A full buffered block with more input after it is not the chunk's last block. */
        if (h->buf_len == SD_B3_BLOCK_LEN) {
            sd_b3_compress_cv(h->cv, h->buf, h->chunk_counter, SD_B3_BLOCK_LEN,
                              h->flags | start_flag(h), h->cv);
            h->blocks_compressed++;
            h->buf_len = 0;
        }
        /* Fast path: compress whole blocks straight from the input while more follows. */
        while (h->buf_len == 0 && len > SD_B3_BLOCK_LEN &&
               h->blocks_compressed < SD_B3_CHUNK_LEN / SD_B3_BLOCK_LEN - 1) {
            sd_b3_compress_cv(h->cv, in, h->chunk_counter, SD_B3_BLOCK_LEN,
                              h->flags | start_flag(h), h->cv);
            h->blocks_compressed++;
            in += SD_B3_BLOCK_LEN;
            len -= SD_B3_BLOCK_LEN;
        }
        size_t take = SD_B3_BLOCK_LEN - h->buf_len;
        if (take > len) take = len;
        memcpy(h->buf + h->buf_len, in, take);
        h->buf_len = (uint8_t)(h->buf_len + take);
        in += take;
        len -= take;
    }
}

void sd_b3_hasher_finalize(const sd_b3_hasher *h, uint8_t out[SD_B3_OUT_LEN]) {
    uint8_t block[64];
    memset(block, 0, sizeof block);
    memcpy(block, h->buf, h->buf_len);
    uint32_t flags = h->flags | start_flag(h) | SD_B3_CHUNK_END;
    uint32_t cv[8];
    if (h->stack_len == 0) {
        sd_b3_compress_cv(h->cv, block, h->chunk_counter, h->buf_len, flags | SD_B3_ROOT, cv);
        sd_b3_cv_bytes(cv, out);
        return;
    }
    /* The last chunk's CV, then fold the stack right to left; the last fold is the root. */
    sd_b3_compress_cv(h->cv, block, h->chunk_counter, h->buf_len, flags, cv);
    for (size_t i = h->stack_len; i-- > 0;) {
        sd_b3_cv_bytes(h->stack[i], block);
        sd_b3_cv_bytes(cv, block + 32);
        uint32_t pf = h->flags | SD_B3_PARENT | (i == 0 ? SD_B3_ROOT : 0);
        sd_b3_compress_cv(h->key, block, 0, 64, pf, cv);
    }
    sd_b3_cv_bytes(cv, out);
}

/* ---- one-shot modes ---- */

/* A message of at most one chunk is its own root: compress its blocks straight from the
 * input, without the hasher's buffering (sealing hashes ~450-byte labels this way). */
static void hash_one_chunk(const uint32_t key[8], uint32_t mode, const uint8_t *in, size_t len,
                           uint8_t out[SD_B3_OUT_LEN]) {
    uint32_t cv[8];
    memcpy(cv, key, sizeof cv);
    uint32_t start = SD_B3_CHUNK_START;
    while (len > SD_B3_BLOCK_LEN) {
        sd_b3_compress_cv(cv, in, 0, SD_B3_BLOCK_LEN, mode | start, cv);
        start = 0;
        in += SD_B3_BLOCK_LEN;
        len -= SD_B3_BLOCK_LEN;
    }
    uint8_t last[SD_B3_BLOCK_LEN] = {0};
    if (len > 0) memcpy(last, in, len);
    sd_b3_compress_cv(cv, last, 0, (uint32_t)len, mode | start | SD_B3_CHUNK_END | SD_B3_ROOT,
                      cv);
    sd_b3_cv_bytes(cv, out);
}

void sd_b3_hash(const uint8_t *in, size_t len, uint8_t out[SD_B3_OUT_LEN]) {
    if (len <= SD_B3_CHUNK_LEN) {
        hash_one_chunk(sd_b3_iv, 0, in, len, out);
        return;
    }
    sd_b3_hasher h;
    sd_b3_hasher_init(&h);
    sd_b3_hasher_update(&h, in, len);
    sd_b3_hasher_finalize(&h, out);
}

void sd_b3_keyed_hash(const uint8_t key[SD_B3_KEY_LEN], const uint8_t *in, size_t len,
                      uint8_t out[SD_B3_OUT_LEN]) {
    if (len <= SD_B3_CHUNK_LEN) {
        uint32_t w[8];
        sd_b3_key_words(key, w);
        hash_one_chunk(w, SD_B3_KEYED_HASH, in, len, out);
        return;
    }
    sd_b3_hasher h;
    sd_b3_hasher_init_keyed(&h, key);
    sd_b3_hasher_update(&h, in, len);
    sd_b3_hasher_finalize(&h, out);
}

void sd_b3_context_key(const char *context, uint8_t key[SD_B3_KEY_LEN]) {
    sd_b3_hasher h;
    sd_b3_hasher_init_raw(&h, sd_b3_iv, SD_B3_DERIVE_KEY_CONTEXT);
    sd_b3_hasher_update(&h, (const uint8_t *)context, strlen(context));
    sd_b3_hasher_finalize(&h, key);
}

void sd_b3_derive_key(const char *context, const uint8_t *material, size_t len,
                      uint8_t out[SD_B3_OUT_LEN]) {
    uint8_t ck[SD_B3_KEY_LEN];
    uint32_t w[8];
    sd_b3_context_key(context, ck);
    sd_b3_key_words(ck, w);
    sd_b3_hasher h;
    sd_b3_hasher_init_raw(&h, w, SD_B3_DERIVE_KEY_MATERIAL);
    sd_b3_hasher_update(&h, material, len);
    sd_b3_hasher_finalize(&h, out);
}

void sd_b3_keyed_hash_many(const uint8_t key[SD_B3_KEY_LEN], const uint8_t *const *msgs,
                           size_t n, size_t len, uint8_t *out) {
    uint32_t w[8];
    sd_b3_key_words(key, w);
    if (len == 64) {
        /* One compression each: gather into 8-lane batches for the SIMD kernel. */
        uint8_t batch[8 * 64];
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            for (int j = 0; j < 8; j++) memcpy(batch + 64 * j, msgs[i + j], 64);
            sd_b3_keyed_hash64_many(w, batch, 8, out + 32 * i);
        }
        for (; i < n; i++) sd_b3_keyed_hash64_many(w, msgs[i], 1, out + 32 * i);
        return;
    }
    size_t i = 0;
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    /* Short messages: 8 at a time, one per lane, block by block. */
    if (len <= SD_B3_CHUNK_LEN && get_backend() >= B_AVX2)
        for (; i + 8 <= n; i += 8) sd_b3_keyed_hash_short8_avx2(w, msgs + i, len, out + 32 * i);
#endif
    for (; i < n; i++) {
        if (len <= SD_B3_CHUNK_LEN) {
            hash_one_chunk(w, SD_B3_KEYED_HASH, msgs[i], len, out + 32 * i);
            continue;
        }
        sd_b3_hasher h;
        sd_b3_hasher_init_raw(&h, w, SD_B3_KEYED_HASH);
        sd_b3_hasher_update(&h, msgs[i], len);
        sd_b3_hasher_finalize(&h, out + 32 * i);
    }
}
