/*
 * The sandbox's mount tree, built by init inside its new user and mount namespaces.
 *
 * 1. `/` becomes rprivate so nothing propagates back to the host.
 * 2. Every source is opened first (O_PATH), while the host tree is still whole. Writable
 *    sources, and read-only sources beneath a writable one, are resolved without following
 *    any symlink (openat2 RESOLVE_NO_SYMLINKS, else a component walk with O_NOFOLLOW): a link
 *    planted by a previous run can never redirect a mount.
 * 3. A tmpfs becomes the new root; binds are cloned from the source fds (open_tree), made
 *    nosuid/nodev (and read-only, recursively) while still detached (mount_setattr), then
 *    attached to a destination that was itself opened without following symlinks.
 * 4. pivot_root(".", ".") and a lazy unmount of the old root.
 */
#include "psb.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>


static int src_fds[PSB_MAX_OPS];
/* The socket scan's cache (cache.c): opened with the sources, as the new root may cover its host
 * path (a workspace under /tmp); written back before the pivot. */
static struct psb_scan_cache *scan_cache;
static int dev_fds[5] = {-1, -1, -1, -1, -1};
static const char *const dev_names[5] = {"null", "zero", "full", "random", "urandom"};
static int have_new_api = 1;
static const char *base;

#define ERR(...) (snprintf(err, errlen, __VA_ARGS__), -1)

/* Misc devices (major 10) that hand a sandbox what its seccomp filter denies (userfaultfd) or
 * the host's own controls: by their fixed minors, and by name in /proc/misc for those whose minor
 * is given at boot (userfaultfd, vsock, cpu_dma_latency: 257-259 on one host, others elsewhere). */
static int misc_refused(unsigned minor)
{
    static const unsigned fixed[] = {130 /* watchdog */, 184 /* microcode */, 196 /* vfio */, 200 /* tun */,
                                     203 /* cuse */, 223 /* uinput */, 227 /* mcelog */, 229 /* fuse */,
                                     231 /* snapshot */, 232 /* kvm */, 234 /* btrfs-control */, 235 /* autofs */,
                                     238 /* vhost-net */, 239 /* uhid */, 240 /* userio */, 241 /* vhost-vsock */,
                                     242 /* rfkill */};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (minor == fixed[i])
            return 1;
    static const char *const names[] = {"userfaultfd", "kvm", "fuse", "tun", "vhost-net", "vhost-vsock", "vsock",
                                        "uinput", "uhid", "snapshot", "watchdog", "microcode", "cpu_dma_latency",
                                        "btrfs-control", "autofs", "loop-control", "device-mapper", "mcelog",
                                        "vfio", "cuse", "userio", "rfkill", "vga_arbiter"};
    FILE *misc = fopen("/proc/misc", "re");
    if (!misc)
        return 0;
    unsigned m;
    char name[64];
    int refused = 0;
    while (!refused && fscanf(misc, "%u %63s", &m, name) == 2)
        if (m == minor)
            for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
                if (strcmp(name, names[i]) == 0)
                    refused = 1;
    fclose(misc);
    return refused;
}

const char *psb_dev_node_refusal(const struct stat *st)
{
    if (!S_ISCHR(st->st_mode))
        return S_ISBLK(st->st_mode) ? "a block device (a disk) is never passed through" : "not a character device";
    unsigned ma = major(st->st_rdev), mi = minor(st->st_rdev);
    /* mem 1:1, kmem 1:2, port 1:4, kmsg 1:11: the host's memory, I/O ports and kernel log. */
    if (ma == 1 && (mi == 1 || mi == 2 || mi == 4 || mi == 11))
        return "physical memory, I/O ports or the kernel log";
    /* Terminals type into someone's session: pty (2, 3), tty and console (4, 5), vcs (7), pts (136-143). */
    if (ma == 2 || ma == 3 || ma == 4 || ma == 5 || ma == 7 || (ma >= 136 && ma <= 143))
        return "a terminal";
    /* Raw disk access through character nodes: SCSI generic (21), raw (162), loop and
     * device-mapper control (10:237, 10:236). */
    if (ma == 21 || ma == 162 || (ma == 10 && (mi == 236 || mi == 237)))
        return "a disk's raw or control device";
    /* The host's keyboards and mice (input, 13), model-specific registers and CPUID (202, 203). */
    if (ma == 13 || ma == 202 || ma == 203)
        return "the host's input devices or CPU registers";
    if (ma == 10 && misc_refused(mi))
        return "a kernel facility the sandbox's filter denies or the host's own control (userfaultfd, KVM, FUSE, TUN, "
               "vhost, vsock, input injection, hibernation image, watchdog, microcode, filesystem control)";
    return NULL;
}

int psb_open_nofollow(int dirfd, const char *path, int flags, int create, int want_dir)
{
    /* One openat2 that refuses a symlink in any component (5.6+); the component walk below
     * when it is missing, or to create what does not exist yet. */
    if (dirfd != AT_FDCWD) {
        const char *rel = path;
        while (*rel == '/')
            rel++;
        struct open_how how = {.flags = (uint64_t)(O_PATH | O_NOFOLLOW | O_CLOEXEC | flags),
                               .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_BENEATH};
        int fd = (int)syscall(SYS_openat2, dirfd, *rel ? rel : ".", &how, sizeof how);
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0 && S_ISLNK(st.st_mode)) {
            close(fd); /* O_PATH|O_NOFOLLOW hands back a trailing symlink itself */
            errno = ELOOP;
            return -1;
        }
        if (fd >= 0 || (errno != ENOSYS && errno != E2BIG && errno != EINVAL && !(errno == ENOENT && create)))
            return fd;
    }
    char buf[PATH_MAX];
    if (strlen(path) >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(buf, path);
    int cur = openat(dirfd, (dirfd == AT_FDCWD && path[0] == '/') ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cur < 0)
        return -1;
    char *save = NULL;
    char *comp = strtok_r(buf, "/", &save);
    while (comp) {
        char *next = strtok_r(NULL, "/", &save);
        int last = next == NULL;
        int oflags = O_PATH | O_NOFOLLOW | O_CLOEXEC | (last ? flags : O_DIRECTORY);
        int fd = openat(cur, comp, oflags);
        if (fd < 0 && errno == ENOENT && create) {
            if (!last || want_dir) {
                if (mkdirat(cur, comp, 0755) < 0 && errno != EEXIST)
                    goto fail;
            } else {
                int f = openat(cur, comp, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0444);
                if (f < 0 && errno != EEXIST)
                    goto fail;
                if (f >= 0)
                    close(f);
            }
            fd = openat(cur, comp, oflags);
        }
        if (fd < 0) {
            struct stat st;
            if (errno == ENOTDIR && fstatat(cur, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                errno = ELOOP;
            goto fail;
        }
        if (last) {
            struct stat st;
            if (fstat(fd, &st) == 0 && S_ISLNK(st.st_mode)) {
                close(fd);
                errno = ELOOP;
                goto fail;
            }
        }
        close(cur);
        cur = fd;
        comp = next;
    }
    return cur;
fail: {
    int e = errno;
    close(cur);
    errno = e;
    return -1;
}
}

/* No symlink anywhere on the path; openat2 when the kernel has it (5.6+). */
static int open_strict(const char *path)
{
    struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
    int fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how);
    if (fd >= 0 || (errno != ENOSYS && errno != E2BIG && errno != EINVAL))
        return fd;
    return psb_open_nofollow(AT_FDCWD, path, 0, 0, 0);
}

int psb_open_source(const struct psb_config *cfg, int i, int *strict)
{
    const struct psb_op *o = &cfg->ops[i];
    *strict = o->kind == PSB_OP_RW;
    for (int j = 0; j < cfg->nops && !*strict; j++)
        if (cfg->ops[j].kind == PSB_OP_RW && psb_path_beneath(o->src, cfg->ops[j].src))
            *strict = 1;
    return *strict ? open_strict(o->src) : open(o->src, O_PATH | O_CLOEXEC);
}

int psb_open_sources(const struct psb_config *cfg, char *err, size_t errlen)
{
    /* Nothing done here may propagate back into the host's mount namespace. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return ERR("make / rprivate");
    for (int i = 0; i < cfg->nops; i++) {
        const struct psb_op *o = &cfg->ops[i];
        src_fds[i] = -1;
        if (o->kind != PSB_OP_RO && o->kind != PSB_OP_RO_TRY && o->kind != PSB_OP_RW)
            continue;
        /* An idmapped tree the helper cloned (user.c): attached as it is. */
        if ((src_fds[i] = psb_user_tree(i)) >= 0)
            continue;
        int strict;
        int fd = psb_open_source(cfg, i, &strict);
        if (fd < 0) {
            if (o->kind == PSB_OP_RO_TRY && (errno == ENOENT || errno == ENOTDIR))
                continue;
            return ERR("open %s %s%s", o->kind == PSB_OP_RW ? "--rw" : "--ro", o->src,
                       strict ? " (no symlinks allowed)" : "");
        }
        src_fds[i] = fd;
    }
    for (int i = 0; i < cfg->nops; i++) {
        const struct psb_op *o = &cfg->ops[i];
        if (o->kind != PSB_OP_DEV_NODE)
            continue;
        /* A device node passed through (a GPU's): no symlink on the way, and checked here as well
         * as by proctor, on the node that will be bound, not on its name. */
        struct stat st;
        int fd = open_strict(o->src);
        if (fd < 0)
            return ERR("open --dev-node %s (no symlinks allowed)", o->src);
        if (fstat(fd, &st) < 0)
            return ERR("stat --dev-node %s", o->src);
        const char *why = psb_dev_node_refusal(&st);
        if (why) {
            close(fd);
            return errno = EPERM, ERR("--dev-node %s: %s", o->src, why);
        }
        src_fds[i] = fd;
    }
    for (int i = 0; i < cfg->nops; i++) {
        if (cfg->ops[i].kind != PSB_OP_DEV)
            continue;
        for (int d = 0; d < 5; d++) {
            char p[32];
            snprintf(p, sizeof p, "/dev/%s", dev_names[d]);
            dev_fds[d] = open(p, O_PATH | O_CLOEXEC);
            if (dev_fds[d] < 0)
                return ERR("open %s for --dev", p);
        }
        break;
    }
    for (int i = 0; i < cfg->nops && !scan_cache; i++)
        if (cfg->ops[i].kind == PSB_OP_HIDE_SOCKETS)
            scan_cache = psb_scan_cache_open(cfg);
    return 0;
}

static int fdpath(char *buf, size_t len, int fd)
{
    return snprintf(buf, len, "/proc/self/fd/%d", fd);
}

static unsigned long locked_flags(int fd)
{
    struct statvfs sv;
    unsigned long f = 0;
    if (fstatvfs(fd, &sv) < 0)
        return 0;
    if (sv.f_flag & ST_NOSUID)
        f |= MS_NOSUID;
    if (sv.f_flag & ST_NODEV)
        f |= MS_NODEV;
    if (sv.f_flag & ST_NOEXEC)
        f |= MS_NOEXEC;
    if (sv.f_flag & ST_NOATIME)
        f |= MS_NOATIME;
    if (sv.f_flag & ST_NODIRATIME)
        f |= MS_NODIRATIME;
    if (sv.f_flag & ST_RELATIME)
        f |= MS_RELATIME;
    return f;
}

/* Clone the tree at src_fd onto dst_fd with attributes set before it becomes visible. */
static int bind_fd(int src_fd, int dst_fd, const char *dst_path, uint64_t attrs, int recursive)
{
    if (have_new_api) {
        int t = (int)syscall(SYS_open_tree, src_fd, "",
                             OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0));
        if (t >= 0) {
            struct psb_mount_attr ma = {.attr_set = attrs};
            if (syscall(SYS_mount_setattr, t, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &ma, sizeof ma) < 0 ||
                syscall(SYS_move_mount, t, "", dst_fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) {
                int e = errno;
                close(t);
                errno = e;
                return -1;
            }
            close(t);
            return 0;
        }
        if (errno != ENOSYS)
            return -1;
        have_new_api = 0;
    }
    /* Pre-5.12 kernels: classic bind, then a remount that keeps the source's locked flags
     * (a userns may add nosuid/nodev/rdonly but never clear them). Only the top mount
     * becomes read-only here; submounts keep their own flags. */
    char s[64], d[64];
    fdpath(s, sizeof s, src_fd);
    fdpath(d, sizeof d, dst_fd);
    if (mount(s, d, NULL, MS_BIND | (recursive ? MS_REC : 0), NULL) < 0)
        return -1;
    unsigned long fl = MS_REMOUNT | MS_BIND | locked_flags(src_fd);
    if (attrs & PSB_MOUNT_ATTR_RDONLY)
        fl |= MS_RDONLY;
    if (attrs & PSB_MOUNT_ATTR_NOSUID)
        fl |= MS_NOSUID;
    if (attrs & PSB_MOUNT_ATTR_NODEV)
        fl |= MS_NODEV;
    if (attrs & PSB_MOUNT_ATTR_NOEXEC)
        fl |= MS_NOEXEC;
    return mount(NULL, dst_path, NULL, fl, NULL);
}

/* An empty file and an empty directory on the root tmpfs (unlinked once the tree is built), the
 * sources of every hide: a bind of them costs less than a new tmpfs per hidden directory. */
static int empty_fd = -1, empty_dir_fd = -1;

static int mount_tmpfs(int dfd, unsigned long flags, const char *opts)
{
    char d[64];
    fdpath(d, sizeof d, dfd);
    return mount("tmpfs", d, "tmpfs", flags, opts);
}

/* Hide the existing node at `name` beneath dirfd (or dirfd itself when name is NULL). */
static int hide_at(int dfd)
{
    struct stat st;
    if (fstat(dfd, &st) < 0)
        return -1;
    char p[64];
    fdpath(p, sizeof p, dfd);
    return bind_fd(S_ISDIR(st.st_mode) ? empty_dir_fd : empty_fd, dfd, p,
                   PSB_MOUNT_ATTR_RDONLY | PSB_MOUNT_ATTR_NOSUID | PSB_MOUNT_ATTR_NODEV | PSB_MOUNT_ATTR_NOEXEC, 0);
}

static int full_path(char *buf, size_t len, const char *dst)
{
    return snprintf(buf, len, "%s%s", strcmp(base, "/") ? base : "", dst);
}

/* Unix sockets beneath a mounted tree are hidden: connect() needs no write access to the
 * filesystem, so a host process's socket in the workspace (an agent's, a dev server's) stays
 * connectable through a read-only bind. Neither Landlock (before LANDLOCK_ACCESS_FS_RESOLVE_UNIX)
 * nor seccomp (the address is behind a pointer) can refuse that connect; an empty file over the
 * socket can. The walk follows no symlink; a directory deeper than PSB_SOCKET_SCAN_DEPTH is
 * hidden whole; past PSB_SOCKET_SCAN_MAX entries it stops (init then warns). The writable binds
 * come last: what a sandbox piled up there in an earlier run cannot use up the budget before the
 * rest is seen. A directory of the read-only part that has not changed since an earlier start
 * (its ctime, see cache.c) is not read again: only its subdirectories are entered, so a start
 * costs the number of directories, not of files. */
int psb_socket_scan_incomplete;

struct socket_scan {
    const struct psb_config *cfg;
    int skip_writable; /* first pass: leave the --rw targets for the second */
    long long seen;    /* entries walked */
    int hidden;        /* sockets hidden so far (each one is a mount) */
    int lost;          /* below a path longer than PATH_MAX: no --rw target there, walk by fd */
    struct psb_scan_cache *cache; /* listings of unchanged directories (cache.c); NULL in the --rw pass */
    char path[PATH_MAX];
};

/* -2 past PSB_SOCKET_HIDE_MAX sockets (each hide is a mount): the start is refused. */
static int hide_socket(struct socket_scan *sc, int fd)
{
    return ++sc->hidden > PSB_SOCKET_HIDE_MAX ? -2 : hide_at(fd);
}

static int is_rw_target(const struct psb_config *cfg, const char *path)
{
    for (int i = 0; i < cfg->nops; i++)
        if (cfg->ops[i].kind == PSB_OP_RW && !strcmp(cfg->ops[i].dst, path))
            return 1;
    return 0;
}

static int hide_sockets_in(struct socket_scan *sc, int dirfd, int depth);

/* The subdirectory `name` of `fd`, whose own path is sc->path (its first `len` bytes). */
static int visit_subdir(struct socket_scan *sc, int fd, const char *name, size_t len, int depth)
{
    /* Past PATH_MAX the walk goes on by fd: a process can chdir down and connect() by a short
     * relative name. No --rw target lies that deep. */
    int lost_here = 0, rc = 0;
    if (!sc->lost && snprintf(sc->path + len, sizeof sc->path - len, "/%s", name) >= (int)(sizeof sc->path - len))
        sc->lost = lost_here = 1;
    if (!sc->lost && sc->skip_writable && is_rw_target(sc->cfg, sc->path)) {
        sc->path[len] = 0;
        return 0;
    }
    int sub = openat(fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub >= 0) {
        /* Too deep to walk: the directory itself is hidden (fails closed). */
        rc = depth >= PSB_SOCKET_SCAN_DEPTH ? hide_at(sub) : hide_sockets_in(sc, sub, depth + 1);
        close(sub);
    }
    if (lost_here)
        sc->lost = 0;
    if (!sc->lost)
        sc->path[len] = 0;
    return rc;
}

/* A directory the cache knows unchanged: only its subdirectories are entered, no readdir. */
static int walk_cached(struct socket_scan *sc, int dirfd, const char *names, uint32_t nsub, int depth)
{
    size_t len = strlen(sc->path);
    int rc = 0;
    for (uint32_t k = 0; rc == 0 && k < nsub; k++, names += strlen(names) + 1)
        rc = visit_subdir(sc, dirfd, names, len, depth);
    return rc;
}

/* Names gathered for the cache while a directory is read; `ok` drops to 0 when it must not be
 * stored (a socket in it, an entry of unknown type, a cut walk). */
struct listing {
    char *names;
    size_t len, cap;
    uint32_t nsub, nentries;
    int ok;
};

static void listing_add(struct listing *l, const char *name)
{
    size_t n = strlen(name) + 1;
    if (l->len + n > l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 1024;
        while (cap < l->len + n)
            cap *= 2;
        char *grown = realloc(l->names, cap);
        if (!grown) {
            l->ok = 0;
            return;
        }
        l->names = grown, l->cap = cap;
    }
    memcpy(l->names + l->len, name, n);
    l->len += n;
    l->nsub++;
}

static int hide_sockets_in(struct socket_scan *sc, int dirfd, int depth)
{
    struct stat dir_st;
    int have_stat = sc->cache && fstat(dirfd, &dir_st) == 0;
    uint32_t nsub, nentries;
    const char *cached = have_stat ? psb_scan_cache_find(sc->cache, dirfd, &dir_st, &nsub, &nentries) : NULL;
    if (cached && sc->seen + nentries <= PSB_SOCKET_SCAN_MAX) {
        sc->seen += nentries;
        return walk_cached(sc, dirfd, cached, nsub, depth);
    }
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return 0; /* unreadable: nothing the sandbox could find in it either */
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return 0;
    }
    size_t len = strlen(sc->path);
    struct listing l = {.ok = have_stat};
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (++sc->seen > PSB_SOCKET_SCAN_MAX) {
            psb_socket_scan_incomplete = 1;
            l.ok = 0;
            break;
        }
        l.nentries++;
        unsigned char type = de->d_type;
        if (type == DT_UNKNOWN) {
            struct stat st;
            if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                l.ok = 0;
                continue;
            }
            type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISSOCK(st.st_mode) ? DT_SOCK : DT_REG;
        }
        if (type == DT_SOCK) {
            l.ok = 0;
            int s = openat(fd, de->d_name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
            if (s >= 0) {
                rc = hide_socket(sc, s);
                close(s);
            }
        } else if (type == DT_DIR) {
            if (l.ok)
                listing_add(&l, de->d_name);
            rc = visit_subdir(sc, fd, de->d_name, len, depth);
        }
    }
    closedir(d);
    if (rc == 0 && l.ok)
        psb_scan_cache_note(sc->cache, dirfd, &dir_st, l.nentries, l.names, l.len, l.nsub);
    free(l.names);
    return rc;
}

/* One walk from `dir` (a directory of the new tree); 0 when nothing is mounted there. */
static int walk_for_sockets(struct socket_scan *sc, int rootfd, const char *dir, int skip_writable)
{
    int dfd = psb_open_nofollow(rootfd, dir, O_DIRECTORY, 0, 1);
    if (dfd < 0)
        return 0;
    sc->skip_writable = skip_writable;
    snprintf(sc->path, sizeof sc->path, "%s", strcmp(dir, "/") ? dir : "");
    int rc = hide_sockets_in(sc, dfd, 0);
    close(dfd);
    return rc;
}

/* First the binds beneath `dst` whose source is itself a socket: readdir reports the mount
 * point's own type (a file on the tmpfs below), not the socket mounted on it. (A socket mounted
 * elsewhere on purpose, such as a session's, is left alone.) Then `dst` but its writable binds,
 * then those. */
static int hide_sockets(const struct psb_config *cfg, int rootfd, const char *dst)
{
    static struct socket_scan sc;
    memset(&sc, 0, sizeof sc);
    sc.cfg = cfg;
    for (int i = 0; i < cfg->nops; i++) {
        const struct psb_op *o = &cfg->ops[i];
        if ((o->kind != PSB_OP_RO && o->kind != PSB_OP_RO_TRY && o->kind != PSB_OP_RW) || !psb_path_beneath(o->dst, dst))
            continue;
        int f = psb_open_nofollow(rootfd, o->dst, 0, 0, 0);
        struct stat st;
        int rc = f >= 0 && fstat(f, &st) == 0 && S_ISSOCK(st.st_mode) ? hide_socket(&sc, f) : 0;
        if (f >= 0)
            close(f);
        if (rc < 0)
            return rc;
    }
    /* The read-only part may use the cache; what this sandbox can write is always read whole. */
    sc.cache = scan_cache;
    int rc = walk_for_sockets(&sc, rootfd, dst, 1);
    sc.cache = NULL;
    for (int i = 0; rc == 0 && i < cfg->nops; i++) {
        const struct psb_op *o = &cfg->ops[i];
        if (o->kind == PSB_OP_RW && psb_path_beneath(o->dst, dst) && strcmp(o->dst, dst))
            rc = walk_for_sockets(&sc, rootfd, o->dst, 0);
    }
    return rc;
}

/* The --dev-node binds beneath the --dev at `dst`, made while its tmpfs is still writable: a
 * mount point (with its parent directories) per node, then a bind of the host node that is not
 * nodev (the tmpfs around it is read-only, so nothing else can become a device). */
static int bind_dev_nodes(const struct psb_config *cfg, int devw, const char *dst, char *err, size_t errlen)
{
    for (int i = 0; i < cfg->nops; i++) {
        const struct psb_op *o = &cfg->ops[i];
        if (o->kind != PSB_OP_DEV_NODE || src_fds[i] < 0 || !psb_path_beneath(o->dst, dst) || !strcmp(o->dst, dst))
            continue;
        const char *rel = o->dst + (strcmp(dst, "/") ? strlen(dst) : 0);
        while (*rel == '/')
            rel++;
        struct stat st;
        if (fstatat(devw, rel, &st, AT_SYMLINK_NOFOLLOW) == 0)
            return errno = EEXIST, ERR("--dev-node %s: already in %s", o->dst, dst);
        int t = psb_open_nofollow(devw, rel, 0, 1, 0);
        if (t < 0)
            return ERR("create --dev-node %s", o->dst);
        char p[PATH_MAX];
        full_path(p, sizeof p, o->dst);
        if (bind_fd(src_fds[i], t, p, PSB_MOUNT_ATTR_NOSUID | PSB_MOUNT_ATTR_NOEXEC, 0) < 0)
            return ERR("bind %s on %s", o->src, o->dst);
        close(t);
        close(src_fds[i]);
        src_fds[i] = -1;
    }
    return 0;
}

static int build_dev(const struct psb_config *cfg, int rootfd, const char *dst, int want_shm, char *err, size_t errlen)
{
    int dfd = psb_open_nofollow(rootfd, dst, O_DIRECTORY, 1, 1);
    if (dfd < 0)
        return ERR("create --dev %s", dst);
    /* Room for the --dev-node mount points too (a MIG GPU host has dozens of nvidia-caps nodes). */
    if (mount_tmpfs(dfd, MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k,nr_inodes=512") < 0)
        return ERR("mount tmpfs on --dev %s", dst);
    close(dfd);
    /* Reopen through the path: the fd above still names the covered directory. */
    int dev = psb_open_nofollow(rootfd, dst, O_DIRECTORY, 0, 1);
    if (dev < 0)
        return ERR("open --dev %s", dst);
    int devw = openat(dev, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (devw < 0)
        return ERR("open --dev %s", dst);
    for (int d = 0; d < 5; d++) {
        int f = openat(devw, dev_names[d], O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0444);
        if (f < 0)
            return ERR("create %s/%s", dst, dev_names[d]);
        close(f);
        int t = openat(devw, dev_names[d], O_PATH | O_NOFOLLOW | O_CLOEXEC);
        char p[PATH_MAX];
        full_path(p, sizeof p, dst);
        strncat(p, "/", sizeof p - strlen(p) - 1);
        strncat(p, dev_names[d], sizeof p - strlen(p) - 1);
        /* The device binds must not be nodev; the tmpfs they sit on is read-only below. */
        if (t < 0 || bind_fd(dev_fds[d], t, p, PSB_MOUNT_ATTR_NOSUID | PSB_MOUNT_ATTR_NOEXEC, 0) < 0)
            return ERR("bind /dev/%s on %s", dev_names[d], dst);
        close(t);
    }
    static const char *const links[][2] = {
        {"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
        {"stderr", "/proc/self/fd/2"}};
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
        if (symlinkat(links[i][1], devw, links[i][0]) < 0)
            return ERR("symlink %s/%s", dst, links[i][0]);
    /* The mount point of a later `--tmpfs DST/shm SIZE` (a size-capped /dev/shm), made now: the
     * tmpfs below becomes read-only. Without one there is no /dev/shm at all. */
    if (want_shm && mkdirat(devw, "shm", 0755) < 0)
        return ERR("mkdir %s/shm", dst);
    if (bind_dev_nodes(cfg, devw, dst, err, errlen) < 0)
        return -1;
    close(devw);
    char p[PATH_MAX];
    full_path(p, sizeof p, dst);
    /* Read-only: no files to fill memory with; /dev/shm only as its own capped tmpfs. */
    if (mount(NULL, p, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL) < 0)
        return ERR("remount --dev %s read-only", dst);
    close(dev);
    return 0;
}

static int build_proc(int rootfd, const char *dst, char *err, size_t errlen)
{
    int dfd = psb_open_nofollow(rootfd, dst, O_DIRECTORY, 1, 1);
    if (dfd < 0)
        return ERR("create --proc %s", dst);
    char d[64];
    fdpath(d, sizeof d, dfd);
    /* hidepid=invisible: pid 1 (not dumpable) and anything else the command may not ptrace
     * disappears from the listing. The fresh mount belongs to the new PID namespace, so no
     * host process is there at all. */
    unsigned long fl = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    if (mount("proc", d, "proc", fl, "hidepid=invisible") < 0 && mount("proc", d, "proc", fl, "hidepid=2") < 0 &&
        mount("proc", d, "proc", fl, NULL) < 0)
        return ERR("mount proc on %s", dst);
    close(dfd);
    int pfd = psb_open_nofollow(rootfd, dst, O_DIRECTORY, 0, 1);
    if (pfd < 0)
        return ERR("open --proc %s", dst);
    /* inotify instances and watches are counted per uid up through every enclosing user
     * namespace: a sandbox that took all 128 instances left its owner (root, when proctor runs
     * as root: every root service) unable to create one until it ended. These sysctls belong to
     * the sandbox's user namespace (init holds CAP_SYS_RESOURCE there) and cap it alone.
     * Before /proc/sys becomes read-only below; best effort on kernels without them. */
    static const char *const ucaps[][2] = {{"sys/user/max_inotify_instances", "16"},
                                           {"sys/user/max_inotify_watches", "8192"}};
    for (size_t i = 0; i < sizeof ucaps / sizeof ucaps[0]; i++) {
        int f = openat(pfd, ucaps[i][0], O_WRONLY | O_CLOEXEC);
        if (f >= 0) {
            (void)psb_write_all(f, ucaps[i][1], strlen(ucaps[i][1]));
            close(f);
        }
    }
    static const char *const ro[] = {"sys", "sysrq-trigger", "irq", "bus", "fs"};
    static const char *const hide[] = {"kcore", "keys", "timer_list", "sched_debug", "latency_stats", "acpi", "scsi"};
    char p[PATH_MAX];
    for (size_t i = 0; i < sizeof ro / sizeof ro[0]; i++) {
        int t = openat(pfd, ro[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (t < 0)
            continue;
        full_path(p, sizeof p, dst);
        strncat(p, "/", sizeof p - strlen(p) - 1);
        strncat(p, ro[i], sizeof p - strlen(p) - 1);
        if (bind_fd(t, t, p, PSB_MOUNT_ATTR_RDONLY | PSB_MOUNT_ATTR_NOSUID | PSB_MOUNT_ATTR_NODEV | PSB_MOUNT_ATTR_NOEXEC, 1) < 0)
            return ERR("mask %s/%s read-only", dst, ro[i]);
        close(t);
    }
    for (size_t i = 0; i < sizeof hide / sizeof hide[0]; i++) {
        int t = openat(pfd, hide[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (t < 0)
            continue;
        if (hide_at(t) < 0)
            return ERR("mask %s/%s", dst, hide[i]);
        close(t);
    }
    close(pfd);
    return 0;
}

int psb_build_root(const struct psb_config *cfg, char *err, size_t errlen)
{
    static const char *const bases[] = {"/tmp", "/mnt", "/run", "/var/tmp"};
    struct stat st;
    base = NULL;
    for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++)
        if (stat(bases[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            base = bases[i];
            break;
        }
    if (!base)
        return errno = ENOENT, ERR("no directory to build the new root on");
    /* The root tmpfs only holds mount points; it is made read-only before the pivot. */
    if (mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") < 0)
        return ERR("mount root tmpfs on %s", base);
    int rootfd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return ERR("open new root %s", base);
    int tmpfd = dup(rootfd);
    int f = openat(tmpfd, ".psb-empty", O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0444);
    if (f < 0 || tmpfd < 0 || mkdirat(tmpfd, ".psb-emptydir", 0555) < 0)
        return ERR("create %s/.psb-empty", base);
    close(f);
    empty_fd = openat(tmpfd, ".psb-empty", O_PATH | O_CLOEXEC);
    empty_dir_fd = openat(tmpfd, ".psb-emptydir", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (empty_fd < 0 || empty_dir_fd < 0)
        return ERR("open %s/.psb-empty", base);
    int root_bound = 0;

    for (int i = 0; i < cfg->nops; i++) {
        const struct psb_op *o = &cfg->ops[i];
        char p[PATH_MAX];
        full_path(p, sizeof p, o->dst);
        switch (o->kind) {
        case PSB_OP_RO:
        case PSB_OP_RO_TRY:
        case PSB_OP_RW: {
            if (src_fds[i] < 0)
                continue; /* --ro-try with a missing source */
            if (fstat(src_fds[i], &st) < 0)
                return ERR("stat %s", o->src);
            int dfd = psb_open_nofollow(rootfd, o->dst, 0, 1, S_ISDIR(st.st_mode));
            if (dfd < 0)
                return ERR("create mount point %s", o->dst);
            uint64_t attrs = PSB_MOUNT_ATTR_NOSUID | PSB_MOUNT_ATTR_NODEV;
            if (o->kind != PSB_OP_RW)
                attrs |= PSB_MOUNT_ATTR_RDONLY;
            /* A prepared tree has its attributes already (set while detached, by the helper). */
            int premade = psb_user_tree(i) >= 0;
            if (premade ? syscall(SYS_move_mount, src_fds[i], "", dfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0
                        : bind_fd(src_fds[i], dfd, p, attrs, 1) < 0)
                return ERR("bind %s on %s %s", o->src, o->dst, o->kind == PSB_OP_RW ? "rw" : "ro");
            close(dfd);
            close(src_fds[i]);
            src_fds[i] = -1;
            if (!strcmp(o->dst, "/")) {
                /* Bound over the root itself: later destinations live in the new top mount. */
                root_bound = 1;
                close(rootfd);
                rootfd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (rootfd < 0)
                    return ERR("reopen new root %s", base);
            }
            break;
        }
        case PSB_OP_HIDE: {
            int dfd = psb_open_nofollow(rootfd, o->dst, 0, 0, 0);
            if (dfd < 0) {
                if (errno == ENOENT)
                    continue; /* nothing there to hide */
                return ERR("open --hide %s", o->dst);
            }
            if (hide_at(dfd) < 0)
                return ERR("hide %s", o->dst);
            close(dfd);
            break;
        }
        case PSB_OP_TMPFS: {
            int dfd = psb_open_nofollow(rootfd, o->dst, O_DIRECTORY, 1, 1);
            if (dfd < 0)
                return ERR("create --tmpfs %s", o->dst);
            char opts[64];
            snprintf(opts, sizeof opts, "mode=1777,size=%llu", (unsigned long long)o->size);
            if (mount_tmpfs(dfd, MS_NOSUID | MS_NODEV, opts) < 0)
                return ERR("mount tmpfs on %s", o->dst);
            close(dfd);
            break;
        }
        case PSB_OP_DEV: {
            char shm[PATH_MAX];
            snprintf(shm, sizeof shm, "%s/shm", o->dst);
            int want_shm = 0;
            for (int j = i + 1; j < cfg->nops; j++)
                if (cfg->ops[j].kind == PSB_OP_TMPFS && !strcmp(cfg->ops[j].dst, shm))
                    want_shm = 1;
            if (build_dev(cfg, rootfd, o->dst, want_shm, err, errlen) < 0)
                return -1;
            break;
        }
        case PSB_OP_DEV_NODE:
            /* Bound by the --dev it lies beneath (build_dev), which comes before it. */
            if (src_fds[i] >= 0)
                return errno = EINVAL, ERR("--dev-node %s: not beneath an earlier --dev", o->dst);
            break;
        case PSB_OP_PROC:
            if (build_proc(rootfd, o->dst, err, errlen) < 0)
                return -1;
            break;
        case PSB_OP_HIDE_SOCKETS: {
            int hs = hide_sockets(cfg, rootfd, o->dst);
            if (hs == -2)
                return errno = E2BIG, ERR("more than %d unix sockets beneath %s (each is hidden by a mount); remove them",
                                          PSB_SOCKET_HIDE_MAX, o->dst);
            if (hs < 0)
                return ERR("hide sockets beneath %s", o->dst);
            break;
        }
        case PSB_OP_SYMLINK: {
            /* On the root tmpfs, which becomes read-only below. */
            char parent[PATH_MAX];
            snprintf(parent, sizeof parent, "%s", o->dst);
            char *slash = strrchr(parent, '/');
            const char *name = o->dst + (slash - parent) + 1;
            *slash = 0;
            int dfd = *parent ? psb_open_nofollow(rootfd, parent, O_DIRECTORY, 1, 1) : dup(rootfd);
            if (dfd < 0 || !*name || symlinkat(o->src, dfd, name) < 0)
                return ERR("symlink %s -> %s", o->dst, o->src);
            close(dfd);
            break;
        }
        }
    }
    (void)unlinkat(tmpfd, ".psb-empty", 0);
    (void)unlinkat(tmpfd, ".psb-emptydir", AT_REMOVEDIR);
    psb_scan_cache_close(scan_cache);
    scan_cache = NULL;
    close(empty_fd);
    close(empty_dir_fd);
    close(tmpfd);
    if (!root_bound && mount(NULL, base, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
        return ERR("remount new root read-only");
    if (fchdir(rootfd) < 0)
        return ERR("chdir new root");
    close(rootfd);
    /* pivot_root(".", "."): the old root ends up stacked on "." and is detached at once, so
     * no path to the host tree remains. */
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return ERR("pivot_root");
    if (umount2(".", MNT_DETACH) < 0)
        return ERR("detach old root");
    if (chdir("/") < 0)
        return ERR("chdir /");
    for (int d = 0; d < 5; d++)
        if (dev_fds[d] >= 0)
            close(dev_fds[d]);
    return 0;
}
