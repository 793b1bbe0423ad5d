/* Binary convolution layers (a linear layer is a 1x1 convolution of a 1x1 input).
 *
 * For every output pixel and output channel o a layer computes
 *     dot  = sum over taps and input channels of x_sign * w_sign   (zero-padded taps: 0)
 *     y[o] = scale[o] * dot + bias[o]
 * and writes y as float32 NHWC, or as packed bits (bit = y + next_threshold[o] >= 0).
 *
 * bnn_conv2d_create prepares a layer once: the weights are re-laid into blocks of
 * BNN_BLOCK output channels, [group][block][tap][word][lane], so that one vector load
 * fetches a word of 8 channels; the per-channel transform is padded to whole blocks
 * and, for packed output, turned into integer bounds on the dot product; and, for zero
 * padding, each tap's weight sum is tabulated (see below).
 *
 * bnn_conv2d_run then, each step shared out to the thread team (_kernels_threads.c):
 *  1. writes the input (float or packed) into a padded, group-aligned packed buffer
 *     [N][H + 2ph][W + 2pw][groups * words_per_group]; border pixels hold the padding
 *     sign (+1: all valid channel bits set; -1 and 0: all bits clear); for the AVX2
 *     nibble path (ungrouped layers, see _kernels_avx2.c) also the nibble offsets of
 *     every word of that buffer;
 *  2. hands work items (64 output channels of one group x BNN_TILE output pixels,
 *     chunk-major so that a thread keeps reusing a chunk's weights, handed out in
 *     chunks of consecutive items by the team) to the ISA's tile kernel.
 * Zero padding: border taps are read as -1 from the buffer, so a tap outside the input
 * contributes -(sum of the tap's w_sign); that sum is added back. Which kernel rows and
 * columns fall outside depends only on the output row and column class (top/bottom/
 * left/right margins), so the correction is a small table per (row class, column class)
 * built before each run from the tabulated tap sums. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "_kernels.h"

/* A prepared layer (bnn_conv in the public header). It is never modified after
 * creation, so concurrent runs may share it. */
struct bnn_conv {
    int64_t c, o, kh, kw, sh, sw, ph, pw, groups, pad_value;
    int64_t cpg, opg, cw, cwg, cow, K, L, nbg, lanes;
    uint64_t last_mask;  /* valid bits of a group's last word */
    uint64_t *wb;        /* [groups * nbg][L][BNN_BLOCK], zero in unused lanes */
    float *scale, *bias; /* [lanes], zero in unused lanes */
    float *thr;          /* [lanes], or NULL without a next threshold */
    float *in_thr;       /* [C], or NULL */
    int32_t *tap_sum;    /* [K][lanes]: sum over the tap's input channels of w_sign */
    int32_t *dmin;       /* [2][lanes]: packed output bit = dmin <= dot <= dmax, or NULL */
    int32_t *dmax;
    float *slope, *shift_in, *shift_out; /* [O] each, or NULL */
    /* The weights for the AVX2 nibble path, one nibble per byte
     * [chunk][L][16][BNN_CHUNK_LANES], zero in unused lanes; NULL for grouped layers,
     * layers with fewer than BNN_NIB_MIN_BLOCKS blocks or more than 65535 / 64
     * (tap, word) steps, and CPUs without AVX2. */
    uint8_t *wn;
};

BNN_API void bnn_conv2d_destroy(bnn_conv *cv)
{
    if (!cv)
        return;
    free(cv->wb);
    free(cv->wn);
    free(cv->scale);
    free(cv->in_thr);
    free(cv->tap_sum);
    free(cv->dmin);
    free(cv->slope);
    free(cv->shift_in);
    free(cv->shift_out);
    free(cv);
}

/* A copy of n floats, or NULL for NULL; *failed is set when memory runs out. */
static float *copy_floats(const float *src, int64_t n, int *failed)
{
    if (!src)
        return NULL;
    float *dst = malloc((size_t)n * sizeof *dst);
    if (!dst)
        *failed = 1;
    else
        memcpy(dst, src, (size_t)n * sizeof *dst);
    return dst;
}

/* The packed output bit of one lane for a given dot product, computed exactly as the
 * kernels' float path does. */
static int output_bit(int32_t dot, float scale, float bias, float thr)
{
    return bnn_affine(dot, scale, bias) + thr >= 0.0f;
}

/* Integer form of the packed output: with finite scale, bias and threshold, the bit is a
 * monotone function of the integer dot product (each float operation rounds
 * monotonically), so it is 1 exactly on an interval [dmin, dmax] of [-kc, kc], found
 * by bisection. The kernels then compare integers instead of evaluating floats. Returns
 * 0 if some lane has a non-finite parameter (those layers keep the float path). */
static int integer_thresholds(bnn_conv *cv, int32_t kc)
{
    for (int64_t lane = 0; lane < cv->lanes; lane++) {
        const float s = cv->scale[lane], b = cv->bias[lane], t = cv->thr ? cv->thr[lane] : 0.0f;
        if (!isfinite(s) || !isfinite(b) || !isfinite(t))
            return 0;
        int32_t lo = -kc, hi = kc + 1; /* bisection over [-kc, kc + 1) */
        if (s > 0.0f) {                /* bit non-decreasing: first dot with bit 1 */
            while (lo < hi) {
                const int32_t mid = lo + (hi - lo) / 2;
                if (output_bit(mid, s, b, t))
                    hi = mid;
                else
                    lo = mid + 1;
            }
            cv->dmin[lane] = lo;
            cv->dmax[lane] = kc;
        } else if (s < 0.0f) { /* bit non-increasing: first dot with bit 0 */
            while (lo < hi) {
                const int32_t mid = lo + (hi - lo) / 2;
                if (!output_bit(mid, s, b, t))
                    hi = mid;
                else
                    lo = mid + 1;
            }
            cv->dmin[lane] = -kc;
            cv->dmax[lane] = lo - 1;
        } else { /* zero scale: the same bit for every dot */
            const int on = output_bit(0, s, b, t);
            cv->dmin[lane] = on ? -kc : 1;
            cv->dmax[lane] = on ? kc : 0;
        }
    }
    return 1;
}

/* The nibble copy of the prepared weights (cv->wn) from the word layout cv->wb: each
 * word is read once and its 16 nibbles go to the 16 rows of its (chunk, step), which
 * stay in L1 while the chunk's 64 lanes fill them. Returns 0 when memory runs out. */
static int nibble_weights(bnn_conv *cv)
{
    const int64_t L = cv->L, chunks = bnn_ceil_div(cv->lanes, BNN_CHUNK_LANES);
    const size_t bytes = (size_t)(chunks * L * 16 * BNN_CHUNK_LANES);
    cv->wn = bnn_alloc64(bytes);
    if (!cv->wn)
        return 0;
    memset(cv->wn, 0, bytes); /* lanes beyond cv->lanes */
    for (int64_t c = 0; c < chunks; c++)
        for (int64_t i = 0; i < L; i++) {
            uint8_t *dst = cv->wn + (c * L + i) * 16 * BNN_CHUNK_LANES;
            const int64_t first = c * BNN_CHUNK_LANES;
            const int64_t n = cv->lanes - first < BNN_CHUNK_LANES ? cv->lanes - first
                                                                  : BNN_CHUNK_LANES;
            for (int64_t l = 0; l < n; l++) {
                const int64_t block = (first + l) / BNN_BLOCK;
                const uint64_t word = cv->wb[(block * L + i) * BNN_BLOCK + l % BNN_BLOCK];
                for (int j = 0; j < 16; j++)
                    dst[j * BNN_CHUNK_LANES + l] = (uint8_t)((word >> (4 * j)) & 15);
            }
        }
    return 1;
}

/* BNN_OK when a spec describes a layer that can be prepared: valid scalars and
 * pointers (BNN_EINVAL otherwise), and every array of the layer, the caller's weights
 * [O][KH][KW][words per group] included, representable (BNN_ESIZE otherwise). */
static int check_spec(const bnn_conv_spec *s)
{
    if (!s)
        return BNN_EINVAL;
    const bnn_output_transform *t = &s->transform;
    if (s->c <= 0 || s->o <= 0 || s->kh <= 0 || s->kw <= 0 || s->stride_h <= 0 ||
        s->stride_w <= 0 || s->pad_h < 0 || s->pad_w < 0 || s->groups <= 0 ||
        s->c % s->groups || s->o % s->groups || !s->weights || !t->scale || !t->bias ||
        (s->pad_value != 0 && s->pad_value != 1 && s->pad_value != -1) ||
        (!t->slope && (t->shift_in || t->shift_out)))
        return BNN_EINVAL;
    const int64_t cpg = s->c / s->groups, cwg = bnn_ceil_div(cpg, 64);
    const int64_t nbg = bnn_ceil_div(s->o / s->groups, BNN_BLOCK);
    int64_t kc, L, lanes;
    /* kc bounds K, L = K * cwg and every tap and word index. */
    if (!BNN_COUNT(&kc, s->kh, s->kw, cpg) || kc > BNN_MAX_DOT ||
        !BNN_COUNT(&L, s->kh, s->kw, cwg) || !BNN_COUNT(&lanes, s->groups, nbg, BNN_BLOCK) ||
        !BNN_ARRAY(NULL, sizeof *s->weights, s->o, L) ||
        !BNN_ARRAY(NULL, sizeof(uint64_t), lanes, L) ||
        !BNN_ARRAY(NULL, sizeof(float), 3, lanes) ||
        !BNN_ARRAY(NULL, sizeof(int32_t), s->kh, s->kw, lanes) ||
        !BNN_ARRAY(NULL, 16 * BNN_CHUNK_LANES, bnn_ceil_div(lanes, BNN_CHUNK_LANES), L) ||
        !BNN_ARRAY(NULL, sizeof(float), s->c) || !BNN_ARRAY(NULL, sizeof(float), s->o))
        return BNN_ESIZE;
    return BNN_OK;
}

/* Prepare a layer: the layer, or NULL with *status (unless status is NULL) set to
 * BNN_EINVAL or BNN_ESIZE for a spec check_spec refuses and to BNN_ENOMEM when memory
 * runs out. */
BNN_API bnn_conv *bnn_conv2d_create(const bnn_conv_spec *s, int *status)
{
    int ignored;
    if (!status)
        status = &ignored;
    *status = check_spec(s);
    if (*status != BNN_OK)
        return NULL;
    *status = BNN_ENOMEM;
    bnn_conv *cv = calloc(1, sizeof *cv);
    if (!cv)
        return NULL;
    cv->c = s->c;
    cv->o = s->o;
    cv->kh = s->kh;
    cv->kw = s->kw;
    cv->sh = s->stride_h;
    cv->sw = s->stride_w;
    cv->ph = s->pad_h;
    cv->pw = s->pad_w;
    cv->groups = s->groups;
    cv->pad_value = s->pad_value;
    cv->cpg = s->c / s->groups;
    cv->opg = s->o / s->groups;
    cv->cw = bnn_ceil_div(s->c, 64);
    cv->cwg = bnn_ceil_div(cv->cpg, 64);
    cv->cow = bnn_ceil_div(s->o, 64);
    cv->K = s->kh * s->kw;
    cv->L = cv->K * cv->cwg;
    cv->nbg = bnn_ceil_div(cv->opg, BNN_BLOCK);
    cv->lanes = cv->groups * cv->nbg * BNN_BLOCK;
    cv->last_mask = cv->cpg % 64 ? (1ULL << (cv->cpg % 64)) - 1ULL : ~0ULL;

    const int64_t lanes = cv->lanes, L = cv->L, K = cv->K, cwg = cv->cwg;
    cv->wb = bnn_alloc64((size_t)(lanes * L) * sizeof *cv->wb);
    cv->scale = malloc((size_t)(3 * lanes) * sizeof *cv->scale);
    cv->tap_sum = malloc((size_t)(K * lanes) * sizeof *cv->tap_sum);
    cv->dmin = malloc((size_t)(2 * lanes) * sizeof *cv->dmin);
    if (s->input_threshold)
        cv->in_thr = malloc((size_t)s->c * sizeof *cv->in_thr);
    if (!cv->wb || !cv->scale || !cv->tap_sum || !cv->dmin ||
        (s->input_threshold && !cv->in_thr)) {
        bnn_conv2d_destroy(cv);
        return NULL;
    }
    cv->bias = cv->scale + lanes;
    cv->thr = s->transform.next_threshold ? cv->scale + 2 * lanes : NULL;
    cv->dmax = cv->dmin + lanes;
    if (cv->in_thr)
        memcpy(cv->in_thr, s->input_threshold, (size_t)s->c * sizeof *cv->in_thr);
    int failed = 0;
    if (s->transform.slope) {
        cv->slope = copy_floats(s->transform.slope, s->o, &failed);
        cv->shift_in = copy_floats(s->transform.shift_in, s->o, &failed);
        cv->shift_out = copy_floats(s->transform.shift_out, s->o, &failed);
    }
    if (failed) {
        bnn_conv2d_destroy(cv);
        return NULL;
    }

    const bnn_ones_fn ones = bnn_ones_kernel();
    for (int64_t lane = 0; lane < lanes; lane++) {
        /* lane = (group * nbg + block) * BNN_BLOCK + l */
        const int64_t g = lane / (cv->nbg * BNN_BLOCK), oo = lane % (cv->nbg * BNN_BLOCK);
        const int valid = oo < cv->opg;
        const int64_t oc = g * cv->opg + oo;
        const uint64_t *src = valid ? s->weights + oc * L : NULL;
        uint64_t *dst = cv->wb + (lane / BNN_BLOCK) * L * BNN_BLOCK + lane % BNN_BLOCK;
        for (int64_t t = 0; t < K; t++) {
            for (int64_t j = 0; j < cwg; j++) {
                /* Stray bits beyond the channels are cleared: they must never count. */
                const uint64_t mask = j == cwg - 1 ? cv->last_mask : ~0ULL;
                dst[(t * cwg + j) * BNN_BLOCK] = valid ? src[t * cwg + j] & mask : 0;
            }
            if (valid) {
                const uint64_t stray = src[t * cwg + cwg - 1] & ~cv->last_mask;
                const int64_t set = ones(src + t * cwg, cwg) - ones(&stray, 1);
                cv->tap_sum[t * lanes + lane] = (int32_t)(2 * set - cv->cpg);
            } else {
                cv->tap_sum[t * lanes + lane] = 0;
            }
        }
        cv->scale[lane] = valid ? s->transform.scale[oc] : 0.0f;
        cv->bias[lane] = valid ? s->transform.bias[oc] : 0.0f;
        if (cv->thr)
            cv->thr[lane] = valid ? s->transform.next_threshold[oc] : 0.0f;
    }
    /* The nibble path's 16-bit counts hold at most 64 * L mismatches. */
    if (cv->groups == 1 && cv->nbg >= BNN_NIB_MIN_BLOCKS && L * 64 <= UINT16_MAX &&
        bnn_isa_supported(BNN_ISA_AVX2) && !nibble_weights(cv)) {
        bnn_conv2d_destroy(cv);
        return NULL;
    }
    if (!integer_thresholds(cv, (int32_t)(K * cv->cpg))) {
        free(cv->dmin);
        cv->dmin = cv->dmax = NULL;
    }
    *status = BNN_OK;
    return cv;
}

/* Bits [start, start + nbits) of a packed row, as one word (nbits <= 64). */
static uint64_t extract_bits(const uint64_t *row, int64_t row_words, int64_t start, int nbits)
{
    const int64_t k = start >> 6;
    const int s = (int)(start & 63);
    uint64_t v = row[k] >> s;
    if (s && k + 1 < row_words)
        v |= row[k + 1] << (64 - s);
    return nbits == 64 ? v : v & ((1ULL << nbits) - 1ULL);
}

/* Classes of output positions along one axis by the range [lo, hi) of kernel indices
 * that fall inside the input. Both bounds are monotone in the position, so equal
 * ranges are consecutive. Returns the number of classes. */
static int64_t margin_classes(int64_t out, int64_t in, int64_t k, int64_t stride, int64_t pad,
                              int64_t *cls, int64_t *lo, int64_t *hi)
{
    int64_t n = 0;
    for (int64_t i = 0; i < out; i++) {
        const int64_t l = pad - i * stride > 0 ? pad - i * stride : 0;
        const int64_t h = in + pad - i * stride < k ? in + pad - i * stride : k;
        if (n == 0 || l != lo[n - 1] || h != hi[n - 1]) {
            lo[n] = l;
            hi[n] = h;
            n++;
        }
        cls[i] = n - 1;
    }
    return n;
}

/* Everything the two phases of a run share. */
typedef struct {
    const bnn_conv *cv;
    int64_t n, h, w, hp, wp, ho, wo, hs, ws, wpp, npix, ntiles, ncg, items, ncc;
    const float *xf;
    const uint64_t *xq, *xsrc, *fill;
    uint64_t *xbuf, *yq;
    uint16_t *xi; /* nibble offsets of the buffer's words (AVX2 nibble path), or NULL */
    float *yf;
    const float *res; /* [npix][O] added to the float output, or NULL */
    const int64_t *offs, *rc, *cc;
    const int32_t *const *class_corr;
    int atomic_bits;
    bnn_pack_fn pack;
    bnn_tile_fn tile;
} run_job;

/* Row r of the padded, group-aligned packed input buffer. */
static void fill_row(const run_job *j, int64_t r)
{
    const bnn_conv *cv = j->cv;
    const int64_t h = j->h, w = j->w, hp = j->hp, wp = j->wp, wpp = j->wpp, ph = cv->ph;
    const int64_t pw = cv->pw, c = cv->c, G = cv->groups, cpg = cv->cpg, cwg = cv->cwg;
    const int64_t cw = cv->cw;
    const int64_t ni = r / hp, yi = r % hp - ph;
    uint64_t *row = j->xbuf + r * wp * wpp;
    const int inside = yi >= 0 && yi < h;
    for (int64_t xp = 0; xp < wp; xp++)
        if (!inside || xp < pw || xp >= pw + w)
            memcpy(row + xp * wpp, j->fill, (size_t)wpp * sizeof *row);
    if (!inside)
        return;
    uint64_t *dst = row + pw * wpp;        /* first pixel inside the input */
    const int64_t pix = (ni * h + yi) * w; /* its index in the input */
    if (j->xf) {
        for (int64_t g = 0; g < G; g++)
            j->pack(j->xf + pix * c + g * cpg, c, cv->in_thr ? cv->in_thr + g * cpg : NULL, cpg,
                    w, dst + g * cwg, wpp);
    } else if (G == 1 || cpg % 64 == 0) {
        memcpy(dst, j->xq + pix * cw, (size_t)(w * cw) * sizeof *dst);
        if (cv->last_mask != ~0ULL)
            for (int64_t xi = 0; xi < w; xi++)
                dst[xi * cw + cw - 1] &= cv->last_mask;
    } else {
        for (int64_t xi = 0; xi < w; xi++) {
            const uint64_t *src = j->xq + (pix + xi) * cw;
            for (int64_t g = 0; g < G; g++)
                for (int64_t k = 0; k < cwg; k++) {
                    const int bits = (int)(cpg - 64 * k < 64 ? cpg - 64 * k : 64);
                    dst[xi * wpp + g * cwg + k] = extract_bits(src, cw, g * cpg + 64 * k, bits);
                }
        }
    }
}

/* Phase 1: the packed input buffer (unless the input is read in place) and, for the
 * nibble path, its nibble offsets, one buffer row at a time. */
static void fill_task(void *ctx, int64_t r0, int64_t r1, int tid)
{
    (void)tid;
    const run_job *j = ctx;
    for (int64_t r = r0; r < r1; r++) {
        if (j->xbuf)
            fill_row(j, r);
#if defined(__x86_64__) || defined(__i386__)
        if (j->xi) {
            const int64_t words = j->ws * j->wpp; /* per buffer row */
            bnn_nibble_index_avx2(j->xsrc + r * words, words, j->xi + r * words * 16);
        }
#endif
    }
}

/* Phase 2: work items [i0, i1) (chunk-major, so a thread keeps reusing a chunk's
 * weights). */
static void compute_task(void *ctx, int64_t i0, int64_t i1, int tid)
{
    (void)tid;
    const run_job *j = ctx;
    const bnn_conv *cv = j->cv;
    const int64_t ho = j->ho, wo = j->wo, hs = j->hs, ws = j->ws, wpp = j->wpp;
    const int64_t sh = cv->sh, sw = cv->sw, opg = cv->opg, cwg = cv->cwg, nbg = cv->nbg;
    for (int64_t it = i0; it < i1; it++) {
        const int64_t chunk = it / j->ntiles, p0 = (it % j->ntiles) * BNN_TILE;
        const int64_t g = chunk / j->ncg, blk0 = (chunk % j->ncg) * BNN_CHUNK_BLOCKS;
        const int64_t lane0 = (g * nbg + blk0) * BNN_BLOCK;
        const int64_t nb = nbg - blk0 < BNN_CHUNK_BLOCKS ? nbg - blk0 : BNN_CHUNK_BLOCKS;
        bnn_tile t;
        t.offs = j->offs;
        t.L = cv->L;
        t.kc = (int32_t)(cv->K * cv->cpg);
        t.w = cv->wb + lane0 * cv->L;
        t.scale = cv->scale + lane0;
        t.bias = cv->bias + lane0;
        t.thr = cv->thr && j->yq ? cv->thr + lane0 : NULL;
        t.dmin = cv->dmin ? cv->dmin + lane0 : NULL;
        t.dmax = cv->dmax ? cv->dmax + lane0 : NULL;
        t.nb = (int)nb;
        t.lanes = (int)(opg - blk0 * BNN_BLOCK < nb * BNN_BLOCK ? opg - blk0 * BNN_BLOCK
                                                                : nb * BNN_BLOCK);
        t.oc = g * opg + blk0 * BNN_BLOCK;
        t.packed_out = j->yq != NULL;
        t.atomic_bits = j->atomic_bits;
        t.npix = (int)(j->npix - p0 < BNN_TILE ? j->npix - p0 : BNN_TILE);
        t.slope = cv->slope ? cv->slope + t.oc : NULL;
        t.shift_in = cv->shift_in ? cv->shift_in + t.oc : NULL;
        t.shift_out = cv->shift_out ? cv->shift_out + t.oc : NULL;
        t.wn = j->xi ? cv->wn + chunk * cv->L * 16 * BNN_CHUNK_LANES : NULL;
        /* Output coordinates of the tile's first pixel; the input pointer then advances
         * one output pixel at a time and is recomputed at each new row. */
        int64_t ni = p0 / (ho * wo), oy = (p0 / wo) % ho, ox = p0 % wo;
        const uint64_t *xpix = j->xsrc + ((ni * hs + oy * sh) * ws + ox * sw) * wpp + g * cwg;
        const int32_t *const *crow = j->class_corr ? j->class_corr + j->rc[oy] * j->ncc : NULL;
        for (int p = 0; p < t.npix; p++) {
            const int64_t pix = p0 + p;
            t.x[p] = xpix;
            t.xi[p] = j->xi ? j->xi + (xpix - j->xsrc) * 16 : NULL;
            t.corr[p] = crow && crow[j->cc[ox]] ? crow[j->cc[ox]] + lane0 : NULL;
            t.yf[p] = j->yf ? j->yf + pix * cv->o : NULL;
            t.yp[p] = j->yq ? j->yq + pix * cv->cow : NULL;
            t.res[p] = j->res ? j->res + pix * cv->o + t.oc : NULL;
            if (++ox < wo) {
                xpix += sw * wpp;
            } else if (p + 1 < t.npix) {
                ox = 0;
                if (++oy == ho) {
                    oy = 0;
                    ni++;
                }
                xpix = j->xsrc + (ni * hs + oy * sh) * ws * wpp + g * cwg;
                crow = j->class_corr ? j->class_corr + j->rc[oy] * j->ncc : NULL;
            }
        }
        j->tile(&t);
    }
}

/* Run a prepared layer on x: float32 [n, h, w, C] (x_packed == 0) or packed
 * [n, h, w, ceil(C / 64)] (x_packed == 1); y: float32 [n, ho, wo, O] (y_packed == 0) or
 * packed [n, ho, wo, ceil(O / 64)] (y_packed == 1), fully written, where
 * ho = (h + 2 pad_h - KH) / stride_h + 1 and wo likewise. residual: float32 [n, ho, wo, O]
 * added to a float output before its activation, or NULL. y overlaps neither x nor the
 * residual. */
BNN_API int bnn_conv2d_run(const bnn_conv *cv, const void *x, int64_t x_packed, int64_t n,
                           int64_t h, int64_t w, void *y, int64_t y_packed,
                           const float *residual, int64_t isa, int64_t threads)
{
    if (!cv || !x || !y || n <= 0 || h <= 0 || w <= 0 || (x_packed != 0 && x_packed != 1) ||
        (y_packed != 0 && y_packed != 1) || (y_packed && (residual || cv->slope)))
        return BNN_EINVAL;
    int status = bnn_isa_status(isa);
    if (status != BNN_OK)
        return status;
    const int64_t kh = cv->kh, kw = cv->kw, ph = cv->ph, pw = cv->pw, G = cv->groups;
    const int64_t cpg = cv->cpg, opg = cv->opg, cw = cv->cw, cwg = cv->cwg, K = cv->K;
    const int64_t L = cv->L, lanes = cv->lanes;
    run_job j = {.cv = cv, .n = n, .h = h, .w = w};
    if (!bnn_sum(&j.hp, h, ph) || !bnn_sum(&j.hp, j.hp, ph) || !bnn_sum(&j.wp, w, pw) ||
        !bnn_sum(&j.wp, j.wp, pw))
        return BNN_ESIZE;
    if (j.hp < kh || j.wp < kw) /* the kernel must fit in the padded input */
        return BNN_EINVAL;
    const int64_t ho = (j.hp - kh) / cv->sh + 1, wo = (j.wp - kw) / cv->sw + 1;
    j.ho = ho;
    j.wo = wo;
    j.ncg = bnn_ceil_div(cv->nbg, BNN_CHUNK_BLOCKS); /* chunks per group */
    /* The caller's arrays, then the run's own: the padded buffer and its nibble offsets
     * (32 bytes per word bound both, and the in-place input's offsets), the tap offsets
     * and margin classes, the correction table (at most one row per output pixel), the
     * pixels and the work items. */
    const size_t x_elem = x_packed ? sizeof(uint64_t) : sizeof(float);
    const size_t y_elem = y_packed ? sizeof(uint64_t) : sizeof(float);
    int64_t x_count, y_count, margins, noffs;
    if (!BNN_ARRAY(&x_count, x_elem, n, h, w, x_packed ? cw : cv->c) ||
        !BNN_ARRAY(&y_count, y_elem, n, ho, wo, y_packed ? cv->cow : cv->o) ||
        !BNN_ARRAY(NULL, 16 * sizeof(uint16_t), n, j.hp, j.wp, G, cwg) ||
        !bnn_sum(&margins, ho, wo) || !BNN_COUNT(&margins, 3, margins) ||
        !bnn_sum(&noffs, L, margins) || !BNN_ARRAY(NULL, sizeof(int64_t), noffs) ||
        !BNN_ARRAY(NULL, sizeof(int32_t), n, ho, wo, lanes) ||
        !BNN_COUNT(&j.npix, n, ho, wo) ||
        !BNN_COUNT(&j.items, G, j.ncg, bnn_ceil_div(j.npix, BNN_TILE)))
        return BNN_ESIZE;
    if (bnn_overlap(y, (size_t)y_count * y_elem, x, (size_t)x_count * x_elem) ||
        (residual && bnn_overlap(y, (size_t)y_count * y_elem, residual,
                                 (size_t)y_count * sizeof *residual)))
        return BNN_EINVAL;
    j.ntiles = bnn_ceil_div(j.npix, BNN_TILE);
    j.xf = x_packed ? NULL : (const float *)x;
    j.xq = x_packed ? (const uint64_t *)x : NULL;
    j.yf = y_packed ? NULL : (float *)y;
    j.yq = y_packed ? (uint64_t *)y : NULL;
    j.res = residual;

    /* A packed input that needs no padding and has no unused bits (every group fills
     * whole words) is read in place; otherwise it is copied, which also clears stray
     * bits beyond the channels. */
    const int direct = j.xq && ph == 0 && pw == 0 && cpg % 64 == 0;
    const int64_t wpp = direct ? cw : G * cwg; /* words per pixel in the buffer */
    const int zero_pad = cv->pad_value == 0 && (ph > 0 || pw > 0);
    j.wpp = wpp;

    status = BNN_ENOMEM;
    int64_t *offs = malloc((size_t)noffs * sizeof *offs);
    uint64_t *fill = malloc((size_t)wpp * sizeof *fill);
    uint64_t *xbuf = direct ? NULL : bnn_alloc64((size_t)(n * j.hp * j.wp * wpp) * sizeof *xbuf);
    /* The nibble path needs the offsets of every word of the buffer (or in-place input). */
    const int64_t src_words = direct ? n * h * w * cw : n * j.hp * j.wp * wpp;
    const int nibble = isa == BNN_ISA_AVX2 && cv->wn;
    uint16_t *xi = nibble ? bnn_alloc64((size_t)(src_words * 16) * sizeof *xi) : NULL;
    int32_t *corr = NULL;
    /* Per (row class, column class): its correction row, NULL when no tap falls outside. */
    const int32_t **class_corr = NULL;
    const int team = bnn_team_size(threads, j.items, BNN_WORK(j.npix, lanes, L));
    if (!offs || !fill || (!direct && !xbuf) || (nibble && !xi))
        goto done;
    int64_t *rc = offs + L, *rlo = rc + ho, *rhi = rlo + ho;
    int64_t *cc = rhi + ho, *clo = cc + wo, *chi = clo + wo;

    for (int64_t t = 0; t < K; t++)
        for (int64_t k = 0; k < cwg; k++)
            offs[t * cwg + k] = ((t / kw) * j.wp + (t % kw)) * wpp + k;
    for (int64_t k = 0; k < wpp; k++)
        fill[k] = cv->pad_value == 1 ? (k % cwg == cwg - 1 ? cv->last_mask : ~0ULL) : 0;
    if (zero_pad) {
        const int64_t nrc = margin_classes(ho, h, kh, cv->sh, ph, rc, rlo, rhi);
        j.ncc = margin_classes(wo, w, kw, cv->sw, pw, cc, clo, chi);
        corr = calloc((size_t)(nrc * j.ncc * lanes), sizeof *corr);
        class_corr = malloc((size_t)(nrc * j.ncc) * sizeof *class_corr);
        if (!corr || !class_corr)
            goto done;
        for (int64_t r = 0; r < nrc; r++)
            for (int64_t q = 0; q < j.ncc; q++) {
                int32_t *dst = corr + (r * j.ncc + q) * lanes;
                /* Positions whose taps all fall inside need no correction. */
                const int inside = rlo[r] == 0 && rhi[r] == kh && clo[q] == 0 && chi[q] == kw;
                class_corr[r * j.ncc + q] = inside ? NULL : dst;
                for (int64_t t = 0; t < K; t++) {
                    const int64_t ky = t / kw, kx = t % kw;
                    if (ky >= rlo[r] && ky < rhi[r] && kx >= clo[q] && kx < chi[q])
                        continue;
                    const int32_t *ts = cv->tap_sum + t * lanes;
                    for (int64_t lane = 0; lane < lanes; lane++)
                        dst[lane] += ts[lane];
                }
            }
    }
    /* Packed output words are assembled from byte stores (or atomic ORs); they start
     * from zero unless every byte of every word is written by its own block. */
    j.atomic_bits = G > 1 && opg % 8 != 0;
    if (j.yq && (j.atomic_bits || cv->o % 64 != 0))
        memset(j.yq, 0, (size_t)(j.npix * cv->cow) * sizeof *j.yq);

    j.xbuf = xbuf;
    j.xi = xi;
    j.fill = fill;
    j.xsrc = direct ? j.xq : xbuf;
    j.hs = direct ? h : j.hp;
    j.ws = direct ? w : j.wp;
    j.offs = offs;
    j.rc = rc;
    j.cc = cc;
    j.class_corr = class_corr;
    j.tile = bnn_tile_kernel((int)isa);
    j.pack = bnn_pack_kernel((int)isa);
    if (!direct || xi) {
        /* Packing a row costs about a quarter of a word operation per input value. */
        const int64_t values = BNN_WORK(n, j.hs, j.ws, j.xf ? cv->c : wpp * 16);
        bnn_parallel(bnn_team_size(threads, n * j.hs, values / 4), n * j.hs, fill_task, &j);
    }
    bnn_parallel(team, j.items, compute_task, &j);
    status = BNN_OK;

done:
    free(offs);
    free(fill);
    free(xbuf);
    free(xi);
    free(corr);
    free(class_corr);
    return status;
}
