/* The AVX-512 VNNI int8 micro-kernel: four activation bytes of a row broadcast to every
 * int32 lane, times a panel of 16 output channels x 4 weights by vpdpbusd, which adds
 * each channel's four products to its int32 lane with no intermediate saturation. Four
 * rows times four panels (64 channels) make 16 independent sums: each broadcast serves
 * four panels and each weight load four rows. The avx512 path uses it on CPUs with VNNI
 * (the AVX2 micro-kernel otherwise). */
#if defined(__x86_64__) || defined(__i386__)

#include "_kernels_int8.h"

#ifdef BNN_AVX512_EMULATION
/* A test build: the header's plain-C intrinsics, and the three this file adds to them,
 * lane by lane as Intel's reference describes them. */
#include "avx512_emulation.h"
#define TARGET

static inline __m512i _mm512_dpbusd_epi32(__m512i src, __m512i a, __m512i b)
{
    uint8_t ua[64];
    int8_t sb[64];
    memcpy(ua, &a, sizeof ua);
    memcpy(sb, &b, sizeof sb);
    for (int lane = 0; lane < 16; lane++) {
        uint32_t sum = (uint32_t)src.i32[lane];
        for (int i = 4 * lane; i < 4 * lane + 4; i++)
            sum += (uint32_t)((int32_t)ua[i] * (int32_t)sb[i]);
        src.i32[lane] = (int32_t)sum;
    }
    return src;
}

static inline void _mm512_storeu_si512(void *p, __m512i a)
{
    memcpy(p, &a, sizeof a);
}
#else
#include <immintrin.h>
#define TARGET __attribute__((target("avx512f,avx512vnni")))
#endif

#define W BNN_QDOT_WIDTH_AVX512VNNI
#define R BNN_QDOT_ROWS

/* The first count (at most 16) channels of sums. */
static inline __attribute__((always_inline)) TARGET void store(int32_t *acc, __m512i sums,
                                                               int64_t count)
{
    int32_t lanes[W];
    _mm512_storeu_si512(lanes, sums);
    memcpy(acc, lanes, (size_t)(count < W ? count : W) * sizeof *acc);
}

/* The sums of `np` panels from panel p on, for the R rows (the first `rows` stored). */
static inline __attribute__((always_inline)) TARGET void
panels_of(const uint8_t *const row[R], int64_t rows, int64_t k, const int8_t *panels, int64_t o,
          int64_t p, int np, int32_t *acc)
{
    const int64_t groups = (k + 3) / 4, step = 4 * W, panel_bytes = groups * step;
    const int8_t *w = panels + p * panel_bytes;
    __m512i s[R][4];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int q = 0; q < np; q++)
            s[r][q] = _mm512_setzero_si512();
    for (int64_t t = 0; t < groups; t++) {
        __m512i v[4];
        #pragma GCC unroll 4
        for (int q = 0; q < np; q++)
            v[q] = _mm512_loadu_si512(w + q * panel_bytes + t * step);
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const __m512i x = _mm512_set1_epi32(bnn_qdot_group(row[r], k, t));
            #pragma GCC unroll 4
            for (int q = 0; q < np; q++)
                s[r][q] = _mm512_dpbusd_epi32(s[r][q], x, v[q]);
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < rows; r++)
        #pragma GCC unroll 4
        for (int q = 0; q < np; q++)
            store(acc + r * o + (p + q) * W, s[r][q], o - (p + q) * W);
}

TARGET void bnn_qdot_avx512vnni(const uint8_t *a, int64_t lda, int64_t rows, int64_t k,
                                const int8_t *panels, int64_t o, int32_t *acc)
{
    const uint8_t *row[R];
    bnn_qdot_rows(a, lda, rows, row);
    const int64_t npanels = (o + W - 1) / W;
    int64_t p = 0;
    for (; p + 4 <= npanels; p += 4)
        panels_of(row, rows, k, panels, o, p, 4, acc);
    for (; p < npanels; p++)
        panels_of(row, rows, k, panels, o, p, 1, acc);
}

#endif
