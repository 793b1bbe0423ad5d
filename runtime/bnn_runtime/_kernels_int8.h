/* The int8 micro-kernels of bnn_qgemm (_kernels_int8.c), one per ISA file.
 *
 * bnn_qgemm reads the weights w [o][k] packed (once, by its caller) into panels of
 * `width` output channels (BNN_QDOT_WIDTH_*), four consecutive weights of a channel side
 * by side: [ceil(o / width)][ceil(k / 4)][width][4] bytes, zero beyond o and k. For up to
 * BNN_QDOT_ROWS rows a [rows][k] (row r at a + r * lda) of 7-bit activations (uint8 in
 * [0, 127]), a micro-kernel computes the o exact sums of a[r][i] * w[j][i] of each row into
 * acc [rows][o]: it broadcasts four activation bytes of every row and multiplies them by
 * the four weights of each of `width` channels, so that each weight load serves every row.
 * With activations below 128 no pair of products reaches the int16 limit of the AVX2
 * vpmaddubsw (127 * 128 * 2 = 32512), and with k <= BNN_QGEMM_MAX_K no sum leaves int32. */
#ifndef BNN_KERNELS_INT8_H
#define BNN_KERNELS_INT8_H

#include <stdint.h>
#include <string.h>

/* The most products one accumulator sums (the validator's MAX_INT8_DEPTH). */
#define BNN_QGEMM_MAX_K 65536

/* The most rows one micro-kernel call computes. */
#define BNN_QDOT_ROWS 4

/* Output channels per weight panel of each micro-kernel. */
#define BNN_QDOT_WIDTH_PORTABLE 1
#define BNN_QDOT_WIDTH_AVX2 8
#define BNN_QDOT_WIDTH_AVX512VNNI 16

typedef void (*bnn_qdot_fn)(const uint8_t *a, int64_t lda, int64_t rows, int64_t k,
                            const int8_t *panels, int64_t o, int32_t *acc);

/* Activations a[4t .. 4t + 3] as one little-endian int32, zero beyond k (never read); the
 * x86 micro-kernels use it. */
static inline int32_t bnn_qdot_group(const uint8_t *a, int64_t k, int64_t t)
{
    uint32_t group = 0;
    if (4 * t + 4 <= k) {
        memcpy(&group, a + 4 * t, sizeof group);
        return (int32_t)group;
    }
    for (int64_t i = k - 1; i >= 4 * t; i--)
        group = group << 8 | a[i];
    return (int32_t)group;
}

/* The BNN_QDOT_ROWS row pointers of a micro-kernel call: rows beyond `rows` repeat the
 * first (computed, never stored). */
static inline void bnn_qdot_rows(const uint8_t *a, int64_t lda, int64_t rows,
                                 const uint8_t *row[BNN_QDOT_ROWS])
{
    for (int64_t r = 0; r < BNN_QDOT_ROWS; r++)
        row[r] = r < rows ? a + r * lda : a;
}

void bnn_qdot_portable(const uint8_t *a, int64_t lda, int64_t rows, int64_t k,
                       const int8_t *panels, int64_t o, int32_t *acc);
#if defined(__x86_64__) || defined(__i386__)
void bnn_qdot_avx2(const uint8_t *a, int64_t lda, int64_t rows, int64_t k,
                   const int8_t *panels, int64_t o, int32_t *acc);
void bnn_qdot_avx512vnni(const uint8_t *a, int64_t lda, int64_t rows, int64_t k,
                         const int8_t *panels, int64_t o, int32_t *acc);
#endif

#endif
