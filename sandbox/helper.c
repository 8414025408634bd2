/*
 * proctor-sandbox: the helper, which stays in the host namespaces. Its steps, in order:
 * report how each limit is enforced; open the channels to init and the command; spawn init
 * (new user/mount/pid/ipc/uts/cgroup namespaces, born in the cgroup v2 when there is one);
 * hand over (cgroup v1, the seccomp filter, the go-ahead); run the event loop until init is
 * reaped and the pipes are drained; finish (counters, cleanup, the result line).
 *
 * The event loop is a single poll: signals, init's status pipe, the command's setup socket
 * (errors and the seccomp listener fd), the audit listener, stdio pipes and the supervisor's
 * death pipe, one handler each; deadlines come from CLOCK_MONOTONIC via the poll timeout.
 */
#include "psb.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/sched.h> /* struct clone_args */

/* Older headers lack these (clone3 and CLONE_INTO_CGROUP came with Linux 5.3 and 5.7). */
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

#define PSB_SETUP_TIMEOUT_MS 30000

/* Why the helper killed the sandbox; the result line and the limit lines follow from it. */
enum kill_reason {
    KILL_NONE,
    KILL_OUTPUT, /* over --output-limit: exit 137 */
    KILL_PARENT, /* the supervisor's pipe hung up: exit 137 */
    KILL_SIGNAL, /* SIGTERM/SIGINT/SIGHUP to the helper from its parent (the supervisor): a graceful stop */
    KILL_OUTSIDE, /* the same from anyone else (an operator's kill, a service manager) */
};

struct stdio_pipe {
    int fd;  /* read end, -1 when closed */
    int out; /* where it goes: 1 or 2 */
};

/* Everything the helper knows about one sandbox. */
struct helper {
    const struct psb_config *cfg;
    struct psb_child_ctx ctx; /* what init and the command inherit */
    struct psb_cgroups *cg;
    pid_t init;
    int sfd; /* signalfd */
    int status_fd, setup_fd, parent_fd;
    struct stdio_pipe sp[2];
    struct psb_audit *audit;
    pid_t proxy; /* --net allowlist: the proxy, once init handed over its listener; -1 before */
    int setup_error, audit_hup, got_sigchld;
    /* init and the command */
    int init_done, init_wstatus, got_exit, cmd_wstatus;
    struct rusage ru;
    /* milliseconds on CLOCK_MONOTONIC, -1 = not yet or none */
    long long t_clone, t_start, t_end, deadline, kill_at, next_output;
    struct psb_output_base output_base; /* zero unless --output-growth */
    int stopping, timed_out;
    enum kill_reason killed_for;
    char limit_detail[256];
    /* stdio accounting */
    long long stdio_total, stdio_dropped;
    /* cgroup counters, read once the command is done */
    long long peak;
    int oom, pids_hit, finished;
};

static void setup_fail(const char *what, int err, const char *stage)
{
    dprintf(2, "proctor-sandbox: %s: %s (stage: %s)\n", what, strerror(err), stage);
}

/* An enforce line for every limit the plan carries. */
static void report_enforcement(struct helper *h)
{
    const struct psb_config *cfg = h->cfg;
    psb_report_rlimits(cfg);
    if (cfg->timeout_ms > 0)
        psb_enforce("timeout", "pidns-kill", "%lld", cfg->timeout_ms);
    if (cfg->output_limit >= 0) {
        psb_enforce("output", "host-poll-50ms", "%lld", cfg->output_limit);
        psb_enforce("output-entries", "host-poll-50ms", "%lld", cfg->output_entries);
        if (cfg->output_growth)
            psb_enforce("output-growth", "host-walk-at-start", "%lld", h->output_base.bytes);
    }
    if (cfg->stdio_limit >= 0)
        psb_enforce("stdio", "pipe-drain", "%lld", cfg->stdio_limit);
    psb_enforce("seccomp", cfg->audit_writes ? "filter+notify" : "filter", "1");
    if (cfg->user_uid)
        psb_enforce("user", cfg->nmap_owner ? "setresuid+idmap" : "setresuid", "%u:%u", (unsigned)cfg->user_uid,
                    (unsigned)cfg->user_gid);
    static const char *const net_names[] = {"none", "loopback", "host", "allowlist"};
    psb_enforce("netns", cfg->net == PSB_NET_HOST ? "host" : cfg->net == PSB_NET_ALLOWLIST ? "new-netns+proxy" : "new-netns",
                "%s", net_names[cfg->net]);
    if (h->ctx.landlock_abi >= 1) {
        char mechanism[16];
        snprintf(mechanism, sizeof mechanism, "abi-%d", h->ctx.landlock_abi);
        psb_enforce("landlock", mechanism, "%d", h->ctx.landlock_abi);
    } else {
        psb_warn("landlock", "Landlock unavailable; writes are confined by the mount layout only");
    }
}

/* The pipes and the socket to init and the command, and the signals as a descriptor. */
static int open_channels(struct helper *h)
{
    int sync_p[2], status_p[2], sv[2], out_p[2] = {-1, -1}, err_p[2] = {-1, -1};
    if (pipe2(sync_p, O_CLOEXEC) < 0 || pipe2(status_p, O_CLOEXEC) < 0 ||
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0 ||
        (h->cfg->stdio_limit >= 0 && (pipe2(out_p, O_CLOEXEC) < 0 || pipe2(err_p, O_CLOEXEC) < 0))) {
        setup_fail("pipe", errno, "setup");
        return -1;
    }
    h->ctx.sync_rd = sync_p[0];
    h->ctx.sync_wr = sync_p[1];
    h->ctx.status_rd = status_p[0];
    h->ctx.status_wr = status_p[1];
    h->ctx.setup_sock = sv[1];
    h->ctx.setup_sock_peer = sv[0];
    h->ctx.out_rd = out_p[0];
    h->ctx.out_wr = out_p[1];
    h->ctx.err_rd = err_p[0];
    h->ctx.err_wr = err_p[1];

    sigset_t mask;
    psb_block_signals(&mask);
    h->sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (h->sfd < 0) {
        setup_fail("signalfd", errno, "setup");
        return -1;
    }
    return 0;
}

/* init in its new namespaces; the child half never returns. The network namespace is made by
 * init, in parallel with its mount work (init.c). */
static int spawn_init(struct helper *h)
{
    unsigned long flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;
    h->t_clone = psb_now_ms();
    /* Clone without CLONE_VM and without a stack behaves like fork: the child gets a copy of
     * this memory (config, BPF program) and runs psb_init_main on its own copy of the stack. */
    h->init = -1;
    int cgfd = psb_cgroups_v2_fd(h->cg);
    if (cgfd >= 0) {
        /* cgroup v2: born inside the cgroup (CLONE_INTO_CGROUP, 5.7+), no migration at all. */
        struct clone_args ca;
        memset(&ca, 0, sizeof ca);
        ca.flags = flags | CLONE_INTO_CGROUP;
        ca.exit_signal = SIGCHLD;
        ca.cgroup = (uint64_t)cgfd;
        h->init = (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
        if (h->init > 0)
            psb_cgroups_mark_joined(h->cg);
        close(cgfd); /* parent and child alike */
    }
    if (h->init < 0)
        h->init = (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, 0UL);
    if (h->init < 0) {
        setup_fail("clone", errno, "namespaces");
        return -1;
    }
    if (h->init == 0) {
        close(h->sfd);
        _exit(psb_init_main(&h->ctx));
    }
    close(h->ctx.sync_rd);
    close(h->ctx.status_wr);
    close(h->ctx.setup_sock);
    if (h->ctx.out_wr >= 0) {
        close(h->ctx.out_wr);
        close(h->ctx.err_wr);
    }
    return 0;
}

/* While init builds its mount tree: cgroup v1 (or the rlimit fallbacks) and the seccomp
 * filter, compiled once here and handed over as plain BPF with the go-ahead. Init forks the
 * command only after that, so everything the command starts is accounted and filtered.
 * If init already failed (ESRCH, EPIPE), its own error record on the status pipe says why. */
static void hand_over(struct helper *h)
{
    char err[512] = "";
    struct psb_go go;
    memset(&go, 0, sizeof go);
    if (!h->cg)
        h->cg = psb_cgroups_setup_v1(h->cfg, &go.plan);
    struct sock_fprog *prog = NULL;
    int r = psb_seccomp_get(h->cfg, (void **)&prog, err, sizeof err);
    if (r < 0) {
        setup_fail(err, -r, "seccomp");
        h->setup_error = 1;
        kill(h->init, SIGKILL);
    } else if ((r = psb_cgroups_attach(h->cg, h->init, h->ctx.setup_sock_peer, err, sizeof err)) < 0) {
        /* Init gone (ESRCH), or its end of the socket closed (EPIPE, ECONNRESET: it failed while
         * building the mounts, a refused --dev-node): its own record says why, not "join". */
        if (errno != ESRCH && errno != EPIPE && errno != ECONNRESET) {
            setup_fail(err, errno, "cgroups");
            h->setup_error = 1;
        }
        kill(h->init, SIGKILL);
    } else {
        /* At most BPF_MAXINSNS (4096) instructions: 32 KiB, always within the pipe's buffer. */
        go.njoin = (uint32_t)r;
        go.ninsns = prog->len;
        if (psb_write_all(h->ctx.sync_wr, &go, sizeof go) < 0 ||
            psb_write_all(h->ctx.sync_wr, prog->filter, (size_t)prog->len * sizeof *prog->filter) < 0)
            kill(h->init, SIGKILL);
    }
    close(h->ctx.sync_wr);
}

/* ---------- the event loop: one handler per event ---------- */

static void on_signals(struct helper *h, long long now)
{
    struct signalfd_siginfo si;
    while (read(h->sfd, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo == SIGCHLD) {
            h->got_sigchld = 1;
            continue;
        }
        /* Freeze (SIGUSR1) and thaw (SIGUSR2) every process in the sandbox: init does it. */
        if (si.ssi_signo == SIGUSR1 || si.ssi_signo == SIGUSR2) {
            if (!h->init_done)
                kill(h->init, (int)si.ssi_signo);
            continue;
        }
        /* A hang-up from anyone but the parent (the terminal's, bash's to its job's process group)
         * is the supervisor's to act on: under `nohup proctor run` it ignores it, and so does
         * this launcher; without nohup the supervisor stops its launches itself. */
        if (si.ssi_signo == SIGHUP && (pid_t)si.ssi_pid != getppid())
            continue;
        /* A stop request from the supervisor: the same path as a timeout, minus 124. */
        if (!h->init_done && !h->stopping) {
            h->stopping = 1;
            if (h->killed_for == KILL_NONE)
                h->killed_for = (pid_t)si.ssi_pid == getppid() ? KILL_SIGNAL : KILL_OUTSIDE;
            kill(h->init, h->t_start >= 0 ? SIGTERM : SIGKILL);
            h->kill_at = now + h->cfg->grace_ms;
        }
    }
}

static void on_sigchld(struct helper *h, long long now)
{
    h->got_sigchld = 0;
    int ws;
    if (wait4(h->init, &ws, WNOHANG, &h->ru) == h->init) {
        h->init_done = 1;
        h->init_wstatus = ws;
        if (h->t_end < 0)
            h->t_end = now;
    }
}

/* An error or warning record from init or the command (the exit record is init's alone). */
static void on_record(struct helper *h, const struct psb_rec *rec)
{
    if (rec->kind == PSB_REC_ERROR && !h->setup_error) {
        h->setup_error = 1;
        dprintf(2, "proctor-sandbox: %s: %s (stage: %s)\n", rec->msg, strerror(rec->err), rec->stage);
    } else if (rec->kind == PSB_REC_WARN) {
        psb_warn(rec->stage, "%s", rec->msg);
    }
}

static void on_status(struct helper *h, long long now)
{
    struct psb_rec rec;
    ssize_t k = read(h->status_fd, &rec, sizeof rec);
    if (k == (ssize_t)sizeof rec) {
        if (rec.kind == PSB_REC_EXIT) {
            h->got_exit = 1;
            h->cmd_wstatus = rec.wstatus;
            h->t_end = now;
            /* The command is done and init has killed the rest: read the cgroup's counters
             * while the kernel tears the namespaces down. */
            psb_cgroups_finish(h->cg, &h->peak, &h->oom, &h->pids_hit);
            h->finished = 1;
        } else {
            on_record(h, &rec);
        }
    } else if (k == 0 || (k < 0 && errno != EINTR && errno != EAGAIN)) {
        close(h->status_fd);
        h->status_fd = -1;
    }
}

static void on_setup(struct helper *h, long long now)
{
    struct psb_rec rec;
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {&rec, sizeof rec};
    struct msghdr mh = {0};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    ssize_t k = recvmsg(h->setup_fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (k == (ssize_t)sizeof rec) {
        if (rec.kind == PSB_REC_NOTIFYFD) {
            struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
            if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
                int nfd;
                memcpy(&nfd, CMSG_DATA(cm), sizeof nfd);
                h->audit = psb_audit_new(h->cfg, nfd);
                (void)send(h->setup_fd, "k", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            }
        } else if (rec.kind == PSB_REC_PROXYFD) {
            /* From init alone: the command starts later, and this record is expected once. */
            struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
            if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS && h->proxy < 0 &&
                h->cfg->net == PSB_NET_ALLOWLIST) {
                int lfd;
                memcpy(&lfd, CMSG_DATA(cm), sizeof lfd);
                h->proxy = psb_proxy_start(h->cfg, lfd);
                close(lfd);
                if (h->proxy < 0) {
                    setup_fail("start the network proxy", errno, "network");
                    h->setup_error = 1;
                }
            }
        } else {
            on_record(h, &rec);
        }
    } else if (k == 0 || (k < 0 && errno != EINTR && errno != EAGAIN)) {
        /* The setup socket is close-on-exec: EOF means the command has started (or died
         * trying). The wall clock starts here. */
        close(h->setup_fd);
        h->setup_fd = -1;
        if (!h->setup_error && !h->init_done) {
            h->t_start = now;
            if (h->cfg->timeout_ms > 0)
                h->deadline = now + h->cfg->timeout_ms;
            /* The first look at the outputs one poll after the start: a command cannot have
             * written anything yet, and a short one is spared the walk. */
            if (h->cfg->noutput)
                h->next_output = now + 50;
        }
    }
}

/* Bytes past --stdio-limit are counted and dropped. */
static void on_stdio(struct helper *h, struct stdio_pipe *p)
{
    char buf[65536];
    ssize_t k = read(p->fd, buf, sizeof buf);
    if (k > 0) {
        long long room = h->cfg->stdio_limit - h->stdio_total;
        long long pass = k < room ? k : (room > 0 ? room : 0);
        if (pass > 0)
            (void)psb_write_all(p->out, buf, (size_t)pass);
        h->stdio_total += pass;
        h->stdio_dropped += k - pass;
    } else if (k == 0 || (errno != EINTR && errno != EAGAIN)) {
        close(p->fd);
        p->fd = -1;
    }
}

static void on_parent(struct helper *h)
{
    char b[64];
    ssize_t k = read(h->parent_fd, b, sizeof b);
    if (k <= 0 && !(k < 0 && (errno == EINTR || errno == EAGAIN))) {
        /* The supervisor is gone: nobody is left to judge this run. */
        h->parent_fd = -1;
        if (!h->init_done) {
            kill(h->init, SIGKILL);
            if (h->killed_for == KILL_NONE)
                h->killed_for = KILL_PARENT;
            snprintf(h->limit_detail, sizeof h->limit_detail, "supervisor gone");
        }
    }
}

/* The timers, after the descriptors: setup failed, the deadline, the grace period, the outputs. */
static void on_timers(struct helper *h, long long now)
{
    if (h->setup_error && !h->init_done && !h->stopping) {
        h->stopping = 1;
        kill(h->init, SIGKILL);
    }
    if (!h->init_done && h->deadline >= 0 && !h->timed_out && now >= h->deadline) {
        h->timed_out = 1;
        psb_limit("timeout", "%lld ms", h->cfg->timeout_ms);
        if (!h->stopping) {
            h->stopping = 1;
            kill(h->init, SIGTERM);
            h->kill_at = now + h->cfg->grace_ms;
        }
    }
    if (!h->init_done && h->kill_at >= 0 && now >= h->kill_at) {
        kill(h->init, SIGKILL);
        h->kill_at = -1;
    }
    if (!h->init_done && h->next_output >= 0 && now >= h->next_output && !h->stopping) {
        if (psb_output_over(h->cfg, h->init, h->cg, &h->output_base)) {
            h->stopping = 1;
            h->killed_for = KILL_OUTPUT;
            kill(h->init, SIGKILL);
        }
        /* Every 50 ms, but never more than a fifth of the helper's time: a huge tree must not
         * starve the audit listener and the stdio pipes. */
        long long spent = psb_now_ms() - now;
        h->next_output = psb_now_ms() + (spent * 4 > 50 ? spent * 4 : 50);
    }
}

/* The poll timeout: the nearest of the setup bound, the deadline, the grace period and the
 * next output poll; -1 when none. Setup itself is bounded (a hung mount source, a stuck
 * cgroup write): past it, this marks the setup failed. */
static int poll_timeout(struct helper *h, long long now)
{
    long long wake = -1;
    long long setup_deadline = h->t_clone + PSB_SETUP_TIMEOUT_MS;
    if (!h->init_done && h->t_start < 0 && !h->setup_error) {
        if (now >= setup_deadline) {
            h->setup_error = 1;
            setup_fail("sandbox setup did not finish in time", ETIMEDOUT, "setup");
        } else
            wake = setup_deadline;
    }
    if (!h->init_done) {
        if (h->deadline >= 0 && !h->timed_out && (wake < 0 || h->deadline < wake))
            wake = h->deadline;
        if (h->kill_at >= 0 && (wake < 0 || h->kill_at < wake))
            wake = h->kill_at;
        if (h->next_output >= 0 && !h->stopping && (wake < 0 || h->next_output < wake))
            wake = h->next_output;
    }
    return wake < 0 ? -1 : (wake <= now ? 0 : (int)(wake - now));
}

/* The descriptors the loop waits on this round, with where each one sits (-1: not watched). */
struct watch {
    struct pollfd pf[8];
    int n, sig, status, setup, audit, out, err, parent;
};

static int watch_add(struct watch *w, int fd)
{
    w->pf[w->n] = (struct pollfd){fd, POLLIN, 0};
    return w->n++;
}

static void watch_build(const struct helper *h, struct watch *w)
{
    w->n = 0;
    w->sig = watch_add(w, h->sfd);
    w->status = h->status_fd >= 0 ? watch_add(w, h->status_fd) : -1;
    w->setup = h->setup_fd >= 0 ? watch_add(w, h->setup_fd) : -1;
    w->audit = h->audit && !h->init_done && !h->audit_hup ? watch_add(w, psb_audit_fd(h->audit)) : -1;
    w->out = h->sp[0].fd >= 0 ? watch_add(w, h->sp[0].fd) : -1;
    w->err = h->sp[1].fd >= 0 ? watch_add(w, h->sp[1].fd) : -1;
    w->parent = h->parent_fd >= 0 && !h->init_done ? watch_add(w, h->parent_fd) : -1;
}

static short revents(const struct watch *w, int i)
{
    return i >= 0 ? w->pf[i].revents : 0;
}

static void event_loop(struct helper *h)
{
    const short ready = POLLIN | POLLHUP | POLLERR;
    for (;;) {
        if (h->init_done && h->status_fd < 0 && h->sp[0].fd < 0 && h->sp[1].fd < 0)
            break;
        struct watch w;
        watch_build(h, &w);
        int pr = poll(w.pf, (nfds_t)w.n, poll_timeout(h, psb_now_ms()));
        if (pr < 0 && errno != EINTR)
            break;
        long long now = psb_now_ms();

        if (pr > 0 && (revents(&w, w.sig) & POLLIN))
            on_signals(h, now);
        if (!h->init_done && h->got_sigchld)
            on_sigchld(h, now);
        if (revents(&w, w.status) & ready)
            on_status(h, now);
        if (revents(&w, w.setup) & ready)
            on_setup(h, now);
        if (revents(&w, w.audit) & POLLIN)
            psb_audit_handle(h->audit);
        else if (revents(&w, w.audit) & (POLLHUP | POLLERR | POLLNVAL))
            h->audit_hup = 1; /* no task uses the filter any more: stop polling it (it would spin) */
        if (revents(&w, w.out) & ready)
            on_stdio(h, &h->sp[0]);
        if (revents(&w, w.err) & ready)
            on_stdio(h, &h->sp[1]);
        if (revents(&w, w.parent) & ready)
            on_parent(h);
        on_timers(h, now);
        if (h->init_done) {
            /* Everything in the PID namespace is gone; drain what is left without blocking. */
            if (h->status_fd >= 0)
                fcntl(h->status_fd, F_SETFL, O_NONBLOCK);
            for (int s = 0; s < 2; s++)
                if (h->sp[s].fd >= 0)
                    fcntl(h->sp[s].fd, F_SETFL, O_NONBLOCK);
            if (h->setup_fd >= 0) {
                close(h->setup_fd);
                h->setup_fd = -1;
            }
        }
    }
}

/* ---------- the end ---------- */

/* The exit status as timeout(1) and docker run give it; sets *sig to the signal that ended the
 * command. -1 when init ended before the command started (an internal failure). */
static int exit_status(const struct helper *h, int *sig)
{
    *sig = 0;
    if (h->got_exit) {
        if (WIFEXITED(h->cmd_wstatus))
            return WEXITSTATUS(h->cmd_wstatus);
        *sig = WTERMSIG(h->cmd_wstatus);
        return 128 + *sig;
    }
    if (WIFSIGNALED(h->init_wstatus)) {
        *sig = WTERMSIG(h->init_wstatus);
        return 128 + *sig;
    }
    /* init exited without a record: only happens on an internal failure. */
    if (h->t_start < 0) {
        dprintf(2, "proctor-sandbox: init exited before the command started: %s (stage: init)\n", strerror(EPIPE));
        return -1;
    }
    return WIFEXITED(h->init_wstatus) ? WEXITSTATUS(h->init_wstatus) : 125;
}

static void report_limits_hit(const struct helper *h, int sig)
{
    const struct psb_config *cfg = h->cfg;
    if (h->oom)
        psb_limit("memory", "oom-kill (%d) limit %lld", h->oom, cfg->memory);
    if (h->pids_hit)
        psb_limit("pids", "fork refused %d time(s) at %lld", h->pids_hit, cfg->pids);
    if (cfg->cpu_s >= 0 && sig == SIGXCPU)
        psb_limit("cpu", "SIGXCPU after %lld s", cfg->cpu_s);
    if (cfg->fsize >= 0 && sig == SIGXFSZ)
        psb_limit("fsize", "SIGXFSZ at %lld bytes", cfg->fsize);
    if (h->stdio_dropped > 0)
        psb_limit("stdio", "dropped %lld bytes", h->stdio_dropped);
    if (h->killed_for == KILL_PARENT)
        psb_limit("parent", "%s", h->limit_detail);
    if (h->killed_for == KILL_SIGNAL)
        psb_limit("signal", "stopped by the supervisor");
    else if (h->killed_for == KILL_OUTSIDE)
        psb_limit("signal", "stopped by a signal from outside proctor");
}

/* Reaps init, reads the counters, removes the cgroups and reports the result. */
static int finish(struct helper *h)
{
    if (!h->init_done) {
        kill(h->init, SIGKILL);
        int ws;
        wait4(h->init, &ws, 0, &h->ru);
        h->init_wstatus = ws;
    }
    if (h->t_end < 0)
        h->t_end = psb_now_ms();
    if (!h->finished)
        psb_cgroups_finish(h->cg, &h->peak, &h->oom, &h->pids_hit);
    if (h->audit)
        psb_audit_finish(h->audit);
    if (h->proxy > 0)
        psb_proxy_stop(h->proxy);
    psb_cgroups_kill_and_remove(h->cg);

    /* The last look, with the sandbox gone: a command that writes past the cap and exits between
     * two polls (30 MB and gone within 50 ms) passed it unseen. Over now: as if killed for it. */
    if (!h->setup_error && h->cfg->noutput && h->t_start >= 0 && h->killed_for == KILL_NONE && !h->timed_out &&
        psb_output_over(h->cfg, h->init, NULL, &h->output_base))
        h->killed_for = KILL_OUTPUT;

    int sig = 0;
    int code = h->setup_error ? -1 : exit_status(h, &sig);
    if (code < 0) {
        psb_emit(RESULT, PSB_I(125), PSB_I(0), PSB_I(0), PSB_I(0), PSB_I(0), PSB_I(0));
        return 125;
    }
    report_limits_hit(h, sig);
    if (h->timed_out)
        code = 124;
    else if (h->killed_for == KILL_OUTPUT || h->killed_for == KILL_PARENT) {
        sig = SIGKILL;
        code = 128 + SIGKILL;
    }
    const struct rusage *ru = &h->ru;
    long long cpu_ms = (long long)ru->ru_utime.tv_sec * 1000 + ru->ru_utime.tv_usec / 1000 +
                       (long long)ru->ru_stime.tv_sec * 1000 + ru->ru_stime.tv_usec / 1000;
    long long peak = h->peak >= 0 ? h->peak : (long long)ru->ru_maxrss * 1024;
    long long wall = h->t_start >= 0 ? h->t_end - h->t_start : h->t_end - h->t_clone;
    psb_emit(RESULT, PSB_I(code), PSB_I(sig), PSB_I(h->timed_out), PSB_I(wall), PSB_I(cpu_ms), PSB_I(peak));
    return code;
}

int psb_helper_run(const struct psb_config *cfg)
{
    /* Static: init's copy of it (clone without CLONE_VM) is what psb_init_main works on. */
    static struct helper h;
    h.cfg = cfg;
    h.ctx.cfg = cfg;
    h.ctx.uid = geteuid();
    h.ctx.gid = getegid();
    h.ctx.landlock_abi = psb_landlock_abi();
    h.t_start = h.t_end = h.deadline = h.kill_at = h.next_output = -1;
    h.peak = -1;
    h.proxy = -1;
    h.got_sigchld = 1; /* init may be gone before the first poll */
    /* cgroup v2 before clone (init is born inside it); v1 after, overlapping init's mounts. */
    h.cg = psb_cgroups_setup_v2(cfg);
    /* Before init exists: nothing of the sandbox's is in it yet. */
    psb_output_base(cfg, &h.output_base);
    report_enforcement(&h);

    char err[512];
    if (cfg->user_uid && psb_user_prepare_trees(cfg, err, sizeof err) < 0) {
        setup_fail(err, errno, "user");
        psb_cgroups_kill_and_remove(h.cg);
        return 125;
    }
    if (open_channels(&h) < 0 || spawn_init(&h) < 0) {
        psb_cgroups_kill_and_remove(h.cg);
        return 125;
    }
    /* init waits for its maps before anything else (user.c). */
    if (cfg->user_uid && psb_user_map_init(cfg, h.init, h.ctx.sync_wr, err, sizeof err) < 0) {
        setup_fail(err, errno, "userns");
        h.setup_error = 1;
        kill(h.init, SIGKILL);
    }
    h.status_fd = h.ctx.status_rd;
    h.setup_fd = h.ctx.setup_sock_peer;
    h.parent_fd = cfg->parent_fd;
    h.sp[0] = (struct stdio_pipe){h.ctx.out_rd, 1};
    h.sp[1] = (struct stdio_pipe){h.ctx.err_rd, 2};
    hand_over(&h);
    event_loop(&h);
    return finish(&h);
}
