/* Portable binary kernels in plain C: the path for CPUs without AVX2 (AArch64 and
 * others).
 *
 * The tile kernel keeps a register tile of PP pixels x LP output channels; the innermost
 * loop over lanes is independent per lane so compilers can vectorise it with whatever
 * SIMD the target has (NEON). Popcounts use __builtin_popcountll, which is one
 * instruction where the target has it (AArch64 CNT); baseline x86-64 lacks POPCNT, so
 * there the kernel is compiled twice, with and without it, and the driver picks the
 * variant the CPU can run. */
#include "_kernels.h"

#define PP 2
#define LP 4

/* Mismatch counts of P pixels (p0..p0+P-1) x one block b, LP lanes per pass so that
 * the P x LP accumulators stay in registers (16 general registers on x86-64). */
static inline __attribute__((always_inline)) void count_block(const bnn_tile *t, int p0,
                                                              int P, int b,
                                                              uint32_t cnt[PP][BNN_BLOCK])
{
    const uint64_t *w = t->w + (size_t)b * (size_t)t->L * BNN_BLOCK;
    for (int l0 = 0; l0 < BNN_BLOCK; l0 += LP) {
        uint32_t acc[PP][LP] = {{0}};
        for (int64_t i = 0; i < t->L; i++) {
            const uint64_t *wi = w + i * BNN_BLOCK + l0;
            const int64_t off = t->offs[i];
            for (int p = 0; p < P; p++) {
                const uint64_t xv = t->x[p0 + p][off];
                for (int l = 0; l < LP; l++)
                    acc[p][l] += (uint32_t)__builtin_popcountll(xv ^ wi[l]);
            }
        }
        for (int p = 0; p < P; p++)
            for (int l = 0; l < LP; l++)
                cnt[p][l0 + l] = acc[p][l];
    }
}

/* Mismatch counts and output transform for P pixels (p0..p0+P-1) x one block b. */
static inline __attribute__((always_inline)) void tile_block(const bnn_tile *t, int p0,
                                                             int P, int b)
{
    uint32_t acc[PP][BNN_BLOCK];
    count_block(t, p0, P, b, acc);
    const int lane0 = b * BNN_BLOCK;
    int nl = t->lanes - lane0;
    if (nl > BNN_BLOCK)
        nl = BNN_BLOCK;
    /* Per-lane constants as locals: the output stores cannot alias them then. Bits are
     * combined with & and |, never && (data-dependent branches mispredict). */
    const int32_t kc = t->kc;
    const int32_t *dmin = t->dmin ? t->dmin + lane0 : NULL;
    const int32_t *dmax = t->dmax ? t->dmax + lane0 : NULL;
    const float *scale = t->scale + lane0, *bias = t->bias + lane0;
    const float *thr = t->thr ? t->thr + lane0 : NULL;
    const int packed_out = t->packed_out;
    for (int p = 0; p < P; p++) {
        const int32_t *corr = t->corr[p0 + p] ? t->corr[p0 + p] + lane0 : NULL;
        int32_t dot[BNN_BLOCK];
        for (int l = 0; l < BNN_BLOCK; l++)
            dot[l] = kc - 2 * (int32_t)acc[p][l] + (corr && l < nl ? corr[l] : 0);
        if (packed_out) {
            uint32_t bits = 0;
            for (int l = 0; l < nl; l++) {
                int on;
                if (dmin) {
                    on = (dot[l] >= dmin[l]) & (dot[l] <= dmax[l]);
                } else {
                    const float y = bnn_affine(dot[l], scale[l], bias[l]);
                    on = (thr ? y + thr[l] : y) >= 0.0f;
                }
                bits |= (uint32_t)on << l;
            }
            bnn_store_bits(t->yp[p0 + p], t->oc + lane0, bits, BNN_BLOCK, t->atomic_bits);
        } else {
            float *y = t->yf[p0 + p] + t->oc + lane0;
            for (int l = 0; l < nl; l++)
                y[l] = bnn_affine(dot[l], scale[l], bias[l]);
        }
    }
}

/* Every block of the chunk for every pixel of the tile, PP pixels at a time. */
static inline __attribute__((always_inline)) void tile_all(const bnn_tile *t)
{
    for (int b = 0; b < t->nb; b++) {
        int p = 0;
        for (; p + PP <= t->npix; p += PP)
            tile_block(t, p, PP, b);
        for (; p < t->npix; p++)
            tile_block(t, p, 1, b);
    }
}

/* Number of set bits in w[0..n). */
static inline __attribute__((always_inline)) int64_t ones(const uint64_t *w, int64_t n)
{
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++)
        total += __builtin_popcountll(w[i]);
    return total;
}

/* The finish of a tile's float output (see bnn_tile) after its transform was stored,
 * while it is in cache: one pass per pixel, rounding as the separate operations do (the
 * AVX2 and AVX-512 kernels apply it in registers instead). */
static void finish_tile(const bnn_tile *t)
{
    if (t->packed_out || (!t->slope && !t->res[0]))
        return;
    const int lanes = t->lanes;
    const float *slope = t->slope, *shift_in = t->shift_in, *shift_out = t->shift_out;
    for (int p = 0; p < t->npix; p++) {
        float *restrict y = t->yf[p] + t->oc;
        const float *restrict r = t->res[p];
        for (int k = 0; k < lanes; k++) {
            float v = y[k];
            if (r)
                v += r[k];
            if (slope) {
                if (shift_in)
                    v += shift_in[k];
                const float scaled = slope[k] * v;
                v = v > 0.0f ? v : scaled;
                if (shift_out)
                    v += shift_out[k];
            }
            y[k] = v;
        }
    }
}

void bnn_tile_portable(const bnn_tile *t)
{
    tile_all(t);
    finish_tile(t);
}

int64_t bnn_ones_portable(const uint64_t *w, int64_t n)
{
    return ones(w, n);
}

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("popcnt"))) void bnn_tile_portable_popcnt(const bnn_tile *t)
{
    tile_all(t);
    finish_tile(t);
}

__attribute__((target("popcnt"))) int64_t bnn_ones_portable_popcnt(const uint64_t *w, int64_t n)
{
    return ones(w, n);
}
#endif

/* One row of n channels; the threshold test is hoisted out of the channel loop. */
static inline __attribute__((always_inline)) void pack_row(const float *x, const float *thr,
                                                           int64_t n, uint64_t *out)
{
    for (int64_t k = 0; k * 64 < n; k++) {
        const int64_t m = n - k * 64 < 64 ? n - k * 64 : 64;
        const float *xk = x + k * 64;
        uint64_t word = 0;
        if (thr) {
            for (int64_t i = 0; i < m; i++)
                word |= (uint64_t)(xk[i] + thr[k * 64 + i] >= 0.0f) << i;
        } else {
            for (int64_t i = 0; i < m; i++)
                word |= (uint64_t)(xk[i] >= 0.0f) << i;
        }
        out[k] = word;
    }
}

void bnn_pack_portable(const float *x, int64_t x_stride, const float *thr, int64_t n,
                       int64_t rows, uint64_t *out, int64_t out_stride)
{
    for (int64_t r = 0; r < rows; r++)
        pack_row(x + r * x_stride, thr, n, out + r * out_stride);
}
