/* The library's thread team: a small pool of POSIX threads that wait by spinning briefly,
 * then sleep.
 *
 * A network calls the kernels dozens of times per inference, a fraction of a millisecond
 * each, with NumPy work in between. Threads that go to sleep at once after each call
 * (OpenMP's passive policy) must be woken for the next one, which costs tens of
 * microseconds per wake-up on a virtual machine, several times per layer; threads that
 * spin for milliseconds (OpenMP's default) take the cores from whatever runs between
 * the calls, NumPy's threads or PyTorch's in the same process. Here a worker spins for
 * BNN_RUNTIME_SPIN_US microseconds (default 200) after its last job, then sleeps on a
 * condition variable until the next one. The calling thread is always member 0 of the
 * team; each worker has its own job slot, so a job never reaches a worker it does not
 * use. One job runs at a time: a call made while another thread's job holds the pool
 * runs on its calling thread alone. */
#define _GNU_SOURCE /* sched_getaffinity */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "_kernels.h"

/* Most threads a job can use. */
#define BNN_MAX_THREADS 256
/* Microseconds a worker spins after a job before it sleeps, unless BNN_RUNTIME_SPIN_US
 * says otherwise. */
#define BNN_DEFAULT_SPIN_US 200

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

/* One worker's job slot, on its own cache lines. */
typedef struct {
    uint64_t gen;      /* bumped (after fn, ctx, nt are written) to hand over a job */
    int sleeping;      /* 1 while the worker waits on the condition variable */
    int tid, nt;
    bnn_task_fn fn;
    void *ctx;
    pthread_t thread;
    char pad[64];
} __attribute__((aligned(64))) worker_slot;

static struct {
    pthread_mutex_t lock; /* guards sleeping workers and the wake-up */
    pthread_cond_t wake;
    pthread_mutex_t busy; /* held by the thread whose job is running */
    int started;          /* workers created (slots 1..started) */
    int pending;          /* workers of the current job that have not finished */
    int64_t spin_ns;
    worker_slot slot[BNN_MAX_THREADS];
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER,
          .wake = PTHREAD_COND_INITIALIZER,
          .busy = PTHREAD_MUTEX_INITIALIZER};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Wait until the slot's generation differs from `seen`: spin, then sleep. */
static uint64_t wait_for_job(worker_slot *s, uint64_t seen)
{
    const int64_t deadline = now_ns() + pool.spin_ns;
    for (int i = 1;; i++) {
        const uint64_t g = __atomic_load_n(&s->gen, __ATOMIC_ACQUIRE);
        if (g != seen)
            return g;
        cpu_relax();
        if ((i & 255) == 0 && now_ns() > deadline)
            break;
    }
    pthread_mutex_lock(&pool.lock);
    __atomic_store_n(&s->sleeping, 1, __ATOMIC_SEQ_CST);
    uint64_t g;
    while ((g = __atomic_load_n(&s->gen, __ATOMIC_SEQ_CST)) == seen)
        pthread_cond_wait(&pool.wake, &pool.lock);
    __atomic_store_n(&s->sleeping, 0, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&pool.lock);
    return g;
}

static void *worker_main(void *arg)
{
    worker_slot *s = arg;
    uint64_t seen = 0;
    for (;;) {
        seen = wait_for_job(s, seen);
        s->fn(s->ctx, s->tid, s->nt);
        __atomic_fetch_sub(&pool.pending, 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

/* After fork() only the forking thread exists in the child: start the pool afresh. */
static void reset_after_fork(void)
{
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pthread_mutex_init(&pool.busy, NULL);
    pool.started = 0;
    pool.pending = 0;
}

/* Create workers until `count` exist (called with pool.busy held); returns how many
 * exist, fewer if the system refuses threads. */
static int ensure_workers(int count)
{
    static int initialised;
    if (!initialised) {
        const char *env = getenv("BNN_RUNTIME_SPIN_US");
        const long us = env ? strtol(env, NULL, 10) : BNN_DEFAULT_SPIN_US;
        pool.spin_ns = (us > 0 ? us : 0) * 1000;
        pthread_atfork(NULL, NULL, reset_after_fork);
        initialised = 1;
    }
    while (pool.started < count) {
        worker_slot *s = &pool.slot[pool.started + 1];
        s->gen = 0;
        s->sleeping = 0;
        s->tid = pool.started + 1;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int failed = pthread_create(&s->thread, &attr, worker_main, s);
        pthread_attr_destroy(&attr);
        if (failed)
            break;
        pool.started++;
    }
    return pool.started;
}

void bnn_parallel(int nt, bnn_task_fn fn, void *ctx)
{
    if (nt > BNN_MAX_THREADS)
        nt = BNN_MAX_THREADS;
    if (nt <= 1 || pthread_mutex_trylock(&pool.busy) != 0) {
        fn(ctx, 0, 1);
        return;
    }
    const int workers = ensure_workers(nt - 1);
    if (nt > workers + 1)
        nt = workers + 1;
    __atomic_store_n(&pool.pending, nt - 1, __ATOMIC_RELAXED);
    int asleep = 0;
    for (int i = 1; i < nt; i++) {
        worker_slot *s = &pool.slot[i];
        s->fn = fn;
        s->ctx = ctx;
        s->nt = nt;
        __atomic_fetch_add(&s->gen, 1, __ATOMIC_SEQ_CST);
        asleep |= __atomic_load_n(&s->sleeping, __ATOMIC_SEQ_CST);
    }
    if (asleep) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    fn(ctx, 0, nt);
    for (int i = 1; __atomic_load_n(&pool.pending, __ATOMIC_ACQUIRE) != 0; i++) {
        cpu_relax();
        if ((i & 1023) == 0)
            sched_yield(); /* a worker may be waiting for a core */
    }
    pthread_mutex_unlock(&pool.busy);
}

bnn_cursor *bnn_cursors(int nt)
{
    bnn_cursor *c = bnn_alloc64((size_t)(nt > 1 ? nt : 1) * sizeof *c);
    if (c)
        memset(c, 0, (size_t)(nt > 1 ? nt : 1) * sizeof *c);
    return c;
}

/* bnn_callback: how Python code (NumPy work that releases the GIL) shares the same
 * threads as the kernels. */
typedef struct {
    bnn_callback cb;
} callback_job;

static void callback_task(void *ctx, int tid, int nt)
{
    ((const callback_job *)ctx)->cb(tid, nt);
}

BNN_API void bnn_parallel_callback(int64_t threads, bnn_callback cb)
{
    if (!cb)
        return;
    callback_job job = {cb};
    const int64_t nt = threads < 1 ? 1 : threads > BNN_MAX_THREADS ? BNN_MAX_THREADS : threads;
    bnn_parallel((int)nt, callback_task, &job);
}

/* Cores this process may run on. */
static int available_cores(void)
{
#if defined(__linux__) && defined(CPU_COUNT)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
#endif
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static long positive_env(const char *name)
{
    const char *env = getenv(name);
    const long v = env ? strtol(env, NULL, 10) : 0;
    return v > 0 ? v : 0;
}

/* Threads used when a call asks for 0: BNN_RUNTIME_THREADS if set to a positive
 * integer, else OMP_NUM_THREADS (the usual variable for a process's thread count),
 * else the cores this process may use. */
BNN_API int bnn_default_threads(void)
{
    long v = positive_env("BNN_RUNTIME_THREADS");
    if (!v)
        v = positive_env("OMP_NUM_THREADS");
    if (!v)
        v = available_cores();
    return v > BNN_MAX_THREADS ? BNN_MAX_THREADS : (int)v;
}

/* Word operations (XOR + popcount + add of 64 bits) below which another thread costs
 * more to start and join than it saves (a few microseconds of work). */
#define BNN_MIN_WORK_PER_THREAD (1 << 14)

int bnn_team_size(int64_t requested, int64_t work_items, int64_t work)
{
    int64_t t = requested > 0 ? requested : bnn_default_threads();
    if (t > work_items)
        t = work_items;
    if (t > work / BNN_MIN_WORK_PER_THREAD + 1)
        t = work / BNN_MIN_WORK_PER_THREAD + 1;
    if (t > BNN_MAX_THREADS)
        t = BNN_MAX_THREADS;
    return t < 1 ? 1 : (int)t;
}
