/* AVX-512 binary kernels (AVX512F + AVX512VPOPCNTDQ: Ice Lake, Sapphire Rapids, Zen 4
 * and later).
 *
 * One 512-bit vector holds the weight words of one block of 8 output channels for one
 * (tap, word) step; the input word of a pixel is broadcast against it, and VPOPCNTQ
 * counts the mismatches of all 8 channels at once: XOR + VPOPCNTQ + VPADDQ per 512
 * binary multiply-accumulates. The register tile is P5 pixels x up to 4 blocks (24
 * accumulators), so each weight load serves 6 pixels and each broadcast 32 channels,
 * and the fixed cost of a tile (set-up, output transform) is spread over many steps
 * even when a tap has a single word (64 input channels).
 * Only AVX512F instructions are used besides VPOPCNTQ, so no AVX512VL/BW/DQ is needed. */
#if defined(__x86_64__) || defined(__i386__)

#include "_kernels.h"

#ifdef BNN_AVX512_EMULATION
/* A test build: the intrinsics come from a plain-C emulation
 * (tests/native/avx512_emulation.h), so that this file's logic runs on any x86 CPU. */
#include "avx512_emulation.h"
#define TARGET
#else
#include <immintrin.h>
#define TARGET __attribute__((target("avx512f,avx512vpopcntdq")))
#endif
#define INLINE static inline __attribute__((always_inline)) TARGET
/* Pixels per register tile; BNN_TILE must be a multiple. */
#ifndef BNN_AVX512_PIXELS
#define BNN_AVX512_PIXELS 6
#endif
#define P5 BNN_AVX512_PIXELS
/* Blocks per register tile at most. */
#define NB_MAX 4

/* Output transform of P pixels x 16 lanes (blocks b and b + 1; NB = 1 or 2 of them)
 * from the 64-bit mismatch counts lo[p] (block b) and hi[p] (block b + 1), with the
 * per-lane constants loaded once for the P pixels. A float output gets its finish here
 * too (see bnn_tile), in registers and in the order of the separate steps; an absent
 * shift is added as -0.0, which leaves every value unchanged. */
INLINE void epilogue(const bnn_tile *t, int p0, int P, int b, int NB, const __m512i *lo,
                     const __m512i *hi)
{
    const int lane0 = b * BNN_BLOCK;
    int nl = t->lanes - lane0;
    if (nl > NB * BNN_BLOCK)
        nl = NB * BNN_BLOCK;
    const __mmask16 valid = (__mmask16)((1u << nl) - 1u);
    const int int_bits = t->packed_out && t->dmin;
    const __m512i kc = _mm512_set1_epi32(t->kc);
    /* The low 32 bits of each 64-bit count of block b, then of block b + 1. */
    const __m512i low_halves =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512 zero = _mm512_setzero_ps(), minus_zero = _mm512_set1_ps(-0.0f);
    __m512 scale = zero, bias = zero, thr = zero;
    __m512 slope = zero, shift_in = minus_zero, shift_out = minus_zero;
    __m512i dmin = _mm512_setzero_si512(), dmax = dmin;
    if (int_bits) {
        dmin = _mm512_maskz_loadu_epi32(valid, t->dmin + lane0);
        dmax = _mm512_maskz_loadu_epi32(valid, t->dmax + lane0);
    } else {
        scale = _mm512_maskz_loadu_ps(valid, t->scale + lane0);
        bias = _mm512_maskz_loadu_ps(valid, t->bias + lane0);
        if (t->thr)
            thr = _mm512_maskz_loadu_ps(valid, t->thr + lane0);
    }
    const int prelu = !t->packed_out && t->slope;
    if (prelu) {
        slope = _mm512_maskz_loadu_ps(valid, t->slope + lane0);
        if (t->shift_in)
            shift_in = _mm512_maskz_loadu_ps(valid, t->shift_in + lane0);
        if (t->shift_out)
            shift_out = _mm512_maskz_loadu_ps(valid, t->shift_out + lane0);
    }
    for (int p = 0; p < P; p++) {
        const __m512i mism = _mm512_permutex2var_epi32(lo[p], low_halves, hi[p]);
        __m512i dot = _mm512_sub_epi32(kc, _mm512_slli_epi32(mism, 1));
        if (t->corr[p0 + p])
            dot = _mm512_add_epi32(dot, _mm512_maskz_loadu_epi32(valid, t->corr[p0 + p] + lane0));
        if (int_bits) {
            __mmask16 bits = _mm512_mask_cmp_epi32_mask(valid, dot, dmin, _MM_CMPINT_NLT);
            bits = _mm512_mask_cmp_epi32_mask(bits, dot, dmax, _MM_CMPINT_LE);
            bnn_store_bits(t->yp[p0 + p], t->oc + lane0, bits, NB * BNN_BLOCK, t->atomic_bits);
            continue;
        }
        __m512 y = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(dot), scale), bias);
        if (t->packed_out) {
            if (t->thr)
                y = _mm512_add_ps(y, thr);
            const uint32_t bits = _mm512_mask_cmp_ps_mask(valid, y, zero, _CMP_GE_OQ);
            bnn_store_bits(t->yp[p0 + p], t->oc + lane0, bits, NB * BNN_BLOCK, t->atomic_bits);
            continue;
        }
        if (t->res[p0 + p])
            y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(valid, t->res[p0 + p] + lane0));
        if (prelu) {
            y = _mm512_add_ps(y, shift_in);
            const __m512 scaled = _mm512_mul_ps(slope, y);
            y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(y, zero, _CMP_GT_OQ), scaled, y);
            y = _mm512_add_ps(y, shift_out);
        }
        _mm512_mask_storeu_ps(t->yf[p0 + p] + t->oc + lane0, valid, y);
    }
}

/* P pixels (p0..p0+P-1) x NB blocks (b..b+NB-1): mismatch counts, then the output
 * transform 16 lanes at a time. */
INLINE void tile_blocks(const bnn_tile *t, int p0, int P, int b, int NB)
{
    const size_t block_words = (size_t)t->L * BNN_BLOCK;
    const uint64_t *w = t->w + (size_t)b * block_words;
    const uint64_t *xs[P5];
    __m512i acc[NB_MAX][P5];
    for (int p = 0; p < P; p++) {
        xs[p] = t->x[p0 + p];
        for (int j = 0; j < NB; j++)
            acc[j][p] = _mm512_setzero_si512();
    }
    for (int64_t i = 0; i < t->L; i++) {
        const int64_t off = t->offs[i];
        __m512i wv[NB_MAX];
        for (int j = 0; j < NB; j++)
            wv[j] = _mm512_loadu_si512(w + j * block_words + i * BNN_BLOCK);
        for (int p = 0; p < P; p++) {
            const __m512i xb = _mm512_set1_epi64((long long)xs[p][off]);
            for (int j = 0; j < NB; j++)
                acc[j][p] =
                    _mm512_add_epi64(acc[j][p], _mm512_popcnt_epi64(_mm512_xor_si512(xb, wv[j])));
        }
    }
    if (NB == 1) {
        for (int p = 0; p < P; p++)
            acc[1][p] = _mm512_setzero_si512();
        epilogue(t, p0, P, b, 1, acc[0], acc[1]);
        return;
    }
    for (int j = 0; j < NB; j += 2)
        epilogue(t, p0, P, b + j, 2, acc[j], acc[j + 1]);
}

/* All pixels of the tile for NB blocks from b. */
INLINE void tile_pixels(const bnn_tile *t, int b, int NB)
{
    int p = 0;
    for (; p + P5 <= t->npix; p += P5)
        tile_blocks(t, p, P5, b, NB);
    for (; p < t->npix; p++)
        tile_blocks(t, p, 1, b, NB);
}

TARGET void bnn_tile_avx512(const bnn_tile *t)
{
    int b = 0;
    for (; b + 4 <= t->nb; b += 4)
        tile_pixels(t, b, 4);
    for (; b + 2 <= t->nb; b += 2)
        tile_pixels(t, b, 2);
    if (b < t->nb)
        tile_pixels(t, b, 1);
}

/* Sixteen channels at a time: one compare yields their 16 bits directly. Masked loads
 * keep the tail inside the row. */
INLINE void pack_row(const float *x, const float *thr, int64_t n, uint64_t *out)
{
    for (int64_t k = 0; k * 64 < n; k++) {
        const int64_t base = k * 64;
        uint64_t word = 0;
        for (int q = 0; q < 4 && base + 16 * q < n; q++) {
            const int64_t rem = n - base - 16 * q;
            const __mmask16 m = rem >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rem) - 1u);
            __m512 v = _mm512_maskz_loadu_ps(m, x + base + 16 * q);
            if (thr)
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, thr + base + 16 * q));
            word |= (uint64_t)_mm512_mask_cmp_ps_mask(m, v, _mm512_setzero_ps(), _CMP_GE_OQ)
                    << (16 * q);
        }
        out[k] = word;
    }
}

TARGET void bnn_pack_avx512(const float *x, int64_t x_stride, const float *thr, int64_t n,
                            int64_t rows, uint64_t *out, int64_t out_stride)
{
    for (int64_t r = 0; r < rows; r++)
        pack_row(x + r * x_stride, thr, n, out + r * out_stride);
}

#endif
