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

/* ---- float convolution (AVX2 + FMA) ------------------------------------------------ */

/* An ungrouped float convolution of NHWC input with zero padding, as one matrix product
 * per tile of output pixels whose rows (im2col) are gathered on the fly: the weights are
 * column panels [ceil(O / 16)][K][16] (K = KH * KW * C in the order kernel row, kernel
 * column, channel; columns beyond O are zero), laid out once by the caller. A register
 * tile is FC_ROWS pixels x 16 output channels: per step of K, two weight loads, FC_ROWS
 * broadcasts and 2 * FC_ROWS fused multiply-adds. Only CPUs with AVX2 and FMA run it;
 * elsewhere the caller uses NumPy. Sums are in another order than NumPy's or PyTorch's
 * (and fused), so results differ from theirs by float rounding only. */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#define FC_TARGET __attribute__((target("avx2,fma")))
#define FC_ROWS 6
#define FC_COLS 16

typedef struct {
    const float *x, *panels, *bias;
    float *y;
    int64_t n, h, w, c, o, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw, k, tiles;
    float *rows; /* [team][FC_ROWS][K]: each member's gathered rows */
} fconv_job;

/* dst[0..n) = src[0..n) for the short runs of a gather (a kernel row: tens of floats),
 * four at a time, without a library call per run. */
static inline void copy_run(float *dst, const float *src, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        memcpy(dst + i, src + i, 4 * sizeof *dst);
    for (; i < n; i++)
        dst[i] = src[i];
}

/* The im2col rows of output pixels p0 .. p0 + rows - 1: a[r * K + k]; taps in the
 * padding and rows past the last pixel are zero. A kernel row's taps are one contiguous
 * run of the input (without dilation), copied at once. */
static void gather_rows(const fconv_job *j, int64_t p0, int rows, float *a)
{
    const int64_t c = j->c, span = j->kw * c;
    for (int r = 0; r < FC_ROWS; r++) {
        float *row = a + r * j->k;
        if (r >= rows) {
            memset(row, 0, (size_t)j->k * sizeof *row);
            continue;
        }
        const int64_t p = p0 + r, ni = p / (j->oh * j->ow);
        const int64_t oy = p / j->ow % j->oh, ix0 = p % j->ow * j->sw - j->pw;
        for (int64_t ky = 0; ky < j->kh; ky++) {
            const int64_t iy = oy * j->sh - j->ph + ky * j->dh;
            float *dst = row + ky * span;
            if (iy < 0 || iy >= j->h) {
                memset(dst, 0, (size_t)span * sizeof *dst);
                continue;
            }
            const float *line = j->x + (ni * j->h + iy) * j->w * c;
            for (int64_t kx = 0; kx < j->kw; kx++) {
                const int64_t ix = ix0 + kx * j->dw;
                if (ix < 0 || ix >= j->w) {
                    memset(dst + kx * c, 0, (size_t)c * sizeof *dst);
                    continue;
                }
                int64_t run = 1; /* taps kx .. kx + run - 1 adjacent in memory and inside */
                if (j->dw == 1)
                    while (kx + run < j->kw && ix + run < j->w)
                        run++;
                copy_run(dst + kx * c, line + ix * c, run * c);
                kx += run - 1;
            }
        }
    }
}

FC_TARGET static void fconv_tile(const fconv_job *j, const float *a, int64_t p0, int rows)
{
    const int64_t o = j->o, k = j->k;
    for (int64_t col = 0; col < o; col += FC_COLS) {
        const float *b = j->panels + (col / FC_COLS) * k * FC_COLS;
        __m256 acc[FC_ROWS][2];
        for (int r = 0; r < FC_ROWS; r++)
            acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        for (int64_t i = 0; i < k; i++) {
            const __m256 b0 = _mm256_loadu_ps(b + i * FC_COLS);
            const __m256 b1 = _mm256_loadu_ps(b + i * FC_COLS + 8);
            for (int r = 0; r < FC_ROWS; r++) {
                const __m256 av = _mm256_broadcast_ss(a + r * k + i);
                acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
            }
        }
        const int64_t cols = o - col < FC_COLS ? o - col : FC_COLS;
        float bias[FC_COLS] = {0};
        if (j->bias)
            memcpy(bias, j->bias + col, (size_t)cols * sizeof *bias);
        const __m256 bias0 = _mm256_loadu_ps(bias), bias1 = _mm256_loadu_ps(bias + 8);
        /* Every accumulator is stored at a constant index, so all stay in registers. */
        float tile[FC_ROWS][FC_COLS];
        for (int r = 0; r < FC_ROWS; r++) {
            _mm256_storeu_ps(tile[r], _mm256_add_ps(acc[r][0], bias0));
            _mm256_storeu_ps(tile[r] + 8, _mm256_add_ps(acc[r][1], bias1));
        }
        for (int r = 0; r < rows; r++)
            memcpy(j->y + (p0 + r) * o + col, tile[r], (size_t)cols * sizeof(float));
    }
}

static void fconv_task(void *ctx, int tid, int nt)
{
    const fconv_job *j = ctx;
    int64_t t0, t1;
    bnn_share(j->tiles, tid, nt, &t0, &t1);
    float *a = j->rows + tid * j->k * FC_ROWS;
    const int64_t pixels = j->n * j->oh * j->ow;
    for (int64_t t = t0; t < t1; t++) {
        const int64_t p0 = t * FC_ROWS;
        const int rows = (int)(pixels - p0 < FC_ROWS ? pixels - p0 : FC_ROWS);
        gather_rows(j, p0, rows, a);
        fconv_tile(j, a, p0, rows);
    }
}

#endif

/* y [n, oh, ow, o] = conv(x [n, h, w, c]) + bias with the column panels described above;
 * BNN_EISA on a CPU without AVX2 and FMA. */
BNN_API int bnn_float_conv2d(const float *x, int64_t n, int64_t h, int64_t w, int64_t c,
                             const float *panels, const float *bias, int64_t o, float *y,
                             int64_t oh, int64_t ow, int64_t kh, int64_t kw, int64_t sh,
                             int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                             int64_t threads)
{
    if (!x || !panels || !y || n <= 0 || h <= 0 || w <= 0 || c <= 0 || o <= 0 || oh <= 0 ||
        ow <= 0 || kh <= 0 || kw <= 0 || sh <= 0 || sw <= 0 || ph < 0 || pw < 0 || dh <= 0 ||
        dw <= 0)
        return BNN_EINVAL;
#if defined(__x86_64__) || defined(__i386__)
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
        return BNN_EISA;
    const int64_t pixels = n * oh * ow;
    fconv_job j = {x, panels, bias, y, n, h, w, c, o, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw,
                   kh * kw * c, (pixels + FC_ROWS - 1) / FC_ROWS, NULL};
    /* A fused multiply-add of 8 floats costs about a word operation. */
    const int nt = bnn_team_size(threads, j.tiles, pixels * j.k * o / 8);
    j.rows = bnn_alloc64((size_t)(nt * j.k * FC_ROWS) * sizeof *j.rows);
    if (!j.rows)
        return BNN_ENOMEM;
    bnn_parallel(nt, fconv_task, &j);
    free(j.rows);
    return BNN_OK;
#else
    (void)bias;
    (void)threads;
    return BNN_EISA;
#endif
}
