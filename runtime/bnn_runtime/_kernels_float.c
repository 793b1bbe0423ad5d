/* Float operations of a packed network that NumPy runs in several passes with
 * temporaries: max and average pooling, and the per-channel PReLU / RPReLU, each in one
 * pass over channels-last (NHWC) data, shared out to the thread team by output rows;
 * the NCHW <-> NHWC transposition at the network's edges, by cache blocks; and
 * (AVX2 + FMA) the float convolution, without NumPy's materialised im2col matrix.
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

/* A sum, or a maximum that NaN wins (as in PyTorch). */
static inline __attribute__((always_inline)) float combine(float acc, float in, int average)
{
    return average ? acc + in : in > acc || in != in ? in : acc;
}

/* The pooling loops, once on vectors of 4 floats (SSE on x86-64, NEON on AArch64, plain
 * code elsewhere) and, on x86-64, once on vectors of 8 for AVX2 CPUs. Each lane does the
 * same operations in the same order in both, so their results are identical. */
#define POOL_FLOATS 4
#define POOL_ATTR
#define POOL_TASK pool_task
#include "_kernels_pool.h"

#if defined(__x86_64__) || defined(__i386__)
#define POOL_FLOATS 8
#define POOL_ATTR __attribute__((target("avx2")))
#define POOL_TASK pool_task_avx2
#include "_kernels_pool.h"
#endif

/* PyTorch's output length of a pooling along one axis of `size` inputs (padded: size +
 * 2 pad, at least the kernel): with ceil_mode the last window may hang over the end, but
 * must start inside the input or its left padding. */
static int64_t pool_length(int64_t size, int64_t padded, int64_t kernel, int64_t stride,
                           int64_t pad, int ceil_mode)
{
    const int64_t span = padded - kernel;
    if (!ceil_mode)
        return span / stride + 1;
    const int64_t out = bnn_ceil_div(span, stride) + 1;
    int64_t start;
    return __builtin_mul_overflow(out - 1, stride, &start) || start >= size + pad ? out - 1
                                                                                   : out;
}

/* BNN_OK when one axis of a pooling is valid: padding smaller than the kernel, the kernel
 * inside the padded input, `out` the floor or ceil mode length, and every window bound
 * (start + kernel, from -pad to size + pad + kernel) representable. */
static int pool_axis(int64_t size, int64_t out, int64_t kernel, int64_t stride, int64_t pad)
{
    int64_t padded, end;
    if (!bnn_sum(&padded, size, pad) || !bnn_sum(&padded, padded, pad) ||
        !bnn_sum(&end, padded, kernel))
        return BNN_ESIZE;
    if (pad >= kernel || padded < kernel ||
        (out != pool_length(size, padded, kernel, stride, pad, 0) &&
         out != pool_length(size, padded, kernel, stride, pad, 1)))
        return BNN_EINVAL;
    return BNN_OK;
}

/* Max (average == 0) or average pooling of x [n, h, w, c] into y [n, oh, ow, c], where
 * oh and ow are PyTorch's output sizes (floor or ceil mode): every window then holds at
 * least one input. divisor > 0 replaces the window size of an average (0: none).
 * include_pad (0 or 1): count_include_pad. isa: the kernel path (BNN_ISA_*); AVX2 and
 * AVX-512 use the 8-float loops, portable the 4-float ones. */
BNN_API int bnn_pool2d(const bnn_pool_spec *spec, const float *x, float *y, int64_t isa,
                       int64_t threads)
{
    if (!spec || spec->window.dilation_h != 1 || spec->window.dilation_w != 1)
        return BNN_EINVAL;
    const bnn_window *g = &spec->window;
    const int64_t n = g->n, h = g->h, w = g->w, c = g->c, oh = g->oh, ow = g->ow;
    const int64_t kh = g->kh, kw = g->kw, sh = g->stride_h, sw = g->stride_w;
    const int64_t ph = g->pad_h, pw = g->pad_w;
    const int64_t average = spec->average, include_pad = spec->include_pad;
    const int64_t divisor = spec->divisor;
    if (!x || !y || n <= 0 || h <= 0 || w <= 0 || c <= 0 || oh <= 0 || ow <= 0 || kh <= 0 ||
        kw <= 0 || sh <= 0 || sw <= 0 || ph < 0 || pw < 0 || (average != 0 && average != 1) ||
        (include_pad != 0 && include_pad != 1) || divisor < 0)
        return BNN_EINVAL;
    int status = bnn_isa_status(isa);
    if (status == BNN_OK)
        status = pool_axis(h, oh, kh, sh, ph);
    if (status == BNN_OK)
        status = pool_axis(w, ow, kw, sw, pw);
    if (status != BNN_OK)
        return status;
    int64_t x_count, y_count;
    if (!BNN_ARRAY(&x_count, sizeof *x, n, h, w, c) ||
        !BNN_ARRAY(&y_count, sizeof *y, n, oh, ow, c) || !BNN_COUNT(NULL, kh, kw))
        return BNN_ESIZE;
    if (bnn_overlap(x, (size_t)x_count * sizeof *x, y, (size_t)y_count * sizeof *y))
        return BNN_EINVAL;
    pool_job j = {x, y, n, h, w, c, oh, ow, kh, kw, sh, sw, ph, pw, average, include_pad, divisor};
    bnn_task_fn task = pool_task;
#if defined(__x86_64__) || defined(__i386__)
    if (isa >= BNN_ISA_AVX2)
        task = pool_task_avx2;
#endif
    /* A compared or added value costs about a quarter of a word operation. */
    bnn_parallel(bnn_team_size(threads, n * oh, BNN_WORK(n, oh, ow, kh, kw, c) / 4), n * oh, task,
                 &j);
    return BNN_OK;
}

typedef struct {
    const float *x, *shift_in, *slope, *shift_out;
    float *y;
    int64_t rows, c;
} prelu_job;

static void prelu_task(void *ctx, int64_t r0, int64_t r1, int tid)
{
    (void)tid;
    const prelu_job *j = ctx;
    const int64_t c = j->c;
    const float *const shift_in = j->shift_in, *const slope = j->slope;
    const float *const shift_out = j->shift_out;
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
 * without the shifts, which are then both NULL). y is x or does not overlap it. */
BNN_API int bnn_prelu(const float *x, int64_t rows, int64_t c, const float *shift_in,
                      const float *slope, const float *shift_out, float *y, int64_t threads)
{
    if (!x || !y || !slope || rows < 0 || c <= 0 || !shift_in != !shift_out)
        return BNN_EINVAL;
    int64_t count;
    if (!BNN_ARRAY(&count, sizeof *x, rows, c))
        return BNN_ESIZE;
    if (x != y && bnn_overlap(x, (size_t)count * sizeof *x, y, (size_t)count * sizeof *y))
        return BNN_EINVAL;
    prelu_job j = {x, shift_in, slope, shift_out, y, rows, c};
    /* Memory-bound: a value costs about a sixteenth of a word operation. */
    bnn_parallel(bnn_team_size(threads, rows, rows * c / 16), rows, prelu_task, &j);
    return BNN_OK;
}

/* ---- layout changes -------------------------------------------------------------- */

/* Side of the square blocks a transposition moves at a time (2 x 4 KB, inside L1). */
#define TRANSPOSE_BLOCK 32

typedef struct {
    const float *x;
    float *y;
    int64_t n, rows, cols, col_blocks;
} transpose_job;

/* Columns [c0, c1) of a matrix with few rows (R, a constant once inlined, such as the 3
 * colour planes of an image): each output row is R consecutive values. */
static inline __attribute__((always_inline)) void transpose_few_rows(const float *x, float *y,
                                                                      int64_t cols, int64_t c0,
                                                                      int64_t c1, int R)
{
    for (int64_t c = c0; c < c1; c++)
        for (int r = 0; r < R; r++)
            y[c * R + r] = x[r * cols + c];
}

static void transpose_task(void *ctx, int64_t b0, int64_t b1, int tid)
{
    (void)tid;
    const transpose_job *j = ctx;
    const int64_t rows = j->rows, cols = j->cols;
    for (int64_t b = b0; b < b1; b++) {
        const int64_t ni = b / j->col_blocks, c0 = (b % j->col_blocks) * TRANSPOSE_BLOCK;
        const int64_t c1 = c0 + TRANSPOSE_BLOCK < cols ? c0 + TRANSPOSE_BLOCK : cols;
        const float *x = j->x + ni * rows * cols;
        float *y = j->y + ni * rows * cols;
        if (rows == 3) { /* an RGB image */
            transpose_few_rows(x, y, cols, c0, c1, 3);
            continue;
        }
        if (rows == 1) {
            transpose_few_rows(x, y, cols, c0, c1, 1);
            continue;
        }
        for (int64_t r0 = 0; r0 < rows; r0 += TRANSPOSE_BLOCK) {
            const int64_t r1 = r0 + TRANSPOSE_BLOCK < rows ? r0 + TRANSPOSE_BLOCK : rows;
            for (int64_t c = c0; c < c1; c++)
                for (int64_t r = r0; r < r1; r++)
                    y[c * rows + r] = x[r * cols + c];
        }
    }
}

/* y[i][c][r] = x[i][r][c] for n matrices of rows x cols: NCHW to NHWC with rows = C and
 * cols = H * W, and back with the two swapped. NumPy's strided copy of a transposed
 * view walks one side with a large stride; blocks keep both sides in cache. x and y do not
 * overlap. */
BNN_API int bnn_transpose(const float *x, int64_t n, int64_t rows, int64_t cols, float *y,
                          int64_t threads)
{
    if (!x || !y || n < 0 || rows < 0 || cols < 0)
        return BNN_EINVAL;
    int64_t count;
    if (!BNN_ARRAY(&count, sizeof *x, n, rows, cols))
        return BNN_ESIZE;
    if (count == 0)
        return BNN_OK;
    if (x == y || bnn_overlap(x, (size_t)count * sizeof *x, y, (size_t)count * sizeof *y))
        return BNN_EINVAL;
    transpose_job j = {x, y, n, rows, cols, bnn_ceil_div(cols, TRANSPOSE_BLOCK)};
    /* Memory-bound: a value costs about a sixteenth of a word operation. */
    const int64_t blocks = n * j.col_blocks;
    bnn_parallel(bnn_team_size(threads, blocks, n * rows * cols / 16), blocks, transpose_task, &j);
    return BNN_OK;
}

/* ---- float convolution (AVX2 + FMA; AVX-512) ------------------------------------- */

/* An ungrouped float convolution of NHWC input with zero padding, as a matrix product
 * whose rows (im2col) are read straight from the input: the input is first copied into
 * a zero-padded buffer (when there is padding), so a kernel row of an output pixel is
 * one contiguous run of KW * C floats (C floats per tap with dilation). The weights are
 * column panels [ceil(O / 16)][K][16] (K = KH * KW * C in the order kernel row, kernel
 * column, channel; columns beyond O are zero), laid out once by the caller.
 *
 * A register tile is a few pixels x a group of panels: on AVX2, 6 pixels x 1 panel (two
 * 8-float vectors each: per step of K, two weight loads, 6 broadcasts and 12 fused
 * multiply-adds); on AVX-512, FZ_ROWS pixels x up to 4 panels (64 output channels, one
 * 16-float vector each: per step, 4 weight loads and FZ_ROWS broadcasts for 4 x FZ_ROWS
 * fused multiply-adds). Every output is the same sum on both: zero, then one fused
 * multiply-add per step of K in order, then the bias, so the two paths agree bit for bit.
 * Only CPUs with AVX2 and FMA run it; elsewhere the caller uses NumPy. Sums are in
 * another order than NumPy's or PyTorch's (and fused), so results differ from theirs by
 * float rounding only. */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#include "_kernels_float.h"

#define FC_TARGET __attribute__((target("avx2,fma")))
/* Each pixel's first input value for the tile of pixels p0 .. p0 + rows - 1; rows up to
 * FC_MAX_ROWS past the last pixel repeat the first one (they are computed, not stored). */
static void fconv_rows(const fconv_job *j, int64_t p0, int rows, const float **a)
{
    for (int r = 0; r < FC_MAX_ROWS; r++) {
        const int64_t p = p0 + (r < rows ? r : 0), ni = p / (j->oh * j->ow);
        const int64_t oy = p / j->ow % j->oh, ox = p % j->ow;
        a[r] = j->x + ((ni * j->hp + oy * j->sh) * j->wp + ox * j->sw) * j->c;
    }
}

/* The AVX2 tile: `panels` panels one after the other. */
FC_TARGET static void fconv_tile(const fconv_job *j, const float *const *rows_in, int64_t p0,
                                 int rows, int64_t col0, int64_t panels)
{
    const int64_t col1 = col0 + panels * FC_COLS;
    const int64_t o = j->o, k = j->k, row_step = j->dh * j->wp * j->c;
    const float *a[FC_ROWS];
    for (int r = 0; r < FC_ROWS; r++)
        a[r] = rows_in[r];
    for (int64_t col = col0; col < col1; col += FC_COLS) {
        const float *b = j->panels + (col / FC_COLS) * k * FC_COLS;
        __m256 acc[FC_ROWS][2];
        for (int r = 0; r < FC_ROWS; r++)
            acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        for (int64_t ky = 0; ky < j->kh; ky++)
            for (int64_t q = 0; q < j->runs; q++) {
                const int64_t off = ky * row_step + q * j->run_step;
                for (int64_t i = 0; i < j->run; i++, b += FC_COLS) {
                    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
                    for (int r = 0; r < FC_ROWS; r++) {
                        const __m256 av = _mm256_broadcast_ss(a[r] + off + i);
                        acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
                        acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
                    }
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


/* The work items: a run of tiles x one group of column panels, run-major. The run's tiles
 * go through the group's panels (K x 16 floats each, 9.4 KB for a 7x7x3 kernel) together,
 * so that they stay in L1 while the tiles use them, instead of being read again from L2
 * for each tile. This computes items [i0, i1). */
static void fconv_task(void *ctx, int64_t i0, int64_t i1, int tid)
{
    (void)tid;
    const fconv_job *j = ctx;
    const int64_t pixels = j->n * j->oh * j->ow, size = j->rows;
    const float *a[FC_TILE_RUN][FC_MAX_ROWS];
    int64_t rows_of = -1; /* the run whose rows a holds */
    for (int64_t it = i0; it < i1; it++) {
        const int64_t run = it / j->groups, first = it % j->groups * j->group;
        const int64_t panels = j->npanels - first < j->group ? j->npanels - first : j->group;
        const int64_t g0 = run * FC_TILE_RUN;
        const int64_t g1 = g0 + FC_TILE_RUN < j->tiles ? g0 + FC_TILE_RUN : j->tiles;
        if (run != rows_of) {
            for (int64_t t = g0; t < g1; t++) {
                const int64_t p0 = t * size;
                fconv_rows(j, p0, (int)(pixels - p0 < size ? pixels - p0 : size), a[t - g0]);
            }
            rows_of = run;
        }
        for (int64_t t = g0; t < g1; t++) {
            const int64_t p0 = t * size;
            const int rows = (int)(pixels - p0 < size ? pixels - p0 : size);
            j->tile(j, a[t - g0], p0, rows, first * FC_COLS, panels);
        }
    }
}

/* x [n][h][w][c] into a new [n][h + 2ph][w + 2pw][c] with zeros around it: only the
 * border is zeroed, the rest is written once by the copy. */
static float *zero_padded(const float *x, int64_t n, int64_t h, int64_t w, int64_t c,
                          int64_t ph, int64_t pw)
{
    const int64_t hp = h + 2 * ph, wp = w + 2 * pw, line = wp * c;
    float *xp = malloc((size_t)(n * hp * line) * sizeof *xp);
    if (!xp)
        return NULL;
    for (int64_t ni = 0; ni < n; ni++) {
        float *image = xp + ni * hp * line;
        memset(image, 0, (size_t)(ph * line) * sizeof *xp);
        memset(image + (ph + h) * line, 0, (size_t)(ph * line) * sizeof *xp);
        for (int64_t i = 0; i < h; i++) {
            float *row = image + (ph + i) * line;
            memset(row, 0, (size_t)(pw * c) * sizeof *xp);
            memcpy(row + pw * c, x + (ni * h + i) * w * c, (size_t)(w * c) * sizeof *xp);
            memset(row + (pw + w) * c, 0, (size_t)(pw * c) * sizeof *xp);
        }
    }
    return xp;
}

/* The panels at a 64-byte boundary, copied there when they are not (NULL: no memory), so
 * that no 16-float weight load of the AVX-512 tile spans two cache lines (about 7 % of a
 * 7x7 stem). *copy receives the copy to free, or NULL. */
static const float *aligned_panels(const float *panels, int64_t count, float **copy)
{
    *copy = NULL;
    if ((uintptr_t)panels % 64 == 0)
        return panels;
    const size_t bytes = (size_t)count * sizeof *panels;
    *copy = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (*copy)
        memcpy(*copy, panels, bytes);
    return *copy;
}

#endif

/* BNN_OK when one axis of a float convolution is valid: the dilated kernel inside the
 * padded input and `out` the output length; *padded receives size + 2 pad. */
static int conv_axis(int64_t size, int64_t out, int64_t kernel, int64_t stride, int64_t pad,
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

/* y [n, oh, ow, o] = conv(x [n, h, w, c]) + bias with the column panels described above
 * ([ceil(o / 16)][kh * kw * c][16]; bias [o] or NULL), where oh = (h + 2 ph - (kh - 1) dh
 * - 1) / sh + 1 and ow likewise; y does not overlap x. BNN_EISA on a CPU without AVX2 and
 * FMA, or for the portable path (isa). */
BNN_API int bnn_float_conv2d(const bnn_window *g, const float *x, const float *panels,
                             const float *bias, int64_t o, float *y, int64_t isa,
                             int64_t threads)
{
    if (!g)
        return BNN_EINVAL;
    const int64_t n = g->n, h = g->h, w = g->w, c = g->c, oh = g->oh, ow = g->ow;
    const int64_t kh = g->kh, kw = g->kw, sh = g->stride_h, sw = g->stride_w;
    const int64_t ph = g->pad_h, pw = g->pad_w, dh = g->dilation_h, dw = g->dilation_w;
    if (!x || !panels || !y || n <= 0 || h <= 0 || w <= 0 || c <= 0 || o <= 0 || oh <= 0 ||
        ow <= 0 || kh <= 0 || kw <= 0 || sh <= 0 || sw <= 0 || ph < 0 || pw < 0 || dh <= 0 ||
        dw <= 0)
        return BNN_EINVAL;
    int64_t hp, wp, x_count, y_count, k;
    int status = conv_axis(h, oh, kh, sh, ph, dh, &hp);
    if (status == BNN_OK)
        status = conv_axis(w, ow, kw, sw, pw, dw, &wp);
    if (status != BNN_OK)
        return status;
    if (!BNN_ARRAY(&x_count, sizeof *x, n, h, w, c) || !BNN_ARRAY(NULL, sizeof *x, n, hp, wp, c) ||
        !BNN_ARRAY(&y_count, sizeof *y, n, oh, ow, o) || !BNN_COUNT(&k, kh, kw, c) ||
        !BNN_ARRAY(NULL, sizeof *panels, bnn_ceil_div(o, 16), k, 16))
        return BNN_ESIZE;
    if (bnn_overlap(x, (size_t)x_count * sizeof *x, y, (size_t)y_count * sizeof *y))
        return BNN_EINVAL;
    status = bnn_isa_status(isa);
    if (status != BNN_OK)
        return status;
#if defined(__x86_64__) || defined(__i386__)
    if (isa < BNN_ISA_AVX2 || !__builtin_cpu_supports("fma"))
        return BNN_EISA;
    float *padded = NULL, *panel_copy = NULL;
    if (ph || pw) {
        padded = zero_padded(x, n, h, w, c, ph, pw);
        if (!padded)
            return BNN_ENOMEM;
    }
    const int64_t pixels = n * oh * ow;
    fconv_job j = {padded ? padded : x, panels, bias, y, n, hp, wp, c, o, oh, ow, kh, kw, sh,
                   sw, dh, dw, k, dw == 1 ? 1 : kw, dw == 1 ? kw * c : c, dw * c, FC_ROWS, 1,
                   0, bnn_ceil_div(o, FC_COLS), 0, 0, fconv_tile};
    if (isa >= BNN_ISA_AVX512) {
        /* The copy pays where every weight serves many pixels. */
        if (pixels >= FZ_ALIGN_PIXELS)
            j.panels = aligned_panels(panels, j.npanels * k * FC_COLS, &panel_copy);
        if (!j.panels) {
            free(padded);
            return BNN_ENOMEM;
        }
        j.rows = FZ_ROWS;
        j.group = FZ_PANELS;
        j.tile = bnn_fconv_tile_avx512;
    }
    j.tiles = bnn_ceil_div(pixels, j.rows);
    j.groups = bnn_ceil_div(j.npanels, j.group);
    /* At most one item per output value. */
    j.items = bnn_ceil_div(j.tiles, FC_TILE_RUN) * j.groups;
    /* A fused multiply-add of 8 floats costs about a word operation. */
    const int team = bnn_team_size(threads, j.items, BNN_WORK(pixels, k, o) / 8);
    bnn_parallel(team, j.items, fconv_task, &j);
    free(padded);
    free(panel_copy);
    return BNN_OK;
#else
    (void)bias;
    (void)isa;
    (void)threads;
    return BNN_EISA;
#endif
}
