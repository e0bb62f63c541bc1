/* emu.cpp — the CUDA emulator's runtime (emu.h says what it imitates and what it cannot).
 *
 * One launch: blockDim.x pthreads are started once and run the grid's blocks in order
 * (x fastest, then y, then z). Before each block, thread 0 fills the dynamic shared
 * memory with 0xff and its guard bytes with a pattern; all threads pass a start barrier,
 * run the kernel body, and meet at an end barrier, after which thread 0 checks the guards.
 * Every barrier waits with a timeout: when some thread never arrives, the waiting ones
 * record where they were stuck and leave the kernel by an exception, and emu_run fails
 * with that message.
 */
#include "emu.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>

#include <vector>

thread_local dim3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace
{

enum { GUARD = 256, MAX_THREADS = 1024, SMEM_DEFAULT = 48 * 1024, SMEM_OPTIN = 227 * 1024 };
const unsigned char GUARD_BYTE = 0xa5;

struct abort_kernel {
}; /* thrown out of a barrier when the launch has failed */

double g_timeout = 20.0;
char g_error[1024];

/* A barrier on a futex: the last thread to arrive bumps the generation and wakes the
 * others (no mutex for 256 threads to queue on after a broadcast). */
struct barrier {
    std::atomic<unsigned> arrived{0}, gen{0};
    unsigned n = 0;
    std::atomic<const char *> what{""};  /* the kind of the last wait (for a deadlock report) */
};

struct launch {
    std::function<void()> body;
    size_t smem = 0;
    std::vector<unsigned char> shared; /* GUARD | smem | GUARD */
    barrier start, end, block_bar;
    std::vector<barrier> warp_bar;
    std::vector<uint64_t> warp_buf; /* [warps][2][32]: warp operations alternate halves */
    pthread_mutex_t fail_mu = PTHREAD_MUTEX_INITIALIZER;
    std::atomic<int> failed{0};
};
launch *g_launch;
/* the calling thread's count of warp operations in this block: all lanes of a warp make
 * the same sequence of them, so its parity picks the half of the exchange buffer. Writing
 * a half again needs the barrier of the operation in between, which every lane reaches
 * only after reading that half: one barrier per operation is enough. */
thread_local unsigned t_warp_ops;

void fail(launch *L, const char *fmt, ...)
{
    pthread_mutex_lock(&L->fail_mu);
    if (!L->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g_error, sizeof g_error, fmt, ap);
        va_end(ap);
        L->failed = 1;
    }
    pthread_mutex_unlock(&L->fail_mu);
}

double seconds_since(const struct timespec &t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t0.tv_sec) + 1e-9 * (now.tv_nsec - t0.tv_nsec);
}

/* Waits until b's n threads have arrived. what names the barrier in the message. */
void wait(launch *L, barrier &b, const char *what)
{
    if (L->failed) throw abort_kernel();
    b.what.store(what, std::memory_order_relaxed);
    const unsigned gen = b.gen.load(std::memory_order_acquire);
    if (b.arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == b.n) {
        b.arrived.store(0, std::memory_order_relaxed);
        b.gen.fetch_add(1, std::memory_order_release);
        syscall(SYS_futex, &b.gen, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
        return;
    }
    for (int spin = 0; spin < 200; spin++)
        if (b.gen.load(std::memory_order_acquire) != gen) return;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (b.gen.load(std::memory_order_acquire) == gen) {
        /* wake every 50 ms to see whether another barrier has failed the launch */
        struct timespec slice = {0, 50 * 1000000L};
        syscall(SYS_futex, &b.gen, FUTEX_WAIT_PRIVATE, gen, &slice, NULL, 0);
        if (b.gen.load(std::memory_order_acquire) != gen) break;
        const double waited = seconds_since(t0);
        if (L->failed || waited > g_timeout) {
            const unsigned arrived = b.arrived.fetch_sub(1); /* this thread leaves */
            if (!L->failed) {
                /* every barrier with threads in it: where the block's threads are stuck */
                char where[512] = "";
                size_t len = 0;
                auto add = [&](barrier &x, const char *name, int w) {
                    const unsigned k = x.arrived.load();
                    if (k == 0 || len >= sizeof where) return;
                    const char *nm = name[0] ? name : x.what.load();
                    if (w >= 0)
                        len += snprintf(where + len, sizeof where - len, "%s%s of warp %d %u/%u",
                                        len ? ", " : "", nm, w, k, x.n);
                    else
                        len += snprintf(where + len, sizeof where - len, "%s%s %u/%u",
                                        len ? ", " : "", nm, k, x.n);
                };
                add(L->start, "block start", -1);
                add(L->block_bar, "__syncthreads", -1);
                for (size_t w = 0; w < L->warp_bar.size(); w++) add(L->warp_bar[w], "", (int)w);
                add(L->end, "kernel end", -1);
                fail(L,
                     "deadlock: %s in block (%u,%u,%u) reached by %u of its %u threads "
                     "(thread %u waited %.1f s; threads waiting: %s); a barrier must be reached "
                     "by every thread of the block (or warp), and none may return from the "
                     "kernel before it",
                     what, blockIdx.x, blockIdx.y, blockIdx.z, arrived, b.n, threadIdx.x, waited,
                     where);
            }
            throw abort_kernel();
        }
    }
    std::atomic_thread_fence(std::memory_order_acquire);
}

void check_guards(launch *L)
{
    const unsigned char *s = L->shared.data();
    for (size_t i = 0; i < GUARD; i++) {
        if (s[GUARD - 1 - i] != GUARD_BYTE) {
            fail(L,
                 "dynamic shared memory written out of bounds in block (%u,%u,%u): byte %zu "
                 "before its start (smem %zu bytes)",
                 blockIdx.x, blockIdx.y, blockIdx.z, i + 1, L->smem);
            return;
        }
        if (s[GUARD + L->smem + i] != GUARD_BYTE) {
            fail(L,
                 "dynamic shared memory written out of bounds in block (%u,%u,%u): byte %zu "
                 "past its end (smem %zu bytes)",
                 blockIdx.x, blockIdx.y, blockIdx.z, i, L->smem);
            return;
        }
    }
}

void *thread_main(void *arg)
{
    launch *L = g_launch;
    threadIdx = dim3((unsigned)(uintptr_t)arg, 0, 0);
    try {
        for (unsigned z = 0; z < gridDim.z; z++)
            for (unsigned y = 0; y < gridDim.y; y++)
                for (unsigned x = 0; x < gridDim.x; x++) {
                    blockIdx = dim3(x, y, z);
                    t_warp_ops = 0;
                    if (threadIdx.x == 0) {
                        unsigned char *s = L->shared.data();
                        memset(s, GUARD_BYTE, GUARD);
                        memset(s + GUARD, 0xff, L->smem);
                        memset(s + GUARD + L->smem, GUARD_BYTE, GUARD);
                    }
                    wait(L, L->start, "the start of the block");
                    L->body();
                    wait(L, L->end,
                         "the end of the kernel (a thread returned while "
                         "others wait at a barrier)");
                    if (threadIdx.x == 0) check_guards(L);
                    if (L->failed) return NULL;
                }
    } catch (const abort_kernel &) {
    }
    return NULL;
}

launch *cur() { return g_launch; }

} // namespace

void emu_set_barrier_timeout(double seconds) { g_timeout = seconds; }
const char *emu_error() { return g_error; }

void *emu_dyn_shared()
{
    launch *L = cur();
    return L->smem ? L->shared.data() + GUARD : NULL;
}

void __syncthreads() { wait(cur(), cur()->block_bar, "__syncthreads"); }

static unsigned warp_of_caller(launch *L, unsigned mask, const char *what)
{
    if (mask != 0xffffffffu) {
        fail(L, "%s with mask %#x in block (%u,%u,%u): the emulator runs whole warps only", what,
             mask, blockIdx.x, blockIdx.y, blockIdx.z);
        throw abort_kernel();
    }
    return threadIdx.x / 32;
}

uint64_t emu_warp_exchange(uint64_t v, int src, unsigned mask)
{
    launch *L = cur();
    const unsigned w = warp_of_caller(L, mask, "a warp shuffle");
    uint64_t *buf = &L->warp_buf[((size_t)w * 2 + (t_warp_ops++ & 1)) * 32];
    buf[threadIdx.x % 32] = v;
    wait(L, L->warp_bar[w], "a warp shuffle (__shfl*_sync)");
    return buf[src & 31];
}

unsigned emu_warp_ballot(int pred, unsigned mask)
{
    launch *L = cur();
    const unsigned w = warp_of_caller(L, mask, "a warp vote");
    uint64_t *buf = &L->warp_buf[((size_t)w * 2 + (t_warp_ops++ & 1)) * 32];
    buf[threadIdx.x % 32] = pred != 0;
    wait(L, L->warp_bar[w], "a warp vote (__any/__all/__ballot_sync)");
    unsigned bits = 0;
    for (unsigned l = 0; l < L->warp_bar[w].n; l++) bits |= (buf[l] ? 1u : 0u) << l;
    return bits;
}

int emu_run(dim3 grid, dim3 block, size_t smem_bytes, bool optin, const std::function<void()> &body)
{
    g_error[0] = 0;
    static bool env_read;
    if (!env_read) { /* EMU_BARRIER_TIMEOUT_S: a shorter wait when hunting a deadlock */
        env_read = true;
        const char *e = getenv("EMU_BARRIER_TIMEOUT_S");
        if (e && atof(e) > 0) g_timeout = atof(e);
    }
    const unsigned nt = block.x * block.y * block.z;
    if (block.y != 1 || block.z != 1) {
        snprintf(g_error, sizeof g_error, "block (%u,%u,%u): the emulator runs 1-D blocks only",
                 block.x, block.y, block.z);
        return -1;
    }
    if (nt == 0 || nt > MAX_THREADS || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
        grid.y > 65535 || grid.z > 65535) {
        snprintf(g_error, sizeof g_error,
                 "invalid launch: grid (%u,%u,%u), %u threads (a GPU takes 1..1024 threads and "
                 "grid y, z up to 65535)",
                 grid.x, grid.y, grid.z, nt);
        return -1;
    }
    if (smem_bytes > (optin ? (size_t)SMEM_OPTIN : (size_t)SMEM_DEFAULT)) {
        snprintf(g_error, sizeof g_error, "invalid launch: %zu bytes of dynamic shared memory %s",
                 smem_bytes,
                 optin ? "(more than the 227 KiB of compute capability 8.x/9.0)"
                       : "without the opt-in (cudaFuncSetAttribute) above 48 KiB");
        return -1;
    }
    launch L;
    L.body = body;
    L.smem = smem_bytes;
    L.shared.assign(2 * GUARD + smem_bytes, 0);
    L.start.n = L.end.n = L.block_bar.n = nt;
    const unsigned warps = (nt + 31) / 32;
    L.warp_bar = std::vector<barrier>(warps);
    for (unsigned w = 0; w < warps; w++) L.warp_bar[w].n = nt - 32 * w < 32 ? nt - 32 * w : 32;
    L.warp_buf.assign((size_t)warps * 2 * 32, 0);
    g_launch = &L;
    gridDim = grid;
    blockDim = block;

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    std::vector<pthread_t> th(nt);
    for (unsigned t = 0; t < nt; t++)
        if (pthread_create(&th[t], &attr, thread_main, (void *)(uintptr_t)t)) {
            fprintf(stderr, "emu: cannot start thread %u of %u\n", t, nt);
            abort();
        }
    for (unsigned t = 0; t < nt; t++) pthread_join(th[t], NULL);
    pthread_attr_destroy(&attr);
    g_launch = NULL;
    return L.failed ? -1 : 0;
}
