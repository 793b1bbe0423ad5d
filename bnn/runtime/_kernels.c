/* Binary kernel library: CPU-feature dispatch, threading and activation packing.
 *
 * The library is plain C loaded through ctypes (no Python C-API). It is compiled
 * without any -march flag: the AVX2 and AVX-512 kernels carry per-function target
 * attributes, and the functions here pick, at run time, the ones the CPU can execute.
 * Convolution and linear layers are in _kernels_conv.c, the inner loops in one file per
 * ISA (_kernels_avx512.c, _kernels_avx2.c, _kernels_portable.c). */
#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "_kernels.h"

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
        /* __builtin_cpu_supports also checks that the OS saves the AVX-512 state. */
        return (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq"))
                   ? 1
                   : 0;
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

/* ---- threads ----------------------------------------------------------------------- */

/* 1 if the library was built with OpenMP (threads > 1 are honoured), else 0. */
BNN_API int bnn_has_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* Threads used when a call asks for 0: BNN_RUNTIME_THREADS if set to a positive
 * integer, else OpenMP's default (OMP_NUM_THREADS, else the number of cores). */
BNN_API int bnn_default_threads(void)
{
    const char *env = getenv("BNN_RUNTIME_THREADS");
    if (env) {
        long v = strtol(env, NULL, 10);
        if (v > 0)
            return (int)v;
    }
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* Word operations (XOR + popcount + add of 64 bits) below which another thread costs
 * more to start and join than it saves (about 10 microseconds of work). */
#define BNN_MIN_WORK_PER_THREAD (1 << 15)

/* Threads for a call: the request (or the default), but no more than there are work
 * items and no more than the amount of work pays for. */
int bnn_team_size(int64_t requested, int64_t work_items, int64_t work)
{
    int64_t t = requested > 0 ? requested : bnn_default_threads();
    if (t > work_items)
        t = work_items;
    if (t > work / BNN_MIN_WORK_PER_THREAD + 1)
        t = work / BNN_MIN_WORK_PER_THREAD + 1;
    return t < 1 ? 1 : (int)t;
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

/* Pack rows x C float32 values into rows x ceil(C / 64) words: bit = x + thr >= 0. */
BNN_API int bnn_pack_activations(const float *x, const float *thr, int64_t rows, int64_t c,
                                 uint64_t *out, int64_t isa, int64_t threads)
{
    if (rows < 0 || c <= 0 || !x || !out)
        return BNN_EINVAL;
    if (!bnn_isa_supported((int)isa))
        return BNN_EISA;
    const bnn_pack_fn pack = bnn_pack_kernel((int)isa);
    const int64_t cw = (c + 63) / 64, chunk = 64, chunks = (rows + chunk - 1) / chunk;
    /* Comparing a float costs about a quarter of a word operation. */
    const int nt = bnn_team_size(threads, chunks, rows * c / 4);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t k = 0; k < chunks; k++) {
        const int64_t r0 = k * chunk, nr = rows - r0 < chunk ? rows - r0 : chunk;
        pack(x + r0 * c, c, thr, c, nr, out + r0 * cw, cw);
    }
    return BNN_OK;
}
