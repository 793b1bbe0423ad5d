/* The AVX-512 intrinsics that runtime/bnn_runtime/_kernels_avx512.c and
 * _kernels_float_avx512.c use, computed lane by lane in plain C as Intel's reference
 * describes them. A test build of the library
 * (tests/test_runtime_avx512_emulated.py) compiles those files against this header instead
 * of <immintrin.h>, so that its logic (tiling, lane masks, count reduction, output
 * transform, fused finish, bit stores) is checked bit for bit on CPUs without AVX-512.
 * The compiler's own intrinsics are trusted to match the same reference.
 *
 * Masked loads read only the lanes their mask selects, as the hardware does (it suppresses
 * faults on the others), and masked stores write only those lanes. */
#ifndef BNN_AVX512_EMULATION_H
#define BNN_AVX512_EMULATION_H

#include <math.h>
#include <stdint.h>
#include <string.h>

typedef union {
    int32_t i32[16];
    int64_t i64[8];
} __m512i;
typedef struct {
    float f[16];
} __m512;
typedef uint16_t __mmask16;

/* Integer comparison predicates (_MM_CMPINT_*) and the float ones used (_CMP_*). */
#define _MM_CMPINT_EQ 0
#define _MM_CMPINT_LT 1
#define _MM_CMPINT_LE 2
#define _MM_CMPINT_NE 4
#define _MM_CMPINT_NLT 5
#define _MM_CMPINT_NLE 6
#define _CMP_GE_OQ 0x1d
#define _CMP_GT_OQ 0x1e

#define EMU static inline

EMU __m512i _mm512_setzero_si512(void)
{
    __m512i r;
    memset(&r, 0, sizeof r);
    return r;
}

EMU __m512 _mm512_setzero_ps(void)
{
    __m512 r;
    memset(&r, 0, sizeof r);
    return r;
}

EMU __m512 _mm512_set1_ps(float a)
{
    __m512 r;
    for (int i = 0; i < 16; i++)
        r.f[i] = a;
    return r;
}

EMU __m512i _mm512_set1_epi32(int a)
{
    __m512i r;
    for (int i = 0; i < 16; i++)
        r.i32[i] = a;
    return r;
}

EMU __m512i _mm512_set1_epi64(long long a)
{
    __m512i r;
    for (int i = 0; i < 8; i++)
        r.i64[i] = a;
    return r;
}

EMU __m512i _mm512_setr_epi32(int e0, int e1, int e2, int e3, int e4, int e5, int e6, int e7,
                              int e8, int e9, int e10, int e11, int e12, int e13, int e14,
                              int e15)
{
    const int e[16] = {e0, e1, e2, e3, e4, e5, e6, e7, e8, e9, e10, e11, e12, e13, e14, e15};
    __m512i r;
    for (int i = 0; i < 16; i++)
        r.i32[i] = e[i];
    return r;
}

EMU __m512i _mm512_loadu_si512(const void *p)
{
    __m512i r;
    memcpy(&r, p, sizeof r);
    return r;
}

/* Copy the 4-byte lanes that mask k selects, leaving the others of dst untouched. */
EMU void copy_lanes(void *dst, const void *src, __mmask16 k)
{
    for (int i = 0; i < 16; i++)
        if (k >> i & 1)
            memcpy((char *)dst + 4 * i, (const char *)src + 4 * i, 4);
}

EMU __m512i _mm512_maskz_loadu_epi32(__mmask16 k, const void *p)
{
    __m512i r = _mm512_setzero_si512();
    copy_lanes(&r, p, k);
    return r;
}

EMU __m512 _mm512_loadu_ps(const void *p)
{
    __m512 r;
    memcpy(r.f, p, sizeof r.f);
    return r;
}

/* a * b + c rounded once, as the FMA instruction computes it. */
EMU __m512 _mm512_fmadd_ps(__m512 a, __m512 b, __m512 c)
{
    __m512 r;
    for (int i = 0; i < 16; i++)
        r.f[i] = fmaf(a.f[i], b.f[i], c.f[i]);
    return r;
}

EMU __m512 _mm512_maskz_loadu_ps(__mmask16 k, const void *p)
{
    __m512 r = _mm512_setzero_ps();
    copy_lanes(&r, p, k);
    return r;
}

EMU void _mm512_mask_storeu_ps(void *p, __mmask16 k, __m512 a)
{
    copy_lanes(p, &a, k);
}

EMU __m512i _mm512_xor_si512(__m512i a, __m512i b)
{
    for (int i = 0; i < 8; i++)
        a.i64[i] ^= b.i64[i];
    return a;
}

EMU __m512i _mm512_popcnt_epi64(__m512i a)
{
    for (int i = 0; i < 8; i++)
        a.i64[i] = __builtin_popcountll((unsigned long long)a.i64[i]);
    return a;
}

EMU __m512i _mm512_add_epi64(__m512i a, __m512i b)
{
    for (int i = 0; i < 8; i++)
        a.i64[i] = (int64_t)((uint64_t)a.i64[i] + (uint64_t)b.i64[i]);
    return a;
}

EMU __m512i _mm512_add_epi32(__m512i a, __m512i b)
{
    for (int i = 0; i < 16; i++)
        a.i32[i] = (int32_t)((uint32_t)a.i32[i] + (uint32_t)b.i32[i]);
    return a;
}

EMU __m512i _mm512_sub_epi32(__m512i a, __m512i b)
{
    for (int i = 0; i < 16; i++)
        a.i32[i] = (int32_t)((uint32_t)a.i32[i] - (uint32_t)b.i32[i]);
    return a;
}

EMU __m512i _mm512_slli_epi32(__m512i a, unsigned int n)
{
    for (int i = 0; i < 16; i++)
        a.i32[i] = n > 31 ? 0 : (int32_t)((uint32_t)a.i32[i] << n);
    return a;
}

/* Lane i takes lane idx[i] & 15 of a, or of b where bit 4 of idx[i] is set. */
EMU __m512i _mm512_permutex2var_epi32(__m512i a, __m512i idx, __m512i b)
{
    __m512i r;
    for (int i = 0; i < 16; i++) {
        const int j = idx.i32[i] & 15;
        r.i32[i] = (idx.i32[i] & 16) ? b.i32[j] : a.i32[j];
    }
    return r;
}

EMU __mmask16 _mm512_mask_cmp_epi32_mask(__mmask16 k, __m512i a, __m512i b, const int pred)
{
    __mmask16 r = 0;
    for (int i = 0; i < 16; i++) {
        const int32_t x = a.i32[i], y = b.i32[i];
        int c;
        switch (pred) {
        case _MM_CMPINT_EQ: c = x == y; break;
        case _MM_CMPINT_LT: c = x < y; break;
        case _MM_CMPINT_LE: c = x <= y; break;
        case _MM_CMPINT_NE: c = x != y; break;
        case _MM_CMPINT_NLT: c = x >= y; break;
        case _MM_CMPINT_NLE: c = x > y; break;
        default: c = pred == 7; break;
        }
        if ((k >> i & 1) && c)
            r |= (__mmask16)(1u << i);
    }
    return r;
}

/* The ordered, quiet predicates: false when either operand is NaN. */
EMU __mmask16 _mm512_mask_cmp_ps_mask(__mmask16 k, __m512 a, __m512 b, const int pred)
{
    __mmask16 r = 0;
    for (int i = 0; i < 16; i++) {
        const float x = a.f[i], y = b.f[i];
        int c = 0;
        if (pred == _CMP_GE_OQ)
            c = __builtin_isgreaterequal(x, y);
        else if (pred == _CMP_GT_OQ)
            c = __builtin_isgreater(x, y);
        else
            __builtin_trap();
        if ((k >> i & 1) && c)
            r |= (__mmask16)(1u << i);
    }
    return r;
}

EMU __mmask16 _mm512_cmp_ps_mask(__m512 a, __m512 b, const int pred)
{
    return _mm512_mask_cmp_ps_mask((__mmask16)0xFFFF, a, b, pred);
}

EMU __m512 _mm512_mask_blend_ps(__mmask16 k, __m512 a, __m512 b)
{
    for (int i = 0; i < 16; i++)
        if (k >> i & 1)
            a.f[i] = b.f[i];
    return a;
}

EMU __m512 _mm512_cvtepi32_ps(__m512i a)
{
    __m512 r;
    for (int i = 0; i < 16; i++)
        r.f[i] = (float)a.i32[i];
    return r;
}

EMU __m512 _mm512_add_ps(__m512 a, __m512 b)
{
    for (int i = 0; i < 16; i++)
        a.f[i] = a.f[i] + b.f[i];
    return a;
}

EMU __m512 _mm512_mul_ps(__m512 a, __m512 b)
{
    for (int i = 0; i < 16; i++)
        a.f[i] = a.f[i] * b.f[i];
    return a;
}

#undef EMU

#endif
