/* The AVX-512 tile of the float convolution (the driver is in _kernels_float.c): FZ_ROWS
 * output pixels x up to 4 panels of 16 output channels, 24 accumulators; per step of K,
 * 4 weight loads and FZ_ROWS broadcasts feed 4 x FZ_ROWS fused multiply-adds. Each output
 * is zero, then one fused multiply-add per step of K in the AVX2 tile's order, then the
 * bias, so both paths give identical sums. */
#if defined(__x86_64__) || defined(__i386__)

#include <stdint.h>

#include "_kernels_float.h"

#ifdef BNN_AVX512_EMULATION
/* A test build: the intrinsics come from a plain-C emulation
 * (tests/native/avx512_emulation.h), so that this tile runs on any x86 CPU. */
#include "avx512_emulation.h"
#define FZ_TARGET
#else
#include <immintrin.h>
#define FZ_TARGET __attribute__((target("avx512f,avx2,fma")))
#endif

/* The tile with NP panels (a constant once inlined, so every accumulator is a register). */
static inline __attribute__((always_inline)) FZ_TARGET void
fconv_tile_zmm(const fconv_job *j, const float *const *rows_in, int64_t p0, int rows,
               int64_t col, const int NP)
{
    const int64_t o = j->o, k = j->k, row_step = j->dh * j->wp * j->c, step = k * FC_COLS;
    const float *a[FZ_ROWS];
    for (int r = 0; r < FZ_ROWS; r++)
        a[r] = rows_in[r];
    const float *b = j->panels + (col / FC_COLS) * step;
    __m512 acc[FZ_ROWS][FZ_PANELS];
    for (int r = 0; r < FZ_ROWS; r++)
        for (int p = 0; p < NP; p++)
            acc[r][p] = _mm512_setzero_ps();
    for (int64_t ky = 0; ky < j->kh; ky++)
        for (int64_t q = 0; q < j->runs; q++) {
            const int64_t off = ky * row_step + q * j->run_step;
            for (int64_t i = 0; i < j->run; i++, b += FC_COLS) {
                __m512 w[FZ_PANELS];
                for (int p = 0; p < NP; p++)
                    w[p] = _mm512_loadu_ps(b + p * step);
                for (int r = 0; r < FZ_ROWS; r++) {
                    const __m512 av = _mm512_set1_ps(a[r][off + i]);
                    for (int p = 0; p < NP; p++)
                        acc[r][p] = _mm512_fmadd_ps(av, w[p], acc[r][p]);
                }
            }
        }
    for (int p = 0; p < NP; p++) {
        const int64_t c0 = col + p * FC_COLS, cols = o - c0 < FC_COLS ? o - c0 : FC_COLS;
        const __mmask16 mask = (__mmask16)((1u << cols) - 1);
        const __m512 bias = j->bias ? _mm512_maskz_loadu_ps(mask, j->bias + c0)
                                    : _mm512_setzero_ps();
        for (int r = 0; r < FZ_ROWS; r++)
            if (r < rows)
                _mm512_mask_storeu_ps(j->y + (p0 + r) * o + c0, mask,
                                      _mm512_add_ps(acc[r][p], bias));
    }
}

FZ_TARGET void bnn_fconv_tile_avx512(const fconv_job *j, const float *const *a, int64_t p0,
                                     int rows, int64_t col, int64_t panels)
{
    if (FZ_PANELS >= 4 && panels == 4)
        fconv_tile_zmm(j, a, p0, rows, col, 4);
    else if (FZ_PANELS >= 3 && panels == 3)
        fconv_tile_zmm(j, a, p0, rows, col, 3);
    else if (FZ_PANELS >= 2 && panels == 2)
        fconv_tile_zmm(j, a, p0, rows, col, 2);
    else
        fconv_tile_zmm(j, a, p0, rows, col, 1);
}

#endif
