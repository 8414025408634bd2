/*
 * The seccomp filter: default allow, an explicit deny list (EPERM), clone3 -> ENOSYS so libc
 * falls back to clone (whose flags the filter can see), and SCMP_ACT_NOTIFY on write-intent
 * syscalls for --audit-writes. Foreign architectures (i386 via int 0x80) and the x32 ABI
 * (nr | 0x40000000) kill the process: libseccomp emits the x32 check for an x86_64-only filter.
 *
 * Built once in the helper with libseccomp and exported as plain BPF; the command child loads
 * it with seccomp(2) directly, which also hands back the notification listener.
 */
#include "psb.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

static const char *const deny_eperm[] = {
    /* io_uring does opens and sockets the filter never sees */
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    /* namespaces and mounts: a nested namespace could remount things writable */
    "unshare", "setns", "mount", "umount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    /* other processes, the kernel, its keyrings and clocks */
    "ptrace", "process_vm_readv", "process_vm_writev", "bpf", "perf_event_open", "userfaultfd", "keyctl",
    "add_key", "request_key", "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "create_module", "get_kernel_syms", "query_module", "open_by_handle_at",
    "name_to_handle_at", "iopl", "ioperm", "modify_ldt", "swapon", "swapoff", "reboot", "acct",
    "quotactl", "quotactl_fd", "lookup_dcookie", "vhangup", "syslog", "settimeofday", "clock_settime",
    "adjtimex", "clock_adjtime", "nfsservctl", "uselib", "sysfs", "_sysctl", "pidfd_getfd",
    "process_madvise", "fanotify_init", "kcmp", "memfd_secret", "listmount", "statmount", "vserver",
    "afs_syscall", "tuxcall", "security", "getpmsg", "putpmsg", "lsm_set_self_attr",
};

/* Write intent: path arguments the audit listener reads (see audit.c). */
static const char *const notify_always[] = {
    "creat", "openat2", "truncate", "rename", "renameat", "renameat2", "link", "linkat", "symlink",
    "symlinkat", "unlink", "unlinkat", "mkdir", "mkdirat", "rmdir", "mknod", "mknodat", "chmod",
    "fchmodat", "fchmodat2", "fchmod", "chown", "lchown", "fchownat", "fchown", "utime", "utimes",
    "utimensat", "futimesat", "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr",
    "fremovexattr", "setxattrat", "removexattrat",
};

static int resolve(const char *name)
{
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) {
        /* libseccomp 2.5 predates a few: fall back to the x86_64 numbers. */
        if (!strcmp(name, "fchmodat2"))
            return 452;
        if (!strcmp(name, "memfd_secret"))
            return 447;
        if (!strcmp(name, "quotactl_fd"))
            return 443;
        if (!strcmp(name, "process_madvise"))
            return 440;
        if (!strcmp(name, "listmount"))
            return 458;
        if (!strcmp(name, "statmount"))
            return 457;
        if (!strcmp(name, "setxattrat"))
            return 463;
        if (!strcmp(name, "removexattrat"))
            return 466;
        if (!strcmp(name, "lsm_set_self_attr"))
            return 460;
    }
    return nr;
}

/* Field by field: the SCMP_A* macros leave datum_b implicit (-Wmissing-field-initializers). */
static struct scmp_arg_cmp cmp(unsigned arg, enum scmp_compare op, uint64_t a, uint64_t b)
{
    struct scmp_arg_cmp c;
    c.arg = arg;
    c.op = op;
    c.datum_a = a;
    c.datum_b = b;
    return c;
}

#define ADD(action, nr, n, cmps)                                                                   \
    do {                                                                                           \
        int rc_ = seccomp_rule_add_array(ctx, (action), (nr), (n), (cmps));                  \
        if (rc_ < 0 && rc_ != -EDOM) {                                                             \
            snprintf(err, errlen, "seccomp_rule_add %d", (nr));                                    \
            r = rc_;                                                                               \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

int psb_seccomp_build(const struct psb_config *cfg, void **prog_out, char *err, size_t errlen)
{
    int r = 0;
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) {
        snprintf(err, errlen, "seccomp_init");
        return -ENOMEM;
    }
    /* Anything not x86_64 (i386 int 0x80, x32) dies: the deny list is per-ABI numbers. */
    r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (r < 0) {
        snprintf(err, errlen, "seccomp_attr_set BADARCH");
        goto out;
    }
    const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
    for (size_t i = 0; i < sizeof deny_eperm / sizeof deny_eperm[0]; i++) {
        int nr = resolve(deny_eperm[i]);
        if (nr == __NR_SCMP_ERROR || nr < 0)
            continue;
        ADD(eperm, nr, 0, NULL);
    }
    ADD(SCMP_ACT_ERRNO(ENOSYS), resolve("clone3"), 0, NULL);

    /* clone with any namespace flag (arg0 holds the flags on x86_64). */
    static const uint64_t nsflags[] = {CLONE_NEWNS,  CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
                                       CLONE_NEWUSER, CLONE_NEWPID,   CLONE_NEWNET, CLONE_NEWTIME};
    for (size_t i = 0; i < sizeof nsflags / sizeof nsflags[0]; i++) {
        struct scmp_arg_cmp c = cmp(0, SCMP_CMP_MASKED_EQ, nsflags[i], nsflags[i]);
        ADD(eperm, SCMP_SYS(clone), 1, &c);
    }
    /* TIOCSTI/TIOCLINUX: the kernel compares the low 32 bits of cmd, so must we. */
    {
        struct scmp_arg_cmp c = cmp(1, SCMP_CMP_MASKED_EQ, 0xffffffffULL, 0x5412 /* TIOCSTI */);
        ADD(eperm, SCMP_SYS(ioctl), 1, &c);
        c = cmp(1, SCMP_CMP_MASKED_EQ, 0xffffffffULL, 0x541C /* TIOCLINUX */);
        ADD(eperm, SCMP_SYS(ioctl), 1, &c);
    }
    /* personality: only PER_LINUX (0) and the 0xffffffff query. libseccomp allows one
     * comparison per argument, so the complement is covered with masked compares: a 32-bit
     * value other than all-zeros and all-ones has, cyclically, a 1 bit followed by a 0 bit. */
    {
        struct scmp_arg_cmp g = cmp(0, SCMP_CMP_GT, 0xffffffffULL, 0);
        ADD(eperm, SCMP_SYS(personality), 1, &g);
        for (int b = 0; b < 32; b++) {
            uint64_t lo = 1ULL << b, hi = 1ULL << ((b + 1) % 32);
            struct scmp_arg_cmp c = cmp(0, SCMP_CMP_MASKED_EQ, lo | hi, lo);
            ADD(eperm, SCMP_SYS(personality), 1, &c);
        }
    }
    /* socket families: AF_UNIX(1), AF_INET(2), AF_INET6(10) only; never MPTCP. Comparing the
     * full 64 bits is conservative: any high bit makes the value > 10 and it is denied. */
    {
        struct scmp_arg_cmp c = cmp(0, SCMP_CMP_EQ, 0, 0);
        ADD(eperm, SCMP_SYS(socket), 1, &c);
        for (int fam = 3; fam <= 9; fam++) {
            c = cmp(0, SCMP_CMP_EQ, (uint64_t)fam, 0);
            ADD(eperm, SCMP_SYS(socket), 1, &c);
        }
        c = cmp(0, SCMP_CMP_GT, 10, 0);
        ADD(eperm, SCMP_SYS(socket), 1, &c);
        if (cfg->net == PSB_NET_NONE) {
            c = cmp(0, SCMP_CMP_EQ, AF_INET, 0);
            ADD(eperm, SCMP_SYS(socket), 1, &c);
            c = cmp(0, SCMP_CMP_EQ, AF_INET6, 0);
            ADD(eperm, SCMP_SYS(socket), 1, &c);
        }
        c = cmp(2, SCMP_CMP_MASKED_EQ, 0xffffffffULL, 262 /* IPPROTO_MPTCP */);
        ADD(eperm, SCMP_SYS(socket), 1, &c);
        /* socketpair is AF_UNIX only in practice. */
        c = cmp(0, SCMP_CMP_NE, AF_UNIX, 0);
        ADD(eperm, SCMP_SYS(socketpair), 1, &c);
    }

    if (cfg->audit_writes) {
        for (size_t i = 0; i < sizeof notify_always / sizeof notify_always[0]; i++) {
            int nr = resolve(notify_always[i]);
            if (nr == __NR_SCMP_ERROR || nr < 0)
                continue;
            ADD(SCMP_ACT_NOTIFY, nr, 0, NULL);
        }
        /* open/openat with O_WRONLY, O_RDWR, O_CREAT or O_TRUNC: one masked rule per bit. */
        static const uint64_t bits[] = {O_WRONLY, O_RDWR, O_CREAT, O_TRUNC};
        for (size_t i = 0; i < sizeof bits / sizeof bits[0]; i++) {
            struct scmp_arg_cmp c = cmp(1, SCMP_CMP_MASKED_EQ, bits[i], bits[i]);
            ADD(SCMP_ACT_NOTIFY, SCMP_SYS(open), 1, &c);
            c = cmp(2, SCMP_CMP_MASKED_EQ, bits[i], bits[i]);
            ADD(SCMP_ACT_NOTIFY, SCMP_SYS(openat), 1, &c);
        }
    }

    /* Export once; the child loads plain BPF with seccomp(2). */
    int mfd = memfd_create("psb-bpf", MFD_CLOEXEC);
    if (mfd < 0) {
        r = -errno;
        snprintf(err, errlen, "memfd_create");
        goto out;
    }
    r = seccomp_export_bpf(ctx, mfd);
    if (r < 0) {
        close(mfd);
        snprintf(err, errlen, "seccomp_export_bpf");
        goto out;
    }
    off_t len = lseek(mfd, 0, SEEK_END);
    struct sock_filter *ins = malloc((size_t)len);
    if (!ins || pread(mfd, ins, (size_t)len, 0) != len) {
        close(mfd);
        r = -EIO;
        snprintf(err, errlen, "read exported BPF");
        goto out;
    }
    close(mfd);
    struct sock_fprog *prog = malloc(sizeof *prog);
    if (!prog) {
        r = -ENOMEM;
        goto out;
    }
    prog->len = (unsigned short)(len / (off_t)sizeof(struct sock_filter));
    prog->filter = ins;
    *prog_out = prog;
    r = 0;
out:
    seccomp_release(ctx);
    return r;
}

/* Returns the listener fd (want_listener), 0, or -errno. Needs no_new_privs already set. */
int psb_seccomp_load(const void *prog, int want_listener)
{
    unsigned int flags = want_listener ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0;
    long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, prog);
    if (r < 0)
        return -errno;
    return (int)r;
}
