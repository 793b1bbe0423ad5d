/* The portable int8 micro-kernel: plain C, one int32 sum per row and output channel
 * (panels of one channel: each weight row padded with zeros to a multiple of 4). */
#include "_kernels_int8.h"

void bnn_qdot_portable(const uint8_t *a, int64_t lda, int64_t rows, int64_t k,
                       const int8_t *panels, int64_t o, int32_t *acc)
{
    const int64_t stride = (k + 3) / 4 * 4;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < o; j++) {
            const uint8_t *x = a + r * lda;
            const int8_t *w = panels + j * stride;
            int32_t sum = 0;
            for (int64_t i = 0; i < k; i++)
                sum += (int32_t)x[i] * (int32_t)w[i];
            acc[r * o + j] = sum;
        }
}
