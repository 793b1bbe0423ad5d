/* bnn_runtime.h: the public C interface of the bnn-runtime kernel library.
 *
 * Every function the library exports and every struct that crosses its boundary is
 * declared here, once; the library's sources include this header, and the Python side
 * (bnn_runtime/abi.py, through ctypes) mirrors it field by field. A change to any
 * signature, struct layout, enum value or meaning below raises BNN_ABI_VERSION, and the
 * Python side refuses a library whose bnn_abi_version() differs from the version it was
 * written for.
 *
 * Conventions: sizes and flags are int64_t; arrays are C-contiguous, channels last
 * (NHWC); packed activations are uint64 [..., ceil(C/64)], bit i of word k is channel
 * 64k+i, 1 = +1, 0 = -1, padding bits 0. Every function validates its arguments before it
 * allocates or writes (element and byte counts with overflow checks) and returns a
 * status (BNN_OK or a negative BNN_E*). `isa` selects a kernel path (BNN_ISA_*);
 * `threads` the team size (<= 0: the default, see bnn_default_threads). */
#ifndef BNN_RUNTIME_H
#define BNN_RUNTIME_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this interface: the library and its callers must agree on it. */
#define BNN_ABI_VERSION 3

#if defined(_WIN32)
#define BNN_API __declspec(dllexport)
#else
#define BNN_API __attribute__((visibility("default")))
#endif

/* Kernel paths. */
enum { BNN_ISA_PORTABLE = 0, BNN_ISA_AVX2 = 1, BNN_ISA_AVX512 = 2, BNN_ISA_COUNT = 3 };

/* Status codes: 0, or invalid arguments, a path this CPU cannot run, memory exhausted,
 * sizes whose element or byte counts do not fit the address range. */
enum { BNN_OK = 0, BNN_EINVAL = -1, BNN_EISA = -2, BNN_ENOMEM = -3, BNN_ESIZE = -4 };

/* ---- library -------------------------------------------------------------------------- */

/* BNN_ABI_VERSION of the library. */
BNN_API int bnn_abi_version(void);
/* 1 when this CPU (and build) can run kernel path isa, else 0. */
BNN_API int bnn_isa_supported(int isa);
/* The fastest kernel path this CPU can run. */
BNN_API int bnn_best_isa(void);
/* The default team size: BNN_RUNTIME_THREADS, else OMP_NUM_THREADS, else the cores. */
BNN_API int bnn_default_threads(void);

/* A caller's function run once for every part of a job (part, parts): how callers share
 * the kernels' threads. */
typedef void (*bnn_callback)(int64_t member, int64_t team);
/* Runs cb for parts 0 .. threads - 1 on a team of up to `threads` threads (a thread may
 * run several parts) and returns when all have finished. */
BNN_API void bnn_parallel_callback(int64_t threads, bnn_callback cb);

/* ---- binary layers ---------------------------------------------------------------------- */

/* out [rows, ceil(c/64)] = the signs of x [rows, c] + thr (bit = x + thr >= 0; thr [c] or
 * NULL for 0). */
BNN_API int bnn_pack_activations(const float *x, const float *thr, int64_t rows, int64_t c,
                                 uint64_t *out, int64_t isa, int64_t threads);

/* The per-output-channel transform of a binary layer, applied to the integer dot
 * product of each output: y = scale * dot + bias (two float roundings, never fused);
 * packed output stores bit = y + next_threshold >= 0; a float output is finished as
 * y = prelu(y + residual + shift_in) + shift_out with prelu(v) = v > 0 ? v : slope * v. */
typedef struct {
    const float *scale, *bias;    /* [O] each, required */
    const float *next_threshold;  /* [O], or NULL: 0 (packed output only) */
    const float *slope;           /* [O], or NULL: no activation (float output only) */
    const float *shift_in;        /* [O], or NULL: 0 (with a slope only) */
    const float *shift_out;       /* [O], or NULL: 0 (with a slope only) */
} bnn_output_transform;

/* A binary convolution layer (a linear layer is a 1x1 convolution of a 1x1 input). */
typedef struct {
    int64_t c, o, kh, kw;               /* input and output channels, kernel size */
    int64_t stride_h, stride_w, pad_h, pad_w;
    int64_t groups;                     /* divides c and o */
    int64_t pad_value;                  /* 0: zero padding; +1 / -1: padded sign */
    const uint64_t *weights;            /* [O, KH, KW, ceil(C / groups / 64)] packed */
    const float *input_threshold;       /* [C] or NULL: bit = x + threshold >= 0 */
    bnn_output_transform transform;
} bnn_conv_spec;

/* A prepared layer: opaque, immutable after creation, shareable by concurrent runs. */
typedef struct bnn_conv bnn_conv;

/* Prepares a layer (copies everything it needs from *spec), or returns NULL and writes
 * the reason to *status (status may be NULL). */
BNN_API bnn_conv *bnn_conv2d_create(const bnn_conv_spec *spec, int *status);
/* Releases a layer (NULL: nothing). */
BNN_API void bnn_conv2d_destroy(bnn_conv *layer);
/* y = the layer on x [n, h, w, C] (float, or packed when x_packed) into y [n, ho, wo, O]
 * float or [n, ho, wo, ceil(O/64)] packed (y_packed), with ho = (h + 2 pad_h - KH) /
 * stride_h + 1 and wo likewise. residual: float32 [n, ho, wo, O] added to a float output
 * before its activation, or NULL. y overlaps neither x nor the residual. */
BNN_API int bnn_conv2d_run(const bnn_conv *layer, const void *x, int64_t x_packed, int64_t n,
                           int64_t h, int64_t w, void *y, int64_t y_packed,
                           const float *residual, int64_t isa, int64_t threads);

/* ---- float operations ------------------------------------------------------------------- */

/* The geometry of a sliding-window operation on x [n, h, w, c] into y [n, oh, ow, *]:
 * PyTorch's window rules (oh = (h + 2 pad_h - dilation_h (kh - 1) - 1) / stride_h + 1
 * rounded down, or up for a ceil-mode pooling whose last window starts inside). */
typedef struct {
    int64_t n, h, w, c;      /* input */
    int64_t oh, ow;          /* output height and width */
    int64_t kh, kw, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
} bnn_window;

/* A max or average pooling (dilation 1, padding less than the kernel). */
typedef struct {
    bnn_window window;
    int64_t average;         /* 0: max, 1: average */
    int64_t include_pad;     /* 0 or 1: count_include_pad of an average */
    int64_t divisor;         /* > 0: replaces the window size of an average; 0: none */
} bnn_pool_spec;

/* y [n, oh, ow, c] = the pooling of x; y does not overlap x. */
BNN_API int bnn_pool2d(const bnn_pool_spec *spec, const float *x, float *y, int64_t isa,
                       int64_t threads);
/* y [n, oh, ow, o] = conv(x) + bias with the weights as column panels
 * [ceil(o / 16)][kh * kw * c][16] (bias [o] or NULL); y does not overlap x. BNN_EISA on
 * a CPU without AVX2 and FMA, or for the portable path. */
BNN_API int bnn_float_conv2d(const bnn_window *window, const float *x, const float *panels,
                             const float *bias, int64_t o, float *y, int64_t isa,
                             int64_t threads);
/* y = prelu(x + shift_in) + shift_out per channel over rows x c values (the shifts both
 * NULL or both given); y is x or does not overlap it. */
BNN_API int bnn_prelu(const float *x, int64_t rows, int64_t c, const float *shift_in,
                      const float *slope, const float *shift_out, float *y, int64_t threads);
/* y [n, cols, rows] = the transpose of each of the n matrices x [n, rows, cols]. */
BNN_API int bnn_transpose(const float *x, int64_t n, int64_t rows, int64_t cols, float *y,
                          int64_t threads);

/* ---- int8 operations -------------------------------------------------------------------- */

/* The width of the weight panels bnn_qgemm reads on path isa (1, 8 or 16 output
 * channels), or a negative status for a path that does not exist or this CPU lacks. */
BNN_API int bnn_qgemm_width(int64_t isa);
/* y [m, o] = (float)acc * multiplier[j] + bias[j] (bias NULL: no sum), where acc = sum over
 * i < k of (a[r, i] - zero_point) * w[j, i] in int32, for the 7-bit activations a [m, k]
 * (uint8 in [0, 127]: any byte above 127 is BNN_EINVAL) and int8 weights w [o, k], given
 * as panels of width = bnn_qgemm_width(isa) channels, [ceil(o / width)][ceil(k / 4)][width]
 * [4] bytes (w[j, i] at ((j / width * ceil(k / 4) + i / 4) * width + j % width) * 4 + i % 4,
 * zero beyond o and k), with wsum [o] = the sums of each channel's weights; rounded to
 * float after the product and after the sum (bnn_runtime.int8_reference). 1 <= k <=
 * 65536, zero_point in [0, 127]; y does not overlap the other arrays. */
BNN_API int bnn_qgemm(const uint8_t *a, int64_t m, int64_t k, const int8_t *panels, int64_t o,
                      const int32_t *wsum, int64_t zero_point, const float *multiplier,
                      const float *bias, float *y, int64_t isa, int64_t threads);
/* y [n, oh, ow, o] = the int8 convolution of x [n, h, w, c] (float, quantized here as
 * q = rint(min(max(x * inverse, -zero_point), 127 - zero_point)) + zero_point, the float
 * product rounded first, halves to even, NaN giving 0; padding is zero_point), with int8
 * weights w [o, kh, kw, c] given as the panels of bnn_qgemm for k = kh * kw * c (channels
 * fastest, then kw, then kh) and wsum [o] their sums, requantized as bnn_qgemm does; the
 * window's sizes follow bnn_float_conv2d. 1 <= k <= 65536, zero_point in [0, 127]; y does
 * not overlap the other arrays. */
BNN_API int bnn_qconv2d(const bnn_window *window, const float *x, float inverse,
                        int64_t zero_point, const int8_t *panels, int64_t o,
                        const int32_t *wsum, const float *multiplier, const float *bias,
                        float *y, int64_t isa, int64_t threads);

#ifdef __cplusplus
}
#endif

#endif
