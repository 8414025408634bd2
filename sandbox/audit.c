/*
 * The write audit: seccomp user notifications for write-intent syscalls, answered at once with
 * SECCOMP_USER_NOTIF_FLAG_CONTINUE. Enforcement is the kernel's (mount layout and Landlock);
 * this only names attempts outside the writable places. The path read from the child's memory
 * is a hint (it can change between the trap and our read), so nothing depends on it.
 *
 * Paths are made absolute against /proc/PID/cwd or /proc/PID/fd/DIRFD: readlink from the host
 * gives paths relative to the sandbox's own root, which uses the host's absolute paths for the
 * workspace. A path that is lexically writable is also resolved through /proc/PID/root (symlinks
 * included) so a link planted in a writable place that points outside is still reported.
 */
#include "psb.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PSB_AUDIT_MAX_RECORDS 2000

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

struct psb_audit {
    int fd;
    struct seccomp_notif *req;
    struct seccomp_notif_resp *resp;
    const struct psb_config *cfg;
    const char *extra[PSB_MAX_WRITABLE];
    int nextra;
    long long reported, dropped;
    int memfd;
    pid_t mem_pid;
    char devw[3][PATH_MAX];
};

enum { F_NONE = 0, F_OPEN = 1, F_CREATE = 4, F_NOFOLLOW = 8, F_EMPTY = 16 };

/* Which arguments carry dirfds and paths. -1: none (AT_FDCWD for a dirfd). */
struct psb_sc {
    const char *name;
    int nr;
    signed char d1, p1, d2, p2, fd; /* fd: the syscall acts on this fd only */
    signed char flags_arg;          /* open flags, or AT_ flags for *at calls */
    int kind;
};

static struct psb_sc table[] = {
    {"open", 0, -1, 0, -1, -1, -1, 1, F_OPEN},
    {"openat", 0, 0, 1, -1, -1, -1, 2, F_OPEN},
    {"creat", 0, -1, 0, -1, -1, -1, -1, F_NONE},
    {"truncate", 0, -1, 0, -1, -1, -1, -1, F_NONE},
    {"rename", 0, -1, 0, -1, 1, -1, -1, F_NOFOLLOW},
    {"renameat", 0, 0, 1, 2, 3, -1, -1, F_NOFOLLOW},
    {"renameat2", 0, 0, 1, 2, 3, -1, -1, F_NOFOLLOW},
    {"link", 0, -1, 0, -1, 1, -1, -1, F_NOFOLLOW | F_CREATE},
    {"linkat", 0, 0, 1, 2, 3, -1, 4, F_NOFOLLOW | F_CREATE | F_EMPTY},
    {"symlink", 0, -1, -1, -1, 1, -1, -1, F_NOFOLLOW | F_CREATE},
    {"symlinkat", 0, -1, -1, 1, 2, -1, -1, F_NOFOLLOW | F_CREATE},
    {"unlink", 0, -1, 0, -1, -1, -1, -1, F_NOFOLLOW},
    {"unlinkat", 0, 0, 1, -1, -1, -1, -1, F_NOFOLLOW},
    {"mkdir", 0, -1, 0, -1, -1, -1, -1, F_NOFOLLOW | F_CREATE},
    {"mkdirat", 0, 0, 1, -1, -1, -1, -1, F_NOFOLLOW | F_CREATE},
    {"rmdir", 0, -1, 0, -1, -1, -1, -1, F_NOFOLLOW},
    {"mknod", 0, -1, 0, -1, -1, -1, -1, F_NOFOLLOW | F_CREATE},
    {"mknodat", 0, 0, 1, -1, -1, -1, -1, F_NOFOLLOW | F_CREATE},
    {"chmod", 0, -1, 0, -1, -1, -1, -1, F_NONE},
    {"fchmodat", 0, 0, 1, -1, -1, -1, -1, F_NONE},
    {"fchmodat2", 452, 0, 1, -1, -1, -1, 3, F_EMPTY},
    {"fchmod", 0, -1, -1, -1, -1, 0, -1, F_NONE},
    {"chown", 0, -1, 0, -1, -1, -1, -1, F_NONE},
    {"lchown", 0, -1, 0, -1, -1, -1, -1, F_NOFOLLOW},
    {"fchownat", 0, 0, 1, -1, -1, -1, 4, F_EMPTY},
    {"fchown", 0, -1, -1, -1, -1, 0, -1, F_NONE},
    {"utime", 0, -1, 0, -1, -1, -1, -1, F_NONE},
    {"utimes", 0, -1, 0, -1, -1, -1, -1, F_NONE},
    {"utimensat", 0, 0, 1, -1, -1, -1, -1, F_EMPTY},
    {"futimesat", 0, 0, 1, -1, -1, -1, -1, F_NONE},
    {"setxattr", 0, -1, 0, -1, -1, -1, -1, F_NONE},
    {"lsetxattr", 0, -1, 0, -1, -1, -1, -1, F_NOFOLLOW},
    {"fsetxattr", 0, -1, -1, -1, -1, 0, -1, F_NONE},
    {"removexattr", 0, -1, 0, -1, -1, -1, -1, F_NONE},
    {"lremovexattr", 0, -1, 0, -1, -1, -1, -1, F_NOFOLLOW},
    {"fremovexattr", 0, -1, -1, -1, -1, 0, -1, F_NONE},
    {"setxattrat", 463, 0, 1, -1, -1, -1, -1, F_EMPTY},
    {"removexattrat", 466, 0, 1, -1, -1, -1, -1, F_EMPTY},
};

int psb_path_beneath(const char *path, const char *base)
{
    size_t n = strlen(base);
    if (n == 1 && base[0] == '/')
        return 1;
    return strncmp(path, base, n) == 0 && (path[n] == '/' || path[n] == 0);
}

/* Lexical: collapse //, /./ and /../ (never above /). */
void psb_path_normalize(char *path)
{
    char out[PATH_MAX + 2];
    size_t o = 0;
    const char *s = path;
    while (*s) {
        while (*s == '/')
            s++;
        if (!*s)
            break;
        const char *e = strchrnul(s, '/');
        size_t n = (size_t)(e - s);
        if (n == 1 && s[0] == '.') {
        } else if (n == 2 && s[0] == '.' && s[1] == '.') {
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--;
        } else if (o + 1 + n < sizeof out - 1) {
            out[o++] = '/';
            memcpy(out + o, s, n);
            o += n;
        }
        s = e;
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = 0;
    memcpy(path, out, o + 1);
}

struct psb_audit *psb_audit_new(const struct psb_config *cfg, int notify_fd)
{
    static struct psb_audit a;
    memset(&a, 0, sizeof a);
    a.fd = notify_fd;
    a.memfd = -1;
    if (seccomp_notify_alloc(&a.req, &a.resp) < 0) {
        psb_warn("audit", "cannot allocate notification buffers; audit disabled");
        close(notify_fd);
        return NULL;
    }
    a.cfg = cfg;
    for (int i = 0; i < cfg->nops; i++)
        if (cfg->ops[i].kind == PSB_OP_DEV) {
            static const char *const w[] = {"null", "zero", "full"};
            for (int k = 0; k < 3; k++)
                snprintf(a.devw[k], sizeof a.devw[k], "%s/%s", cfg->ops[i].dst, w[k]);
        }
    for (int i = 0; i < cfg->nwritable; i++)
        a.extra[a.nextra++] = cfg->writable[i];
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        int nr = seccomp_syscall_resolve_name(table[i].name);
        if (nr >= 0)
            table[i].nr = nr;
    }
    return &a;
}

int psb_audit_fd(const struct psb_audit *a) { return a->fd; }

/* Writable when beneath a --writable extra, or when the innermost mount covering the path
 * (longest destination prefix; the later option wins a tie, as it is mounted on top) is a
 * --rw or --tmpfs one. A read-only bind nested in a tmpfs is not writable. */
static int is_writable(const struct psb_audit *a, const char *p)
{
    for (int i = 0; i < a->nextra; i++)
        if (psb_path_beneath(p, a->extra[i]))
            return 1;
    const struct psb_config *cfg = a->cfg;
    int best = -1;
    size_t bestlen = 0;
    for (int i = 0; i < cfg->nops; i++) {
        if (cfg->ops[i].kind == PSB_OP_HIDE_SOCKETS)
            continue; /* mounts nothing over its directory */
        const char *d = cfg->ops[i].dst;
        size_t n = strlen(d);
        if (psb_path_beneath(p, d) && (best < 0 || n >= bestlen)) {
            best = i;
            bestlen = n;
        }
    }
    if (best < 0)
        return 0;
    enum psb_op_kind k = cfg->ops[best].kind;
    if (k == PSB_OP_RW || k == PSB_OP_TMPFS)
        return 1;
    if (k == PSB_OP_DEV_NODE)
        return !strcmp(p, cfg->ops[best].dst); /* a device passed through, opened for writing */
    if (k == PSB_OP_DEV) {
        for (int i = 0; i < 3; i++)
            if (!strcmp(p, a->devw[i]))
                return 1;
    }
    return 0;
}

/* NUL-terminated string at addr in pid's memory, page by page (a short read ends at a hole). */
static int read_str(int memfd, uint64_t addr, char *buf, size_t len)
{
    size_t got = 0;
    while (got < len - 1) {
        size_t chunk = 4096 - ((addr + got) & 4095);
        if (chunk > len - 1 - got)
            chunk = len - 1 - got;
        ssize_t n = pread(memfd, buf + got, chunk, (off_t)(addr + got));
        if (n <= 0)
            break;
        void *z = memchr(buf + got, 0, (size_t)n);
        if (z)
            return 0;
        got += (size_t)n;
    }
    buf[got] = 0;
    return got > 0 ? 0 : -1;
}

static int readlink_str(const char *p, char *out, size_t len)
{
    ssize_t n = readlink(p, out, len - 1);
    if (n < 0)
        return -1;
    out[n] = 0;
    return 0;
}

/* Absolute path of `rel` against dirfd (or cwd) of pid; "" path with F_EMPTY names the fd. */
static int absolute(pid_t pid, long long dirfd, const char *rel, char *out, size_t len)
{
    char lp[64], base[PATH_MAX];
    if (rel[0] == '/') {
        snprintf(out, len, "%s", rel);
        return 0;
    }
    if ((int)dirfd == AT_FDCWD)
        snprintf(lp, sizeof lp, "/proc/%d/cwd", (int)pid);
    else
        snprintf(lp, sizeof lp, "/proc/%d/fd/%d", (int)pid, (int)dirfd);
    if (readlink_str(lp, base, sizeof base) < 0)
        return -1;
    if (base[0] != '/') {
        snprintf(out, len, "%s", base); /* pipe:[..], anon_inode:..: not a path */
        return 1;
    }
    if (!rel[0])
        snprintf(out, len, "%s", base);
    else
        snprintf(out, len, "%s/%s", base, rel);
    return 0;
}

/* /proc/self/fd/N, /dev/fd/N, /dev/stdout...: reopening a descriptor. Returns N or -1. */
static int fd_alias(const char *p)
{
    int n = -1;
    char tail[8];
    if (!strcmp(p, "/dev/stdin"))
        return 0;
    if (!strcmp(p, "/dev/stdout"))
        return 1;
    if (!strcmp(p, "/dev/stderr"))
        return 2;
    if (sscanf(p, "/proc/self/fd/%d%1s", &n, tail) == 1 || sscanf(p, "/dev/fd/%d%1s", &n, tail) == 1 ||
        sscanf(p, "/proc/thread-self/fd/%d%1s", &n, tail) == 1)
        return n;
    return -1;
}

/* Canonical path inside the sandbox, following symlinks (all, or all but the last). */
static int resolve_in_sandbox(pid_t pid, const char *abs, int nofollow_last, char *out, size_t len)
{
    char rp[64];
    snprintf(rp, sizeof rp, "/proc/%d/root", (int)pid);
    int root = open(rp, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return -1;
    char tmp[PATH_MAX + 2];
    snprintf(tmp, sizeof tmp, "%s", abs);
    const char *leaf = NULL;
    char *slash = strrchr(tmp, '/');
    if (nofollow_last && slash && slash[1]) {
        *slash = 0;
        leaf = slash + 1;
    }
    struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    const char *rel = tmp[0] == '/' ? tmp + 1 : tmp;
    int fd = (int)syscall(SYS_openat2, root, *rel ? rel : ".", &how, sizeof how);
    int r = -1;
    if (fd < 0 && errno == ENOENT && !leaf && slash && slash[1]) {
        /* Creating a new name: resolve the parent. */
        *slash = 0;
        leaf = slash + 1;
        rel = tmp[0] == '/' ? tmp + 1 : tmp;
        fd = (int)syscall(SYS_openat2, root, *rel ? rel : ".", &how, sizeof how);
    }
    if (fd >= 0) {
        char lp[64], base[PATH_MAX];
        snprintf(lp, sizeof lp, "/proc/self/fd/%d", fd);
        if (readlink_str(lp, base, sizeof base) == 0 && base[0] == '/') {
            if (leaf)
                snprintf(out, len, "%s/%s", strcmp(base, "/") ? base : "", leaf);
            else
                snprintf(out, len, "%s", base);
            r = 0;
        }
        close(fd);
    }
    close(root);
    return r;
}

static int exists_in_sandbox(pid_t pid, const char *abs)
{
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "/proc/%d/root%s", (int)pid, abs);
    struct stat st;
    return fstatat(AT_FDCWD, p, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static void escape(const char *in, char *out, size_t len)
{
    size_t o = 0;
    for (const unsigned char *s = (const unsigned char *)in; *s && o + 5 < len; s++) {
        if (*s == '\\') {
            out[o++] = '\\';
            out[o++] = '\\';
        } else if (*s < 0x20 || *s == 0x7f) {
            o += (size_t)snprintf(out + o, len - o, "\\x%02x", *s);
        } else
            out[o++] = (char)*s;
    }
    out[o] = 0;
}

static void emit(struct psb_audit *a, pid_t pid, const char *name, const char *path)
{
    if (a->reported >= PSB_AUDIT_MAX_RECORDS) {
        a->dropped++;
        return;
    }
    a->reported++;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char esc[PATH_MAX * 4 + 8];
    escape(path, esc, sizeof esc);
    psb_emit(DENY, PSB_I((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000), PSB_I(pid), PSB_T(name), PSB_T(esc));
}

/* Collected paths for one notification, judged after the response is sent. */
struct judged {
    char path[PATH_MAX];
    int fdonly;  /* path came from a descriptor */
    int ok;      /* known writable or not a write at all */
};

static void collect(struct psb_audit *a, const struct psb_sc *sc, const struct seccomp_data *d, pid_t pid, int memfd,
                    struct judged *j, int *nj)
{
    uint64_t flags = sc->flags_arg >= 0 ? d->args[sc->flags_arg] : 0;
    int nofollow = (sc->kind & F_NOFOLLOW) != 0;
    if (sc->kind & F_OPEN) {
        int acc = (int)flags & O_ACCMODE;
        /* O_CREAT alone on an existing file opens it read-only: not a write. */
        if (acc == O_RDONLY && !(flags & O_TRUNC))
            j[0].ok = -1; /* decided after the path is known */
        if (flags & O_NOFOLLOW)
            nofollow = 1;
    }
    if (sc->fd >= 0) {
        char rel[1] = "";
        j[*nj].ok = 0;
        j[*nj].fdonly = 1;
        if (absolute(pid, (long long)(int)d->args[sc->fd], rel, j[*nj].path, sizeof j[*nj].path) != 0)
            return;
        (*nj)++;
        return;
    }
    for (int k = 0; k < 2; k++) {
        int pa = k == 0 ? sc->p1 : sc->p2, da = k == 0 ? sc->d1 : sc->d2;
        if (pa < 0)
            continue;
        char rel[PATH_MAX];
        uint64_t addr = d->args[pa];
        if (addr == 0) {
            if (!(sc->kind & F_EMPTY))
                continue;
            rel[0] = 0; /* utimensat(fd, NULL, ...) */
        } else if (read_str(memfd, addr, rel, sizeof rel) < 0)
            continue;
        if (!rel[0] && !(sc->kind & F_EMPTY))
            continue;
        long long dfd = da >= 0 ? (long long)(int)d->args[da] : AT_FDCWD;
        struct judged *x = &j[*nj];
        int keep_ok = x->ok;
        x->fdonly = !rel[0];
        if (absolute(pid, dfd, rel, x->path, sizeof x->path) != 0)
            continue;
        psb_path_normalize(x->path);
        x->ok = keep_ok;
        /* link/rename sources may be protected; symlink targets are just strings. */
        (void)nofollow;
        (*nj)++;
    }
}

void psb_audit_handle(struct psb_audit *a)
{
    memset(a->req, 0, sizeof *a->req);
    if (ioctl(a->fd, SECCOMP_IOCTL_NOTIF_RECV, a->req) < 0)
        return; /* ENOENT: the task died between poll and recv */
    const struct seccomp_data *d = &a->req->data;
    pid_t pid = (pid_t)a->req->pid;
    const struct psb_sc *sc = NULL;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].nr == d->nr && table[i].nr > 0) {
            sc = &table[i];
            break;
        }
    struct judged j[2];
    memset(j, 0, sizeof j);
    int nj = 0;
    if (sc) {
        /* One cached /proc/PID/mem: a flood usually comes from one process. A cached fd
         * whose process exec'd or died reads nothing (its mm is gone): reopen and retry. */
        int fresh = 0;
        for (int attempt = 0; attempt < 2; attempt++) {
            if (a->mem_pid != pid || a->memfd < 0 || attempt == 1) {
                if (a->memfd >= 0)
                    close(a->memfd);
                char mp[64];
                snprintf(mp, sizeof mp, "/proc/%d/mem", (int)pid);
                a->memfd = open(mp, O_RDONLY | O_CLOEXEC);
                a->mem_pid = a->memfd >= 0 ? pid : 0;
                fresh = 1;
            }
            if (a->memfd < 0)
                break;
            memset(j, 0, sizeof j);
            nj = 0;
            collect(a, sc, d, pid, a->memfd, j, &nj);
            if (nj > 0 || fresh)
                break;
        }
        /* The pid (and its memory) belonged to the trapped task only if the id is still valid. */
        if (ioctl(a->fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &a->req->id) < 0)
            nj = 0;
    }
    /* /proc/self/fd/N and friends name the file behind the descriptor: read it while the task is
     * still stopped in the syscall. After the reply it may close the descriptor or exit. */
    for (int k = 0; k < nj; k++) {
        int fa = j[k].path[0] == '/' ? fd_alias(j[k].path) : -1;
        if (fa < 0)
            continue;
        char lp[64], t[PATH_MAX];
        snprintf(lp, sizeof lp, "/proc/%d/fd/%d", (int)pid, fa);
        if (readlink_str(lp, t, sizeof t) < 0 || t[0] != '/')
            j[k].path[0] = 0;
        else
            snprintf(j[k].path, PATH_MAX, "%s", t);
    }
    /* A setuid or setgid mode is refused here (seccomp.c says why), wherever the file is: set by
     * the chmod family, or given to a file as it is made (a creating open, creat, mknod). */
    int setid = 0;
    if (sc && (!strcmp(sc->name, "chmod") || !strcmp(sc->name, "fchmod") || !strcmp(sc->name, "creat") ||
               !strcmp(sc->name, "mknod")))
        setid = (d->args[1] & (S_ISUID | S_ISGID)) != 0;
    else if (sc && (!strcmp(sc->name, "fchmodat") || !strcmp(sc->name, "fchmodat2") || !strcmp(sc->name, "mknodat")))
        setid = (d->args[2] & (S_ISUID | S_ISGID)) != 0;
    else if (sc && (sc->kind & F_OPEN) && (d->args[sc->flags_arg] & (O_CREAT | PSB_O_TMPFILE_BIT)))
        setid = (d->args[sc->flags_arg + 1] & (S_ISUID | S_ISGID)) != 0;
    /* So is any extended attribute change (seccomp.c says why): as on a file system without them. */
    int xattr = sc && strstr(sc->name, "xattr") != NULL;
    memset(a->resp, 0, sizeof *a->resp);
    a->resp->id = a->req->id;
    if (setid)
        a->resp->error = -EPERM;
    else if (xattr)
        a->resp->error = -EOPNOTSUPP;
    else
        a->resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    (void)ioctl(a->fd, SECCOMP_IOCTL_NOTIF_SEND, a->resp);

    for (int k = 0; k < nj; k++) {
        char *p = j[k].path;
        if (p[0] != '/')
            continue; /* a pipe or socket behind a descriptor (or an alias that did not resolve) */
        if (setid || xattr) {
            emit(a, pid, sc->name, p);
            continue;
        }
        int create_only = sc->kind & F_CREATE;
        int followlast = !(sc->kind & F_NOFOLLOW);
        if (j[k].ok == -1 || (create_only && !(k == 0 && (sc->p2 >= 0 && sc->p1 >= 0)))) {
            /* O_CREAT-only opens and mkdir/mknod/symlink of an existing name fail or read:
             * no write happens. (For link/rename the source is judged as a path below.) */
            if (exists_in_sandbox(pid, p))
                continue;
        }
        if (is_writable(a, p)) {
            if (j[k].fdonly)
                continue;
            char real[PATH_MAX];
            if (resolve_in_sandbox(pid, p, !followlast, real, sizeof real) == 0 && !is_writable(a, real))
                emit(a, pid, sc->name, real);
            continue;
        }
        emit(a, pid, sc->name, p);
    }
}

void psb_audit_finish(struct psb_audit *a)
{
    if (a->dropped > 0)
        psb_emit(DROPPED, PSB_I(a->dropped));
    close(a->fd);
}
