/* Float operations of a packed network that NumPy runs in several passes with
 * temporaries: max and average pooling, and the per-channel PReLU / RPReLU, each in one
 * pass over channels-last (NHWC) data, shared out to the thread team by output rows.
 *
 * The results are those of PyTorch: a max-pooling window never takes its padding, NaN
 * wins every comparison; an average divides the sum of the window's inputs (padding adds
 * zeros) by `divisor`, or else by the window's size clipped to the padded input
 * (count_include_pad) or to the input; PReLU is x > 0 ? x : slope * x. */
#include <stdlib.h>
#include <string.h>

#include "_kernels.h"

typedef struct {
    const float *x;
    float *y;
    int64_t n, h, w, c, oh, ow, kh, kw, sh, sw, ph, pw, average, include_pad, divisor;
} pool_job;

/* Four floats as one vector (GCC and Clang vector extensions: SSE on x86-64, NEON on
 * AArch64, plain code elsewhere), and a pooling window's register block. */
typedef float f32x4 __attribute__((vector_size(16)));
typedef int32_t i32x4 __attribute__((vector_size(16)));
#define POOL_VECTORS 4
#define POOL_LANES (4 * POOL_VECTORS)

static inline f32x4 load4(const float *p)
{
    f32x4 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* A sum, or a maximum that NaN wins (as in PyTorch). */
static inline __attribute__((always_inline)) float combine(float acc, float in, int average)
{
    return average ? acc + in : in > acc || in != in ? in : acc;
}

static inline __attribute__((always_inline)) f32x4 combine4(f32x4 acc, f32x4 in, int average)
{
    if (average)
        return acc + in;
    const i32x4 take = (in > acc) | (in != in);
    return (f32x4)((take & (i32x4)in) | (~take & (i32x4)acc));
}

/* Output rows [r0, r1) of a pooling; `average` is a constant at each call site, so the
 * compiler builds one loop nest for max and one for average, with the channel loops
 * vectorised and inlined. */
static inline __attribute__((always_inline)) void pool_rows(const pool_job *j, int64_t r0,
                                                            int64_t r1, const int average)
{
    const int64_t c = j->c, h = j->h, w = j->w, oh = j->oh, ow = j->ow;
    const int64_t kh = j->kh, kw = j->kw, sh = j->sh, sw = j->sw, ph = j->ph, pw = j->pw;
    const float *const x = j->x;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t ni = r / oh, top = r % oh * sh - ph;
        const int64_t y0 = top > 0 ? top : 0, y1 = top + kh < h ? top + kh : h;
        for (int64_t ox = 0; ox < ow; ox++) {
            const int64_t left = ox * sw - pw;
            const int64_t x0 = left > 0 ? left : 0, x1 = left + kw < w ? left + kw : w;
            float *out = j->y + (r * ow + ox) * c;
            const float *corner = x + ((ni * h + y0) * w + x0) * c;
            int64_t k0 = 0;
            /* Blocks of POOL_LANES channels stay in registers across the window's taps. */
            for (; k0 + POOL_LANES <= c; k0 += POOL_LANES) {
                f32x4 acc[POOL_VECTORS];
                for (int v = 0; v < POOL_VECTORS; v++)
                    acc[v] = load4(corner + k0 + 4 * v);
                for (int64_t yi = y0; yi < y1; yi++)
                    for (int64_t xi = yi == y0 ? x0 + 1 : x0; xi < x1; xi++) {
                        const float *in = x + ((ni * h + yi) * w + xi) * c + k0;
                        for (int v = 0; v < POOL_VECTORS; v++)
                            acc[v] = combine4(acc[v], load4(in + 4 * v), average);
                    }
                memcpy(out + k0, acc, sizeof acc);
            }
            for (; k0 < c; k0++) {
                float acc = corner[k0];
                for (int64_t yi = y0; yi < y1; yi++)
                    for (int64_t xi = yi == y0 ? x0 + 1 : x0; xi < x1; xi++)
                        acc = combine(acc, x[((ni * h + yi) * w + xi) * c + k0], average);
                out[k0] = acc;
            }
            if (!average)
                continue;
            int64_t count = j->divisor;
            if (count <= 0 && j->include_pad) {
                const int64_t bottom = top + kh < h + ph ? top + kh : h + ph;
                const int64_t right = left + kw < w + pw ? left + kw : w + pw;
                count = (bottom - top) * (right - left);
            } else if (count <= 0) {
                count = (y1 - y0) * (x1 - x0);
            }
            const float d = (float)count;
            for (int64_t k = 0; k < c; k++)
                out[k] /= d;
        }
    }
}

static void pool_task(void *ctx, int tid, int nt)
{
    const pool_job *j = ctx;
    int64_t r0, r1;
    bnn_share(j->n * j->oh, tid, nt, &r0, &r1);
    if (j->average)
        pool_rows(j, r0, r1, 1);
    else
        pool_rows(j, r0, r1, 0);
}

/* Max (average == 0) or average pooling of x [n, h, w, c] into y [n, oh, ow, c]; the
 * caller computes the output size (ceil mode included) so that every window holds at
 * least one input. divisor > 0 replaces the window size of an average. */
BNN_API int bnn_pool2d(const float *x, int64_t n, int64_t h, int64_t w, int64_t c, float *y,
                       int64_t oh, int64_t ow, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                       int64_t ph, int64_t pw, int64_t average, int64_t include_pad,
                       int64_t divisor, int64_t threads)
{
    if (!x || !y || n <= 0 || h <= 0 || w <= 0 || c <= 0 || oh <= 0 || ow <= 0 || kh <= 0 ||
        kw <= 0 || sh <= 0 || sw <= 0 || ph < 0 || pw < 0 || (oh - 1) * sh - ph >= h ||
        (ow - 1) * sw - pw >= w || ph >= kh || pw >= kw)
        return BNN_EINVAL;
    pool_job j = {x, y, n, h, w, c, oh, ow, kh, kw, sh, sw, ph, pw, average, include_pad, divisor};
    /* A compared or added value costs about a quarter of a word operation. */
    bnn_parallel(bnn_team_size(threads, n * oh, n * oh * ow * kh * kw * c / 4), pool_task, &j);
    return BNN_OK;
}

typedef struct {
    const float *x, *shift_in, *slope, *shift_out;
    float *y;
    int64_t rows, c;
} prelu_job;

static void prelu_task(void *ctx, int tid, int nt)
{
    const prelu_job *j = ctx;
    const int64_t c = j->c;
    const float *const shift_in = j->shift_in, *const slope = j->slope;
    const float *const shift_out = j->shift_out;
    int64_t r0, r1;
    bnn_share(j->rows, tid, nt, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        const float *in = j->x + r * c;
        float *out = j->y + r * c;
        if (shift_in && shift_out) {
            for (int64_t k = 0; k < c; k++) {
                const float v = in[k] + shift_in[k], scaled = slope[k] * v;
                out[k] = (v > 0.0f ? v : scaled) + shift_out[k];
            }
        } else {
            for (int64_t k = 0; k < c; k++) {
                const float v = in[k], scaled = slope[k] * v; /* both computed: a blend */
                out[k] = v > 0.0f ? v : scaled;
            }
        }
    }
}

/* y = prelu(x + shift_in) + shift_out per channel over rows x c values (RPReLU; PReLU
 * without the shifts, which are then both NULL). y may be x. */
BNN_API int bnn_prelu(const float *x, int64_t rows, int64_t c, const float *shift_in,
                      const float *slope, const float *shift_out, float *y, int64_t threads)
{
    if (!x || !y || !slope || rows < 0 || c <= 0 || !shift_in != !shift_out)
        return BNN_EINVAL;
    prelu_job j = {x, shift_in, slope, shift_out, y, rows, c};
    /* Memory-bound: a value costs about a sixteenth of a word operation. */
    bnn_parallel(bnn_team_size(threads, rows, rows * c / 16), prelu_task, &j);
    return BNN_OK;
}
