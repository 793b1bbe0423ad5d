/* Binary kernel library: CPU-feature dispatch, threading and activation packing.
 *
 * The library is plain C loaded through ctypes (no Python C-API). It is compiled
 * without any -march flag: the AVX2 and AVX-512 kernels carry per-function target
 * attributes, and the functions here pick, at run time, the ones the CPU can execute.
 * Convolution and linear layers are in _kernels_conv.c, the thread team in
 * _kernels_threads.c, the inner loops in one file per ISA (_kernels_avx512.c,
 * _kernels_avx2.c, _kernels_portable.c). */
#include <stdlib.h>

#include "_kernels.h"

BNN_API int bnn_abi_version(void)
{
    return BNN_ABI_VERSION;
}

/* ---- CPU features and dispatch ---------------------------------------------------- */

BNN_API int bnn_isa_supported(int isa)
{
    switch (isa) {
    case BNN_ISA_PORTABLE:
        return 1;
#if defined(__x86_64__) || defined(__i386__)
    case BNN_ISA_AVX2:
        return __builtin_cpu_supports("avx2") ? 1 : 0;
    case BNN_ISA_AVX512:
#ifdef BNN_AVX512_EMULATION
        /* A test build whose AVX-512 file runs on emulated intrinsics. */
        return 1;
#else
        /* __builtin_cpu_supports also checks that the OS saves the AVX-512 state. */
        return (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq"))
                   ? 1
                   : 0;
#endif
#endif
    default:
        return 0;
    }
}

BNN_API int bnn_best_isa(void)
{
    for (int isa = BNN_ISA_COUNT - 1; isa > 0; isa--)
        if (bnn_isa_supported(isa))
            return isa;
    return BNN_ISA_PORTABLE;
}

int bnn_isa_status(int64_t isa)
{
    if (isa < 0 || isa >= BNN_ISA_COUNT)
        return BNN_EINVAL;
    return bnn_isa_supported((int)isa) ? BNN_OK : BNN_EISA;
}

bnn_tile_fn bnn_tile_kernel(int isa)
{
#if defined(__x86_64__) || defined(__i386__)
    if (isa == BNN_ISA_AVX512)
        return bnn_tile_avx512;
    if (isa == BNN_ISA_AVX2)
        return bnn_tile_avx2;
    if (__builtin_cpu_supports("popcnt"))
        return bnn_tile_portable_popcnt;
#endif
    (void)isa;
    return bnn_tile_portable;
}

bnn_pack_fn bnn_pack_kernel(int isa)
{
#if defined(__x86_64__) || defined(__i386__)
    if (isa == BNN_ISA_AVX512)
        return bnn_pack_avx512;
    if (isa == BNN_ISA_AVX2)
        return bnn_pack_avx2;
#endif
    (void)isa;
    return bnn_pack_portable;
}

bnn_ones_fn bnn_ones_kernel(void)
{
#if defined(__x86_64__) || defined(__i386__)
    if (__builtin_cpu_supports("popcnt"))
        return bnn_ones_portable_popcnt;
#endif
    return bnn_ones_portable;
}

/* Cache-line aligned allocation (freed with free()). */
void *bnn_alloc64(size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0)
        return NULL;
    return p;
}

/* ---- activation packing ------------------------------------------------------------ */

typedef struct {
    const float *x, *thr;
    int64_t rows, c, cw;
    uint64_t *out;
    bnn_pack_fn pack;
} pack_job;

/* The work items: runs of 64 rows. */
#define PACK_CHUNK 64

static void pack_task(void *ctx, int64_t k0, int64_t k1, int tid)
{
    (void)tid;
    const pack_job *j = ctx;
    for (int64_t k = k0; k < k1; k++) {
        const int64_t r0 = k * PACK_CHUNK;
        const int64_t nr = j->rows - r0 < PACK_CHUNK ? j->rows - r0 : PACK_CHUNK;
        j->pack(j->x + r0 * j->c, j->c, j->thr, j->c, nr, j->out + r0 * j->cw, j->cw);
    }
}

/* Pack rows x C float32 values into rows x ceil(C / 64) words: bit = x + thr >= 0. */
BNN_API int bnn_pack_activations(const float *x, const float *thr, int64_t rows, int64_t c,
                                 uint64_t *out, int64_t isa, int64_t threads)
{
    if (rows < 0 || c <= 0 || !x || !out)
        return BNN_EINVAL;
    const int status = bnn_isa_status(isa);
    if (status != BNN_OK)
        return status;
    const int64_t cw = bnn_ceil_div(c, 64);
    if (!BNN_ARRAY(NULL, sizeof *x, rows, c) || !BNN_ARRAY(NULL, sizeof *out, rows, cw))
        return BNN_ESIZE;
    pack_job job = {x, thr, rows, c, cw, out, bnn_pack_kernel((int)isa)};
    /* Comparing a float costs about a quarter of a word operation. */
    const int64_t chunks = bnn_ceil_div(rows, PACK_CHUNK);
    bnn_parallel(bnn_team_size(threads, chunks, rows * c / 4), chunks, pack_task, &job);
    return BNN_OK;
}
