/*
 * A slower disk for benches/intake_sqlite.py --slow-fsync-us: loaded with
 * LD_PRELOAD, it lets each fsync and fdatasync of the process finish, then
 * sleeps SLOW_FSYNC_US microseconds more (the kernel's timer slack adds to
 * that), as a disk whose cache flush is slower would. Only the time a
 * commit waits changes; what is written, and when it is durable, does not.
 *
 *     cc -O2 -shared -fPIC -o slow_fsync.so benches/slow_fsync.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <time.h>

static long extra_ns(void)
{
    static long ns = -1;
    if (ns < 0) {
        const char *us = getenv("SLOW_FSYNC_US");
        ns = us ? atol(us) * 1000L : 0;
    }
    return ns;
}

static void linger(void)
{
    long ns = extra_ns();
    if (ns > 0) {
        struct timespec wait = {ns / 1000000000L, ns % 1000000000L};
        nanosleep(&wait, 0);
    }
}

/* `name`, calling the C library's own and then lingering. */
#define SLOWER(name)                                                \
    int name(int fd)                                                \
    {                                                               \
        static int (*real)(int);                                    \
        if (!real)                                                  \
            real = (int (*)(int))dlsym(RTLD_NEXT, #name);           \
        if (!real) {                                                \
            errno = ENOSYS;                                         \
            return -1;                                              \
        }                                                           \
        int result = real(fd);                                      \
        linger();                                                   \
        return result;                                              \
    }

SLOWER(fsync)
SLOWER(fdatasync)
