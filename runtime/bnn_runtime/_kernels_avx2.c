/* AVX2 binary kernels (x86-64 CPUs from 2013 on without AVX-512 VPOPCNTDQ).
 *
 * AVX2 has no vector popcount; both paths count with 16-entry table look-ups (VPSHUFB).
 *
 * Nibble path (chunks of at least BNN_NIB_MIN_BLOCKS blocks in layers without groups,
 * the common case). The layer keeps a second copy of its weights with one 4-bit nibble
 * per byte, [chunk][tap, word][nibble j][64 lanes], and each run turns the packed input
 * into byte offsets of its nibbles (bnn_nibble_index_avx2). For nibble j of an input
 * word with value v, the table NIB_TABLE[v] holds popcount(v ^ i) at byte i, so a single
 * VPSHUFB indexed by the weight nibbles of 32 output channels yields their 32 mismatch
 * counts for those 4 input channels: one look-up and one add per 128 binary
 * multiply-adds, where the path below needs four vector operations. Byte counts are
 * summed for NIB_STEPS (tap, word) steps (3 * 16 nibbles * 4 < 256), then widened to
 * 16 bits.
 *
 * Word path (the other chunks). Each 256-bit XOR result is counted per byte with two
 * look-ups (low and high nibbles). Byte counts are summed in 8-bit lanes for at most 31
 * (tap, word) steps (31 * 8 < 256, no overflow), then widened to one 64-bit count per
 * lane with VPSADBW. One block of 8 output channels is two vectors of 4 weight words; the
 * register tile is P2 pixels x one block. */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <string.h>

#include "_kernels.h"

#define TARGET __attribute__((target("avx2")))
#define INLINE static inline __attribute__((always_inline)) TARGET
/* Pixels per register tile (2 x P2 byte accumulators of 16 registers); BNN_TILE must be a
 * multiple. */
#define P2 4
/* (tap, word) steps summed in 8-bit lanes before widening. */
#define BYTE_STEPS 31
/* Pixels per register tile of the nibble path (2 x PN byte accumulators); BNN_TILE must
 * be a multiple. */
#define PN 6
/* (tap, word) steps of the nibble path summed in 8-bit lanes before widening. */
#define NIB_STEPS 3

/* Per-byte population count of v. */
INLINE __m256i popcount_bytes(__m256i v, __m256i table, __m256i low4)
{
    __m256i lo = _mm256_and_si256(v, low4);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
    return _mm256_add_epi8(_mm256_shuffle_epi8(table, lo), _mm256_shuffle_epi8(table, hi));
}

/* Eight int32 from two vectors of four int64 (values fit in 32 bits), in lane order. */
INLINE __m256i narrow_counts(__m256i a, __m256i b)
{
    __m256 s = _mm256_shuffle_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b),
                                 _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_permute4x64_epi64(_mm256_castps_si256(s), _MM_SHUFFLE(3, 1, 2, 0));
}

/* Per-lane constants of one block's output transform. */
typedef struct {
    __m256 scale, bias, thr, slope, shift_in, shift_out;
    __m256i dmin, dmax, kc, store_mask;
    uint32_t bit_mask;
    int full;
    /* The tile's choices, copied here: read through t, they would be reloaded after
     * every output store (which, for the compiler, might modify *t). */
    int mode, has_res, has_slope, atomic_bits;
    int64_t oc; /* output channel of the block's first lane */
} block_consts;

/* What a tile writes (block_consts.mode). */
enum { OUT_FLOAT, OUT_BITS_FLOAT, OUT_BITS_INTEGER };

/* The block's valid lanes of a float row (zero beyond them). */
INLINE __m256 load_lanes(const float *p, const block_consts *k)
{
    return k->full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, k->store_mask);
}

INLINE block_consts load_consts(const bnn_tile *t, int b)
{
    const int lane0 = b * BNN_BLOCK;
    int nl = t->lanes - lane0;
    if (nl > BNN_BLOCK)
        nl = BNN_BLOCK;
    /* scale/bias/thr hold nb * BNN_BLOCK entries, so a full block load stays inside. */
    block_consts k;
    k.scale = _mm256_loadu_ps(t->scale + lane0);
    k.bias = _mm256_loadu_ps(t->bias + lane0);
    /* An absent threshold or shift is added as -0.0, which leaves every float unchanged
     * (-0.0 included), so that the loops need no test for it. */
    const __m256 none = _mm256_set1_ps(-0.0f);
    k.thr = t->thr ? _mm256_loadu_ps(t->thr + lane0) : none;
    k.dmin = t->dmin ? _mm256_loadu_si256((const __m256i *)(t->dmin + lane0))
                     : _mm256_setzero_si256();
    k.dmax = t->dmax ? _mm256_loadu_si256((const __m256i *)(t->dmax + lane0))
                     : _mm256_setzero_si256();
    k.kc = _mm256_set1_epi32(t->kc);
    k.store_mask =
        _mm256_cmpgt_epi32(_mm256_set1_epi32(nl), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    k.bit_mask = (1u << nl) - 1u;
    k.full = nl == BNN_BLOCK;
    /* The finish's vectors hold t->lanes values only: the last block loads under mask. */
    k.slope = t->slope ? load_lanes(t->slope + lane0, &k) : _mm256_setzero_ps();
    k.shift_in = t->shift_in ? load_lanes(t->shift_in + lane0, &k) : none;
    k.shift_out = t->shift_out ? load_lanes(t->shift_out + lane0, &k) : none;
    k.mode = !t->packed_out ? OUT_FLOAT : t->dmin ? OUT_BITS_INTEGER : OUT_BITS_FLOAT;
    k.has_res = t->res[0] != NULL;
    k.has_slope = t->slope != NULL;
    k.atomic_bits = t->atomic_bits;
    k.oc = t->oc + lane0;
    return k;
}

/* Output transform of one pixel x one block (constants k) from its mismatch counts. The
 * callers pass k's mode, has_res and has_slope, as constants where they can, so that
 * the compiler drops the tests. */
INLINE void epilogue(const bnn_tile *t, int p, const block_consts *k, __m256i mism, int mode,
                     int has_res, int has_slope)
{
    const int32_t *corr = t->corr[p];
    __m256i dot = _mm256_sub_epi32(k->kc, _mm256_slli_epi32(mism, 1));
    if (corr)
        dot = _mm256_add_epi32(dot, _mm256_loadu_si256((const __m256i *)(corr + k->oc - t->oc)));
    if (mode == OUT_BITS_INTEGER) {
        /* bit = !(dmin > dot) && !(dot > dmax) */
        const __m256i out = _mm256_or_si256(_mm256_cmpgt_epi32(k->dmin, dot),
                                            _mm256_cmpgt_epi32(dot, k->dmax));
        const uint32_t bits = ~(uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(out));
        bnn_store_bits(t->yp[p], k->oc, bits & k->bit_mask, BNN_BLOCK, k->atomic_bits);
        return;
    }
    __m256 y = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(dot), k->scale), k->bias);
    if (mode == OUT_BITS_FLOAT) {
        const uint32_t bits = (uint32_t)_mm256_movemask_ps(
            _mm256_cmp_ps(_mm256_add_ps(y, k->thr), _mm256_setzero_ps(), _CMP_GE_OQ));
        bnn_store_bits(t->yp[p], k->oc, bits & k->bit_mask, BNN_BLOCK, k->atomic_bits);
        return;
    }
    if (has_res)
        y = _mm256_add_ps(y, load_lanes(t->res[p] + k->oc - t->oc, k));
    if (has_slope) {
        y = _mm256_add_ps(y, k->shift_in);
        const __m256 positive = _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_GT_OQ);
        y = _mm256_add_ps(_mm256_blendv_ps(_mm256_mul_ps(k->slope, y), y, positive),
                          k->shift_out);
    }
    float *out = t->yf[p] + k->oc;
    if (k->full)
        _mm256_storeu_ps(out, y);
    else
        _mm256_maskstore_ps(out, k->store_mask, y);
}

/* Byte counts of (tap, word) steps [i0, i1) (at most BYTE_STEPS) for P pixels x one
 * block, widened to 64-bit lanes and added to cnt (or stored there when first). */
INLINE void count_steps(const bnn_tile *t, const uint64_t *const *xs, const uint64_t *w,
                        int64_t i0, int64_t i1, int P, int first, __m256i cnt[][2])
{
    const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                           0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    __m256i acc[P2][2];
    for (int p = 0; p < P; p++)
        acc[p][0] = acc[p][1] = _mm256_setzero_si256();
    for (int64_t i = i0; i < i1; i++) {
        const int64_t off = t->offs[i];
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)(w + i * BNN_BLOCK));
        const __m256i w1 = _mm256_loadu_si256((const __m256i *)(w + i * BNN_BLOCK + 4));
        for (int p = 0; p < P; p++) {
            const __m256i xb = _mm256_set1_epi64x((long long)xs[p][off]);
            acc[p][0] = _mm256_add_epi8(
                acc[p][0], popcount_bytes(_mm256_xor_si256(xb, w0), table, low4));
            acc[p][1] = _mm256_add_epi8(
                acc[p][1], popcount_bytes(_mm256_xor_si256(xb, w1), table, low4));
        }
    }
    const __m256i zero = _mm256_setzero_si256();
    for (int p = 0; p < P; p++)
        for (int h = 0; h < 2; h++) {
            const __m256i wide = _mm256_sad_epu8(acc[p][h], zero);
            cnt[p][h] = first ? wide : _mm256_add_epi64(cnt[p][h], wide);
        }
}

/* P pixels (p0..p0+P-1) x one block b, whose transform constants are k. */
INLINE void tile_block(const bnn_tile *t, int p0, int P, int b, const block_consts *k)
{
    const uint64_t *w = t->w + (size_t)b * (size_t)t->L * BNN_BLOCK;
    const uint64_t *xs[P2];
    for (int p = 0; p < P; p++)
        xs[p] = t->x[p0 + p];
    __m256i cnt[P2][2];
    count_steps(t, xs, w, 0, t->L < BYTE_STEPS ? t->L : BYTE_STEPS, P, 1, cnt);
    for (int64_t i0 = BYTE_STEPS; i0 < t->L; i0 += BYTE_STEPS)
        count_steps(t, xs, w, i0, i0 + BYTE_STEPS < t->L ? i0 + BYTE_STEPS : t->L, P, 0, cnt);
    for (int p = 0; p < P; p++)
        epilogue(t, p0 + p, k, narrow_counts(cnt[p][0], cnt[p][1]), k->mode, k->has_res,
                 k->has_slope);
}

/* NIB_TABLE[v][i] = popcount(v ^ (i % 16)): the mismatches of input nibble v against a
 * weight nibble, for VPSHUFB (both 128-bit halves alike). */
static const uint8_t NIB_TABLE[16][32] __attribute__((aligned(32))) = {
#define PC(x) (((x) & 1) + (((x) >> 1) & 1) + (((x) >> 2) & 1) + (((x) >> 3) & 1))
#define HALF(v)                                                                            \
    PC((v) ^ 0), PC((v) ^ 1), PC((v) ^ 2), PC((v) ^ 3), PC((v) ^ 4), PC((v) ^ 5),         \
        PC((v) ^ 6), PC((v) ^ 7), PC((v) ^ 8), PC((v) ^ 9), PC((v) ^ 10), PC((v) ^ 11),    \
        PC((v) ^ 12), PC((v) ^ 13), PC((v) ^ 14), PC((v) ^ 15)
#define ROW(v) {HALF(v), HALF(v)}
    ROW(0), ROW(1), ROW(2),  ROW(3),  ROW(4),  ROW(5),  ROW(6),  ROW(7),
    ROW(8), ROW(9), ROW(10), ROW(11), ROW(12), ROW(13), ROW(14), ROW(15),
#undef ROW
#undef HALF
#undef PC
};

/* One look-up and add per pixel and half of the chunk:
 * acc += NIB_TABLE[input nibble][weight nibble]. */
#define NIB_LOOKUP(p)                                                                      \
    do {                                                                                   \
        const __m256i tv = _mm256_load_si256((const __m256i *)(table + y[p][j]));          \
        a0[p] = _mm256_add_epi8(a0[p], _mm256_shuffle_epi8(tv, w0));                       \
        a1[p] = _mm256_add_epi8(a1[p], _mm256_shuffle_epi8(tv, w1));                       \
    } while (0)

/* Mismatch counts of P pixels (p0..) x the chunk's 64 lanes over all (tap, word) steps,
 * added to counts[p][lane] (16-bit lanes, zero on entry). */
INLINE void nib_counts(const bnn_tile *t, int p0, int P, uint16_t counts[][BNN_CHUNK_LANES])
{
    const char *table = (const char *)NIB_TABLE;
    for (int64_t i0 = 0; i0 < t->L; i0 += NIB_STEPS) {
        const int64_t i1 = i0 + NIB_STEPS < t->L ? i0 + NIB_STEPS : t->L;
        __m256i a0[PN], a1[PN];
        for (int p = 0; p < P; p++)
            a0[p] = a1[p] = _mm256_setzero_si256();
        for (int64_t i = i0; i < i1; i++) {
            const int64_t off = t->offs[i] * 16;
            const uint16_t *y[PN];
            for (int p = 0; p < P; p++)
                y[p] = t->xi[p0 + p] + off;
            const uint8_t *w = t->wn + i * 16 * BNN_CHUNK_LANES;
            for (int j = 0; j < 16; j++) {
                const __m256i w0 = _mm256_load_si256((const __m256i *)(w + j * BNN_CHUNK_LANES));
                const __m256i w1 =
                    _mm256_load_si256((const __m256i *)(w + j * BNN_CHUNK_LANES + 32));
                NIB_LOOKUP(0);
                if (P > 1)
                    NIB_LOOKUP(1);
                if (P > 2)
                    NIB_LOOKUP(2);
                if (P > 3)
                    NIB_LOOKUP(3);
                if (P > 4)
                    NIB_LOOKUP(4);
                if (P > 5)
                    NIB_LOOKUP(5);
            }
        }
        for (int p = 0; p < P; p++)
            for (int h = 0; h < 2; h++) {
                const __m256i a = h ? a1[p] : a0[p];
                __m256i *c = (__m256i *)(counts[p] + 32 * h);
                _mm256_storeu_si256(c, _mm256_add_epi16(_mm256_loadu_si256(c),
                                                        _mm256_cvtepu8_epi16(
                                                            _mm256_castsi256_si128(a))));
                _mm256_storeu_si256(c + 1, _mm256_add_epi16(_mm256_loadu_si256(c + 1),
                                                            _mm256_cvtepu8_epi16(
                                                                _mm256_extracti128_si256(a, 1))));
            }
    }
}

/* nib_counts for a full register tile and for one pixel, compiled by GCC without
 * partial redundancy elimination: with it, GCC copies every accumulator once per step
 * (a register move per look-up), which costs a quarter of the loop's throughput. */
#if defined(__clang__)
#define NO_TREE_PRE
#else
#define NO_TREE_PRE __attribute__((optimize("no-tree-pre")))
#endif
#define NIB_COUNTS(P)                                                                      \
    static __attribute__((noinline)) NO_TREE_PRE TARGET void nib_counts_##P(               \
        const bnn_tile *t, int p0, uint16_t counts[][BNN_CHUNK_LANES])                     \
    {                                                                                      \
        nib_counts(t, p0, P, counts);                                                      \
    }
NIB_COUNTS(6)
NIB_COUNTS(1)

/* The epilogue of P pixels x block b from their 16-bit counts, for one combination of the
 * tile's choices (constants, so that each instance has no tests). */
#define NIB_FINISH(MODE, RES, SLOPE)                                                       \
    for (int p = 0; p < P; p++)                                                            \
    epilogue(t, p0 + p, kb,                                                                \
             _mm256_cvtepu16_epi32(_mm_load_si128((const __m128i *)(counts[p] + 8 * b))),  \
             MODE, RES, SLOPE)

/* P pixels (p0..) x every block of the chunk through the nibble path. */
INLINE void nib_tile(const bnn_tile *t, int p0, int P, const block_consts *k)
{
    uint16_t counts[PN][BNN_CHUNK_LANES] __attribute__((aligned(32)));
    memset(counts, 0, sizeof counts);
    (P == PN ? nib_counts_6 : nib_counts_1)(t, p0, counts);
    /* Block-major, so that a block's transform constants stay in registers. */
    for (int b = 0; b < t->nb; b++) {
        const block_consts *kb = &k[b];
        const int mode = kb->mode;
        if (mode == OUT_BITS_INTEGER)
            NIB_FINISH(OUT_BITS_INTEGER, 0, 0);
        else if (mode == OUT_BITS_FLOAT)
            NIB_FINISH(OUT_BITS_FLOAT, 0, 0);
        else if (kb->has_res && kb->has_slope)
            NIB_FINISH(OUT_FLOAT, 1, 1);
        else if (kb->has_res)
            NIB_FINISH(OUT_FLOAT, 1, 0);
        else if (kb->has_slope)
            NIB_FINISH(OUT_FLOAT, 0, 1);
        else
            NIB_FINISH(OUT_FLOAT, 0, 0);
    }
}

/* The whole tile through the nibble path. */
INLINE void nib_tile_all(const bnn_tile *t)
{
    block_consts k[BNN_CHUNK_BLOCKS];
    for (int b = 0; b < t->nb; b++)
        k[b] = load_consts(t, b);
    int p = 0;
    for (; p + PN <= t->npix; p += PN)
        nib_tile(t, p, PN, k);
    for (; p < t->npix; p++)
        nib_tile(t, p, 1, k);
}

TARGET void bnn_tile_avx2(const bnn_tile *t)
{
    /* The nibble path always computes the chunk's 64 lanes; with fewer blocks the word
     * path is as fast or faster. */
    if (t->wn && t->nb >= BNN_NIB_MIN_BLOCKS) {
        nib_tile_all(t);
        return;
    }
    for (int b = 0; b < t->nb; b++) {
        const block_consts k = load_consts(t, b);
        int p = 0;
        for (; p + P2 <= t->npix; p += P2)
            tile_block(t, p, P2, b, &k);
        for (; p < t->npix; p++)
            tile_block(t, p, 1, b, &k);
    }
}

/* Eight channels at a time: compare, then one bit per channel with VMOVMSKPS. */
INLINE void pack_row(const float *x, const float *thr, int64_t n, uint64_t *out)
{
    const __m256 zero = _mm256_setzero_ps();
    for (int64_t k = 0; k * 64 < n; k++) {
        const int64_t base = k * 64;
        const int64_t m = n - base < 64 ? n - base : 64;
        uint64_t word = 0;
        int64_t i = 0;
        for (; i + 8 <= m; i += 8) {
            __m256 v = _mm256_loadu_ps(x + base + i);
            if (thr)
                v = _mm256_add_ps(v, _mm256_loadu_ps(thr + base + i));
            word |= (uint64_t)(uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_GE_OQ))
                    << i;
        }
        for (; i < m; i++) {
            float v = thr ? x[base + i] + thr[base + i] : x[base + i];
            word |= (uint64_t)(v >= 0.0f) << i;
        }
        out[k] = word;
    }
}

TARGET void bnn_pack_avx2(const float *x, int64_t x_stride, const float *thr, int64_t n,
                          int64_t rows, uint64_t *out, int64_t out_stride)
{
    for (int64_t r = 0; r < rows; r++)
        pack_row(x + r * x_stride, thr, n, out + r * out_stride);
}

/* Byte offsets into NIB_TABLE of every nibble of n packed words: out[16 * k + j] =
 * 32 * nibble j of x[k]. Each byte b of a word gives nibbles 2b (low) and 2b + 1 (high),
 * which land in the low and high halves of one 32-bit lane. */
TARGET void bnn_nibble_index_avx2(const uint64_t *x, int64_t n, uint16_t *out)
{
    const __m256i low = _mm256_set1_epi32(0x0F), high = _mm256_set1_epi32(0xF0);
    for (int64_t k = 0; k < n; k++) {
        const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(x + k)));
        const __m256i v = _mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(b, low), 5),
                                          _mm256_slli_epi32(_mm256_and_si256(b, high), 17));
        _mm256_storeu_si256((__m256i *)(out + 16 * k), v);
    }
}

#endif
