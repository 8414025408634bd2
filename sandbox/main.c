/*
 * proctor-sandbox: argument parsing and the helper's event loop.
 *
 * The helper stays in the host namespaces. It builds the seccomp filter once, sets up cgroups,
 * clones init (new user/mount/pid/ipc/uts/cgroup/net namespaces), moves it into the cgroups,
 * and then runs a single poll loop: init's status pipe, the command's setup socket (errors and
 * the seccomp listener fd), the audit listener, stdio pipes, the supervisor's death pipe and
 * signals. Deadlines come from CLOCK_MONOTONIC via the poll timeout.
 */
#include "psb.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/filter.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int psb_report_fd = -1;

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

/* One write(2) per record so concurrent readers never see torn lines. */
void psb_report(const char *fmt, ...)
{
    if (psb_report_fd < 0)
        return;
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof buf - 2)
        n = sizeof buf - 2;
    buf[n++] = '\n';
    (void)psb_write_all(psb_report_fd, buf, (size_t)n);
}

void psb_warn(const char *limit, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    psb_report("warn\t%s\t%s", limit, msg);
    /* With a report channel the supervisor says it (once, on its own stderr and in the audit);
     * stderr here may be the experiment's log. Alone, the launcher must say it itself. */
    if (psb_report_fd < 0)
        dprintf(2, "proctor-sandbox: warning: %s: %s\n", limit, msg);
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

/* ---------- argument parsing ---------- */

static void die_args(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_args(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dprintf(2, "proctor-sandbox: %s: %s (stage: args)\n", msg, strerror(EINVAL));
    exit(125);
}

/* Absolute, no empty/"."/".." components, no trailing junk: setup paths are never resolved lexically. */
static const char *check_path(const char *opt, const char *p)
{
    if (!p || p[0] != '/')
        die_args("%s %s: path must be absolute", opt, p ? p : "(missing)");
    if (strlen(p) >= PATH_MAX)
        die_args("%s: path too long", opt);
    const char *s = p;
    while (*s) {
        while (*s == '/')
            s++;
        const char *e = strchrnul(s, '/');
        size_t n = (size_t)(e - s);
        if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            die_args("%s %s: '.' and '..' components are not allowed", opt, p);
        s = e;
    }
    return p;
}

/* Decimal with an optional binary suffix: K, M, G, T (also KiB, MiB...). */
static long long parse_num(const char *opt, const char *s)
{
    if (!s || !*s)
        die_args("%s: missing number", opt);
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-')
        die_args("%s %s: not a number", opt, s);
    unsigned long long mul = 1;
    if (*end) {
        switch (toupper((unsigned char)*end)) {
        case 'K': mul = 1ULL << 10; break;
        case 'M': mul = 1ULL << 20; break;
        case 'G': mul = 1ULL << 30; break;
        case 'T': mul = 1ULL << 40; break;
        default: die_args("%s %s: bad suffix", opt, s);
        }
        end++;
        if (strcmp(end, "") && strcasecmp(end, "iB") && strcasecmp(end, "B"))
            die_args("%s %s: bad suffix", opt, s);
    }
    if (v > (unsigned long long)LLONG_MAX / mul)
        die_args("%s %s: too large", opt, s);
    return (long long)(v * mul);
}

static int parse_fd(const char *opt, const char *s)
{
    long long v = parse_num(opt, s);
    if (v < 0 || v > INT_MAX)
        die_args("%s %s: bad fd", opt, s);
    if (fcntl((int)v, F_GETFD) < 0)
        die_args("%s %s: not an open descriptor", opt, s);
    return (int)v;
}

/* The options that take one number (a size, a count, milliseconds or seconds): where it goes. */
static long long *numeric_option(struct psb_config *c, const char *a)
{
    static const struct {
        const char *name;
        size_t offset;
    } table[] = {
        {"--timeout", offsetof(struct psb_config, timeout_ms)},
        {"--grace", offsetof(struct psb_config, grace_ms)},
        {"--cpu", offsetof(struct psb_config, cpu_s)},
        {"--memory", offsetof(struct psb_config, memory)},
        {"--pids", offsetof(struct psb_config, pids)},
        {"--fsize", offsetof(struct psb_config, fsize)},
        {"--nofile", offsetof(struct psb_config, nofile)},
        {"--output-entries", offsetof(struct psb_config, output_entries)},
        {"--stdio-limit", offsetof(struct psb_config, stdio_limit)},
    };
    for (size_t k = 0; k < sizeof table / sizeof table[0]; k++)
        if (!strcmp(a, table[k].name))
            return (long long *)((char *)c + table[k].offset);
    return NULL;
}

static struct psb_op *new_op(struct psb_config *c)
{
    if (c->nops >= PSB_MAX_OPS)
        die_args("too many mount options");
    struct psb_op *o = &c->ops[c->nops++];
    o->src_fd = -1;
    return o;
}

static void parse_args(int argc, char **argv, struct psb_config *c)
{
    memset(c, 0, sizeof *c);
    c->grace_ms = 500;
    c->cpu_s = c->memory = c->pids = c->fsize = c->nofile = -1;
    c->output_limit = c->stdio_limit = -1;
    c->output_entries = 100000;
    c->report_fd = c->parent_fd = c->pass_fd = -1;
    c->net = PSB_NET_NONE;
    int i = 1;
#define NEED(n)                                                                                    \
    do {                                                                                           \
        if (i + (n) >= argc)                                                                       \
            die_args("%s: needs %d argument(s)", a, n);                                            \
    } while (0)
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            i++;
            break;
        }
        long long *num = numeric_option(c, a);
        if (num) {
            NEED(1);
            *num = parse_num(a, argv[++i]);
        } else if (!strcmp(a, "--ro") || !strcmp(a, "--ro-try") || !strcmp(a, "--rw")) {
            NEED(2);
            struct psb_op *o = new_op(c);
            o->kind = !strcmp(a, "--ro") ? PSB_OP_RO : !strcmp(a, "--rw") ? PSB_OP_RW : PSB_OP_RO_TRY;
            o->src = check_path(a, argv[++i]);
            o->dst = check_path(a, argv[++i]);
        } else if (!strcmp(a, "--hide") || !strcmp(a, "--dev") || !strcmp(a, "--proc") || !strcmp(a, "--hide-sockets")) {
            NEED(1);
            struct psb_op *o = new_op(c);
            o->kind = !strcmp(a, "--hide")           ? PSB_OP_HIDE
                      : !strcmp(a, "--dev")          ? PSB_OP_DEV
                      : !strcmp(a, "--hide-sockets") ? PSB_OP_HIDE_SOCKETS
                                                     : PSB_OP_PROC;
            o->dst = check_path(a, argv[++i]);
        } else if (!strcmp(a, "--symlink")) {
            NEED(2);
            struct psb_op *o = new_op(c);
            o->kind = PSB_OP_SYMLINK;
            o->src = argv[++i];
            if (!*o->src || strlen(o->src) >= PATH_MAX)
                die_args("--symlink: bad link text");
            o->dst = check_path(a, argv[++i]);
        } else if (!strcmp(a, "--tmpfs")) {
            NEED(2);
            struct psb_op *o = new_op(c);
            o->kind = PSB_OP_TMPFS;
            o->dst = check_path(a, argv[++i]);
            o->size = (uint64_t)parse_num(a, argv[++i]);
        } else if (!strcmp(a, "--chdir")) {
            NEED(1);
            c->chdir_to = check_path(a, argv[++i]);
        } else if (!strcmp(a, "--setenv")) {
            NEED(2);
            const char *n = argv[++i], *v = argv[++i];
            if (!*n || strchr(n, '='))
                die_args("--setenv %s: bad name", n);
            if (c->nenv >= PSB_MAX_ENV)
                die_args("too many --setenv");
            char *e;
            if (asprintf(&e, "%s=%s", n, v) < 0)
                die_args("out of memory");
            c->env[c->nenv++] = e;
        } else if (!strcmp(a, "--net")) {
            NEED(1);
            const char *v = argv[++i];
            if (!strcmp(v, "none"))
                c->net = PSB_NET_NONE;
            else if (!strcmp(v, "loopback"))
                c->net = PSB_NET_LOOPBACK;
            else if (!strcmp(v, "host"))
                c->net = PSB_NET_HOST;
            else
                die_args("--net %s: expected none, loopback or host", v);
        } else if (!strcmp(a, "--output-limit")) {
            NEED(2);
            c->output_dir = check_path(a, argv[++i]);
            c->output_limit = parse_num(a, argv[++i]);
        } else if (!strcmp(a, "--audit-writes")) {
            c->audit_writes = 1;
        } else if (!strcmp(a, "--filter-cache")) {
            NEED(1);
            c->filter_cache = check_path(a, argv[++i]);
        } else if (!strcmp(a, "--writable")) {
            NEED(1);
            if (c->nwritable >= PSB_MAX_WRITABLE)
                die_args("too many --writable");
            c->writable[c->nwritable++] = check_path(a, argv[++i]);
        } else if (!strcmp(a, "--report-fd")) {
            NEED(1);
            c->report_fd = parse_fd(a, argv[++i]);
        } else if (!strcmp(a, "--parent-fd")) {
            NEED(1);
            c->parent_fd = parse_fd(a, argv[++i]);
        } else if (!strcmp(a, "--pass-fd")) {
            NEED(1);
            c->pass_fd = parse_fd(a, argv[++i]);
        } else {
            die_args("unknown option %s", a);
        }
    }
#undef NEED
    if (i >= argc)
        die_args("missing -- COMMAND");
    c->argv = &argv[i];
    c->env[c->nenv] = NULL;
    if (c->report_fd >= 0 && c->report_fd <= 2)
        die_args("--report-fd must not be 0, 1 or 2");
    if (c->parent_fd >= 0 && c->parent_fd <= 2)
        die_args("--parent-fd must not be 0, 1 or 2");
    if (c->pass_fd >= 0 && (c->pass_fd <= 2 || c->pass_fd == c->report_fd || c->pass_fd == c->parent_fd))
        die_args("--pass-fd must not be 0, 1, 2, the report or the parent descriptor");
    if (c->pass_fd >= 0 && fcntl(c->pass_fd, F_GETFD) < 0)
        die_args("--pass-fd %d is not open", c->pass_fd);
    if (c->pids == 0 || c->nofile == 0)
        die_args("--pids and --nofile must be positive");
}

/* ---------- helper ---------- */

static void setup_fail(const char *what, int err, const char *stage)
{
    dprintf(2, "proctor-sandbox: %s: %s (stage: %s)\n", what, strerror(err), stage);
}

struct stdio_pipe {
    int fd;     /* read end, -1 when closed */
    int out;    /* where it goes: 1 or 2 */
};

struct out_walk {
    long long bytes;
    long long entries;
    long long max_entries;
    int over_entries;
    int over_depth;
};

#define PSB_OUTPUT_MAX_DEPTH 128
#define PSB_SETUP_TIMEOUT_MS 30000

static void walk_dir(int dfd, struct out_walk *w, int depth)
{
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (++w->entries > w->max_entries) {
            w->over_entries = 1;
            break;
        }
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        long long b = (long long)st.st_blocks * 512;
        /* Sparse files count at their apparent size: the cap is about what a reader sees too. */
        if (S_ISREG(st.st_mode) && st.st_size > b)
            b = st.st_size;
        w->bytes += b;
        if (S_ISDIR(st.st_mode)) {
            /* What lies deeper is not counted: a deeper tree is itself over the limit, or
             * gigabytes below level 128 would pass the cap unseen. */
            if (depth >= PSB_OUTPUT_MAX_DEPTH) {
                w->over_depth = 1;
                break;
            }
            int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0)
                walk_dir(sub, w, depth + 1);
        }
        if (w->over_entries || w->over_depth)
            break;
    }
    closedir(d);
}

/*
 * Disk space the directory walk cannot see: a file under DIR that was unlinked while open (or
 * made with O_TMPFILE and never linked) keeps its blocks until the last descriptor or mapping
 * goes, so "open, unlink, write" filled the outputs filesystem past --output-limit unseen.
 * Every sandbox process is init or a descendant of it (orphans are reparented to init), so the
 * PPid chains in the host's /proc find them all; their descriptors (per thread: a thread may
 * have its own table) and mappings are checked for nameless regular files on DIR's device,
 * each inode counted once. Not seen: a descriptor parked in flight in a unix socket, and
 * (unprivileged helper only) a process that made itself non-dumpable: its /proc fd and maps
 * then belong to global root, which the helper's uid cannot read.
 */
struct nameless_file {
    ino_t ino;
    long long bytes;
};

struct nameless {
    struct nameless_file *f;
    size_t n, cap;
};

/* Collected first, then sorted and counted once per inode: tens of thousands of open
 * descriptors must not make a poll quadratic (the deadline is enforced in the same loop). */
static void nameless_add(struct nameless *u, ino_t ino, long long bytes)
{
    if (u->n == u->cap) {
        size_t cap = u->cap ? u->cap * 2 : 64;
        struct nameless_file *p = realloc(u->f, cap * sizeof *p);
        if (!p)
            return;
        u->f = p;
        u->cap = cap;
    }
    u->f[u->n].ino = ino;
    u->f[u->n++].bytes = bytes;
}

static int nameless_cmp(const void *a, const void *b)
{
    const struct nameless_file *x = a, *y = b;
    if (x->ino != y->ino)
        return x->ino < y->ino ? -1 : 1;
    return x->bytes < y->bytes ? 1 : x->bytes > y->bytes ? -1 : 0; /* the largest first */
}

static pid_t proc_ppid(pid_t pid)
{
    char p[64], buf[512];
    snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t k = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (k <= 0)
        return -1;
    buf[k] = 0;
    char *e = strrchr(buf, ')'); /* comm may hold spaces and parentheses */
    int ppid;
    return e && sscanf(e + 1, " %*c %d", &ppid) == 1 ? (pid_t)ppid : -1;
}

static void nameless_in_task(const char *task, dev_t dev, struct nameless *u)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/fd", task);
    DIR *d = opendir(p);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char f[PATH_MAX + 64];
        struct stat st;
        snprintf(f, sizeof f, "%s/%s", p, de->d_name);
        /* stat only: nothing is opened, so a FIFO or a socket cannot block the helper */
        if (stat(f, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 0 && st.st_dev == dev)
            nameless_add(u, st.st_ino, (long long)st.st_blocks * 512 > st.st_size ? (long long)st.st_blocks * 512
                                                                                     : (long long)st.st_size);
    }
    if (d)
        closedir(d);
    /* A mapping outlives its descriptor; its length is what it can have written. */
    snprintf(p, sizeof p, "%s/maps", task);
    FILE *m = fopen(p, "re");
    char line[PATH_MAX + 128];
    while (m && fgets(line, sizeof line, m)) {
        unsigned long long lo, hi, ino;
        unsigned maj, mnr;
        if (strstr(line, " (deleted)") && sscanf(line, "%llx-%llx %*s %*x %x:%x %llu", &lo, &hi, &maj, &mnr, &ino) == 5 &&
            maj == major(dev) && mnr == minor(dev) && ino)
            nameless_add(u, (ino_t)ino, (long long)(hi - lo));
    }
    if (m)
        fclose(m);
}

struct proc_entry {
    pid_t pid, ppid;
    int state; /* 0 unknown, 1 in the sandbox, 2 not, 3 being resolved */
};

static int proc_cmp(const void *a, const void *b)
{
    pid_t x = ((const struct proc_entry *)a)->pid, y = ((const struct proc_entry *)b)->pid;
    return x < y ? -1 : x > y;
}

/* In the sandbox when the PPid chain reaches init; memoised, so a poll stays O(n log n). */
static int in_sandbox(struct proc_entry *p, size_t n, size_t i, pid_t init)
{
    size_t chain[4096];
    size_t k = 0;
    int verdict = 2;
    for (;;) {
        if (p[i].pid == init) {
            verdict = 1;
            break;
        }
        if (p[i].state == 1 || p[i].state == 2) {
            verdict = p[i].state;
            break;
        }
        if (p[i].state == 3 || k == sizeof chain / sizeof chain[0] || p[i].ppid <= 1)
            break; /* a loop (pid reuse), too deep, or the host's init */
        p[i].state = 3;
        chain[k++] = i;
        struct proc_entry key = {p[i].ppid, 0, 0};
        struct proc_entry *up = bsearch(&key, p, n, sizeof *p, proc_cmp);
        if (!up)
            break;
        i = (size_t)(up - p);
    }
    while (k)
        p[chain[--k]].state = verdict;
    return verdict == 1;
}

/* Every thread of one process: a thread may have its own descriptor table. */
static void nameless_in_process(pid_t pid, dev_t dev, struct nameless *u)
{
    char t[64];
    snprintf(t, sizeof t, "/proc/%d/task", (int)pid);
    DIR *td = opendir(t);
    struct dirent *te;
    while (td && (te = readdir(td))) {
        if (!isdigit((unsigned char)te->d_name[0]))
            continue;
        char task[128];
        snprintf(task, sizeof task, "%s/%s", t, te->d_name);
        nameless_in_task(task, dev, u);
    }
    if (td)
        closedir(td);
}

static long long nameless_bytes(pid_t init, dev_t dev, const struct psb_cgroups *cg)
{
    struct nameless u = {NULL, 0, 0};
    struct proc_entry *p = NULL;
    size_t n = 0, cap = 0;
    /* With a cgroup, its member list is exact and costs nothing like a walk of the host's /proc
     * (every 50 ms, competing with the experiment for the CPU). */
    pid_t *members = NULL;
    size_t nmembers = 0;
    if (psb_cgroups_procs(cg, &members, &nmembers) == 0) {
        for (size_t i = 0; i < nmembers; i++)
            nameless_in_process(members[i], dev, &u);
        free(members);
        goto count;
    }
    DIR *d = opendir("/proc");
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        if (n == cap) {
            size_t c = cap ? cap * 2 : 256;
            struct proc_entry *a = realloc(p, c * sizeof *a);
            if (!a)
                break;
            p = a;
            cap = c;
        }
        p[n].pid = (pid_t)atoi(de->d_name);
        p[n].ppid = proc_ppid(p[n].pid);
        p[n].state = 0;
        n++;
    }
    if (d)
        closedir(d);
    if (n)
        qsort(p, n, sizeof *p, proc_cmp);
    for (size_t i = 0; i < n; i++) {
        if (in_sandbox(p, n, i, init))
            nameless_in_process(p[i].pid, dev, &u);
    }
    free(p);
count:;
    long long bytes = 0;
    if (u.n)
        qsort(u.f, u.n, sizeof *u.f, nameless_cmp);
    for (size_t i = 0; i < u.n; i++)
        if (i == 0 || u.f[i].ino != u.f[i - 1].ino)
            bytes += u.f[i].bytes;
    free(u.f);
    return bytes;
}

char *psb_wipe_start;
size_t psb_wipe_len;

int main(int argc, char **argv)
{
    static struct psb_config cfg;
    /* Work on a heap copy of argv: init wipes the original argument and environment area so
     * /proc/1/cmdline and /proc/1/environ inside the sandbox show nothing of the policy or
     * of the supervisor's environment (cmdline is readable without ptrace access). */
    char **av = calloc((size_t)argc + 1, sizeof *av);
    if (!av)
        return 125;
    for (int i = 0; i < argc; i++)
        if (!(av[i] = strdup(argv[i])))
            return 125;
    extern char **environ;
    char *end = argv[argc - 1] + strlen(argv[argc - 1]) + 1;
    for (char **e = environ; e && *e; e++)
        if (*e == end)
            end = *e + strlen(*e) + 1;
    psb_wipe_start = argv[0];
    psb_wipe_len = (size_t)(end - argv[0]);
    parse_args(argc, av, &cfg);
    psb_report_fd = cfg.report_fd;
    if (psb_report_fd >= 0)
        fcntl(psb_report_fd, F_SETFD, FD_CLOEXEC);
    if (cfg.parent_fd >= 0)
        fcntl(cfg.parent_fd, F_SETFD, FD_CLOEXEC);
    signal(SIGPIPE, SIG_IGN);

    char err[512] = "";
    static struct psb_child_ctx ctx;
    ctx.cfg = &cfg;
    ctx.uid = geteuid();
    ctx.gid = getegid();

    ctx.landlock_abi = psb_landlock_abi();
    /* cgroup v2 before clone (init is born inside it); v1 after, overlapping init's mounts. */
    struct psb_cgroups *cg = psb_cgroups_setup_v2(&cfg);

    /* Enforcement report for every limit the plan carries. */
    psb_report_rlimits(&cfg);
    if (cfg.timeout_ms > 0)
        psb_report("enforce\ttimeout\tpidns-kill\t%lld", cfg.timeout_ms);
    if (cfg.output_limit >= 0)
        psb_report("enforce\toutput\thost-poll-50ms\t%lld", cfg.output_limit);
    if (cfg.output_limit >= 0)
        psb_report("enforce\toutput-entries\thost-poll-50ms\t%lld", cfg.output_entries);
    if (cfg.stdio_limit >= 0)
        psb_report("enforce\tstdio\tpipe-drain\t%lld", cfg.stdio_limit);
    psb_report("enforce\tseccomp\t%s\t1", cfg.audit_writes ? "filter+notify" : "filter");
    psb_report("enforce\tnetns\t%s\t%s", cfg.net == PSB_NET_HOST ? "host" : "new-netns",
               cfg.net == PSB_NET_NONE ? "none" : cfg.net == PSB_NET_LOOPBACK ? "loopback" : "host");
    if (ctx.landlock_abi >= 1)
        psb_report("enforce\tlandlock\tabi-%d\t%d", ctx.landlock_abi, ctx.landlock_abi);
    else
        psb_warn("landlock", "Landlock unavailable; writes are confined by the mount layout only");

    int sync_p[2], status_p[2], sv[2], out_p[2] = {-1, -1}, err_p[2] = {-1, -1};
    if (pipe2(sync_p, O_CLOEXEC) < 0 || pipe2(status_p, O_CLOEXEC) < 0 ||
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        setup_fail("pipe", errno, "setup");
        psb_cgroups_kill_and_remove(cg);
        return 125;
    }
    if (cfg.stdio_limit >= 0) {
        if (pipe2(out_p, O_CLOEXEC) < 0 || pipe2(err_p, O_CLOEXEC) < 0) {
            setup_fail("pipe", errno, "setup");
            psb_cgroups_kill_and_remove(cg);
            return 125;
        }
    }
    ctx.sync_rd = sync_p[0];
    ctx.sync_wr = sync_p[1];
    ctx.status_rd = status_p[0];
    ctx.status_wr = status_p[1];
    ctx.setup_sock = sv[1];
    ctx.setup_sock_peer = sv[0];
    ctx.out_rd = out_p[0];
    ctx.out_wr = out_p[1];
    ctx.err_rd = err_p[0];
    ctx.err_wr = err_p[1];

    sigset_t mask, oldmask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGUSR1);
    sigaddset(&mask, SIGUSR2);
    sigprocmask(SIG_BLOCK, &mask, &oldmask);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        setup_fail("signalfd", errno, "setup");
        psb_cgroups_kill_and_remove(cg);
        return 125;
    }

    /* The network namespace is made by init, in parallel with its mount work (init.c). */
    int flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;
    long long t_clone = psb_now_ms();
    /* Raw clone without CLONE_VM behaves like fork: the child gets a copy of this memory
     * (config, BPF program) and runs psb_init_main on its own copy of the stack. */
    pid_t init = -1;
    int cgfd = psb_cgroups_v2_fd(cg);
    if (cgfd >= 0) {
        /* cgroup v2: born inside the cgroup (CLONE_INTO_CGROUP, 5.7+), no migration at all.
         * clone3 with no stack behaves like fork. */
        struct {
            uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
                set_tid_size, cgroup;
        } ca;
        memset(&ca, 0, sizeof ca);
        ca.flags = (uint64_t)flags | 0x200000000ULL /* CLONE_INTO_CGROUP */;
        ca.exit_signal = SIGCHLD;
        ca.cgroup = (uint64_t)cgfd;
        init = (pid_t)syscall(435 /* clone3 */, &ca, sizeof ca);
        if (init > 0)
            psb_cgroups_mark_joined(cg);
        close(cgfd); /* parent and child alike */
    }
    if (init < 0)
        init = (pid_t)syscall(SYS_clone, (unsigned long)flags | SIGCHLD, NULL, NULL, NULL, 0UL);
    if (init < 0) {
        setup_fail("clone", errno, "namespaces");
        psb_cgroups_kill_and_remove(cg);
        return 125;
    }
    if (init == 0) {
        close(sfd);
        _exit(psb_init_main(&ctx));
    }
    close(sync_p[0]);
    close(status_p[1]);
    close(sv[1]);
    if (out_p[1] >= 0) {
        close(out_p[1]);
        close(err_p[1]);
    }

    /* While init builds its mount tree: cgroup v1 (or the rlimit fallbacks) and the seccomp
     * filter, compiled once here and handed over as plain BPF with the go-ahead. Init forks the
     * command only after that, so everything the command starts is accounted and filtered.
     * If init already failed (ESRCH, EPIPE), its own error record on the status pipe says why. */
    int setup_error = 0;
    struct psb_go go;
    memset(&go, 0, sizeof go);
    if (!cg)
        cg = psb_cgroups_setup_v1(&cfg, &go.plan);
    struct sock_fprog *prog = NULL;
    int r = psb_seccomp_get(&cfg, (void **)&prog, err, sizeof err);
    if (r < 0) {
        setup_fail(err, -r, "seccomp");
        setup_error = 1;
        kill(init, SIGKILL);
    } else if ((r = psb_cgroups_attach(cg, init, sv[0], err, sizeof err)) < 0) {
        if (errno != ESRCH) {
            setup_fail(err, errno, "cgroups");
            setup_error = 1;
        }
        kill(init, SIGKILL);
    } else {
        /* At most BPF_MAXINSNS (4096) instructions: 32 KiB, always within the pipe's buffer. */
        go.njoin = (uint32_t)r;
        go.ninsns = prog->len;
        if (psb_write_all(sync_p[1], &go, sizeof go) < 0 ||
            psb_write_all(sync_p[1], prog->filter, (size_t)prog->len * sizeof *prog->filter) < 0)
            kill(init, SIGKILL);
    }
    close(sync_p[1]);

    struct psb_audit *audit = NULL;
    struct stdio_pipe sp[2] = {{out_p[0], 1}, {err_p[0], 2}};
    long long stdio_total = 0, stdio_dropped = 0;
    int status_fd = status_p[0], setup_fd = sv[0], parent_fd = cfg.parent_fd;
    int init_done = 0, init_wstatus = 0, got_exit = 0, cmd_wstatus = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    long long t_start = -1, t_end = -1, deadline = -1, kill_at = -1, next_output = -1;
    int timed_out = 0, killed_for = 0; /* 1 output, 2 parent, 3 signal */
    char limit_detail[256] = "";
    struct psb_rec rec;
    int stopping = 0, got_sigchld = 1, audit_hup = 0;
    long long peak = -1;
    int oom = 0, pids_hit = 0, finished = 0;

    for (;;) {
        if (init_done && status_fd < 0 && sp[0].fd < 0 && sp[1].fd < 0)
            break;
        struct pollfd pf[8];
        int n = 0, i_sig = -1, i_status = -1, i_setup = -1, i_audit = -1, i_out = -1, i_err = -1, i_parent = -1;
        pf[n] = (struct pollfd){sfd, POLLIN, 0};
        i_sig = n++;
        if (status_fd >= 0) {
            pf[n] = (struct pollfd){status_fd, POLLIN, 0};
            i_status = n++;
        }
        if (setup_fd >= 0) {
            pf[n] = (struct pollfd){setup_fd, POLLIN, 0};
            i_setup = n++;
        }
        if (audit && !init_done && !audit_hup) {
            pf[n] = (struct pollfd){psb_audit_fd(audit), POLLIN, 0};
            i_audit = n++;
        }
        if (sp[0].fd >= 0) {
            pf[n] = (struct pollfd){sp[0].fd, POLLIN, 0};
            i_out = n++;
        }
        if (sp[1].fd >= 0) {
            pf[n] = (struct pollfd){sp[1].fd, POLLIN, 0};
            i_err = n++;
        }
        if (parent_fd >= 0 && !init_done) {
            pf[n] = (struct pollfd){parent_fd, POLLIN, 0};
            i_parent = n++;
        }
        long long now = psb_now_ms();
        long long wake = -1;
        /* Setup itself is bounded too (a hung mount source, a stuck cgroup write). */
        long long setup_deadline = t_clone + PSB_SETUP_TIMEOUT_MS;
        if (!init_done && t_start < 0 && !setup_error) {
            if (now >= setup_deadline) {
                setup_error = 1;
                setup_fail("sandbox setup did not finish in time", ETIMEDOUT, "setup");
            } else
                wake = setup_deadline;
        }
        if (!init_done) {
            if (deadline >= 0 && !timed_out && (wake < 0 || deadline < wake))
                wake = deadline;
            if (kill_at >= 0 && (wake < 0 || kill_at < wake))
                wake = kill_at;
            if (next_output >= 0 && !stopping && (wake < 0 || next_output < wake))
                wake = next_output;
        }
        int tmo = wake < 0 ? -1 : (wake <= now ? 0 : (int)(wake - now));
        int pr = poll(pf, (nfds_t)n, tmo);
        if (pr < 0 && errno != EINTR)
            break;
        now = psb_now_ms();

        if (pr > 0 && i_sig >= 0 && (pf[i_sig].revents & POLLIN)) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == sizeof si) {
                if (si.ssi_signo == SIGCHLD) {
                    got_sigchld = 1;
                    continue;
                }
                /* Freeze (SIGUSR1) and thaw (SIGUSR2) every process in the sandbox: init does it. */
                if (si.ssi_signo == SIGUSR1 || si.ssi_signo == SIGUSR2) {
                    if (!init_done)
                        kill(init, (int)si.ssi_signo);
                    continue;
                }
                /* A stop request from the supervisor: the same path as a timeout, minus 124. */
                if (!init_done && !stopping) {
                    stopping = 1;
                    killed_for = killed_for ? killed_for : 3;
                    kill(init, t_start >= 0 ? SIGTERM : SIGKILL);
                    kill_at = now + cfg.grace_ms;
                }
            }
        }
        if (!init_done && got_sigchld) {
            got_sigchld = 0;
            int ws;
            pid_t w = wait4(init, &ws, WNOHANG, &ru);
            if (w == init) {
                init_done = 1;
                init_wstatus = ws;
                if (t_end < 0)
                    t_end = now;
            }
        }
        if (i_status >= 0 && (pf[i_status].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t k = read(status_fd, &rec, sizeof rec);
            if (k == (ssize_t)sizeof rec) {
                if (rec.kind == PSB_REC_EXIT) {
                    got_exit = 1;
                    cmd_wstatus = rec.wstatus;
                    t_end = now;
                    /* The command is done and init has killed the rest: read the cgroup's
                     * counters while the kernel tears the namespaces down. */
                    psb_cgroups_finish(cg, &peak, &oom, &pids_hit);
                    finished = 1;
                } else if (rec.kind == PSB_REC_ERROR && !setup_error) {
                    setup_error = 1;
                    dprintf(2, "proctor-sandbox: %s: %s (stage: %s)\n", rec.msg, strerror(rec.err), rec.stage);
                } else if (rec.kind == PSB_REC_WARN) {
                    psb_warn(rec.stage, "%s", rec.msg);
                }
            } else if (k == 0 || (k < 0 && errno != EINTR && errno != EAGAIN)) {
                close(status_fd);
                status_fd = -1;
            }
        }
        if (i_setup >= 0 && (pf[i_setup].revents & (POLLIN | POLLHUP | POLLERR))) {
            char cbuf[CMSG_SPACE(sizeof(int))];
            struct iovec iov = {&rec, sizeof rec};
            struct msghdr mh = {0};
            mh.msg_iov = &iov;
            mh.msg_iovlen = 1;
            mh.msg_control = cbuf;
            mh.msg_controllen = sizeof cbuf;
            ssize_t k = recvmsg(setup_fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
            if (k == (ssize_t)sizeof rec) {
                if (rec.kind == PSB_REC_NOTIFYFD) {
                    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
                    if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
                        int nfd;
                        memcpy(&nfd, CMSG_DATA(cm), sizeof nfd);
                        audit = psb_audit_new(&cfg, nfd);
                        (void)send(setup_fd, "k", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
                    }
                } else if (rec.kind == PSB_REC_ERROR && !setup_error) {
                    setup_error = 1;
                    dprintf(2, "proctor-sandbox: %s: %s (stage: %s)\n", rec.msg, strerror(rec.err), rec.stage);
                } else if (rec.kind == PSB_REC_WARN) {
                    psb_warn(rec.stage, "%s", rec.msg);
                }
            } else if (k == 0 || (k < 0 && errno != EINTR && errno != EAGAIN)) {
                /* The setup socket is close-on-exec: EOF means the command has started
                 * (or died trying). The wall clock starts here. */
                close(setup_fd);
                setup_fd = -1;
                if (!setup_error && !init_done) {
                    t_start = now;
                    if (cfg.timeout_ms > 0)
                        deadline = now + cfg.timeout_ms;
                    /* The first look at the outputs one poll after the start: a command
                     * cannot have written anything yet, and a short one is spared the walk. */
                    if (cfg.output_dir)
                        next_output = now + 50;
                }
            }
        }
        if (i_audit >= 0 && (pf[i_audit].revents & POLLIN))
            psb_audit_handle(audit);
        else if (i_audit >= 0 && (pf[i_audit].revents & (POLLHUP | POLLERR | POLLNVAL)))
            audit_hup = 1; /* no task uses the filter any more: stop polling it (it would spin) */
        for (int s = 0; s < 2; s++) {
            int idx = s == 0 ? i_out : i_err;
            if (idx < 0 || !(pf[idx].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char buf[65536];
            ssize_t k = read(sp[s].fd, buf, sizeof buf);
            if (k > 0) {
                long long room = cfg.stdio_limit - stdio_total;
                long long pass = k < room ? k : (room > 0 ? room : 0);
                if (pass > 0)
                    (void)psb_write_all(sp[s].out, buf, (size_t)pass);
                stdio_total += pass;
                stdio_dropped += k - pass;
            } else if (k == 0 || (errno != EINTR && errno != EAGAIN)) {
                close(sp[s].fd);
                sp[s].fd = -1;
            }
        }
        if (i_parent >= 0 && (pf[i_parent].revents & (POLLIN | POLLHUP | POLLERR))) {
            char b[64];
            ssize_t k = read(parent_fd, b, sizeof b);
            if (k <= 0 && !(k < 0 && (errno == EINTR || errno == EAGAIN))) {
                /* The supervisor is gone: nobody is left to judge this run. */
                parent_fd = -1;
                if (!init_done) {
                    kill(init, SIGKILL);
                    if (!killed_for)
                        killed_for = 2;
                    snprintf(limit_detail, sizeof limit_detail, "supervisor gone");
                }
            }
        }
        if (setup_error && !init_done && !stopping) {
            stopping = 1;
            kill(init, SIGKILL);
        }
        if (!init_done && deadline >= 0 && !timed_out && now >= deadline) {
            timed_out = 1;
            psb_report("limit\ttimeout\t%lld ms", cfg.timeout_ms);
            if (!stopping) {
                stopping = 1;
                kill(init, SIGTERM);
                kill_at = now + cfg.grace_ms;
            }
        }
        if (!init_done && kill_at >= 0 && now >= kill_at) {
            kill(init, SIGKILL);
            kill_at = -1;
        }
        if (!init_done && next_output >= 0 && now >= next_output && !stopping) {
            struct out_walk w = {0, 0, cfg.output_entries, 0, 0};
            int dfd = open(cfg.output_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            struct stat ost;
            long long nameless = 0;
            if (dfd >= 0 && fstat(dfd, &ost) == 0) {
                nameless = nameless_bytes(init, ost.st_dev, cg);
                w.bytes += nameless;
            }
            if (dfd >= 0)
                walk_dir(dfd, &w, 0);
            long long spent = psb_now_ms() - now;
            if (w.bytes > cfg.output_limit || w.over_entries || w.over_depth) {
                if (w.over_depth)
                    psb_report("limit\toutput\tdirectories nested more than %d deep under %s",
                               PSB_OUTPUT_MAX_DEPTH, cfg.output_dir);
                else if (w.over_entries)
                    psb_report("limit\toutput\tmore than %lld entries under %s", cfg.output_entries,
                               cfg.output_dir);
                else
                    psb_report("limit\toutput\t%lld bytes > %lld under %s (%lld in unlinked files)", w.bytes,
                               cfg.output_limit, cfg.output_dir, nameless);
                stopping = 1;
                killed_for = 1;
                kill(init, SIGKILL);
            }
            /* Every 50 ms, but never more than a fifth of the helper's time: a huge tree
             * must not starve the audit listener and the stdio pipes. */
            next_output = psb_now_ms() + (spent * 4 > 50 ? spent * 4 : 50);
        }
        if (init_done) {
            /* Everything in the PID namespace is gone; drain what is left without blocking. */
            if (status_fd >= 0)
                fcntl(status_fd, F_SETFL, O_NONBLOCK);
            for (int s = 0; s < 2; s++)
                if (sp[s].fd >= 0)
                    fcntl(sp[s].fd, F_SETFL, O_NONBLOCK);
            if (setup_fd >= 0) {
                close(setup_fd);
                setup_fd = -1;
            }
        }
    }
    if (!init_done) {
        kill(init, SIGKILL);
        int ws;
        wait4(init, &ws, 0, &ru);
        init_wstatus = ws;
    }
    if (t_end < 0)
        t_end = psb_now_ms();

    if (!finished)
        psb_cgroups_finish(cg, &peak, &oom, &pids_hit);
    if (audit)
        psb_audit_finish(audit);
    psb_cgroups_kill_and_remove(cg);

    if (setup_error) {
        psb_report("result\t125\t0\t0\t0\t0\t0");
        return 125;
    }
    int sig = 0, code;
    if (got_exit) {
        if (WIFEXITED(cmd_wstatus))
            code = WEXITSTATUS(cmd_wstatus);
        else {
            sig = WTERMSIG(cmd_wstatus);
            code = 128 + sig;
        }
    } else if (WIFSIGNALED(init_wstatus)) {
        sig = WTERMSIG(init_wstatus);
        code = 128 + sig;
    } else {
        /* init exited without a record: only happens on an internal failure. */
        code = WIFEXITED(init_wstatus) ? WEXITSTATUS(init_wstatus) : 125;
        if (t_start < 0) {
            dprintf(2, "proctor-sandbox: init exited before the command started: %s (stage: init)\n",
                    strerror(EPIPE));
            psb_report("result\t125\t0\t0\t0\t0\t0");
            return 125;
        }
    }
    if (oom)
        psb_report("limit\tmemory\toom-kill (%d) limit %lld", oom, cfg.memory);
    if (pids_hit)
        psb_report("limit\tpids\tfork refused %d time(s) at %lld", pids_hit, cfg.pids);
    if (cfg.cpu_s >= 0 && sig == SIGXCPU)
        psb_report("limit\tcpu\tSIGXCPU after %lld s", cfg.cpu_s);
    if (cfg.fsize >= 0 && sig == SIGXFSZ)
        psb_report("limit\tfsize\tSIGXFSZ at %lld bytes", cfg.fsize);
    if (stdio_dropped > 0)
        psb_report("limit\tstdio\tdropped %lld bytes", stdio_dropped);
    if (killed_for == 2)
        psb_report("limit\tparent\t%s", limit_detail);
    if (killed_for == 3)
        psb_report("limit\tsignal\tstopped by the supervisor");
    if (timed_out)
        code = 124;
    else if (killed_for == 1 || killed_for == 2) {
        sig = SIGKILL;
        code = 128 + SIGKILL;
    }
    long long cpu_ms = (long long)ru.ru_utime.tv_sec * 1000 + ru.ru_utime.tv_usec / 1000 +
                       (long long)ru.ru_stime.tv_sec * 1000 + ru.ru_stime.tv_usec / 1000;
    if (peak < 0)
        peak = (long long)ru.ru_maxrss * 1024;
    long long wall = t_start >= 0 ? t_end - t_start : t_end - t_clone;
    psb_report("result\t%d\t%d\t%d\t%lld\t%lld\t%lld", code, sig, timed_out, wall, cpu_ms, peak);
    (void)oldmask;
    return code;
}
