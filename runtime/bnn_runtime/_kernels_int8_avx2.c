/* The AVX2 int8 micro-kernel: four activation bytes broadcast to every int32 lane, times
 * a panel of 8 output channels x 4 weights by vpmaddubsw (unsigned by signed bytes,
 * adjacent products summed in int16, which cannot saturate for activations below 128),
 * the pairs widened and summed to one int32 per channel by vpmaddwd with ones. Four
 * panels (32 channels) share each broadcast. */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#include "_kernels_int8.h"

#define TARGET __attribute__((target("avx2")))
#define W BNN_QDOT_WIDTH_AVX2

static inline __attribute__((always_inline)) TARGET __m256i madd(__m256i acc, __m256i x,
                                                                 const int8_t *w)
{
    const __m256i pairs = _mm256_maddubs_epi16(x, _mm256_loadu_si256((const __m256i *)w));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

/* Channels [first, first + count) of the 8 in sums. */
static inline __attribute__((always_inline)) TARGET void store(int32_t *acc, __m256i sums,
                                                               int64_t count)
{
    int32_t lanes[W];
    _mm256_storeu_si256((__m256i *)lanes, sums);
    memcpy(acc, lanes, (size_t)(count < W ? count : W) * sizeof *acc);
}

TARGET void bnn_qdot_avx2(const uint8_t *a, int64_t k, const int8_t *panels, int64_t o,
                          int32_t *acc)
{
    const int64_t groups = (k + 3) / 4, npanels = (o + W - 1) / W, step = 4 * W;
    const int64_t panel_bytes = groups * step;
    int64_t p = 0;
    for (; p + 4 <= npanels; p += 4) {
        const int8_t *w0 = panels + p * panel_bytes, *w1 = w0 + panel_bytes;
        const int8_t *w2 = w1 + panel_bytes, *w3 = w2 + panel_bytes;
        __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
        for (int64_t t = 0; t < groups; t++) {
            const __m256i x = _mm256_set1_epi32(bnn_qdot_group(a, k, t));
            s0 = madd(s0, x, w0 + t * step);
            s1 = madd(s1, x, w1 + t * step);
            s2 = madd(s2, x, w2 + t * step);
            s3 = madd(s3, x, w3 + t * step);
        }
        store(acc + p * W, s0, o - p * W);
        store(acc + (p + 1) * W, s1, o - (p + 1) * W);
        store(acc + (p + 2) * W, s2, o - (p + 2) * W);
        store(acc + (p + 3) * W, s3, o - (p + 3) * W);
    }
    for (; p < npanels; p++) {
        const int8_t *w = panels + p * panel_bytes;
        __m256i s = _mm256_setzero_si256();
        for (int64_t t = 0; t < groups; t++)
            s = madd(s, _mm256_set1_epi32(bnn_qdot_group(a, k, t)), w + t * step);
        store(acc + p * W, s, o - p * W);
    }
}

#endif
