/* bnn_qgemm: the int8 matrix product of qconv2d (on im2col rows) and qlinear, and its
 * requantization to float, on weights packed once by the caller into the panels of the
 * path's micro-kernel (bnn_qgemm_width). Rows are shared among the thread team; each row
 * runs the
 * micro-kernel of the requested path (_kernels_int8_<isa>.c: portable, avx2, and for the
 * avx512 path avx512vnni where the CPU has VNNI, avx2 otherwise), then
 *   y = (float)(sum(a * w) - zero_point * sum(w)) * multiplier + bias
 * per output channel, rounded after the product and after the sum (the library is built
 * with -ffp-contract=off), which is bnn_runtime.int8_reference's arithmetic bit for bit. */
#include <stdlib.h>

#include "_kernels.h"
#include "_kernels_int8.h"

typedef struct {
    const uint8_t *a;
    const int8_t *panels;
    const int32_t *wsum;
    const float *multiplier, *bias;
    float *y;
    int64_t m, k, o, zero_point;
    bnn_qdot_fn dot;
    int32_t *acc; /* o sums per team member */
} qgemm_job;

static void qgemm_task(void *ctx, int64_t start, int64_t stop, int tid)
{
    const qgemm_job *j = ctx;
    int32_t *acc = j->acc + tid * j->o;
    for (int64_t r = start; r < stop; r++) {
        j->dot(j->a + r * j->k, j->k, j->panels, j->o, acc);
        float *y = j->y + r * j->o;
        for (int64_t c = 0; c < j->o; c++) {
            const int64_t total = (int64_t)acc[c] - j->zero_point * (int64_t)j->wsum[c];
            float value = (float)(int32_t)total * j->multiplier[c];
            if (j->bias)
                value += j->bias[c];
            y[c] = value;
        }
    }
}

/* 1 when the avx512 path may use the VNNI micro-kernel (always in a test build whose
 * AVX-512 intrinsics are emulated). */
static int vnni_supported(void)
{
#if defined(BNN_AVX512_EMULATION)
    return 1;
#elif defined(__x86_64__) || defined(__i386__)
    return __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}

/* The micro-kernel of path isa, and the width of its weight panels. */
static bnn_qdot_fn qdot_kernel(int64_t isa, int64_t *width)
{
#if defined(__x86_64__) || defined(__i386__)
    if (isa == BNN_ISA_AVX512 && vnni_supported()) {
        *width = BNN_QDOT_WIDTH_AVX512VNNI;
        return bnn_qdot_avx512vnni;
    }
    if (isa >= BNN_ISA_AVX2) {
        *width = BNN_QDOT_WIDTH_AVX2;
        return bnn_qdot_avx2;
    }
#else
    (void)isa;
#endif
    *width = BNN_QDOT_WIDTH_PORTABLE;
    return bnn_qdot_portable;
}

BNN_API int bnn_qgemm_width(int64_t isa)
{
    const int status = bnn_isa_status(isa);
    if (status != BNN_OK)
        return status;
    int64_t width;
    qdot_kernel(isa, &width);
    return (int)width;
}

BNN_API int bnn_qgemm(const uint8_t *a, int64_t m, int64_t k, const int8_t *panels, int64_t o,
                      const int32_t *wsum, int64_t zero_point, const float *multiplier,
                      const float *bias, float *y, int64_t isa, int64_t threads)
{
    if (!a || !panels || !wsum || !multiplier || !y || m < 0 || k < 1 || k > BNN_QGEMM_MAX_K ||
        o < 1 || zero_point < 0 || zero_point > 127)
        return BNN_EINVAL;
    const int status = bnn_isa_status(isa);
    if (status != BNN_OK)
        return status;
    int64_t width, a_count, y_count, panel_count;
    const bnn_qdot_fn dot = qdot_kernel(isa, &width);
    if (!BNN_ARRAY(&a_count, sizeof *a, m, k) || !BNN_ARRAY(&y_count, sizeof *y, m, o) ||
        !BNN_ARRAY(&panel_count, sizeof *panels, bnn_ceil_div(o, width), (k + 3) / 4, width, 4))
        return BNN_ESIZE;
    const size_t y_bytes = (size_t)y_count * sizeof *y, o_bytes = (size_t)o * sizeof *y;
    if (bnn_overlap(y, y_bytes, a, (size_t)a_count) ||
        bnn_overlap(y, y_bytes, panels, (size_t)panel_count) ||
        bnn_overlap(y, y_bytes, wsum, o_bytes) || bnn_overlap(y, y_bytes, multiplier, o_bytes) ||
        (bias && bnn_overlap(y, y_bytes, bias, o_bytes)))
        return BNN_EINVAL;
    uint8_t high = 0;
    for (int64_t i = 0; i < a_count; i++)
        high |= a[i];
    if (high & 0x80)
        return BNN_EINVAL; /* activations must be 7-bit */
    if (!m)
        return BNN_OK;
    const int team = bnn_team_size(threads, m, BNN_WORK(m, k, o) / 32);
    int32_t *acc = malloc((size_t)o * (size_t)team * sizeof *acc);
    if (!acc)
        return BNN_ENOMEM;
    qgemm_job job = {a, panels, wsum, multiplier, bias, y, m, k, o, zero_point, dot, acc};
    bnn_parallel(team, m, qgemm_task, &job);
    free(acc);
    return BNN_OK;
}
