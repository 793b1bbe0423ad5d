/* The int8 matrix product of qlinear (bnn_qgemm) and the int8 convolution of qconv2d
 * (bnn_qconv2d), on weights packed once by the caller into the panels of the path's
 * micro-kernel (bnn_qgemm_width). Rows (output pixels of a convolution) are shared among
 * the thread team; they go BNN_QDOT_ROWS at a time through the micro-kernel of the
 * requested path (_kernels_int8_<isa>.c: portable, avx2, and for the avx512 path
 * avx512vnni where the CPU has VNNI, avx2 otherwise), then each one's
 *   y = (float)(sum(a * w) - zero_point * sum(w)) * multiplier + bias
 * per output channel, rounded after the product and after the sum (the library is built
 * with -ffp-contract=off), which is bnn_runtime.int8_reference's arithmetic bit for bit.
 *
 * bnn_qconv2d quantizes its float input once into a padded uint8 copy (the padding holds
 * the zero point, the quantized 0), and each team member gathers the windows of up to
 * BNN_QDOT_ROWS output pixels from it into rows of its own, which the micro-kernel reads
 * like rows of bnn_qgemm. */
#include <stdlib.h>
#include <string.h>

#include "_kernels.h"
#include "_kernels_int8.h"

typedef struct {
    const uint8_t *a;
    const int8_t *panels;
    const int32_t *offset; /* zero_point * sum(w) per output channel */
    const float *multiplier, *bias;
    float *y;
    int64_t m, k, o;
    bnn_qdot_fn dot;
    int32_t *acc; /* BNN_QDOT_ROWS x o sums per team member */
} qgemm_job;

/* One row's outputs y [o] from its sums acc [o] and offset [o] = zero_point * sum(w), in
 * int32 like the reference (every difference is an exact sum of at most BNN_QGEMM_MAX_K
 * products below 2^14 in magnitude). */
static void requantize(const int32_t *acc, const int32_t *offset, const float *multiplier,
                       const float *bias, int64_t o, float *y)
{
    if (bias)
        for (int64_t c = 0; c < o; c++)
            y[c] = (float)(int32_t)((uint32_t)acc[c] - (uint32_t)offset[c]) * multiplier[c] +
                   bias[c];
    else
        for (int64_t c = 0; c < o; c++)
            y[c] = (float)(int32_t)((uint32_t)acc[c] - (uint32_t)offset[c]) * multiplier[c];
}

/* offset [o] = zero_point * wsum [o] (wrapping: only the differences with the sums
 * matter), or NULL when memory ran out. */
static int32_t *offsets(const int32_t *wsum, int64_t zero_point, int64_t o)
{
    int32_t *offset = malloc((size_t)o * sizeof *offset);
    if (offset)
        for (int64_t c = 0; c < o; c++)
            offset[c] = (int32_t)((uint32_t)zero_point * (uint32_t)wsum[c]);
    return offset;
}

static void qgemm_task(void *ctx, int64_t start, int64_t stop, int tid)
{
    const qgemm_job *j = ctx;
    int32_t *acc = j->acc + tid * BNN_QDOT_ROWS * j->o;
    for (int64_t r = start; r < stop; r += BNN_QDOT_ROWS) {
        const int64_t rows = stop - r < BNN_QDOT_ROWS ? stop - r : BNN_QDOT_ROWS;
        j->dot(j->a + r * j->k, j->k, rows, j->k, j->panels, j->o, acc);
        for (int64_t i = 0; i < rows; i++)
            requantize(acc + i * j->o, j->offset, j->multiplier, j->bias, j->o,
                       j->y + (r + i) * j->o);
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
    if (!BNN_ARRAY(NULL, sizeof(int32_t), team, BNN_QDOT_ROWS, o))
        return BNN_ESIZE;
    int32_t *acc = malloc((size_t)team * BNN_QDOT_ROWS * (size_t)o * sizeof *acc);
    int32_t *offset = offsets(wsum, zero_point, o);
    if (!acc || !offset) {
        free(acc);
        free(offset);
        return BNN_ENOMEM;
    }
    qgemm_job job = {a, panels, offset, multiplier, bias, y, m, k, o, dot, acc};
    bnn_parallel(team, m, qgemm_task, &job);
    free(acc);
    free(offset);
    return BNN_OK;
}

/* 1.5 * 2^23: a float in [-127, 127] plus this constant is rounded to an integer (half to
 * even, the default rounding mode), which the low bits of the sum then hold. */
#define ROUNDING_SHIFT 12582912.0f
#define ROUNDING_BITS 0x4B400000

/* q[i] = rint(min(max(x[i] * inverse, -zero_point), 127 - zero_point)) + zero_point for
 * i < count (NaN gives 0): int8_reference.quantize, bit for bit. */
static void quantize(const float *x, int64_t count, float inverse, int32_t zero_point,
                     uint8_t *q)
{
    const float low = (float)-zero_point, high = (float)(127 - zero_point);
    for (int64_t i = 0; i < count; i++) {
        float v = x[i] * inverse;
        v = v > low ? v : low; /* NaN fails the comparison */
        v = v < high ? v : high;
        const float shifted = v + ROUNDING_SHIFT;
        int32_t bits;
        memcpy(&bits, &shifted, sizeof bits);
        q[i] = (uint8_t)(bits - ROUNDING_BITS + zero_point);
    }
}

typedef struct {
    const float *x;
    uint8_t *q; /* [n][hp][wp][c], the padding filled with the zero point */
    const int8_t *panels;
    const int32_t *offset; /* zero_point * sum(w) per output channel */
    const float *multiplier, *bias;
    float *y;
    float inverse;
    int64_t zero_point, h, w, c, hp, wp, ph, pw, oh, ow, kh, kw, sh, sw, dh, dw, k, o;
    bnn_qdot_fn dot;
    uint8_t *rows; /* BNN_QDOT_ROWS x k bytes per team member */
    int32_t *acc;  /* BNN_QDOT_ROWS x o sums per team member */
} qconv_job;

/* Rows [start, stop) of the padded buffer, over every image. */
static void qconv_quantize_task(void *ctx, int64_t start, int64_t stop, int tid)
{
    (void)tid;
    const qconv_job *j = ctx;
    const int64_t row_bytes = j->wp * j->c, left = j->pw * j->c, inner = j->w * j->c;
    for (int64_t r = start; r < stop; r++) {
        uint8_t *q = j->q + r * row_bytes;
        const int64_t b = r / j->hp, iy = r % j->hp - j->ph;
        if (iy < 0 || iy >= j->h) {
            memset(q, (int)j->zero_point, (size_t)row_bytes);
            continue;
        }
        memset(q, (int)j->zero_point, (size_t)left);
        quantize(j->x + (b * j->h + iy) * inner, inner, j->inverse, (int32_t)j->zero_point,
                 q + left);
        memset(q + left + inner, (int)j->zero_point, (size_t)(row_bytes - left - inner));
    }
}

/* dst [0, n) = src [0, n) for the short runs of a window: 8-byte moves (the last one
 * overlapping the one before) rather than a call. */
static inline void copy_run(uint8_t *dst, const uint8_t *src, int64_t n)
{
    if (n < 8) {
        for (int64_t i = 0; i < n; i++)
            dst[i] = src[i];
        return;
    }
    for (int64_t i = 0; i + 8 < n; i += 8)
        memcpy(dst + i, src + i, 8);
    memcpy(dst + n - 8, src + n - 8, 8);
}

/* Output pixels [start, stop), over every image, BNN_QDOT_ROWS at a time. */
static void qconv_task(void *ctx, int64_t start, int64_t stop, int tid)
{
    const qconv_job *j = ctx;
    uint8_t *rows = j->rows + tid * BNN_QDOT_ROWS * j->k;
    int32_t *acc = j->acc + tid * BNN_QDOT_ROWS * j->o;
    /* Bytes of one kernel row's taps that lie side by side in the buffer, and how many
     * such runs a window has. */
    const int64_t run = j->dw == 1 ? j->kw * j->c : j->c, runs = j->dw == 1 ? j->kh : j->kh * j->kw;
    /* The image, output row and column of pixel `start`, advanced pixel by pixel. */
    int64_t b = start / (j->oh * j->ow), oy = start / j->ow % j->oh, ox = start % j->ow;
    for (int64_t first = start; first < stop; first += BNN_QDOT_ROWS) {
        const int64_t count = stop - first < BNN_QDOT_ROWS ? stop - first : BNN_QDOT_ROWS;
        for (int64_t i = 0; i < count; i++) {
            const uint8_t *corner = j->q + ((b * j->hp + oy * j->sh) * j->wp + ox * j->sw) * j->c;
            uint8_t *row = rows + i * j->k;
            for (int64_t t = 0; t < runs; t++) {
                const int64_t ky = j->dw == 1 ? t : t / j->kw, kx = j->dw == 1 ? 0 : t % j->kw;
                copy_run(row + t * run, corner + (ky * j->dh * j->wp + kx * j->dw) * j->c, run);
            }
            if (++ox == j->ow) {
                ox = 0;
                if (++oy == j->oh) {
                    oy = 0;
                    b++;
                }
            }
        }
        j->dot(rows, j->k, count, j->k, j->panels, j->o, acc);
        for (int64_t i = 0; i < count; i++)
            requantize(acc + i * j->o, j->offset, j->multiplier, j->bias, j->o,
                       j->y + (first + i) * j->o);
    }
}

/* BNN_OK when one axis of the convolution is valid: the dilated kernel inside the padded
 * input and `out` the output length; *padded receives size + 2 pad. */
static int qconv_axis(int64_t size, int64_t out, int64_t kernel, int64_t stride, int64_t pad,
                      int64_t dilation, int64_t *padded)
{
    int64_t reach; /* (kernel - 1) * dilation + 1: the inputs a window spans */
    if (!bnn_sum(padded, size, pad) || !bnn_sum(padded, *padded, pad) ||
        __builtin_mul_overflow(kernel - 1, dilation, &reach) || !bnn_sum(&reach, reach, 1))
        return BNN_ESIZE;
    if (*padded < reach || out != (*padded - reach) / stride + 1)
        return BNN_EINVAL;
    return BNN_OK;
}

BNN_API int bnn_qconv2d(const bnn_window *g, const float *x, float inverse, int64_t zero_point,
                        const int8_t *panels, int64_t o, const int32_t *wsum,
                        const float *multiplier, const float *bias, float *y, int64_t isa,
                        int64_t threads)
{
    if (!g || !x || !panels || !wsum || !multiplier || !y || o < 1 || zero_point < 0 ||
        zero_point > 127)
        return BNN_EINVAL;
    const int64_t n = g->n, h = g->h, w = g->w, c = g->c, oh = g->oh, ow = g->ow;
    const int64_t kh = g->kh, kw = g->kw, sh = g->stride_h, sw = g->stride_w;
    const int64_t ph = g->pad_h, pw = g->pad_w, dh = g->dilation_h, dw = g->dilation_w;
    if (n <= 0 || h <= 0 || w <= 0 || c <= 0 || oh <= 0 || ow <= 0 || kh <= 0 || kw <= 0 ||
        sh <= 0 || sw <= 0 || ph < 0 || pw < 0 || dh <= 0 || dw <= 0)
        return BNN_EINVAL;
    int64_t hp, wp, k, x_count, q_count, y_count, panel_count, width;
    int status = qconv_axis(h, oh, kh, sh, ph, dh, &hp);
    if (status == BNN_OK)
        status = qconv_axis(w, ow, kw, sw, pw, dw, &wp);
    if (status == BNN_OK)
        status = bnn_isa_status(isa);
    if (status != BNN_OK)
        return status;
    const bnn_qdot_fn dot = qdot_kernel(isa, &width);
    if (!BNN_ARRAY(&x_count, sizeof *x, n, h, w, c) || !BNN_ARRAY(&q_count, 1, n, hp, wp, c) ||
        !BNN_ARRAY(&y_count, sizeof *y, n, oh, ow, o) || !BNN_COUNT(&k, kh, kw, c))
        return BNN_ESIZE;
    if (k > BNN_QGEMM_MAX_K)
        return BNN_EINVAL;
    if (!BNN_ARRAY(&panel_count, sizeof *panels, bnn_ceil_div(o, width), (k + 3) / 4, width, 4))
        return BNN_ESIZE;
    const size_t y_bytes = (size_t)y_count * sizeof *y, o_bytes = (size_t)o * sizeof *y;
    if (bnn_overlap(y, y_bytes, x, (size_t)x_count * sizeof *x) ||
        bnn_overlap(y, y_bytes, panels, (size_t)panel_count) ||
        bnn_overlap(y, y_bytes, wsum, o_bytes) || bnn_overlap(y, y_bytes, multiplier, o_bytes) ||
        (bias && bnn_overlap(y, y_bytes, bias, o_bytes)))
        return BNN_EINVAL;
    const int64_t pixels = n * oh * ow;
    const int team = bnn_team_size(threads, pixels, BNN_WORK(pixels, k, o) / 32);
    if (!BNN_ARRAY(NULL, sizeof(int32_t), team, BNN_QDOT_ROWS, o))
        return BNN_ESIZE;
    uint8_t *q = malloc((size_t)q_count);
    uint8_t *rows = malloc((size_t)team * BNN_QDOT_ROWS * (size_t)k);
    int32_t *acc = malloc((size_t)team * BNN_QDOT_ROWS * (size_t)o * sizeof *acc);
    int32_t *offset = offsets(wsum, zero_point, o);
    if (!q || !rows || !acc || !offset) {
        free(q);
        free(rows);
        free(acc);
        free(offset);
        return BNN_ENOMEM;
    }
    qconv_job job = {x,  q,  panels, offset, multiplier, bias, y,  inverse, zero_point,
                     h,  w,  c,      hp,   wp,         ph,   pw, oh,      ow,
                     kh, kw, sh,     sw,   dh,         dw,   k,  o,       dot,
                     rows, acc};
    bnn_parallel(team, n * hp, qconv_quantize_task, &job);
    bnn_parallel(team, pixels, qconv_task, &job);
    free(q);
    free(rows);
    free(acc);
    free(offset);
    return BNN_OK;
}
