/* Declarations shared by the library's sources, beside its public interface
 * (include/bnn_runtime.h: the exported functions, the structs they take, the ISA and
 * status codes, the ABI version).
 *
 * Data layout (see docs/runtime-kernels.md):
 *   packed activations  uint64 [N, H, W, ceil(C/64)], bit i of word k = channel 64k+i,
 *                       1 = +1, 0 = -1, padding bits beyond C are 0;
 *   packed weights      uint64 [O, KH, KW, ceil(Cin_per_group/64)], same bit order.
 *
 * A convolution layer is prepared once (_kernels_conv.c): its weights are re-laid into
 * blocks of BNN_BLOCK output channels ([block][tap][word][lane]). Each run copies the
 * input into a padded, group-aligned packed buffer, so that every ISA kernel sees one
 * uniform problem: for a tile of output pixels and a run of channel blocks, count the
 * sign mismatches popcount(x ^ w) over all (tap, word) pairs and apply the fused output
 * transform.
 */
#ifndef BNN_KERNELS_H
#define BNN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "include/bnn_runtime.h"

/* Output channels per weight block: one 512-bit vector of 64-bit words. */
#define BNN_BLOCK 8
/* Output pixels per work item handed to an ISA kernel (a multiple of every kernel's
 * register tile: 6 for AVX-512, 4 for AVX2, 2 for the portable path). */
#define BNN_TILE 24
/* Channel blocks per work item: 64 output channels, one output word. */
#define BNN_CHUNK_BLOCKS 8
#define BNN_CHUNK_LANES (BNN_CHUNK_BLOCKS * BNN_BLOCK)
/* Blocks a chunk needs for the AVX2 nibble path, which always computes a whole chunk
 * (measured: 48 of 64 lanes are break-even with the word path). */
#define BNN_NIB_MIN_BLOCKS 7

/* ---- checked sizes -----------------------------------------------------------------
 *
 * Every size an exported function receives may come from an untrusted file. Each one
 * validates its arguments once per call, before it allocates or writes: every element
 * count, byte count and offset it will use is computed here with overflow checks, and
 * an array is accepted only if its byte count fits both size_t and ptrdiff_t, so that
 * neither an allocation nor any pointer arithmetic inside it can wrap. The loops then
 * run on sizes known to be representable. */

/* The largest byte count of an array. */
#define BNN_MAX_BYTES ((uint64_t)(PTRDIFF_MAX < SIZE_MAX ? PTRDIFF_MAX : SIZE_MAX))
/* The largest dot product of a binary layer (KH * KW * Cin_per_group): the kernels hold
 * kc - 2 * mismatches + correction, and the bisection in [-kc, kc + 1], in int32. */
#define BNN_MAX_DOT ((1 << 30) - 1)

/* 1 when every one of the n dims is >= 0 and their product times `elem` bytes is at most
 * BNN_MAX_BYTES; the product (the element count) then goes to *count unless NULL. */
static inline int bnn_array(int64_t *count, size_t elem, const int64_t *dims, size_t n)
{
    int64_t product = 1, bytes;
    for (size_t i = 0; i < n; i++)
        if (dims[i] < 0 || __builtin_mul_overflow(product, dims[i], &product))
            return 0;
    if (__builtin_mul_overflow(product, (int64_t)elem, &bytes) ||
        (uint64_t)bytes > BNN_MAX_BYTES)
        return 0;
    if (count)
        *count = product;
    return 1;
}
/* The arguments (dims, n) of bnn_array and bnn_work for a list of int64 values. */
#define BNN_DIMS(...)                                                                      \
    (const int64_t[]){__VA_ARGS__}, sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)
/* An array of elements of `elem` bytes with the given dims: BNN_ARRAY(&count, 4, n, h, w). */
#define BNN_ARRAY(count, elem, ...) bnn_array((count), (elem), BNN_DIMS(__VA_ARGS__))
/* A product of counts, all >= 0, bounded as an array of bytes. */
#define BNN_COUNT(count, ...) bnn_array((count), 1, BNN_DIMS(__VA_ARGS__))

/* 1 when a + b does not overflow (the sum goes to *sum). */
static inline int bnn_sum(int64_t *sum, int64_t a, int64_t b)
{
    return !__builtin_add_overflow(a, b, sum);
}

/* ceil(a / b) for a >= 0 and b > 0, with no intermediate overflow. */
static inline int64_t bnn_ceil_div(int64_t a, int64_t b)
{
    return a / b + (a % b != 0);
}

/* The product of n non-negative factors, saturated at INT64_MAX: an estimate of work
 * that only sizes a thread team. */
static inline int64_t bnn_work(const int64_t *f, size_t n)
{
    int64_t product = 1;
    for (size_t i = 0; i < n; i++)
        if (__builtin_mul_overflow(product, f[i], &product))
            return INT64_MAX;
    return product;
}
#define BNN_WORK(...) bnn_work(BNN_DIMS(__VA_ARGS__))

/* 1 when the byte ranges [a, a + na) and [b, b + nb) share a byte. */
static inline int bnn_overlap(const void *a, size_t na, const void *b, size_t nb)
{
    const uintptr_t pa = (uintptr_t)a, pb = (uintptr_t)b;
    return na && nb && pa < pb + nb && pb < pa + na;
}

/* The status of a call asking for kernel path isa: BNN_EINVAL for no such path,
 * BNN_EISA for one this CPU cannot run. */
int bnn_isa_status(int64_t isa);

/* One work item: up to BNN_TILE output pixels x up to BNN_CHUNK_BLOCKS blocks of one
 * group. Pointers are pre-offset so that a kernel needs no shape arithmetic. */
typedef struct {
    const int64_t *offs;   /* [L] word offset of each (tap, word) pair from a pixel's base */
    int64_t L;             /* KH * KW * words per group */
    int32_t kc;            /* dot product when every sign matches: KH * KW * Cin_per_group */
    const uint64_t *w;     /* [nb][L][BNN_BLOCK] the chunk's weights */
    const float *scale;    /* [nb * BNN_BLOCK] per lane, zero beyond the valid lanes */
    const float *bias;     /* idem */
    const float *thr;      /* idem, threshold of the next layer (packed output), or NULL */
    const int32_t *dmin;   /* idem: packed output bit = dmin <= dot <= dmax, or NULL to */
    const int32_t *dmax;   /* evaluate the float transform instead */
    int nb;                /* blocks in the chunk */
    int lanes;             /* valid output channels in the chunk (<= nb * BNN_BLOCK) */
    int64_t oc;            /* absolute output channel of the chunk's first lane */
    int packed_out;        /* 1: write bits to yp, 0: write floats to yf */
    int atomic_bits;       /* 1: a chunk's bits may share an output byte with another chunk */
    int npix;              /* pixels in the tile */
    /* The finish of a float output, applied by every kernel after the transform, in this
     * order and rounding as the separate float32 operations do: y += res; y += shift_in;
     * y = y > 0 ? y : slope * y; y += shift_out. Each pointer is at the chunk's first
     * lane ([lanes] values), or NULL to skip that step (the shifts are NULL without a
     * slope; res is NULL for every pixel or for none). */
    const float *slope, *shift_in, *shift_out;
    /* AVX2 nibble path (see _kernels_avx2.c), or NULL: the chunk's weights, one nibble per
     * byte [L][16][BNN_CHUNK_LANES], and per pixel the nibble offsets of its first tap's
     * word 0. */
    const uint8_t *wn;
    const uint16_t *xi[BNN_TILE];
    const float *res[BNN_TILE];    /* per pixel: its residual row, or NULL for none */
    const uint64_t *x[BNN_TILE];   /* per pixel: word 0 of its first tap in the buffer */
    const int32_t *corr[BNN_TILE]; /* per pixel: zero-padding correction at lane 0, or NULL */
    float *yf[BNN_TILE];           /* per pixel: float output row (channel 0) */
    uint64_t *yp[BNN_TILE];        /* per pixel: packed output row (word 0) */
} bnn_tile;

/* An ISA's kernels: the convolution tile and the float-to-bits packer. */
typedef void (*bnn_tile_fn)(const bnn_tile *t);
/* Pack `rows` rows of n channels (row r at x + r * x_stride) into ceil(n/64) words each
 * (row r at out + r * out_stride): bit = (x + thr >= 0), thr[0..n) or NULL for 0.
 * Padding bits are 0. */
typedef void (*bnn_pack_fn)(const float *x, int64_t x_stride, const float *thr, int64_t n,
                            int64_t rows, uint64_t *out, int64_t out_stride);
/* Number of set bits in w[0..n). */
typedef int64_t (*bnn_ones_fn)(const uint64_t *w, int64_t n);

void bnn_tile_portable(const bnn_tile *t);
void bnn_pack_portable(const float *x, int64_t x_stride, const float *thr, int64_t n,
                       int64_t rows, uint64_t *out, int64_t out_stride);
int64_t bnn_ones_portable(const uint64_t *w, int64_t n);
#if defined(__x86_64__) || defined(__i386__)
void bnn_tile_portable_popcnt(const bnn_tile *t);
int64_t bnn_ones_portable_popcnt(const uint64_t *w, int64_t n);
void bnn_tile_avx2(const bnn_tile *t);
void bnn_pack_avx2(const float *x, int64_t x_stride, const float *thr, int64_t n,
                   int64_t rows, uint64_t *out, int64_t out_stride);
void bnn_nibble_index_avx2(const uint64_t *x, int64_t n, uint16_t *out);
void bnn_tile_avx512(const bnn_tile *t);
void bnn_pack_avx512(const float *x, int64_t x_stride, const float *thr, int64_t n,
                     int64_t rows, uint64_t *out, int64_t out_stride);
#endif

/* Dispatch (_kernels.c). */
bnn_tile_fn bnn_tile_kernel(int isa);
bnn_pack_fn bnn_pack_kernel(int isa);
bnn_ones_fn bnn_ones_kernel(void);
void *bnn_alloc64(size_t bytes);

/* Threads (_kernels_threads.c). A job is `items` independent work items; bnn_parallel
 * cuts them into chunks of consecutive items, and up to nt threads (the caller among
 * them) claim chunks until none are left: fn(ctx, start, stop, tid) computes items
 * [start, stop) on the thread whose index in the team is tid, in [0, nt) (for scratch
 * memory of its own). Which thread computes which chunk varies from call to call, so an
 * item's result must not depend on it. Returns when every item is done (nt <= 1: one
 * call on the caller). */
typedef void (*bnn_task_fn)(void *ctx, int64_t start, int64_t stop, int tid);
void bnn_parallel(int nt, int64_t items, bnn_task_fn fn, void *ctx);
/* Threads for a call: the request (or the default), but no more than there are work
 * items and no more than the amount of work (in word operations) pays for. */
int bnn_team_size(int64_t requested, int64_t work_items, int64_t work);

/* Write the output bits of up to 16 consecutive channels starting at channel oc of a
 * packed output row. Bits of invalid lanes must already be cleared. When the chunk
 * owns whole bytes (byte-aligned oc, no other chunk in the same byte) a plain byte
 * store suffices; otherwise the bits are OR-ed atomically into a zeroed row. */
static inline void bnn_store_bits(uint64_t *row, int64_t oc, uint32_t bits, int nbits,
                                  int atomic_bits)
{
    if (!atomic_bits) {
        uint8_t *bytes = (uint8_t *)row;
        for (int i = 0; i < nbits; i += 8) {
            int64_t b = (oc + i) >> 3;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            b = (b & ~(int64_t)7) | (7 - (b & 7));
#endif
            bytes[b] = (uint8_t)(bits >> i);
        }
        return;
    }
    int64_t k = oc >> 6;
    int s = (int)(oc & 63);
    uint64_t lo = (uint64_t)bits << s;
    if (lo)
        __atomic_fetch_or(&row[k], lo, __ATOMIC_RELAXED);
    if (s + nbits > 64) {
        uint64_t hi = (uint64_t)bits >> (64 - s);
        if (hi)
            __atomic_fetch_or(&row[k + 1], hi, __ATOMIC_RELAXED);
    }
}

/* Scalar output transform of one lane, shared by every path so that all of them round
 * identically: y = scale * dot + bias (two float roundings, never fused). */
static inline float bnn_affine(int32_t dot, float scale, float bias)
{
    float prod = scale * (float)dot;
    return prod + bias;
}

#endif
