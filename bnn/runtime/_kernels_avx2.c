/* AVX2 binary kernels (x86-64 CPUs from 2013 on without AVX-512 VPOPCNTDQ).
 *
 * AVX2 has no vector popcount, so each 256-bit XOR result is counted per byte with two
 * 16-entry table look-ups (VPSHUFB on the low and high nibbles). Byte counts are summed
 * in 8-bit lanes for at most 31 (tap, word) steps (31 * 8 < 256, no overflow), then
 * widened to one 64-bit count per lane with VPSADBW. One block of 8 output channels is
 * two vectors of 4 weight words; the register tile is P2 pixels x one block. */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#include "_kernels.h"

#define TARGET __attribute__((target("avx2")))
#define INLINE static inline __attribute__((always_inline)) TARGET
/* Pixels per register tile (2 x P2 byte accumulators of 16 registers); BNN_TILE must be a
 * multiple. */
#define P2 4
/* (tap, word) steps summed in 8-bit lanes before widening. */
#define BYTE_STEPS 31

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
} block_consts;

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
    k.thr = t->thr ? _mm256_loadu_ps(t->thr + lane0) : _mm256_setzero_ps();
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
    k.shift_in = t->shift_in ? load_lanes(t->shift_in + lane0, &k) : _mm256_setzero_ps();
    k.shift_out = t->shift_out ? load_lanes(t->shift_out + lane0, &k) : _mm256_setzero_ps();
    return k;
}

/* Output transform of one pixel x one block from its mismatch counts. */
INLINE void epilogue(const bnn_tile *t, int p, int b, const block_consts *k, __m256i mism)
{
    const int lane0 = b * BNN_BLOCK;
    __m256i dot = _mm256_sub_epi32(k->kc, _mm256_slli_epi32(mism, 1));
    if (t->corr[p])
        dot = _mm256_add_epi32(dot, _mm256_loadu_si256((const __m256i *)(t->corr[p] + lane0)));
    if (t->packed_out && t->dmin) {
        /* bit = !(dmin > dot) && !(dot > dmax) */
        const __m256i out = _mm256_or_si256(_mm256_cmpgt_epi32(k->dmin, dot),
                                            _mm256_cmpgt_epi32(dot, k->dmax));
        const uint32_t bits = ~(uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(out));
        bnn_store_bits(t->yp[p], t->oc + lane0, bits & k->bit_mask, BNN_BLOCK, t->atomic_bits);
        return;
    }
    __m256 y = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(dot), k->scale), k->bias);
    if (t->packed_out) {
        if (t->thr)
            y = _mm256_add_ps(y, k->thr);
        const uint32_t bits = (uint32_t)_mm256_movemask_ps(
            _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_GE_OQ));
        bnn_store_bits(t->yp[p], t->oc + lane0, bits & k->bit_mask, BNN_BLOCK, t->atomic_bits);
        return;
    }
    if (t->res[p])
        y = _mm256_add_ps(y, load_lanes(t->res[p] + lane0, k));
    if (t->slope) {
        if (t->shift_in)
            y = _mm256_add_ps(y, k->shift_in);
        const __m256 positive = _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_GT_OQ);
        y = _mm256_blendv_ps(_mm256_mul_ps(k->slope, y), y, positive);
        if (t->shift_out)
            y = _mm256_add_ps(y, k->shift_out);
    }
    if (k->full)
        _mm256_storeu_ps(t->yf[p] + t->oc + lane0, y);
    else
        _mm256_maskstore_ps(t->yf[p] + t->oc + lane0, k->store_mask, y);
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
        epilogue(t, p0 + p, b, k, narrow_counts(cnt[p][0], cnt[p][1]));
}

TARGET void bnn_tile_avx2(const bnn_tile *t)
{
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

#endif
