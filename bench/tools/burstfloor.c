/* burstfloor THREADS N FILE [MODE] : the floor under "N jobs due at one instant" - no scheduler,
   just N x `stamp FILE i` started as fast as this machine allows from THREADS threads of one
   process, each the way a capturing scheduler starts a job: own process group, stdin /dev/null,
   stdout and stderr on pipes (the parent closes its read ends at once, as a reader that has seen
   EOF would). MODE: vfork (default; the cheapest start: the child shares memory and stack until
   execve) or posix_spawn (glibc's: maps a stack per start, resets 64 signal dispositions).
   Prints {"t0_ns":..,"parent_cpu_ms":..}; latency_i = stamp_i - t0.
   Children are reaped after the last start. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
extern char **environ;
static int n_jobs, n_threads;
static const char *file;
static char stamp[4096];
static int use_vfork = 1, dev_null;

static void *worker(void *arg) {
    long id = (long)arg;
    char tag[32];
    for (int i = (int)id; i < n_jobs; i += n_threads) {
        snprintf(tag, sizeof tag, "%d", i + 1);
        char *argv[] = {"stamp", (char *)file, tag, NULL};
        int out[2], err[2];
        if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) { perror("pipe2"); exit(1); }
        pid_t pid;
        if (use_vfork) {
            pid = vfork();
            if (pid == 0) {
                setpgid(0, 0);
                dup2(dev_null, 0); dup2(out[1], 1); dup2(err[1], 2);
                execve(stamp, argv, environ);
                _exit(127);
            }
            if (pid < 0) { perror("vfork"); exit(1); }
            close(out[1]); close(err[1]); close(out[0]); close(err[0]);
            continue;
        }
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t at;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, out[1], 1);
        posix_spawn_file_actions_adddup2(&fa, err[1], 2);
        posix_spawnattr_init(&at);
        posix_spawnattr_setpgroup(&at, 0);
        posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
        if (posix_spawn(&pid, stamp, &fa, &at, argv, environ)) { perror("posix_spawn"); exit(1); }
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&at);
        close(out[1]); close(err[1]); close(out[0]); close(err[0]);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: burstfloor THREADS N FILE [vfork|posix_spawn]\n"); return 2; }
    n_threads = atoi(argv[1]); n_jobs = atoi(argv[2]); file = argv[3];
    use_vfork = argc < 5 || strcmp(argv[4], "posix_spawn") != 0;
    dev_null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (dev_null < 0) { perror("/dev/null"); return 1; }
    /* stamp lives next to this program */
    ssize_t len = readlink("/proc/self/exe", stamp, sizeof stamp - 8);
    if (len < 0) { perror("readlink"); return 1; }
    stamp[len] = 0;
    char *slash = strrchr(stamp, '/');
    snprintf(slash + 1, sizeof stamp - (size_t)(slash + 1 - stamp), "stamp");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long t0 = ts.tv_sec * 1000000000LL + ts.tv_nsec;
    pthread_t th[64];
    if (n_threads < 1 || n_threads > 64) return 2;
    for (long i = 0; i < n_threads; i++) pthread_create(&th[i], NULL, worker, (void *)i);
    for (int i = 0; i < n_threads; i++) pthread_join(th[i], NULL);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
    while (wait(NULL) > 0) {}
    printf("{\"t0_ns\":%lld,\"parent_cpu_ms\":%.1f}\n", t0, cpu);
    return 0;
}
