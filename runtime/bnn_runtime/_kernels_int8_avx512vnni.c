/* The AVX-512 VNNI int8 micro-kernel: four activation bytes broadcast to every int32
 * lane, times a panel of 16 output channels x 4 weights by vpdpbusd, which adds each
 * channel's four products to its int32 lane with no intermediate saturation. Four panels
 * (64 channels) share each broadcast. The avx512 path uses it on CPUs with VNNI (the AVX2
 * micro-kernel otherwise). */
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

/* The first count (at most 16) channels of sums. */
static inline __attribute__((always_inline)) TARGET void store(int32_t *acc, __m512i sums,
                                                               int64_t count)
{
    int32_t lanes[W];
    _mm512_storeu_si512(lanes, sums);
    memcpy(acc, lanes, (size_t)(count < W ? count : W) * sizeof *acc);
}

TARGET void bnn_qdot_avx512vnni(const uint8_t *a, int64_t k, const int8_t *panels, int64_t o,
                                int32_t *acc)
{
    const int64_t groups = (k + 3) / 4, npanels = (o + W - 1) / W, step = 4 * W;
    const int64_t panel_bytes = groups * step;
    int64_t p = 0;
    for (; p + 4 <= npanels; p += 4) {
        const int8_t *w0 = panels + p * panel_bytes, *w1 = w0 + panel_bytes;
        const int8_t *w2 = w1 + panel_bytes, *w3 = w2 + panel_bytes;
        __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
        for (int64_t t = 0; t < groups; t++) {
            const __m512i x = _mm512_set1_epi32(bnn_qdot_group(a, k, t));
            s0 = _mm512_dpbusd_epi32(s0, x, _mm512_loadu_si512(w0 + t * step));
            s1 = _mm512_dpbusd_epi32(s1, x, _mm512_loadu_si512(w1 + t * step));
            s2 = _mm512_dpbusd_epi32(s2, x, _mm512_loadu_si512(w2 + t * step));
            s3 = _mm512_dpbusd_epi32(s3, x, _mm512_loadu_si512(w3 + t * step));
        }
        store(acc + p * W, s0, o - p * W);
        store(acc + (p + 1) * W, s1, o - (p + 1) * W);
        store(acc + (p + 2) * W, s2, o - (p + 2) * W);
        store(acc + (p + 3) * W, s3, o - (p + 3) * W);
    }
    for (; p < npanels; p++) {
        const int8_t *w = panels + p * panel_bytes;
        __m512i s = _mm512_setzero_si512();
        for (int64_t t = 0; t < groups; t++)
            s = _mm512_dpbusd_epi32(s, _mm512_set1_epi32(bnn_qdot_group(a, k, t)),
                                    _mm512_loadu_si512(w + t * step));
        store(acc + p * W, s, o - p * W);
    }
}

#endif
