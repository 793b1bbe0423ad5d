/* The loops of max and average pooling (_kernels_float.c) on one width of float vector.
 *
 * Included once per width, so it has no include guard: the includer defines POOL_FLOATS
 * (floats per vector: 4 or 8), POOL_ATTR (the target attribute of the functions, or
 * nothing) and POOL_TASK (the name of the team task it defines), and provides pool_job and
 * the scalar combine(). A register block is 16 channels whatever the width.
 * Vectors are GCC and Clang vector extensions, so the compiler picks the instructions. */
#define POOL_CAT_(a, b) a##b
#define POOL_CAT(a, b) POOL_CAT_(a, b)
#define POOL_VEC POOL_CAT(pool_f32x, POOL_FLOATS)
#define POOL_IVEC POOL_CAT(pool_i32x, POOL_FLOATS)
#define POOL_LOAD POOL_CAT(pool_load, POOL_FLOATS)
#define POOL_COMBINE POOL_CAT(pool_combine, POOL_FLOATS)
#define POOL_ROWS POOL_CAT(pool_rows, POOL_FLOATS)
#define POOL_LANES 16
#define POOL_VECTORS (POOL_LANES / POOL_FLOATS)

typedef float POOL_VEC __attribute__((vector_size(4 * POOL_FLOATS)));
typedef int32_t POOL_IVEC __attribute__((vector_size(4 * POOL_FLOATS)));

static inline __attribute__((always_inline)) POOL_ATTR POOL_VEC POOL_LOAD(const float *p)
{
    POOL_VEC v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* A sum, or a maximum that NaN wins (as in PyTorch), lane by lane. */
static inline __attribute__((always_inline)) POOL_ATTR POOL_VEC POOL_COMBINE(POOL_VEC acc,
                                                                              POOL_VEC in,
                                                                              int average)
{
    if (average)
        return acc + in;
    const POOL_IVEC take = (in > acc) | (in != in);
    return (POOL_VEC)((take & (POOL_IVEC)in) | (~take & (POOL_IVEC)acc));
}

/* Output rows [r0, r1) of a pooling; `average` is a constant at each call site, so the
 * compiler builds one loop nest for max and one for average, with the channel loops
 * vectorised and inlined. */
static inline __attribute__((always_inline)) POOL_ATTR void POOL_ROWS(const pool_job *j,
                                                                      int64_t r0, int64_t r1,
                                                                      const int average)
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
                POOL_VEC acc[POOL_VECTORS];
                for (int v = 0; v < POOL_VECTORS; v++)
                    acc[v] = POOL_LOAD(corner + k0 + POOL_FLOATS * v);
                for (int64_t yi = y0; yi < y1; yi++)
                    for (int64_t xi = yi == y0 ? x0 + 1 : x0; xi < x1; xi++) {
                        const float *in = x + ((ni * h + yi) * w + xi) * c + k0;
                        for (int v = 0; v < POOL_VECTORS; v++)
                            acc[v] = POOL_COMBINE(acc[v], POOL_LOAD(in + POOL_FLOATS * v),
                                                  average);
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

/* Output rows [r0, r1) (over all images). */
POOL_ATTR static void POOL_TASK(void *ctx, int64_t r0, int64_t r1, int tid)
{
    (void)tid;
    const pool_job *j = ctx;
    if (j->average)
        POOL_ROWS(j, r0, r1, 1);
    else
        POOL_ROWS(j, r0, r1, 0);
}

#undef POOL_CAT_
#undef POOL_CAT
#undef POOL_VEC
#undef POOL_IVEC
#undef POOL_LOAD
#undef POOL_COMBINE
#undef POOL_LANES
#undef POOL_VECTORS
#undef POOL_FLOATS
#undef POOL_ATTR
#undef POOL_ROWS
#undef POOL_TASK
