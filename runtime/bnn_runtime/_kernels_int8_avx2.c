/* The AVX2 int8 micro-kernel: four activation bytes of a row broadcast to every int32
 * lane, times a panel of 8 output channels x 4 weights by vpmaddubsw (unsigned by signed
 * bytes, adjacent products summed in int16, which cannot saturate for activations below
 * 128), the pairs widened and summed to one int32 per channel by vpmaddwd with ones. Four
 * rows times two panels (16 channels) make 8 independent sums: each broadcast serves two
 * panels and each weight load four rows. */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#include "_kernels_int8.h"

#define TARGET __attribute__((target("avx2")))
#define W BNN_QDOT_WIDTH_AVX2
#define R BNN_QDOT_ROWS

static inline __attribute__((always_inline)) TARGET __m256i madd(__m256i acc, __m256i x,
                                                                 __m256i w)
{
    const __m256i pairs = _mm256_maddubs_epi16(x, w);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

/* The first count (at most 8) channels of sums. */
static inline __attribute__((always_inline)) TARGET void store(int32_t *acc, __m256i sums,
                                                               int64_t count)
{
    int32_t lanes[W];
    _mm256_storeu_si256((__m256i *)lanes, sums);
    memcpy(acc, lanes, (size_t)(count < W ? count : W) * sizeof *acc);
}

/* The sums of `np` panels from panel p on, for the R rows (the first `rows` stored). */
static inline __attribute__((always_inline)) TARGET void
panels_of(const uint8_t *const row[R], int64_t rows, int64_t k, const int8_t *panels, int64_t o,
          int64_t p, int np, int32_t *acc)
{
    const int64_t groups = (k + 3) / 4, step = 4 * W, panel_bytes = groups * step;
    const int8_t *w = panels + p * panel_bytes;
    __m256i s[R][2];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int q = 0; q < np; q++)
            s[r][q] = _mm256_setzero_si256();
    for (int64_t t = 0; t < groups; t++) {
        __m256i v[2];
        #pragma GCC unroll 4
        for (int q = 0; q < np; q++)
            v[q] = _mm256_loadu_si256((const __m256i *)(w + q * panel_bytes + t * step));
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const __m256i x = _mm256_set1_epi32(bnn_qdot_group(row[r], k, t));
            #pragma GCC unroll 4
            for (int q = 0; q < np; q++)
                s[r][q] = madd(s[r][q], x, v[q]);
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < rows; r++)
        #pragma GCC unroll 4
        for (int q = 0; q < np; q++)
            store(acc + r * o + (p + q) * W, s[r][q], o - (p + q) * W);
}

TARGET void bnn_qdot_avx2(const uint8_t *a, int64_t lda, int64_t rows, int64_t k,
                          const int8_t *panels, int64_t o, int32_t *acc)
{
    const uint8_t *row[R];
    bnn_qdot_rows(a, lda, rows, row);
    const int64_t npanels = (o + W - 1) / W;
    int64_t p = 0;
    for (; p + 2 <= npanels; p += 2)
        panels_of(row, rows, k, panels, o, p, 2, acc);
    for (; p < npanels; p++)
        panels_of(row, rows, k, panels, o, p, 1, acc);
}

#endif
