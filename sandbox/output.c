/*
 * proctor-sandbox: --output-limit accounting. The helper polls the output directory as the host
 * sees it: the bytes and entries of its tree, plus files on its filesystem that sandbox
 * processes keep open or mapped after unlinking them.
 */
#include "psb.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define PSB_OUTPUT_MAX_DEPTH 128

struct out_walk {
    long long bytes;
    long long entries;
    long long max_entries;
    int over_entries;
    int over_depth;
    int over_unreadable;
};

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
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            /* A directory readable but not searchable (0600): its entries listed, none looked at;
             * an unprivileged agent filled 200 MiB under a 16 MiB cap so. Its search bit back (the
             * helper is its owner), or over. */
            struct stat ds;
            int e = errno;
            if (e == ENOENT)
                continue; /* gone meanwhile */
            if (e != EACCES || fstat(dirfd(d), &ds) < 0 || fchmod(dirfd(d), (ds.st_mode & 07777) | 0700) < 0 ||
                fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                w->over_unreadable = 1;
                break;
            }
        }
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
            if (sub < 0 && errno == EACCES) {
                /* Made unreadable by its owner: an unprivileged helper is that owner (root reads it
                 * anyway). Unseen, 600 MiB passed a 32 MiB cap; given back its bits, or over. */
                /* Never through a link swapped in meanwhile (the agent's places are polled while it
                 * runs): the entry itself, or nothing. */
                if (fchmodat(dirfd(d), de->d_name, (st.st_mode & 07777) | 0700, AT_SYMLINK_NOFOLLOW) == 0)
                    sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0) {
                    w->over_unreadable = 1;
                    break;
                }
            }
            if (sub >= 0)
                walk_dir(sub, w, depth + 1);
        }
        if (w->over_entries || w->over_depth || w->over_unreadable)
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

static void nameless_in_task(pid_t pid, const char *task, dev_t dev, struct nameless *u)
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
    /* A mapping outlives its descriptor and keeps the whole file: a 4 KiB mapping held a 60 MiB
     * fallocated file past the cap. The file's size through /proc/PID/map_files (the helper needs
     * CAP_SYS_ADMIN for it: root); without it, the mapping's length, what it can have written. */
    snprintf(p, sizeof p, "%s/maps", task);
    FILE *m = fopen(p, "re");
    char line[PATH_MAX + 128];
    while (m && fgets(line, sizeof line, m)) {
        unsigned long long lo, hi, ino;
        unsigned maj, mnr;
        if (strstr(line, " (deleted)") && sscanf(line, "%llx-%llx %*s %*x %x:%x %llu", &lo, &hi, &maj, &mnr, &ino) == 5 &&
            maj == major(dev) && mnr == minor(dev) && ino) {
            char mf[96];
            struct stat st;
            long long bytes = (long long)(hi - lo);
            snprintf(mf, sizeof mf, "/proc/%d/map_files/%llx-%llx", (int)pid, lo, hi);
            if (stat(mf, &st) == 0 && st.st_ino == (ino_t)ino) {
                long long whole = (long long)st.st_blocks * 512 > st.st_size ? (long long)st.st_blocks * 512 : (long long)st.st_size;
                if (whole > bytes)
                    bytes = whole;
            }
            nameless_add(u, (ino_t)ino, bytes);
        }
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
        nameless_in_task(pid, task, dev, u);
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
    /* Each file once, by the largest size any of its descriptors or mappings showed. */
    for (size_t i = 0; i < u.n;) {
        long long most = u.f[i].bytes;
        size_t j = i + 1;
        for (; j < u.n && u.f[j].ino == u.f[i].ino; j++)
            if (u.f[j].bytes > most)
                most = u.f[j].bytes;
        bytes += most;
        i = j;
    }
    free(u.f);
    return bytes;
}

void psb_output_base(const struct psb_config *cfg, struct psb_output_base *base)
{
    /* No entry cap here: the directories are the user's (an agent's editable source tree). */
    struct out_walk w = {0, 0, LLONG_MAX, 0, 0, 0};
    for (int i = 0; cfg->output_growth && i < cfg->noutput; i++) {
        int dfd = open(cfg->output_dirs[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd >= 0)
            walk_dir(dfd, &w, 0);
    }
    base->bytes = w.bytes;
    base->entries = w.entries;
}

int psb_output_over(const struct psb_config *cfg, pid_t init, const struct psb_cgroups *cg,
                    const struct psb_output_base *base)
{
    struct out_walk w = {0, 0, cfg->output_entries + base->entries, 0, 0, 0};
    long long nameless = 0;
    dev_t counted[PSB_MAX_OUTPUTS];
    int ncounted = 0;
    for (int i = 0; i < cfg->noutput; i++) {
        int dfd = open(cfg->output_dirs[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0)
            continue;
        struct stat ost;
        /* Unlinked files still open or mapped, once per file system the directories are on. */
        int seen = 0;
        if (fstat(dfd, &ost) == 0) {
            for (int k = 0; k < ncounted; k++)
                seen |= counted[k] == ost.st_dev;
            if (!seen) {
                counted[ncounted++] = ost.st_dev;
                nameless += nameless_bytes(init, ost.st_dev, cg);
            }
        }
        walk_dir(dfd, &w, 0);
    }
    w.bytes += nameless;
    const char *where = cfg->noutput == 1 ? cfg->output_dirs[0]
                        : cfg->output_growth ? "the writable places"
                                             : "the outputs directories";
    const char *added = cfg->output_growth ? " added" : "";
    if (w.over_depth)
        psb_limit("output", "directories nested more than %d deep under %s", PSB_OUTPUT_MAX_DEPTH, where);
    else if (w.over_unreadable)
        psb_limit("output", "a directory under %s that cannot be read, so not counted", where);
    else if (w.over_entries)
        psb_limit("output", "more than %lld entries%s under %s", cfg->output_entries, added, where);
    else if (w.bytes - base->bytes > cfg->output_limit)
        psb_limit("output", "%lld bytes%s > %lld under %s (%lld in unlinked files)", w.bytes - base->bytes, added,
                  cfg->output_limit, where, nameless);
    else
        return 0;
    return 1;
}
