/*
 * init (pid 1 of the sandbox) and the command child it forks.
 *
 * init: maps its ids, waits until the helper has put it into the cgroups, builds the mount
 * tree, forks the command, reaps everything and forwards SIGTERM. When the command exits it
 * kills the rest of the namespace and reports the status to the helper.
 *
 * command child: setsid, Landlock, capabilities, no_new_privs, seccomp (last), rlimits, exec.
 */
#include "psb.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/securebits.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SECURE_NO_CAP_AMBIENT_RAISE
#define SECURE_NO_CAP_AMBIENT_RAISE 6
#define SECURE_NO_CAP_AMBIENT_RAISE_LOCKED 7
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

extern char **environ;

static void psb_noop(int sig) { (void)sig; }

static void fail(int fd, const char *stage, const char *fmt, const char *arg)
{
    int e = errno;
    psb_child_fail(fd, 0, stage, e, fmt, arg);
}

/* One message on a unix socket, with `fd` attached (SCM_RIGHTS) unless it is negative. */
int psb_send_fd(int sk, const void *data, size_t len, int fd)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec iov = {(void *)data, len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        mh.msg_control = cbuf;
        mh.msg_controllen = sizeof cbuf;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    }
    return sendmsg(sk, &mh, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

/* The other end of psb_send_fd: one message of exactly `len` bytes; the descriptor that came
 * with it (close-on-exec), or -1. */
static int recv_with_fd(int sk, void *data, size_t len)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {data, len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    ssize_t k;
    do
        k = recvmsg(sk, &mh, MSG_CMSG_CLOEXEC);
    while (k < 0 && errno == EINTR);
    struct cmsghdr *cm = k == (ssize_t)len ? CMSG_FIRSTHDR(&mh) : NULL;
    int fd = -1;
    if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS && cm->cmsg_len == CMSG_LEN(sizeof(int)))
        memcpy(&fd, CMSG_DATA(cm), sizeof fd);
    return fd;
}

/* Joins the cgroup v1 whose "tasks" file the helper sent on `sk`: a thread moving itself
 * ("0") takes no threadgroup lock, so no RCU grace period (limits.c). */
static void join_cgroup(int st, int sk)
{
    char c;
    int fd = recv_with_fd(sk, &c, 1);
    if (fd < 0 || write(fd, "0", 1) != 1)
        psb_child_fail(st, 0, "cgroups", fd < 0 ? EPROTO : errno, "%s", "join the sandbox's cgroup");
    close(fd);
}

/* A new network namespace, lo up if asked; returns an fd for it, or -1 with errno and *what. */
static int new_netns(int loopback, const char **what)
{
    *what = "unshare CLONE_NEWNET";
    if (unshare(CLONE_NEWNET) < 0)
        return -1;
    *what = "socket in the new network namespace";
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    *what = "bring lo up";
    if (loopback && (ioctl(s, SIOCGIFFLAGS, &ifr) < 0 ||
                     (ifr.ifr_flags |= IFF_UP | IFF_RUNNING, ioctl(s, SIOCSIFFLAGS, &ifr) < 0)))
        return -1;
    *what = "SIOCGSKNS";
    int ns = ioctl(s, SIOCGSKNS);
    int e = errno;
    close(s);
    errno = e;
    return ns;
}

/* The network namespace costs more to create than all the others together (every pernet
 * subsystem initialises: sysctls, loopback, addrconf), so a short-lived child of init creates
 * it while init builds the mount tree, and hands init an fd for it. Init joins it before it
 * forks the command; until then init runs nothing but its own setup. */
struct netns_job {
    pid_t pid;
    int sock;
    int loopback;
};

static void netns_start(const struct psb_config *cfg, struct netns_job *job)
{
    int sv[2];
    job->pid = -1;
    job->loopback = cfg->net == PSB_NET_LOOPBACK || cfg->net == PSB_NET_ALLOWLIST;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return;
    job->pid = fork();
    if (job->pid == 0) {
        close(sv[0]);
        const char *what;
        int ns = new_netns(job->loopback, &what);
        int e = ns < 0 ? errno : 0;
        (void)psb_send_fd(sv[1], &e, sizeof e, ns);
        _exit(0);
    }
    close(sv[1]);
    job->sock = sv[0];
    if (job->pid < 0)
        close(sv[0]);
}

/* Join the namespace the job made; without a job (or when it failed to hand one over, e.g. no
 * SIOCGSKNS before Linux 4.9) make it here. */
static void netns_join(int st, struct netns_job *job)
{
    int ns = -1, e = EPIPE;
    if (job->pid > 0) {
        ns = recv_with_fd(job->sock, &e, sizeof e);
        close(job->sock);
        (void)waitpid(job->pid, NULL, 0);
        if (ns >= 0) {
            if (setns(ns, CLONE_NEWNET) < 0)
                fail(st, "network", "setns %s", "CLONE_NEWNET");
            close(ns);
            return;
        }
    }
    const char *what;
    ns = new_netns(job->loopback, &what);
    if (ns < 0 && strcmp(what, "SIOCGSKNS"))
        fail(st, "network", "%s", what);
    if (ns >= 0)
        close(ns);
}

/* --net allowlist: the only way out of the namespace is a listener on 127.0.0.1:proxy_port made
 * here, inside it, and handed to the helper, whose proxy (outside) accepts on it. No process runs
 * in the sandbox for it, and the command cannot take the port (it is bound before the command
 * starts, without SO_REUSEPORT). */
static void proxy_listener(int st, const struct psb_config *cfg, int sk)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        fail(st, "network", "%s", "socket for the proxy listener");
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)cfg->proxy_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 128) < 0)
        psb_child_fail(st, 0, "network", errno, "bind 127.0.0.1:%d for the proxy", cfg->proxy_port);
    struct psb_rec r;
    memset(&r, 0, sizeof r);
    r.kind = PSB_REC_PROXYFD;
    if (psb_send_fd(sk, &r, sizeof r, s) < 0)
        fail(st, "network", "%s", "hand the proxy listener to the helper");
    close(s);
}

static void drop_caps(const struct psb_config *cfg, int sk)
{
    /* uid 0 inside (proctor run as root) would regain a full permitted set on execve:
     * NOROOT stops that, NO_SETUID_FIXUP and the locks keep the command from undoing it.
     * This needs CAP_SETPCAP, so it comes before the capability sets are cleared. */
    unsigned long bits = (1UL << SECURE_NOROOT) | (1UL << SECURE_NOROOT_LOCKED) |
                         (1UL << SECURE_NO_SETUID_FIXUP) | (1UL << SECURE_NO_SETUID_FIXUP_LOCKED) |
                         (1UL << SECURE_KEEP_CAPS_LOCKED) | (1UL << SECURE_NO_CAP_AMBIENT_RAISE) |
                         (1UL << SECURE_NO_CAP_AMBIENT_RAISE_LOCKED);
    if (prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) < 0)
        psb_child_fail(sk, 1, "caps", errno, "PR_SET_SECUREBITS");
    for (int c = 0; c < 64; c++) {
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0) {
            if (errno == EINVAL)
                break; /* past CAP_LAST_CAP */
            psb_child_fail(sk, 1, "caps", errno, "PR_CAPBSET_DROP %d", c);
        }
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        psb_child_fail(sk, 1, "caps", errno, "PR_CAP_AMBIENT_CLEAR_ALL");
    /* The user switch needs CAP_SETUID/CAP_SETGID, so it comes before the sets are cleared;
     * NO_SETUID_FIXUP (above) kept them through it, capset below clears them all. */
    if (cfg->user_uid)
        psb_user_switch(cfg, sk);
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    if (syscall(SYS_capset, &h, d) < 0)
        psb_child_fail(sk, 1, "caps", errno, "capset");
}

static void send_fd(int sk, int fd)
{
    struct psb_rec r;
    memset(&r, 0, sizeof r);
    r.kind = PSB_REC_NOTIFYFD;
    if (psb_send_fd(sk, &r, sizeof r, fd) < 0)
        psb_child_fail(sk, 1, "seccomp", errno, "send listener fd");
}

/* A warning record on init's status pipe: the helper reports it and warns on stderr. */
static void send_warn(int st, const char *limit, const char *msg)
{
    struct psb_rec r;
    memset(&r, 0, sizeof r);
    r.kind = PSB_REC_WARN;
    snprintf(r.stage, sizeof r.stage, "%s", limit);
    snprintf(r.msg, sizeof r.msg, "%s", msg);
    (void)psb_write_all(st, &r, sizeof r);
}

static int read_full(int fd, void *buf, size_t len)
{
    for (size_t got = 0; got < len;) {
        ssize_t k = read(fd, (char *)buf + got, len - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        got += (size_t)k;
    }
    return 0;
}

static void run_command(struct psb_child_ctx *ctx) __attribute__((noreturn));
static void run_command(struct psb_child_ctx *ctx)
{
    const struct psb_config *cfg = ctx->cfg;
    int sk = ctx->setup_sock;
    char err[512];

    /* Every signal as a fresh process has it, whatever the launcher inherited (a shell's
     * background job ignores SIGINT and SIGQUIT: the Slurm job script starts it so). */
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            (void)sigaction(s, &dfl, NULL); /* EINVAL for the C library's own: left as they are */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    /* A new session: no controlling terminal to push input into (TIOCSTI is denied too). */
    if (setsid() < 0)
        psb_child_fail(sk, 1, "session", errno, "setsid");
    if (ctx->out_wr >= 0) {
        if (dup2(ctx->out_wr, 1) < 0 || dup2(ctx->err_wr, 2) < 0)
            psb_child_fail(sk, 1, "stdio", errno, "dup2");
    }
    /* runc CVE-2024-21626: nothing but 0, 1, 2, the close-on-exec setup socket and the
     * descriptors the supervisor chose to pass (a session channel) survives. The ones to keep,
     * ascending (an insertion sort: no allocation here), bound the ranges that are closed. */
    int keep[PSB_MAX_PASS_FDS + 1];
    int nkeep = 0;
    keep[nkeep++] = sk;
    for (int k = 0; k < cfg->npass_fds; k++) {
        int j = nkeep++;
        for (; j > 0 && keep[j - 1] > cfg->pass_fds[k]; j--)
            keep[j] = keep[j - 1];
        keep[j] = cfg->pass_fds[k];
    }
    psb_close_fds_except(keep, nkeep);
    for (int k = 0; k < cfg->npass_fds; k++)
        if (fcntl(cfg->pass_fds[k], F_SETFD, 0) < 0)
            psb_child_fail(sk, 1, "pass-fd", errno, "fcntl");

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        psb_child_fail(sk, 1, "caps", errno, "PR_SET_NO_NEW_PRIVS");

    /* Landlock needs the final mount tree (paths are opened here, inside the new root). */
    if (ctx->landlock_abi >= 1) {
        int r = psb_landlock_apply(cfg, ctx->landlock_abi, err, sizeof err);
        if (r < 0)
            psb_child_fail(sk, 1, "landlock", -r, "%s", err);
    }
    drop_caps(cfg, sk);

    /* seccomp comes last: the mount, Landlock and prctl calls above would be denied by it. */
    int lfd = psb_seccomp_load(ctx->bpf, cfg->audit_writes);
    if (lfd < 0)
        psb_child_fail(sk, 1, "seccomp", -lfd, "load filter");
    if (cfg->audit_writes) {
        send_fd(sk, lfd);
        close(lfd);
        /* Wait until the helper holds the listener: closing a unix socket (at exec) while an
         * SCM_RIGHTS fd is still in flight runs the AF_UNIX garbage collector, which made
         * execve several ms slower. */
        char ack;
        if (recv(sk, &ack, 1, 0) != 1)
            psb_child_fail(sk, 1, "seccomp", errno ? errno : EPIPE, "listener handover");
    }
    /* After the listener fd is out: RLIMIT_NOFILE may be tiny. */
    if (psb_rlimits_apply(cfg, &ctx->plan, err, sizeof err) < 0)
        psb_child_fail(sk, 1, "rlimits", errno, "%s", err);
    if (cfg->chdir_to && chdir(cfg->chdir_to) < 0)
        psb_child_fail(sk, 1, "chdir", errno, "chdir %s", cfg->chdir_to);

    /* execvpe searches the PATH of `environ`: point it at the sandbox's own environment. */
    environ = (char **)cfg->env;
    execvpe(cfg->argv[0], cfg->argv, (char **)cfg->env);
    int e = errno;
    dprintf(2, "proctor-sandbox: %s: %s\n", cfg->argv[0], strerror(e));
    _exit(e == ENOENT ? 127 : 126);
}

int psb_init_main(void *arg)
{
    struct psb_child_ctx *ctx = arg;
    const struct psb_config *cfg = ctx->cfg;
    int st = ctx->status_wr;
    char err[512];

    /* pid 1 only receives signals it has a handler for, even from the helper. */
    struct sigaction sa = {.sa_handler = psb_noop};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);

    /* A process group of its own: signals to the job proctor runs in (bash's SIGHUP when the
     * terminal hangs up, under nohup too) reach it from outside its PID namespace like the
     * helper's orders, which it could not tell apart; they are the supervisor's and the helper's
     * to act on, and the helper passes on what stops the sandbox. */
    (void)setpgid(0, 0);
    memset(psb_wipe_start, 0, psb_wipe_len);
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    /* getppid() is 0 across the PID namespace boundary; a widowed status pipe says the same. */
    struct pollfd pp = {st, 0, 0};
    if (poll(&pp, 1, 0) > 0 && (pp.revents & POLLERR))
        _exit(125);

    close(ctx->sync_wr);
    close(ctx->status_rd);
    close(ctx->setup_sock_peer);
    if (ctx->out_rd >= 0) {
        close(ctx->out_rd);
        close(ctx->err_rd);
    }
    if (cfg->report_fd >= 0)
        close(cfg->report_fd);
    if (cfg->parent_fd >= 0)
        close(cfg->parent_fd);

    char map[64];
    if (cfg->user_uid) {
        /* The helper maps root and the user (user.c); nothing here works unmapped. */
        if (read_full(ctx->sync_rd, map, 1) < 0)
            _exit(125); /* the helper failed or died; it reports */
    } else {
        if (psb_write_file("/proc/self/setgroups", "deny") < 0 && errno != ENOENT)
            fail(st, "userns", "write %s", "/proc/self/setgroups");
        snprintf(map, sizeof map, "%u %u 1\n", (unsigned)ctx->uid, (unsigned)ctx->uid);
        if (psb_write_file("/proc/self/uid_map", map) < 0)
            fail(st, "userns", "write %s", "/proc/self/uid_map");
        snprintf(map, sizeof map, "%u %u 1\n", (unsigned)ctx->gid, (unsigned)ctx->gid);
        if (psb_write_file("/proc/self/gid_map", map) < 0)
            fail(st, "userns", "write %s", "/proc/self/gid_map");
    }

    /* Not dumpable: the command (same uid) can neither read /proc/1/environ (the helper's
     * environment lives in this copy of its memory) nor see pid 1 with hidepid. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

    struct netns_job netjob = {-1, -1, 0};
    if (cfg->net != PSB_NET_HOST)
        netns_start(cfg, &netjob);
    (void)sethostname("proctor", 7);

    if (psb_open_sources(cfg, err, sizeof err) < 0)
        psb_child_fail(st, 0, "mounts", errno, "%s", err);
    if (psb_build_root(cfg, err, sizeof err) < 0)
        psb_child_fail(st, 0, "mounts", errno, "%s", err);
    if (psb_socket_scan_incomplete) {
        char msg[128];
        snprintf(msg, sizeof msg, "--hide-sockets stopped after %d entries: unix sockets beyond stay visible",
                 PSB_SOCKET_SCAN_MAX);
        send_warn(st, "sockets", msg);
    }
    if (cfg->net != PSB_NET_HOST)
        netns_join(st, &netjob);
    if (cfg->net == PSB_NET_ALLOWLIST)
        proxy_listener(st, cfg, ctx->setup_sock);

    /* The helper makes the cgroups meanwhile; init joins them (v1) or is already inside (v2).
     * The command is forked only once init is inside: everything it starts is accounted. */
    struct psb_go go;
    if (read_full(ctx->sync_rd, &go, sizeof go) < 0 || go.ninsns == 0 || go.ninsns > BPF_MAXINSNS || go.njoin > 2)
        _exit(125); /* the helper failed or died; it reports */
    for (uint32_t i = 0; i < go.njoin; i++)
        join_cgroup(st, ctx->setup_sock);
    static struct sock_filter insns[BPF_MAXINSNS];
    static struct sock_fprog prog;
    if (read_full(ctx->sync_rd, insns, go.ninsns * sizeof *insns) < 0)
        _exit(125);
    prog.len = (unsigned short)go.ninsns;
    prog.filter = insns;
    ctx->bpf = &prog;
    ctx->plan = go.plan;
    close(ctx->sync_rd);
    /* Inside the sandbox's cgroups now: make them the root of the cgroup namespace. */
    (void)unshare(CLONE_NEWCGROUP);

    pid_t cmd = fork();
    if (cmd < 0)
        fail(st, "fork", "fork %s", cfg->argv[0]);
    if (cmd == 0) {
        close(st);
        run_command(ctx);
    }
    close(ctx->setup_sock);
    if (ctx->out_wr >= 0) {
        close(ctx->out_wr);
        close(ctx->err_wr);
    }

    sigset_t set;
    psb_block_signals(&set);
    for (;;) {
        int ws;
        pid_t w;
        while ((w = waitpid(-1, &ws, WNOHANG)) > 0) {
            if (w == cmd) {
                /* The command is done: nothing it started may outlive it. */
                kill(-1, SIGKILL);
                struct psb_rec r;
                memset(&r, 0, sizeof r);
                r.kind = PSB_REC_EXIT;
                r.wstatus = ws;
                (void)psb_write_all(st, &r, sizeof r);
                _exit(0);
            }
        }
        siginfo_t si;
        int s = sigwaitinfo(&set, &si);
        /* Stop, freeze and thaw orders come from the helper, outside this PID namespace, so the
         * sender's pid reads 0 here. The same signal from a process in the sandbox (possible
         * where Landlock cannot scope signals, before Linux 6.12) is not an order: ignored. */
        if (s != SIGCHLD && si.si_pid != 0)
            continue;
        if (s == SIGTERM || s == SIGINT || s == SIGHUP)
            kill(-1, SIGTERM);
        /* Freeze and thaw (a session agent while its experiment runs): SIGSTOP cannot be caught or
         * ignored. A second pass stops what was being forked while the first one walked the list. */
        if (s == SIGUSR1) {
            kill(-1, SIGSTOP);
            kill(-1, SIGSTOP);
        }
        if (s == SIGUSR2)
            kill(-1, SIGCONT);
    }
}
