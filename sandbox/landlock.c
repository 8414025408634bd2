/*
 * Landlock: every write-ish right is handled, and granted only beneath the --rw and --tmpfs
 * destinations (plus the writable /dev nodes). Read and execute rights are not handled: the
 * mount layout decides what is visible. Constants are defined here because distribution
 * headers lag the kernel (Debian 12 ships 6.1 headers, ABI 2).
 */
#include "psb.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PSB_LL_CREATE_RULESET_VERSION (1U << 0)
#define PSB_LL_RULE_PATH_BENEATH 1
#define PSB_LL_FS_EXECUTE (1ULL << 0)
#define PSB_LL_FS_WRITE_FILE (1ULL << 1)
#define PSB_LL_FS_READ_FILE (1ULL << 2)
#define PSB_LL_FS_READ_DIR (1ULL << 3)
#define PSB_LL_FS_REMOVE_DIR (1ULL << 4)
#define PSB_LL_FS_REMOVE_FILE (1ULL << 5)
#define PSB_LL_FS_MAKE_CHAR (1ULL << 6)
#define PSB_LL_FS_MAKE_DIR (1ULL << 7)
#define PSB_LL_FS_MAKE_REG (1ULL << 8)
#define PSB_LL_FS_MAKE_SOCK (1ULL << 9)
#define PSB_LL_FS_MAKE_FIFO (1ULL << 10)
#define PSB_LL_FS_MAKE_BLOCK (1ULL << 11)
#define PSB_LL_FS_MAKE_SYM (1ULL << 12)
#define PSB_LL_FS_REFER (1ULL << 13)    /* ABI 2 */
#define PSB_LL_FS_TRUNCATE (1ULL << 14) /* ABI 3 */
#define PSB_LL_FS_IOCTL_DEV (1ULL << 15) /* ABI 5 */
#define PSB_LL_NET_BIND_TCP (1ULL << 0) /* ABI 4 */
#define PSB_LL_NET_CONNECT_TCP (1ULL << 1)
#define PSB_LL_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0) /* ABI 6 */
#define PSB_LL_SCOPE_SIGNAL (1ULL << 1)

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif

struct psb_ll_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

struct psb_ll_path_beneath {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

int psb_landlock_abi(void)
{
    long v = syscall(SYS_landlock_create_ruleset, NULL, 0, PSB_LL_CREATE_RULESET_VERSION);
    return v < 0 ? 0 : (int)v;
}

static uint64_t fs_rights(int abi)
{
    uint64_t r = PSB_LL_FS_WRITE_FILE | PSB_LL_FS_REMOVE_DIR | PSB_LL_FS_REMOVE_FILE | PSB_LL_FS_MAKE_CHAR |
                 PSB_LL_FS_MAKE_DIR | PSB_LL_FS_MAKE_REG | PSB_LL_FS_MAKE_SOCK | PSB_LL_FS_MAKE_FIFO |
                 PSB_LL_FS_MAKE_BLOCK | PSB_LL_FS_MAKE_SYM;
    if (abi >= 2)
        r |= PSB_LL_FS_REFER;
    if (abi >= 3)
        r |= PSB_LL_FS_TRUNCATE;
    if (abi >= 5)
        r |= PSB_LL_FS_IOCTL_DEV;
    return r;
}

static int add_path(int rs, const char *path, uint64_t rights, int must_exist, char *err, size_t errlen)
{
    /* Opened inside the final root, without following symlinks: these are our own mounts. */
    int fd = psb_open_nofollow(AT_FDCWD, path, 0, 0, 0);
    if (fd < 0) {
        if (!must_exist && errno == ENOENT)
            return 0;
        snprintf(err, errlen, "landlock open %s", path);
        return -errno;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode))
        rights &= PSB_LL_FS_WRITE_FILE | PSB_LL_FS_TRUNCATE | PSB_LL_FS_IOCTL_DEV;
    struct psb_ll_path_beneath pb = {.allowed_access = rights, .parent_fd = fd};
    long r = syscall(SYS_landlock_add_rule, rs, PSB_LL_RULE_PATH_BENEATH, &pb, 0);
    int e = errno;
    close(fd);
    if (r < 0) {
        snprintf(err, errlen, "landlock_add_rule %s", path);
        return -e;
    }
    return 0;
}

int psb_landlock_apply(const struct psb_config *cfg, int abi, char *err, size_t errlen)
{
    struct psb_ll_ruleset_attr attr;
    memset(&attr, 0, sizeof attr);
    uint64_t fs = fs_rights(abi);
    attr.handled_access_fs = fs;
    size_t size = sizeof(uint64_t);
    if (abi >= 4) {
        size = 2 * sizeof(uint64_t);
        /* With no network at all, TCP bind/connect are handled with no rule: all denied.
         * Loopback mode keeps them: the namespace has nothing but `lo`, and local TCP
         * (e.g. a rendezvous store for worker processes) is what the mode is for. */
        if (cfg->net == PSB_NET_NONE)
            attr.handled_access_net = PSB_LL_NET_BIND_TCP | PSB_LL_NET_CONNECT_TCP;
    }
    if (abi >= 6) {
        size = sizeof attr;
        attr.scoped = PSB_LL_SCOPE_ABSTRACT_UNIX_SOCKET | PSB_LL_SCOPE_SIGNAL;
    }
    int rs = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
    if (rs < 0) {
        snprintf(err, errlen, "landlock_create_ruleset");
        return -errno;
    }
    int r = 0;
    for (int i = 0; i < cfg->nops && r == 0; i++) {
        const struct psb_op *o = &cfg->ops[i];
        if (o->kind == PSB_OP_RW || o->kind == PSB_OP_TMPFS)
            r = add_path(rs, o->dst, fs, 1, err, errlen);
        else if (o->kind == PSB_OP_DEV_NODE)
            /* A device passed through (a GPU): opened read-write, and CUDA drives it by ioctl. */
            r = add_path(rs, o->dst, PSB_LL_FS_WRITE_FILE | (abi >= 3 ? PSB_LL_FS_TRUNCATE : 0) |
                                         (abi >= 5 ? PSB_LL_FS_IOCTL_DEV : 0),
                         1, err, errlen);
        else if (o->kind == PSB_OP_DEV) {
            static const char *const w[] = {"null", "zero", "full"};
            for (int k = 0; k < 3 && r == 0; k++) {
                char p[4096];
                snprintf(p, sizeof p, "%s/%s", o->dst, w[k]);
                r = add_path(rs, p, PSB_LL_FS_WRITE_FILE | (abi >= 3 ? PSB_LL_FS_TRUNCATE : 0) |
                                        (abi >= 5 ? PSB_LL_FS_IOCTL_DEV : 0),
                             0, err, errlen);
            }
        }
    }
    if (r == 0 && syscall(SYS_landlock_restrict_self, rs, 0) < 0) {
        snprintf(err, errlen, "landlock_restrict_self");
        r = -errno;
    }
    close(rs);
    return r;
}
