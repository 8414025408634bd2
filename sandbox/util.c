/* proctor-sandbox: small helpers shared by the helper, init and the command child. */
#include "psb.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int psb_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int psb_write_file(const char *path, const char *data)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = psb_write_all(fd, data, strlen(data));
    int e = errno;
    close(fd);
    errno = e;
    return r;
}

long long psb_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void psb_child_fail(int fd, int is_sock, const char *stage, int err, const char *fmt, ...)
{
    struct psb_rec r;
    memset(&r, 0, sizeof r);
    r.kind = PSB_REC_ERROR;
    r.err = err;
    snprintf(r.stage, sizeof r.stage, "%s", stage);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r.msg, sizeof r.msg, fmt, ap);
    va_end(ap);
    if (is_sock)
        (void)send(fd, &r, sizeof r, MSG_NOSIGNAL);
    else
        (void)psb_write_all(fd, &r, sizeof r);
    _exit(125);
}

void psb_block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGCHLD);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGUSR1);
    sigaddset(set, SIGUSR2);
    sigprocmask(SIG_BLOCK, set, NULL);
}

/* Closes every descriptor from 3 up but those in `keep` (ascending); async-signal-safe. */
void psb_close_fds_except(const int *keep, int nkeep)
{
    int from = 3;
    for (int k = 0; k < nkeep; k++) {
        if (keep[k] > from && syscall(SYS_close_range, (unsigned)from, (unsigned)keep[k] - 1, 0U) < 0)
            for (int f = from; f < keep[k]; f++)
                close(f);
        if (keep[k] + 1 > from)
            from = keep[k] + 1;
    }
    if (syscall(SYS_close_range, (unsigned)from, ~0U, 0U) < 0)
        for (int f = from; f < 65536; f++)
            close(f);
}
