/* Time MPI_Allreduce (MPI_SUM of doubles) under smpirun: for each size in bytes given on
 * the command line, one warm-up call, then REPS calls between two barriers; rank 0 prints
 * "bytes seconds_per_call".  Also times a ping-pong from rank 0 to each other rank
 * ("pingpong peer bytes one_way_seconds") when the first argument is "pingpong". */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPS 4

static void pingpong(int rank, int size, int argc, char **argv, char *buf) {
  for (int peer = 1; peer < size; peer++)
    for (int i = 2; i < argc; i++) {
      long n = atol(argv[i]);
      double t0 = 0;
      for (int r = 0; r <= REPS; r++) { /* round 0 is the warm-up */
        if (r == 1) t0 = MPI_Wtime();
        if (rank == 0) {
          MPI_Send(buf, (int)n, MPI_BYTE, peer, 0, MPI_COMM_WORLD);
          MPI_Recv(buf, (int)n, MPI_BYTE, peer, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else if (rank == peer) {
          MPI_Recv(buf, (int)n, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
          MPI_Send(buf, (int)n, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
        }
      }
      if (rank == 0) printf("pingpong %d %ld %.12g\n", peer, n, (MPI_Wtime() - t0) / (2.0 * REPS));
      MPI_Barrier(MPI_COMM_WORLD);
    }
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  long most = 8;
  for (int i = 1; i < argc; i++) if (atol(argv[i]) > most) most = atol(argv[i]);
  char *in = calloc((size_t)most, 1), *out = calloc((size_t)most, 1);
  if (argc > 1 && strcmp(argv[1], "pingpong") == 0) {
    pingpong(rank, size, argc, argv, in);
  } else {
    for (int i = 1; i < argc; i++) {
      int count = (int)(atol(argv[i]) / (long)sizeof(double));
      MPI_Allreduce(in, out, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
      MPI_Barrier(MPI_COMM_WORLD);
      double t0 = MPI_Wtime();
      for (int r = 0; r < REPS; r++)
        MPI_Allreduce(in, out, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
      double t = (MPI_Wtime() - t0) / REPS;
      if (rank == 0) printf("allreduce %ld %.12g\n", atol(argv[i]), t);
    }
  }
  free(in); free(out);
  MPI_Finalize();
  return 0;
}
