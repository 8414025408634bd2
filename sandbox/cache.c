/*
 * The launcher's cache directory (--filter-cache DIR: the workspace's .proctor/cache, which no
 * sandbox can see). It keeps two things that cost a sandbox's start more than they need to:
 *
 * - the compiled seccomp filter (seccomp.c);
 * - the socket scan's directory listings (below): --hide-sockets walks the whole workspace at
 *   every start, which at 100,000 tracked files cost ~25 ms a sandbox (issue 10).
 *
 * A file there is trusted only in a directory that is ours, writable by nobody else and not at
 * or beneath an --rw source (the sandbox runs as our uid: a cache it could write would let one
 * run blind the next), and only with a valid checksum: a torn write or a stale format is
 * ignored and rebuilt, never used.
 */
#include "psb.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

uint64_t psb_fnv1a(const void *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ULL;
    return h;
}

/* Whether the directory `d` is, or lies beneath, the source of an --rw bind. Compared by device
 * and inode while walking up through "..", so neither a symlink nor a different spelling of the
 * path hides the overlap. */
static int writable_inside(const struct psb_config *cfg, int d)
{
    struct stat rw[PSB_MAX_OPS];
    int n = 0;
    for (int i = 0; i < cfg->nops; i++)
        if (cfg->ops[i].kind == PSB_OP_RW && stat(cfg->ops[i].src, &rw[n]) == 0)
            n++;
    if (n == 0)
        return 0;
    int cur = dup(d);
    for (int depth = 0; cur >= 0 && depth < 4096; depth++) {
        struct stat st, up;
        if (fstat(cur, &st) < 0)
            break;
        for (int k = 0; k < n; k++)
            if (rw[k].st_dev == st.st_dev && rw[k].st_ino == st.st_ino) {
                close(cur);
                return 1;
            }
        int parent = openat(cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
        close(cur);
        cur = parent;
        if (cur < 0 || fstat(cur, &up) < 0 || (up.st_dev == st.st_dev && up.st_ino == st.st_ino))
            break; /* the root */
    }
    if (cur >= 0)
        close(cur);
    return 0;
}

int psb_cache_dir(const struct psb_config *cfg)
{
    if (!cfg->filter_cache)
        return -1;
    int d = open(cfg->filter_cache, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (d < 0 && errno == ENOENT && mkdir(cfg->filter_cache, 0700) == 0)
        d = open(cfg->filter_cache, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (d >= 0 && (fstat(d, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & 022) || writable_inside(cfg, d))) {
        close(d);
        d = -1;
    }
    return d;
}

int psb_cache_file_trusted(int fd, const struct stat *st)
{
    return fd >= 0 && S_ISREG(st->st_mode) && st->st_uid == geteuid() && !(st->st_mode & 022);
}

int psb_cache_replace(int dir, const char *name, const void *a, size_t alen, const void *b, size_t blen)
{
    char tmp[64];
    snprintf(tmp, sizeof tmp, ".tmp-%d", (int)getpid());
    int fd = openat(dir, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int ok = psb_write_all(fd, a, alen) == 0 && (blen == 0 || psb_write_all(fd, b, blen) == 0);
    ok = close(fd) == 0 && ok;
    if (!ok || renameat(dir, tmp, dir, name) < 0) {
        (void)unlinkat(dir, tmp, 0);
        return -1;
    }
    return 0;
}

/*
 * The socket scan's cache: for a directory (device, inode) at one change time, its entry count
 * and the names of its subdirectories, stored only for a directory whose walk found no socket
 * in it. A directory's ctime moves whenever an entry is created, removed or renamed in it (a
 * new socket included) and cannot be set back by anyone but the clock's owner, so a listing
 * whose ctime still matches is the listing readdir would give. Two guards:
 * - a directory changed less than PSB_SCAN_SETTLE_S ago is never stored: a change within the
 *   filesystem's timestamp granularity of our look would leave the ctime as we saw it;
 * - only filesystems whose directory ctimes are local and kept by the kernel (ext4, xfs, btrfs,
 *   tmpfs, zfs, f2fs, bcachefs) are cached; elsewhere (NFS, FUSE, overlays) every start walks.
 * The writable binds' walk never uses it (see mounts.c).
 */
#define PSB_SCAN_SETTLE_S 2
#define PSB_SCAN_MAGIC 0x6e616373u /* "scan" */
#define PSB_SCAN_VERSION 1u
#define PSB_SCAN_FILE "sockets.scan"
#define PSB_SCAN_MAX_BYTES (64u << 20)
#define PSB_SCAN_MAX_DIRS 1000000u

struct scan_head {
    uint32_t magic, version;
    uint64_t ndirs, names_len, sum;
};

/* One directory; `off`/`len`: its subdirectory names, each NUL-terminated, in the names blob. */
struct scan_rec {
    uint64_t dev, ino;
    int64_t sec, nsec;
    uint32_t nentries, nsub;
    uint64_t off;
    uint32_t len, pad;
};

struct psb_scan_cache {
    int dir;
    time_t settled_before;
    struct scan_rec *old; /* as read, sorted by (dev, ino) */
    unsigned char *old_state; /* per old record: 0 unseen, 1 used, 2 stale */
    size_t nold;
    char *old_names;
    size_t old_names_len;
    struct scan_rec *add;
    size_t nadd, add_cap;
    char *add_names;
    size_t add_len, add_cap_names;
    int changed;
    dev_t fs_dev; /* the last device whose filesystem type was asked, and the answer */
    int fs_ok;
};

static int rec_cmp(const void *a, const void *b)
{
    const struct scan_rec *x = a, *y = b;
    if (x->dev != y->dev)
        return x->dev < y->dev ? -1 : 1;
    if (x->ino != y->ino)
        return x->ino < y->ino ? -1 : 1;
    return 0;
}

/* Each record's names lie inside the blob, are exactly `nsub` non-empty names without '/' and are
 * not "." or "..", and the records are sorted without duplicates. */
static int records_valid(const struct scan_rec *r, size_t n, const char *names, size_t names_len)
{
    for (size_t i = 0; i < n; i++) {
        if (r[i].off > names_len || r[i].len > names_len - r[i].off || (i && rec_cmp(&r[i - 1], &r[i]) >= 0))
            return 0;
        const char *p = names + r[i].off, *end = p + r[i].len;
        uint32_t k = 0;
        while (p < end) {
            const char *z = memchr(p, 0, (size_t)(end - p));
            if (!z || z == p || memchr(p, '/', (size_t)(z - p)) || !strcmp(p, ".") || !strcmp(p, ".."))
                return 0;
            p = z + 1;
            k++;
        }
        if (k != r[i].nsub)
            return 0;
    }
    return 1;
}

static void load_file(struct psb_scan_cache *c)
{
    int fd = openat(c->dir, PSB_SCAN_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    struct scan_head h;
    if (fd < 0)
        return;
    if (fstat(fd, &st) < 0 || !psb_cache_file_trusted(fd, &st) || st.st_size > (off_t)PSB_SCAN_MAX_BYTES ||
        read(fd, &h, sizeof h) != (ssize_t)sizeof h || h.magic != PSB_SCAN_MAGIC || h.version != PSB_SCAN_VERSION ||
        h.ndirs > PSB_SCAN_MAX_DIRS || h.names_len > PSB_SCAN_MAX_BYTES ||
        (uint64_t)st.st_size != sizeof h + h.ndirs * sizeof(struct scan_rec) + h.names_len)
        goto bad;
    size_t body = (size_t)st.st_size - sizeof h;
    unsigned char *buf = malloc(body ? body : 1);
    if (!buf || read(fd, buf, body) != (ssize_t)body || psb_fnv1a(buf, body) != h.sum) {
        free(buf);
        goto bad;
    }
    struct scan_rec *recs = (struct scan_rec *)buf;
    char *names = (char *)(buf + h.ndirs * sizeof *recs);
    if (!records_valid(recs, h.ndirs, names, h.names_len) || !(c->old_state = calloc(h.ndirs + 1, 1))) {
        free(buf);
        goto bad;
    }
    c->old = recs;
    c->nold = h.ndirs;
    c->old_names = names;
    c->old_names_len = h.names_len;
    close(fd);
    return;
bad:
    close(fd);
    c->changed = 1; /* rewritten whole at the end */
}

struct psb_scan_cache *psb_scan_cache_open(const struct psb_config *cfg)
{
    int dir = psb_cache_dir(cfg);
    if (dir < 0)
        return NULL;
    struct psb_scan_cache *c = calloc(1, sizeof *c);
    if (!c) {
        close(dir);
        return NULL;
    }
    c->dir = dir;
    c->settled_before = time(NULL) - PSB_SCAN_SETTLE_S;
    c->fs_dev = (dev_t)-1;
    load_file(c);
    return c;
}

static int filesystem_cacheable(struct psb_scan_cache *c, int fd, const struct stat *st)
{
    if (st->st_dev == c->fs_dev)
        return c->fs_ok;
    struct statfs fs;
    c->fs_dev = st->st_dev;
    c->fs_ok = 0;
    if (fstatfs(fd, &fs) == 0)
        switch ((unsigned long)fs.f_type) {
        case EXT4_SUPER_MAGIC: /* also ext2 and ext3 */
        case XFS_SUPER_MAGIC:
        case BTRFS_SUPER_MAGIC:
        case TMPFS_MAGIC:
        case 0x2fc12fc1: /* zfs */
        case F2FS_SUPER_MAGIC:
        case 0xca451a4e: /* bcachefs */
            c->fs_ok = 1;
        }
    return c->fs_ok;
}

const char *psb_scan_cache_find(struct psb_scan_cache *c, int fd, const struct stat *st, uint32_t *nsub,
                                uint32_t *nentries)
{
    if (!c || !c->nold || !filesystem_cacheable(c, fd, st))
        return NULL;
    struct scan_rec key = {.dev = (uint64_t)st->st_dev, .ino = (uint64_t)st->st_ino};
    struct scan_rec *r = bsearch(&key, c->old, c->nold, sizeof key, rec_cmp);
    if (!r)
        return NULL;
    size_t i = (size_t)(r - c->old);
    if (r->sec != (int64_t)st->st_ctim.tv_sec || r->nsec != (int64_t)st->st_ctim.tv_nsec) {
        if (c->old_state[i] != 2)
            c->old_state[i] = 2, c->changed = 1;
        return NULL;
    }
    c->old_state[i] = 1;
    *nsub = r->nsub;
    *nentries = r->nentries;
    return c->old_names + r->off;
}

void psb_scan_cache_note(struct psb_scan_cache *c, int fd, const struct stat *st, uint32_t nentries,
                         const char *names, size_t len, uint32_t nsub)
{
    if (!c || st->st_ctim.tv_sec >= c->settled_before || !filesystem_cacheable(c, fd, st) ||
        c->nadd >= PSB_SCAN_MAX_DIRS || c->add_len + len > PSB_SCAN_MAX_BYTES)
        return;
    if (c->nadd == c->add_cap) {
        size_t cap = c->add_cap ? 2 * c->add_cap : 64;
        struct scan_rec *a = realloc(c->add, cap * sizeof *a);
        if (!a)
            return;
        c->add = a, c->add_cap = cap;
    }
    if (c->add_len + len > c->add_cap_names) {
        size_t cap = c->add_cap_names ? 2 * c->add_cap_names : 4096;
        while (cap < c->add_len + len)
            cap *= 2;
        char *n = realloc(c->add_names, cap);
        if (!n)
            return;
        c->add_names = n, c->add_cap_names = cap;
    }
    memcpy(c->add_names + c->add_len, names, len);
    c->add[c->nadd++] = (struct scan_rec){(uint64_t)st->st_dev, (uint64_t)st->st_ino, (int64_t)st->st_ctim.tv_sec,
                                          (int64_t)st->st_ctim.tv_nsec, nentries, nsub, c->add_len, (uint32_t)len, 0};
    c->add_len += len;
    c->changed = 1;
}

/* The records to keep: the new ones, then the old ones not stale nor replaced; past the bound, only
 * what this walk used. */
static void save(struct psb_scan_cache *c)
{
    size_t n = 0, names_len = 0, max = c->nold + c->nadd;
    struct scan_rec *out = malloc((max ? max : 1) * sizeof *out);
    const char **src = malloc((max ? max : 1) * sizeof *src);
    if (!out || !src)
        goto done;
    qsort(c->add, c->nadd, sizeof *c->add, rec_cmp);
    int only_used = c->nold + c->nadd > PSB_SCAN_MAX_DIRS;
    for (size_t i = 0; i < c->nadd; i++) {
        if (i && rec_cmp(&c->add[i - 1], &c->add[i]) == 0)
            continue; /* the same directory reached twice (two binds of it) */
        out[n] = c->add[i];
        src[n++] = c->add_names + c->add[i].off;
    }
    size_t nnew = n;
    for (size_t i = 0; i < c->nold; i++) {
        if (c->old_state[i] == 2 || (only_used && c->old_state[i] != 1) ||
            bsearch(&c->old[i], out, nnew, sizeof *out, rec_cmp))
            continue;
        out[n] = c->old[i];
        src[n++] = c->old_names + c->old[i].off;
    }
    for (size_t i = 0; i < n; i++)
        names_len += out[i].len;
    char *names = malloc(names_len ? names_len : 1);
    if (!names)
        goto done;
    /* Sorted with their names: each record remembers its source through the sort. */
    struct scan_rec *sorted = malloc((n ? n : 1) * sizeof *sorted);
    if (!sorted) {
        free(names);
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        out[i].pad = (uint32_t)i;
    qsort(out, n, sizeof *out, rec_cmp);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(names + off, src[out[i].pad], out[i].len);
        sorted[i] = out[i];
        sorted[i].off = off;
        sorted[i].pad = 0;
        off += out[i].len;
    }
    size_t rec_bytes = n * sizeof *sorted;
    unsigned char *body = malloc(rec_bytes + names_len + 1);
    if (body) {
        memcpy(body, sorted, rec_bytes);
        memcpy(body + rec_bytes, names, names_len);
        struct scan_head h = {PSB_SCAN_MAGIC, PSB_SCAN_VERSION, n, names_len, psb_fnv1a(body, rec_bytes + names_len)};
        (void)psb_cache_replace(c->dir, PSB_SCAN_FILE, &h, sizeof h, body, rec_bytes + names_len);
        free(body);
    }
    free(sorted), free(names);
done:
    free(out);
    free(src);
}

void psb_scan_cache_close(struct psb_scan_cache *c)
{
    if (!c)
        return;
    if (c->changed)
        save(c);
    close(c->dir);
    free(c->old); /* the whole body read, records and names */
    free(c->old_state);
    free(c->add);
    free(c->add_names);
    free(c);
}
