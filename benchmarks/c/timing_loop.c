/* Minimal C timing loop: the reference the Python harness is compared against.
 *
 * Usage: timing_loop OP REPS WARMUP BYTES[:REPS]...
 *   OP      allreduce (float32 sum) | bcast (MPI_BYTE, root 0) |
 *           reduce_scatter (float32 sum, MPI_Reduce_scatter_block, BYTES the whole
 *           vector, a multiple of 4 x ranks) | allgather (float32, BYTES the whole
 *           result, a multiple of 4 x ranks) | pingpong (float32, ranks 0 and 1 of
 *           exactly 2: MPI_Send then MPI_Recv back; the time is the round trip)
 *   REPS    timed repetitions per size (a size may override it as BYTES:REPS);
 *           WARMUP untimed calls before them
 *   BYTES   message sizes in bytes (multiples of 4 for allreduce)
 *
 * Each repetition is: MPI_Barrier (untimed), t0 = clock, one call, t1 = clock
 * (CLOCK_MONOTONIC, the clock behind Python's time.perf_counter_ns).  A repetition's
 * time is the maximum of t1 - t0 over ranks; rank 0 prints one line per size:
 *   BYTES MEDIAN_S MIN_S REPS
 * with the median over repetitions -- the same start mode and statistic as
 * collectives.harness.time_call(sync="barrier").  Sizes follow
 * collectives.costs.size_convention, as the sweep's points do.
 */
#define _DEFAULT_SOURCE /* madvise, MADV_HUGEPAGE */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static inline long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    static const char *ops[] = {"allreduce", "bcast", "reduce_scatter", "allgather",
                                "pingpong"};
    int which = -1;
    for (int k = 0; argc >= 2 && k < 5; k++)
        if (!strcmp(argv[1], ops[k])) which = k;
    if (argc < 5 || which < 0 || (which == 4 && size != 2)) {
        if (rank == 0)
            fprintf(stderr, "usage: %s allreduce|bcast|reduce_scatter|allgather|pingpong "
                    "REPS WARMUP BYTES[:REPS]... (pingpong: 2 ranks)\n", argv[0]);
        MPI_Finalize();
        return 2;
    }
    int allreduce = which == 0, blocks = which == 2 || which == 3;
    long reps = atol(argv[2]), warmup = atol(argv[3]);
    if (reps < 1 || warmup < 0) {
        if (rank == 0) fprintf(stderr, "REPS must be >= 1 and WARMUP >= 0\n");
        MPI_Finalize();
        return 2;
    }
    long default_reps = reps;
    for (int a = 4; a < argc; a++) {
        char *end;
        long bytes = strtol(argv[a], &end, 10);
        reps = *end == ':' ? strtol(end + 1, &end, 10) : default_reps;
        if (*end || bytes < 0 || reps < 1 || (which != 1 && bytes % 4)
            || (blocks && bytes % (4L * size))) {
            if (rank == 0) fprintf(stderr, "bad size %s\n", argv[a]);
            MPI_Abort(MPI_COMM_WORLD, 2);
        }
        long long *t = malloc(sizeof(long long) * reps);
        long long *tmax = malloc(sizeof(long long) * reps);
        size_t alloc = bytes > 0 ? (size_t)bytes : 1;
        /* touch every page (calloc'd zero pages would all read one physical page) and
         * send 1.0f values, as the Python side does */
        /* page-aligned, as OSU's buffers (and at least numpy's 64-byte alignment): a
         * malloc'd buffer 16 bytes past a page boundary made large float reductions
         * 3-4% slower than collcost's numpy buffers */
        char *sbuf = NULL, *rbuf = NULL;
        if (posix_memalign((void **)&sbuf, 4096, alloc + 4)
            || posix_memalign((void **)&rbuf, 4096, alloc + 4)) {
            fprintf(stderr, "out of memory at %ld bytes\n", bytes);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
#ifdef MADV_HUGEPAGE
        /* numpy asks for transparent huge pages on every allocation of 4 MiB or more
         * (and collcost's buffers are numpy's): do the same, or a 4 MiB ping-pong here
         * ran 1.6x slower than collcost's loop on the same library */
        if (alloc + 4 >= ((size_t)1 << 22)) {
            madvise(sbuf, alloc + 4, MADV_HUGEPAGE);
            madvise(rbuf, alloc + 4, MADV_HUGEPAGE);
        }
#endif
        float one = 1.0f;
        for (size_t k = 0; k + 4 <= alloc; k += 4) memcpy(sbuf + k, &one, 4);
        memset(rbuf, 0, alloc);
        int count = which == 1 ? (int)bytes : (int)(bytes / 4);
        int block = (int)(bytes / 4 / size); /* reduce_scatter and allgather */
        for (long i = -warmup; i < reps; i++) {
            MPI_Barrier(MPI_COMM_WORLD);
            long long t0 = now_ns();
            if (allreduce)
                MPI_Allreduce(sbuf, rbuf, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            else if (which == 1)
                MPI_Bcast(sbuf, count, MPI_BYTE, 0, MPI_COMM_WORLD);
            else if (which == 2)
                MPI_Reduce_scatter_block(sbuf, rbuf, block, MPI_FLOAT, MPI_SUM,
                                         MPI_COMM_WORLD);
            else if (which == 3)
                MPI_Allgather(sbuf, block, MPI_FLOAT, rbuf, block, MPI_FLOAT, MPI_COMM_WORLD);
            else if (rank == 0) {
                MPI_Send(sbuf, count, MPI_FLOAT, 1, 17, MPI_COMM_WORLD);
                MPI_Recv(rbuf, count, MPI_FLOAT, 1, 17, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            } else {
                MPI_Recv(rbuf, count, MPI_FLOAT, 0, 17, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                MPI_Send(rbuf, count, MPI_FLOAT, 0, 17, MPI_COMM_WORLD);
            }
            long long t1 = now_ns();
            if (i >= 0) t[i] = t1 - t0;
        }
        MPI_Reduce(t, tmax, (int)reps, MPI_LONG_LONG, MPI_MAX, 0, MPI_COMM_WORLD);
        if (rank == 0) {
            qsort(tmax, reps, sizeof(long long), cmp_ll);
            double med = reps % 2 ? tmax[reps / 2] : 0.5 * (tmax[reps / 2 - 1] + tmax[reps / 2]);
            printf("%ld %.9e %.9e %ld\n", bytes, med * 1e-9, tmax[0] * 1e-9, reps);
            fflush(stdout);
        }
        free(sbuf);
        free(rbuf);
        free(t);
        free(tmax);
    }
    MPI_Finalize();
    return 0;
}
