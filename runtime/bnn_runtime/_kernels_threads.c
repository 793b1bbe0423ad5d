/* The library's thread team: a small pool of POSIX threads that wait by spinning briefly,
 * then sleep, and take a job's work in chunks from a shared counter.
 *
 * A network calls the kernels dozens of times per inference, a fraction of a millisecond
 * each, with NumPy work in between. Threads that go to sleep at once after each call
 * (OpenMP's passive policy) must be woken for the next one, which costs tens of
 * microseconds per wake-up on a virtual machine, several times per layer; threads that
 * spin for milliseconds (OpenMP's default) take the cores from whatever runs between
 * the calls, NumPy's threads or PyTorch's in the same process. Here a worker spins for
 * BNN_RUNTIME_SPIN_US microseconds (default 200) after its last job, then sleeps on a
 * condition variable until the next one. The calling thread is always member 0 of the
 * team; each worker has its own slot through which the caller invites it to a job, so a
 * job never reaches a worker it does not use. One job runs at a time: a call made while
 * another thread's job holds the pool runs on its calling thread alone.
 *
 * A job's items are cut into chunks of consecutive items, a few per member, and every
 * member, the caller included, claims the next chunk from one atomic counter until none
 * remain. Nothing is assigned in advance, so a worker that the scheduler runs late (its
 * core busy with another process) leaves its chunks to the others, and the caller waits
 * only for chunks that a worker has claimed and not yet finished, never for a worker to
 * start. The counter carries the job's number beside the chunks left, so a worker that
 * wakes up after its job has ended claims nothing (and never reads the job's context,
 * which may be gone). */
#define _GNU_SOURCE /* sched_getaffinity */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
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
/* Chunks per member of a job: enough that the chunk a slow member still holds at the
 * end is a small part of the job, few enough that claiming one (an atomic operation on a
 * shared cache line, well under a microsecond) costs nothing next to its work. */
#define BNN_CHUNKS_PER_THREAD 8
/* The job counter: the job's number in the high bits, the chunks left in the low ones. */
#define BNN_CHUNK_BITS 24
#define BNN_CHUNK_MASK ((UINT64_C(1) << BNN_CHUNK_BITS) - 1)

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

/* One worker's slot, on its own cache lines. */
typedef struct {
    _Atomic uint64_t invite; /* the number of the last job the worker was invited to */
    atomic_int sleeping;     /* 1 while the worker waits on the condition variable */
    int tid;
    pthread_t thread;
    char pad[64];
} __attribute__((aligned(64))) worker_slot;

static struct {
    pthread_mutex_t lock; /* guards sleeping workers and the wake-up */
    pthread_cond_t wake;
    pthread_mutex_t busy; /* held by the thread whose job is running */
    int started;          /* workers created (slots 1..started) */
    int64_t spin_ns;
#if defined(BNN_TEST_HOOKS)
    int64_t delay_ns; /* a test build's pause of a worker before it claims (see worker_main) */
#endif
    uint64_t number; /* the current (or last) job's number */
    /* The current job, written before its counter is published; read only by a member
     * that has claimed one of its chunks, which keeps the job from ending meanwhile. */
    bnn_task_fn fn;
    void *ctx;
    int64_t items, chunk, chunks;
    _Alignas(64) _Atomic uint64_t counter; /* number << BNN_CHUNK_BITS | chunks left */
    _Alignas(64) _Atomic int64_t done;     /* chunks of the current job finished */
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

/* Wait until the slot's invitation differs from `seen`: spin, then sleep. */
static uint64_t wait_for_job(worker_slot *s, uint64_t seen)
{
    const int64_t deadline = now_ns() + pool.spin_ns;
    for (int i = 1;; i++) {
        const uint64_t g = atomic_load_explicit(&s->invite, memory_order_relaxed);
        if (g != seen)
            return g;
        cpu_relax();
        if ((i & 255) == 0 && now_ns() > deadline)
            break;
    }
    pthread_mutex_lock(&pool.lock);
    atomic_store(&s->sleeping, 1);
    uint64_t g;
    while ((g = atomic_load(&s->invite)) == seen)
        pthread_cond_wait(&pool.wake, &pool.lock);
    atomic_store_explicit(&s->sleeping, 0, memory_order_relaxed);
    pthread_mutex_unlock(&pool.lock);
    return g;
}

/* Claim chunks of job `number` and run them until none are left (or the job has ended),
 * then count them as done; returns how many this member ran. */
static int64_t run_chunks(uint64_t number, int tid)
{
    const uint64_t mine = number << BNN_CHUNK_BITS;
    int64_t ran = 0;
    uint64_t c = atomic_load_explicit(&pool.counter, memory_order_relaxed);
    for (;;) {
        if ((c & ~BNN_CHUNK_MASK) != mine || (c & BNN_CHUNK_MASK) == 0)
            break;
        /* Acquire: the job's fields were written before its counter was published. */
        if (!atomic_compare_exchange_weak_explicit(&pool.counter, &c, c - 1,
                                                   memory_order_acquire, memory_order_relaxed))
            continue;
        const int64_t k = pool.chunks - (int64_t)(c & BNN_CHUNK_MASK);
        const int64_t start = k * pool.chunk;
        const int64_t stop = start + pool.chunk < pool.items ? start + pool.chunk : pool.items;
        pool.fn(pool.ctx, start, stop, tid);
        ran++;
        c = atomic_load_explicit(&pool.counter, memory_order_relaxed);
    }
    /* Release: the chunks' writes (and this member's last reads of the job) come before
     * the caller sees them done and returns. */
    if (ran)
        atomic_fetch_add_explicit(&pool.done, ran, memory_order_release);
    return ran;
}

static void *worker_main(void *arg)
{
    worker_slot *s = arg;
    uint64_t seen = 0;
    for (;;) {
        seen = wait_for_job(s, seen);
#if defined(BNN_TEST_HOOKS)
        if (pool.delay_ns > 0) /* a worker the scheduler runs late */
            nanosleep(&(struct timespec){pool.delay_ns / 1000000000, pool.delay_ns % 1000000000},
                      NULL);
#endif
        run_chunks(seen, s->tid);
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
}

static long positive_env(const char *name)
{
    const char *env = getenv(name);
    const long v = env ? strtol(env, NULL, 10) : 0;
    return v > 0 ? v : 0;
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
#if defined(BNN_TEST_HOOKS)
        pool.delay_ns = positive_env("BNN_TEST_WORKER_DELAY_US") * 1000;
#endif
        pthread_atfork(NULL, NULL, reset_after_fork);
        initialised = 1;
    }
    while (pool.started < count) {
        worker_slot *s = &pool.slot[pool.started + 1];
        atomic_init(&s->invite, pool.number);
        atomic_init(&s->sleeping, 0);
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

void bnn_parallel(int nt, int64_t items, bnn_task_fn fn, void *ctx)
{
    if (items <= 0)
        return;
    if (nt > BNN_MAX_THREADS)
        nt = BNN_MAX_THREADS;
    if (nt > items)
        nt = (int)items;
    if (nt <= 1 || pthread_mutex_trylock(&pool.busy) != 0) {
        fn(ctx, 0, items, 0);
        return;
    }
    const int workers = ensure_workers(nt - 1);
    if (nt > workers + 1)
        nt = workers + 1;
    if (nt <= 1) {
        pthread_mutex_unlock(&pool.busy);
        fn(ctx, 0, items, 0);
        return;
    }
    const int64_t most = (int64_t)nt * BNN_CHUNKS_PER_THREAD;
    pool.chunk = bnn_ceil_div(items, items < most ? items : most);
    pool.chunks = bnn_ceil_div(items, pool.chunk);
    pool.items = items;
    pool.fn = fn;
    pool.ctx = ctx;
    const uint64_t number = ++pool.number;
    atomic_store_explicit(&pool.done, 0, memory_order_relaxed);
    /* Release: publishes the job's fields with its counter. */
    atomic_store_explicit(&pool.counter,
                          (number << BNN_CHUNK_BITS) | (uint64_t)pool.chunks,
                          memory_order_release);
    int asleep = 0;
    for (int i = 1; i < nt; i++) {
        worker_slot *s = &pool.slot[i];
        atomic_store(&s->invite, number);
        asleep |= atomic_load(&s->sleeping);
    }
    if (asleep) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    run_chunks(number, 0);
    for (int i = 1; atomic_load_explicit(&pool.done, memory_order_acquire) != pool.chunks; i++) {
        cpu_relax();
        if ((i & 1023) == 0)
            sched_yield(); /* a worker holding a chunk may be waiting for a core */
    }
    pthread_mutex_unlock(&pool.busy);
}

/* bnn_callback: how Python code (NumPy work that releases the GIL) shares the same
 * threads as the kernels. Each of the `parts` parts is a work item of its own. */
typedef struct {
    bnn_callback cb;
    int64_t parts;
} callback_job;

static void callback_task(void *ctx, int64_t start, int64_t stop, int tid)
{
    (void)tid;
    const callback_job *j = ctx;
    for (int64_t part = start; part < stop; part++)
        j->cb(part, j->parts);
}

BNN_API void bnn_parallel_callback(int64_t threads, bnn_callback cb)
{
    if (!cb)
        return;
    const int64_t parts = threads < 1 ? 1 : threads > BNN_MAX_THREADS ? BNN_MAX_THREADS : threads;
    callback_job job = {cb, parts};
    bnn_parallel((int)parts, parts, callback_task, &job);
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
