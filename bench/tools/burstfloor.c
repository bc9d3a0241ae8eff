/* burstfloor THREADS N FILE [MODE] : the floor under "N jobs due at one instant" - no scheduler,
   just N x `stamp FILE i` started as fast as this machine allows from THREADS threads of one
   process, each the way a capturing scheduler starts a job: own process group, stdin /dev/null,
   stdout and stderr on pipes (the parent closes its read ends at once, as a reader that has seen
   EOF would). MODE:
   - vfork (default): the cheapest start, the child shares memory and stack until execve;
   - posix_spawn: glibc's, which maps a stack per start and resets 64 signal dispositions;
   - armed: every child is made before t0 (clone with CLONE_VM on a stack of its own, its
     process group and descriptors in place, everything else closed) and waits on one futex;
     at t0 a single wake releases them all to execve. That is the most a scheduler could do
     ahead of an instant without starting the job early: after t0 there is only each job's
     own execve and start-up on the machine's cores (THREADS is ignored).
   Prints {"t0_ns":..,"parent_cpu_ms":..}; latency_i = stamp_i - t0; parent_cpu_ms is this
   process's CPU from t0 until its last start (for armed: until the wake).
   Children are reaped after the last start. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
extern char **environ;
static int n_jobs, n_threads;
static const char *file;
static char stamp[4096];
static enum { VFORK, POSIX_SPAWN, ARMED } mode = VFORK;
static int dev_null;
static int go;    /* armed: 0 until t0 */
static int ready; /* armed: children waiting */

static void make_pipes(int out[2], int err[2]) {
    if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) { perror("pipe2"); exit(1); }
}

static void close_all(int out[2], int err[2]) {
    close(out[1]); close(err[1]); close(out[0]); close(err[0]);
}

static void *worker(void *arg) {
    long id = (long)arg;
    char tag[32];
    for (int i = (int)id; i < n_jobs; i += n_threads) {
        snprintf(tag, sizeof tag, "%d", i + 1);
        char *argv[] = {"stamp", (char *)file, tag, NULL};
        int out[2], err[2];
        make_pipes(out, err);
        pid_t pid;
        if (mode == VFORK) {
            pid = vfork();
            if (pid == 0) {
                setpgid(0, 0);
                dup2(dev_null, 0); dup2(out[1], 1); dup2(err[1], 2);
                execve(stamp, argv, environ);
                _exit(127);
            }
            if (pid < 0) { perror("vfork"); exit(1); }
            close_all(out, err);
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
        close_all(out, err);
    }
    return NULL;
}

/* armed: one waiting child. It shares this process's memory (and the main thread's TLS), so it
   makes system calls through syscall() only, no locks or allocation, until execve replaces it; a
   failing call sets the main thread's errno, which nothing reads after arming. */
struct armed { char tag[16]; char *argv[4]; int out, err; };

static int armed_child(void *arg) {
    struct armed *a = arg;
    syscall(SYS_setpgid, 0, 0);
    syscall(SYS_dup2, dev_null, 0); syscall(SYS_dup2, a->out, 1); syscall(SYS_dup2, a->err, 2);
    syscall(SYS_close_range, 3, ~0U, 0);
    __atomic_add_fetch(&ready, 1, __ATOMIC_RELEASE);
    /* at most a minute, so that no child outlives a parent that died before t0 */
    struct timespec second = {1, 0};
    for (int s = 0; __atomic_load_n(&go, __ATOMIC_ACQUIRE) == 0; s++) {
        if (s == 60) syscall(SYS_exit, 126);
        syscall(SYS_futex, &go, FUTEX_WAIT_PRIVATE, 0, &second, NULL, 0);
    }
    syscall(SYS_execve, stamp, a->argv, environ);
    syscall(SYS_exit, 127);
    return 0;
}

static void arm_all(void) {
    enum { STACK = 64 * 1024 };
    struct armed *all = calloc((size_t)n_jobs, sizeof *all);
    char *stacks = malloc((size_t)n_jobs * STACK);
    if (!all || !stacks) { perror("malloc"); exit(1); }
    for (int i = 0; i < n_jobs; i++) {
        struct armed *a = &all[i];
        snprintf(a->tag, sizeof a->tag, "%d", i + 1);
        a->argv[0] = "stamp"; a->argv[1] = (char *)file; a->argv[2] = a->tag; a->argv[3] = NULL;
        int out[2], err[2];
        make_pipes(out, err);
        a->out = out[1]; a->err = err[1];
        if (clone(armed_child, stacks + (size_t)(i + 1) * STACK, CLONE_VM | SIGCHLD, a) < 0) {
            perror("clone"); exit(1);
        }
        close_all(out, err);
    }
    /* the stacks and records stay allocated: the children use them until they exec */
}

static double cpu_ms(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3
        + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: burstfloor THREADS N FILE [vfork|posix_spawn|armed]\n"); return 2; }
    n_threads = atoi(argv[1]); n_jobs = atoi(argv[2]); file = argv[3];
    if (argc >= 5 && strcmp(argv[4], "posix_spawn") == 0) mode = POSIX_SPAWN;
    else if (argc >= 5 && strcmp(argv[4], "armed") == 0) mode = ARMED;
    else if (argc >= 5 && strcmp(argv[4], "vfork") != 0) { fprintf(stderr, "unknown mode %s\n", argv[4]); return 2; }
    dev_null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (dev_null < 0) { perror("/dev/null"); return 1; }
    /* stamp lives next to this program */
    ssize_t len = readlink("/proc/self/exe", stamp, sizeof stamp - 8);
    if (len < 0) { perror("readlink"); return 1; }
    stamp[len] = 0;
    char *slash = strrchr(stamp, '/');
    snprintf(slash + 1, sizeof stamp - (size_t)(slash + 1 - stamp), "stamp");
    if (n_threads < 1 || n_threads > 64) return 2;
    if (mode == ARMED) {
        arm_all();
        while (__atomic_load_n(&ready, __ATOMIC_ACQUIRE) < n_jobs) usleep(1000);
    }
    struct timespec ts;
    double cpu0 = cpu_ms();
    clock_gettime(CLOCK_REALTIME, &ts);
    long long t0 = ts.tv_sec * 1000000000LL + ts.tv_nsec;
    if (mode == ARMED) {
        __atomic_store_n(&go, 1, __ATOMIC_RELEASE);
        syscall(SYS_futex, &go, FUTEX_WAKE_PRIVATE, 0x7fffffff, NULL, NULL, 0);
    } else {
        pthread_t th[64];
        for (long i = 0; i < n_threads; i++) pthread_create(&th[i], NULL, worker, (void *)i);
        for (int i = 0; i < n_threads; i++) pthread_join(th[i], NULL);
    }
    double cpu = cpu_ms() - cpu0;
    while (wait(NULL) > 0) {}
    printf("{\"t0_ns\":%lld,\"parent_cpu_ms\":%.1f}\n", t0, cpu);
    return 0;
}
