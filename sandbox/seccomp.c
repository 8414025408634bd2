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

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

static const char *const deny_eperm[] = {
    /* io_uring does opens and sockets the filter never sees */
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    /* Linux AIO: reads and writes the kernel finishes after the call returns, while every process
     * of a frozen session agent is stopped (a read into a shared mapping of an editable file
     * changed the file 0.3 s after its submitter stopped: attack review); as with io_uring, its
     * users (libaio) are left out */
    "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",
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

/* Write intent: path arguments the audit listener reads (see audit.c). The chmod family is
 * notified too (see the setuid rules below). */
static const char *const notify_always[] = {
    "creat", "truncate", "rename", "renameat", "renameat2", "link", "linkat", "symlink",
    "symlinkat", "unlink", "unlinkat", "mkdir", "mkdirat", "rmdir", "mknod", "mknodat", "chown",
    "lchown", "fchownat", "fchown", "utime", "utimes", "utimensat", "futimesat",
};

/* Setting or removing an extended attribute: refused in every phase (see below); with
 * --audit-writes notified like the calls above, and the listener refuses them. */
static const char *const xattr_writes[] = {
    "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr", "setxattrat", "removexattrat",
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
    /* openat2 keeps its flags and mode behind a pointer, which neither a filter nor the listener
     * can judge without a race (the kernel reads the struct again after the reply): it fails as
     * on kernels before 5.6, and its callers fall back to openat, whose mode the rules below see. */
    ADD(SCMP_ACT_ERRNO(ENOSYS), resolve("openat2"), 0, NULL);

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
        /* Inode flags (chattr: nodump, notail, noatime, sync...) and the project-quota attributes:
         * file metadata git does not keep, which an agent set on an editable file past the diff
         * and the revert (a red team's channel, like the extended attributes refused elsewhere). */
        static const uint32_t setattr[] = {0x40086602 /* FS_IOC_SETFLAGS */, 0x40046602 /* FS_IOC32_SETFLAGS */,
                                           0x401c5820 /* FS_IOC_FSSETXATTR */};
        for (size_t i = 0; i < sizeof setattr / sizeof setattr[0]; i++) {
            c = cmp(1, SCMP_CMP_MASKED_EQ, 0xffffffffULL, setattr[i]);
            ADD(eperm, SCMP_SYS(ioctl), 1, &c);
        }
    }
    /* --no-wake-signals (a session agent, frozen with SIGSTOP while its experiment runs): the
     * ways a process arranges for the kernel to send it a signal later, which a stopped process
     * gets too, and SIGCONT resumes it. A red team's agent armed a POSIX timer with SIGCONT and
     * kept running through every freeze, racing the revert. The timer's signal number is behind
     * a pointer (sigevent), as mq_notify's is: both refused outright; F_SETSIG (the signal for
     * SIGIO, dnotify and leases) and a parent-death signal of SIGCONT by their arguments. */
    if (cfg->no_wake) {
        ADD(eperm, SCMP_SYS(timer_create), 0, NULL);
        ADD(eperm, SCMP_SYS(mq_notify), 0, NULL);
        struct scmp_arg_cmp c = cmp(1, SCMP_CMP_MASKED_EQ, 0xffffffffULL, 10 /* F_SETSIG */);
        ADD(eperm, SCMP_SYS(fcntl), 1, &c);
        struct scmp_arg_cmp p[2] = {cmp(0, SCMP_CMP_MASKED_EQ, 0xffffffffULL, 1 /* PR_SET_PDEATHSIG */),
                                    cmp(1, SCMP_CMP_MASKED_EQ, 0xffffffffULL, SIGCONT)};
        ADD(eperm, SCMP_SYS(prctl), 2, p);
    }
    /* fcntl(F_SETLEASE): a lease taken on an editable file (the agent owns it there) made the
     * supervisor's non-blocking open for the revert fail while the frozen agent held it, and the
     * run stopped, the tree unreverted (attack review, session mode). The command is 32 bits. */
    {
        struct scmp_arg_cmp c = cmp(1, SCMP_CMP_MASKED_EQ, 0xffffffffULL, 1024 /* F_SETLEASE */);
        ADD(eperm, SCMP_SYS(fcntl), 1, &c);
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

    /* No setuid/setgid bits: the command's files are the host user's files (host root's when
     * proctor runs as root), and a writable place (outputs, an editable file) is on a host
     * filesystem that is not nosuid outside the sandbox. `chmod 4755 outputs/x` on a copy of
     * any binary made a setuid-root program for every local user. Creating a file with them is
     * refused too (open/openat with O_CREAT or O_TMPFILE, creat, mknod, mknodat): a sandbox's
     * write clears them, but host root writing into such an empty file made a setuid-root
     * program, and an editable file made so kept its bits in the tree past every commit.
     * With --audit-writes the whole chmod family (and every creating call) goes to the listener,
     * which refuses such a mode (the mode is an argument value: no race) and reports it; an
     * unconditional notify rule would shadow an EPERM rule for the same call anyway. */
    {
        static const struct {
            const char *name;
            unsigned arg;
        } chmods[] = {{"chmod", 1}, {"fchmod", 1}, {"fchmodat", 2}, {"fchmodat2", 2}};
        static const uint64_t bits[] = {S_ISUID, S_ISGID};
        for (size_t i = 0; i < sizeof chmods / sizeof chmods[0]; i++) {
            int nr = resolve(chmods[i].name);
            if (nr == __NR_SCMP_ERROR || nr < 0)
                continue;
            if (cfg->audit_writes) {
                ADD(SCMP_ACT_NOTIFY, nr, 0, NULL);
                continue;
            }
            for (size_t b = 0; b < 2; b++) {
                struct scmp_arg_cmp c = cmp(chmods[i].arg, SCMP_CMP_MASKED_EQ, bits[b], bits[b]);
                ADD(eperm, nr, 1, &c);
            }
        }
        /* The creating calls' mode: without --audit-writes, EPERM rules (the listener judges them
         * otherwise); `flags` -1: the call always creates. */
        static const struct {
            const char *name;
            int flags;
            unsigned mode;
        } creates[] = {{"open", 1, 2}, {"openat", 2, 3}, {"creat", -1, 1}, {"mknod", -1, 1}, {"mknodat", -1, 2}};
        static const uint64_t creating[] = {O_CREAT, PSB_O_TMPFILE_BIT};
        for (size_t i = 0; !cfg->audit_writes && i < sizeof creates / sizeof creates[0]; i++) {
            int nr = resolve(creates[i].name);
            if (nr == __NR_SCMP_ERROR || nr < 0)
                continue;
            for (size_t b = 0; b < 2; b++) {
                struct scmp_arg_cmp mode = cmp(creates[i].mode, SCMP_CMP_MASKED_EQ, bits[b], bits[b]);
                if (creates[i].flags < 0) {
                    ADD(eperm, nr, 1, &mode);
                    continue;
                }
                for (size_t f = 0; f < 2; f++) {
                    struct scmp_arg_cmp both[2] = {cmp((unsigned)creates[i].flags, SCMP_CMP_MASKED_EQ, creating[f], creating[f]), mode};
                    ADD(eperm, nr, 2, both);
                }
            }
        }
    }

    /* Extended attributes: git keeps none, so an attribute on an editable file carried a program
     * past the diff that the experiment ran and no commit holds (kept, then not reproducible); ACLs
     * (system.posix_acl_*) are attributes too. Setting or removing one fails as on a file system
     * without them (tools such as shutil.copy2 carry on). With --audit-writes the listener
     * refuses them instead, and reports each (see audit.c). */
    for (size_t i = 0; i < sizeof xattr_writes / sizeof xattr_writes[0]; i++) {
        int nr = resolve(xattr_writes[i]);
        if (nr == __NR_SCMP_ERROR || nr < 0)
            continue;
        ADD(cfg->audit_writes ? SCMP_ACT_NOTIFY : SCMP_ACT_ERRNO(EOPNOTSUPP), nr, 0, NULL);
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

/*
 * The compiled filter is cached in the launcher's cache directory (cache.c): libseccomp takes
 * ~0.4 ms to build it, a tenth of a whole sandbox's start. The file name covers everything the
 * filter depends on (the options, libseccomp's version, this very launcher binary).
 */
struct filter_file {
    uint32_t magic, ninsns;
    uint64_t sum;
};
#define PSB_FILTER_MAGIC 0x31664250u

static void cache_name(const struct psb_config *cfg, char *out, size_t len)
{
    const struct scmp_version *v = seccomp_version();
    struct stat st;
    memset(&st, 0, sizeof st);
    (void)stat("/proc/self/exe", &st);
    char key[256];
    int n = snprintf(key, sizeof key, "%d %d %d %u.%u.%u %llu %llu %lld.%09ld %lld", cfg->audit_writes, cfg->no_wake, (int)cfg->net,
                     v ? v->major : 0, v ? v->minor : 0, v ? v->micro : 0, (unsigned long long)st.st_dev,
                     (unsigned long long)st.st_ino, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
                     (long long)st.st_size);
    snprintf(out, len, "seccomp-%016llx.bpf", (unsigned long long)psb_fnv1a(key, (size_t)n));
}

static struct sock_fprog *cache_read(int dir, const char *name)
{
    int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    struct filter_file h;
    struct sock_fprog *prog = NULL;
    struct sock_filter *ins = NULL;
    if (fstat(fd, &st) < 0 || !psb_cache_file_trusted(fd, &st) || read(fd, &h, sizeof h) != (ssize_t)sizeof h || h.magic != PSB_FILTER_MAGIC || h.ninsns == 0 ||
        h.ninsns > BPF_MAXINSNS || st.st_size != (off_t)(sizeof h + h.ninsns * sizeof *ins))
        goto out;
    ins = malloc(h.ninsns * sizeof *ins);
    prog = malloc(sizeof *prog);
    if (!ins || !prog || read(fd, ins, h.ninsns * sizeof *ins) != (ssize_t)(h.ninsns * sizeof *ins) ||
        psb_fnv1a(ins, h.ninsns * sizeof *ins) != h.sum) {
        free(ins);
        free(prog);
        prog = NULL;
        goto out;
    }
    prog->len = (unsigned short)h.ninsns;
    prog->filter = ins;
out:
    close(fd);
    return prog;
}

/* A miss is rare (a new launcher build or phase): the moment to drop what no build has used for a
 * week (filters of older launcher builds, temp files of a launcher killed mid-write). */
static void prune_cache(int dir, const char *keep)
{
    int d = dup(dir);
    DIR *dp = d >= 0 ? fdopendir(d) : NULL;
    if (!dp) {
        if (d >= 0)
            close(d);
        return;
    }
    time_t now = time(NULL);
    struct dirent *e;
    struct stat st;
    while ((e = readdir(dp))) {
        int ours = !strncmp(e->d_name, "seccomp-", 8) || !strncmp(e->d_name, ".tmp-", 5);
        if (ours && strcmp(e->d_name, keep) && fstatat(dir, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(st.st_mode) && now - st.st_atime > 7 * 24 * 3600)
            (void)unlinkat(dir, e->d_name, 0);
    }
    closedir(dp);
}

static void cache_write(int dir, const char *name, const struct sock_fprog *prog)
{
    size_t n = prog->len * sizeof *prog->filter;
    struct filter_file h = {PSB_FILTER_MAGIC, prog->len, psb_fnv1a(prog->filter, n)};
    (void)psb_cache_replace(dir, name, &h, sizeof h, prog->filter, n);
    prune_cache(dir, name);
}

/* The filter for this configuration: from the cache when there is a valid one, else built. */
int psb_seccomp_get(const struct psb_config *cfg, void **prog_out, char *err, size_t errlen)
{
    int dir = psb_cache_dir(cfg);
    char name[64];
    if (dir >= 0) {
        cache_name(cfg, name, sizeof name);
        struct sock_fprog *prog = cache_read(dir, name);
        if (prog) {
            close(dir);
            *prog_out = prog;
            return 0;
        }
    }
    int r = psb_seccomp_build(cfg, prog_out, err, errlen);
    if (r == 0 && dir >= 0)
        cache_write(dir, name, *prog_out);
    if (dir >= 0)
        close(dir);
    return r;
}
