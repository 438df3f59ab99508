/* collcost's compiled timing loop (collectives/cloop.py builds and loads it).
 *
 * One call runs one batch of repetitions of one native MPI operation, exactly as the
 * Python loop of collectives/harness.py does, and writes the per-repetition times
 * (int64 nanoseconds, CLOCK_MONOTONIC: the clock of time.perf_counter_ns) into the
 * caller's buffer:
 *
 *   barrier start: MPI_Barrier (untimed); t0 = clock; call; times[i] = clock - t0
 *   window start:  spin until targets[i] on this rank's clock (sleeping first only
 *                  when more than 20 ms away), call; times[i] = clock - targets[i],
 *                  late[i] = start - targets[i]
 *
 * The operation, its buffers and the MPI handles come from Python (mpi4py): the
 * handles are passed by ADDRESS (MPI._addressof), so the same code serves MPI
 * libraries whose handles are ints (MPICH, Intel MPI) or pointers (Open MPI, the
 * MPI-5 ABI).  Built against the library's mpi.h when there is one; with
 * -DCOLLCOST_BUILTIN_MPI=4|8 (handle size in bytes) against the few declarations below,
 * for runtime-only installs (the impi-rt wheel ships no header).
 *
 * Every function returns 0 or the first MPI error code (the batch stops there).
 */
#define _POSIX_C_SOURCE 200809L
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#ifdef COLLCOST_BUILTIN_MPI
#if COLLCOST_BUILTIN_MPI == 4
typedef int MPI_Comm;
typedef int MPI_Datatype;
typedef int MPI_Op;
#else
typedef void *MPI_Comm;
typedef void *MPI_Datatype;
typedef void *MPI_Op;
#endif
typedef struct { int opaque[16]; } MPI_Status; /* >= every library's status size */
int MPI_Barrier(MPI_Comm);
int MPI_Bcast(void *, int, MPI_Datatype, int, MPI_Comm);
int MPI_Allreduce(const void *, void *, int, MPI_Datatype, MPI_Op, MPI_Comm);
int MPI_Reduce_scatter_block(const void *, void *, int, MPI_Datatype, MPI_Op, MPI_Comm);
int MPI_Reduce_scatter(const void *, void *, const int *, MPI_Datatype, MPI_Op, MPI_Comm);
int MPI_Allgather(const void *, int, MPI_Datatype, void *, int, MPI_Datatype, MPI_Comm);
int MPI_Allgatherv(const void *, int, MPI_Datatype, void *, const int *, const int *,
                   MPI_Datatype, MPI_Comm);
int MPI_Send(const void *, int, MPI_Datatype, int, int, MPI_Comm);
int MPI_Recv(void *, int, MPI_Datatype, int, int, MPI_Comm, MPI_Status *);
int MPI_Comm_size(MPI_Comm, int *);
int MPI_Get_library_version(char *, int *);
#define COLLCOST_HEADER "builtin"
#else
#include <mpi.h>
#define COLLCOST_HEADER "mpi.h"
#endif

#ifdef COLLCOST_HANDLE_SIZE /* mpi4py's handle size: a mismatched header fails here */
_Static_assert(sizeof(MPI_Comm) == COLLCOST_HANDLE_SIZE, "MPI_Comm size differs from mpi4py's");
#endif

/* Bump when cc_op or a function signature changes (cloop.py checks it). */
#define COLLCOST_LOOP_ABI 1

enum { K_NOOP = 0, K_BCAST, K_ALLREDUCE, K_REDUCE_SCATTER_BLOCK, K_REDUCE_SCATTER,
       K_ALLGATHER, K_ALLGATHERV, K_PINGPONG, K_END };

/* Mirrors cloop._Op (ctypes). */
typedef struct {
    const void *comm;      /* address of an MPI_Comm handle */
    const void *dtype;     /* address of an MPI_Datatype handle */
    const void *op;        /* address of an MPI_Op handle (reductions) */
    void *sbuf;
    void *rbuf;
    const int *counts;     /* reduce_scatter: recvcounts; allgatherv: recvcounts */
    const int *displs;     /* allgatherv: displacements */
    long long count;       /* element count of the call (per block for *_block/allgather) */
    int kind;
    int role;              /* pingpong: 0 sends first, 1 echoes; bcast: root */
    int peer;              /* pingpong: the other rank */
    int tag;
} cc_op;

#define SLEEP_ABOVE_NS 20000000LL /* waits longer than this sleep first ... */
#define SPIN_LAST_NS 10000000LL   /* ... to this long before the boundary (as harness.py) */

static inline long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

typedef struct {
    MPI_Comm comm;
    MPI_Datatype dt;
    MPI_Op op;
    const cc_op *o;
    int count;
} bound;

static int bind(const cc_op *o, bound *b)
{
    if (!o || !o->comm || o->kind < K_NOOP || o->kind >= K_END)
        return -1;
    if (o->count < 0 || o->count > 2147483647LL)
        return -1;
    b->o = o;
    b->comm = *(const MPI_Comm *)o->comm;
    memset(&b->dt, 0, sizeof b->dt);
    memset(&b->op, 0, sizeof b->op);
    if (o->dtype)
        b->dt = *(const MPI_Datatype *)o->dtype;
    if (o->op)
        b->op = *(const MPI_Op *)o->op;
    b->count = (int)o->count;
    return 0;
}

static inline int one_call(const bound *b)
{
    const cc_op *o = b->o;
    switch (o->kind) {
    case K_BCAST:
        return MPI_Bcast(o->sbuf, b->count, b->dt, o->role, b->comm);
    case K_ALLREDUCE:
        return MPI_Allreduce(o->sbuf, o->rbuf, b->count, b->dt, b->op, b->comm);
    case K_REDUCE_SCATTER_BLOCK:
        return MPI_Reduce_scatter_block(o->sbuf, o->rbuf, b->count, b->dt, b->op, b->comm);
    case K_REDUCE_SCATTER:
        return MPI_Reduce_scatter(o->sbuf, o->rbuf, o->counts, b->dt, b->op, b->comm);
    case K_ALLGATHER:
        return MPI_Allgather(o->sbuf, b->count, b->dt, o->rbuf, b->count, b->dt, b->comm);
    case K_ALLGATHERV:
        return MPI_Allgatherv(o->sbuf, b->count, b->dt, o->rbuf, o->counts, o->displs,
                              b->dt, b->comm);
    case K_PINGPONG: {
        int err;
#ifdef MPI_STATUS_IGNORE
        MPI_Status *st = MPI_STATUS_IGNORE;
#else
        MPI_Status status, *st = &status;
#endif
        if (o->role == 0) {
            if ((err = MPI_Send(o->sbuf, b->count, b->dt, o->peer, o->tag, b->comm)))
                return err;
            return MPI_Recv(o->rbuf, b->count, b->dt, o->peer, o->tag, b->comm, st);
        }
        /* the echo: receive, then send the receive buffer back (as operations.py) */
        if ((err = MPI_Recv(o->rbuf, b->count, b->dt, o->peer, o->tag, b->comm, st)))
            return err;
        return MPI_Send(o->rbuf, b->count, b->dt, o->peer, o->tag, b->comm);
    }
    default: /* K_NOOP: the loop's own cost */
        return 0;
    }
}

int collcost_loop_abi(void) { return COLLCOST_LOOP_ABI; }
int collcost_op_size(void) { return (int)sizeof(cc_op); }
const char *collcost_loop_header(void) { return COLLCOST_HEADER; }

/* The library this object calls (to compare with mpi4py's). */
int collcost_library_version(char *buf, int *len) { return MPI_Get_library_version(buf, len); }

/* Size of the communicator at comm_address, through this object's MPI (handle check). */
int collcost_comm_size(const void *comm_address, int *size)
{
    return MPI_Comm_size(*(const MPI_Comm *)comm_address, size);
}

int collcost_barrier_batch(const cc_op *o, long long n, long long *times)
{
    bound b;
    int err;
    if (bind(o, &b) || n < 0 || (n > 0 && !times))
        return -1;
    for (long long i = 0; i < n; i++) {
        if ((err = MPI_Barrier(b.comm)))
            return err;
        long long t0 = now_ns();
        err = one_call(&b);
        long long t1 = now_ns();
        if (err)
            return err;
        times[i] = t1 - t0;
    }
    return 0;
}

int collcost_window_batch(const cc_op *o, long long n, const long long *targets,
                          long long *times, long long *late)
{
    bound b;
    int err;
    if (bind(o, &b) || n < 0 || (n > 0 && (!targets || !times || !late)))
        return -1;
    for (long long i = 0; i < n; i++) {
        long long target = targets[i];
        long long s = now_ns();
        if (target - s > SLEEP_ABOVE_NS) { /* very long wait: give the core away first */
            long long nap = target - s - SPIN_LAST_NS;
            struct timespec ts = {(time_t)(nap / 1000000000LL), (long)(nap % 1000000000LL)};
            nanosleep(&ts, NULL);
            s = now_ns();
        }
        while (s < target)
            s = now_ns();
        err = one_call(&b);
        long long t1 = now_ns();
        if (err)
            return err;
        times[i] = t1 - target;
        late[i] = s - target;
    }
    return 0;
}
