/* The float convolution's job and tile sizes, shared by its driver (_kernels_float.c) and
 * its AVX-512 tile (_kernels_float_avx512.c). Internal: not part of the public header. */
#ifndef BNN_KERNELS_FLOAT_H
#define BNN_KERNELS_FLOAT_H

#include <stdint.h>

#define FC_ROWS 6
#define FC_COLS 16
/* Pixels per AVX-512 tile: with 4 panels, 4 x FZ_ROWS accumulators of the 32 registers. */
#define FZ_ROWS 6
#define FZ_PANELS 4
/* Output pixels from which the AVX-512 path copies misaligned panels to aligned memory. */
#define FZ_ALIGN_PIXELS 512
#define FC_MAX_ROWS (FC_ROWS > FZ_ROWS ? FC_ROWS : FZ_ROWS)
/* Tiles that go through a group of column panels together: with the panels, the input
 * rows of 16 x 6 pixels of a 7x7 stride-2 convolution (about 16 KB) fit in L1. */
#define FC_TILE_RUN 16

typedef struct fconv_job fconv_job;
/* Output channels [col, col + 16 * panels) of a tile of `rows` pixels from p0, whose
 * input rows are a. */
typedef void (*fconv_tile_fn)(const fconv_job *j, const float *const *a, int64_t p0, int rows,
                              int64_t col, int64_t panels);

struct fconv_job {
    const float *x; /* [n][hp][wp][c]: the input, zero-padded */
    const float *panels, *bias;
    float *y;
    int64_t n, hp, wp, c, o, oh, ow, kh, kw, sh, sw, dh, dw, k;
    int64_t runs, run, run_step; /* per kernel row: runs of `run` floats, `run_step` apart */
    int64_t rows, group;         /* pixels per tile; column panels per tile */
    int64_t tiles, npanels, groups, items; /* work items: runs of tiles x panel groups */
    fconv_tile_fn tile;
};

/* The AVX-512 tile: FZ_ROWS pixels x up to FZ_PANELS panels of 16 output channels. */
void bnn_fconv_tile_avx512(const fconv_job *j, const float *const *a, int64_t p0, int rows,
                           int64_t col, int64_t panels);

#endif
