/* proctor-sandbox: shared declarations. Every symbol is prefixed psb_. */
#ifndef PSB_H
#define PSB_H

#include <stdint.h>
#include <stddef.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/stat.h>

/* Limits, report records and options shared with proctor (Swift). */
#include "protocol/psb_protocol.h"

enum psb_op_kind {
    PSB_OP_RO,
    PSB_OP_RO_TRY,
    PSB_OP_RW,
    PSB_OP_HIDE,
    PSB_OP_TMPFS,
    PSB_OP_DEV,
    PSB_OP_PROC,
    PSB_OP_SYMLINK,
    PSB_OP_HIDE_SOCKETS,
    PSB_OP_DEV_NODE, /* a host character device bound beneath a --dev */
};

struct psb_op {
    enum psb_op_kind kind;
    const char *src; /* host path (ro/rw), link text (symlink) */
    const char *dst; /* path inside the sandbox */
    uint64_t size;   /* tmpfs */
    int src_fd;      /* opened in init before the new root hides the host tree */
    int src_is_dir;
};

/* ALLOWLIST: loopback only, plus a listener on 127.0.0.1:proxy_port inside whose connections the
 * helper's proxy (proxy.c, outside the sandbox) checks against --allow-host and relays. */
enum psb_net { PSB_NET_NONE, PSB_NET_LOOPBACK, PSB_NET_HOST, PSB_NET_ALLOWLIST };

/* Everything parsed from the command line; immutable after parsing except fds. */
struct psb_config {
    struct psb_op ops[PSB_MAX_OPS];
    int nops;
    const char *chdir_to;
    char *env[PSB_MAX_ENV + 1];
    int nenv;
    enum psb_net net;
    long long timeout_ms; /* 0 = none */
    long long grace_ms;
    long long cpu_s;      /* -1 = unset */
    long long memory;     /* bytes, -1 = unset */
    long long pids;       /* -1 = unset */
    long long fsize;      /* -1 = unset */
    long long nofile;     /* -1 = unset */
    const char *output_dirs[PSB_MAX_OUTPUTS];
    int noutput;
    long long output_limit; /* -1 = unset; the smallest given, for all the directories together */
    long long output_entries; /* entry cap of the output walk */
    int output_growth;        /* the caps count what the directories gain from the launch on */
    int no_wake;              /* --no-wake-signals: no signal the kernel sends later may be SIGCONT */
    long long stdio_limit;  /* -1 = unset */
    int audit_writes;
    const char *filter_cache; /* directory for compiled seccomp filters, NULL = none */
    const char *writable[PSB_MAX_WRITABLE];
    int nwritable;
    int report_fd;  /* -1 = none */
    int parent_fd;  /* -1 = none */
    int pass_fds[PSB_MAX_PASS_FDS]; /* inherited by the command under the same numbers (session channel) */
    int npass_fds;
    /* --user: the command's host uid and gid (never 0), 0/0 = unset; --map-owner: the binds of
     * sources at or beneath these paths are idmapped (their owner appears as that user). */
    uid_t user_uid;
    gid_t user_gid;
    const char *map_owner[PSB_MAX_MAP_OWNER];
    int nmap_owner;
    /* --net allowlist: the proxy's port inside the sandbox, the admitted destinations (`name`,
     * `*.suffix`, either with `:port`), private addresses admitted, a test resolver file. */
    int proxy_port;
    const char *allow_hosts[PSB_MAX_ALLOW_HOSTS];
    int nallow_hosts;
    int allow_private;
    const char *proxy_hosts;
    char **argv;    /* command */
};

/* How a limit ended up enforced, decided by the helper before clone. */
struct psb_plan {
    int use_rlimit_as;    /* memory fallback */
    int use_rlimit_nproc; /* pids fallback */
};

/* The helper's go-ahead to init on the sync pipe, followed by `ninsns` BPF instructions. The
 * helper clones first and then, while init builds the mount tree, sets up cgroup v1 (the plan
 * says which rlimit fallbacks apply) and compiles the seccomp filter. */
struct psb_go {
    struct psb_plan plan;
    uint32_t ninsns;
    uint32_t njoin; /* cgroup v1 "tasks" fds waiting on the setup socket; init joins them itself */
};

/* Records on the status pipe (init -> helper) and the setup socket (command -> helper). */
/* PROXYFD: init's listener in the sandbox's network namespace, sent to the helper (--net allowlist). */
enum psb_rec_kind { PSB_REC_ERROR = 1, PSB_REC_EXIT = 2, PSB_REC_NOTIFYFD = 3, PSB_REC_WARN = 4, PSB_REC_PROXYFD = 5 };

struct psb_rec {
    int kind;
    int wstatus;     /* PSB_REC_EXIT */
    int err;         /* errno for PSB_REC_ERROR */
    char stage[16];
    char msg[400];
};

/* Shared state handed from the helper to init and the command child. */
struct psb_child_ctx {
    const struct psb_config *cfg;
    struct psb_plan plan;
    int sync_rd;        /* init waits for struct psb_go: cgroups joined, filter compiled */
    int sync_wr;        /* helper's end, closed in init */
    int status_wr;      /* init -> helper records */
    int status_rd;
    int setup_sock;     /* command -> helper (SOCK_SEQPACKET, CLOEXEC): errors, notify fd */
    int setup_sock_peer;/* helper's end */
    int out_wr, err_wr; /* stdio pipes when --stdio-limit, else -1 */
    int out_rd, err_rd;
    const void *bpf;    /* struct sock_fprog, built in the helper, received with psb_go */
    uid_t uid;
    gid_t gid;
    int landlock_abi;
};

/* report.c: one record per line on --report-fd, through PSB_RECORDS (protocol/psb_protocol.h). */
extern int psb_report_fd;
void psb_emit_fields(enum psb_record r, const struct psb_field *f, size_t n);
#define PSB_I(v) {.type = 'i', .i = (long long)(v)}
#define PSB_T(v) {.type = 't', .t = (v)}
/* psb_emit(DENY, PSB_I(ms), PSB_I(pid), PSB_T(name), PSB_T(path)): the field count is checked
 * against the table when it compiles, the field types when it runs (a mismatch aborts). */
#define psb_emit(id, ...)                                                                          \
    do {                                                                                           \
        const struct psb_field psb_fields_[] = {__VA_ARGS__};                                      \
        _Static_assert(sizeof psb_fields_ / sizeof psb_fields_[0] == PSB_NFIELDS_##id,             \
                       "psb_emit(" #id "): not the field count of PSB_RECORDS");                   \
        psb_emit_fields(PSB_RECORD_##id, psb_fields_, PSB_NFIELDS_##id);                           \
    } while (0)
/* The text-field records, their last field formatted. */
void psb_enforce(const char *limit, const char *mechanism, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void psb_warn(const char *limit, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void psb_limit(const char *kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* main.c */
extern char *psb_wipe_start; /* original argv+environ area, wiped in init */
extern size_t psb_wipe_len;

/* util.c */
int psb_write_all(int fd, const void *buf, size_t len);
int psb_send_fd(int sk, const void *data, size_t len, int fd);
int psb_write_file(const char *path, const char *data);
/* Closes every descriptor from 3 up but those in `keep` (ascending); async-signal-safe. */
void psb_close_fds_except(const int *keep, int nkeep);
long long psb_now_ms(void);
/* Blocks, and puts in *set, the signals the helper and init take synchronously (signalfd,
 * sigwaitinfo): SIGCHLD, the stop requests SIGTERM/SIGINT/SIGHUP, freeze/thaw SIGUSR1/SIGUSR2. */
void psb_block_signals(sigset_t *set);
/* Sends an error record from a child and exits 125 via the helper's reporting. */
void psb_child_fail(int fd, int is_sock, const char *stage, int err, const char *fmt, ...)
    __attribute__((format(printf, 5, 6), noreturn));

/* args.c: exits 125 (stage: args) on a bad command line. */
void psb_parse_args(int argc, char **argv, struct psb_config *c);

/* helper.c: everything after parsing; returns the launcher's exit status. */
int psb_helper_run(const struct psb_config *cfg);

/* init.c */
int psb_init_main(void *arg);

/* The new mount API (5.2, mount_setattr 5.12), for headers that predate it: mounts.c, user.c.
 * After the system's own headers, whose definitions win. */
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOVE_MOUNT_T_EMPTY_PATH
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
/* O_TMPFILE's own bit (O_TMPFILE also sets O_DIRECTORY): an open that makes a file. */
#define PSB_O_TMPFILE_BIT 020000000
#define PSB_MOUNT_ATTR_RDONLY 0x00000001
#define PSB_MOUNT_ATTR_NOSUID 0x00000002
#define PSB_MOUNT_ATTR_NODEV 0x00000004
#define PSB_MOUNT_ATTR_NOEXEC 0x00000008
#define PSB_MOUNT_ATTR_IDMAP 0x00100000
struct psb_mount_attr {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};

/* cache.c: the launcher's cache directory (--filter-cache). */
uint64_t psb_fnv1a(const void *p, size_t n);
/* The directory, created 0700 if missing; -1 when none is given or it is not safe to trust. */
int psb_cache_dir(const struct psb_config *cfg);
/* Whether an opened cache file may be believed: a regular file of ours that nobody else can write. */
struct stat;
int psb_cache_file_trusted(int fd, const struct stat *st);
/* Writes a then b as `name` in the directory, atomically (a temporary file, then rename). */
int psb_cache_replace(int dir, const char *name, const void *a, size_t alen, const void *b, size_t blen);
/* The socket scan's listings (NULL: no cache); _close writes what changed. */
struct psb_scan_cache;
struct psb_scan_cache *psb_scan_cache_open(const struct psb_config *cfg);
/* A directory's subdirectory names (each NUL-terminated, *nsub of them) and entry count, when the
 * cache holds the directory `fd` (`st` its fstat) at this very change time; else NULL. */
const char *psb_scan_cache_find(struct psb_scan_cache *c, int fd, const struct stat *st, uint32_t *nsub,
                                uint32_t *nentries);
/* Offers a directory whose walk found no socket in it (stored only when settled; see cache.c). */
void psb_scan_cache_note(struct psb_scan_cache *c, int fd, const struct stat *st, uint32_t nentries,
                         const char *names, size_t len, uint32_t nsub);
void psb_scan_cache_close(struct psb_scan_cache *c);

/* mounts.c */
int psb_open_sources(const struct psb_config *cfg, char *err, size_t errlen);
/* Bounds of a --hide-sockets walk; psb_build_root sets the flag when one was reached (init warns). */
#define PSB_SOCKET_SCAN_MAX 200000
#define PSB_SOCKET_SCAN_DEPTH 64  /* deeper directories are hidden whole */
#define PSB_SOCKET_HIDE_MAX 1024  /* more sockets than this: the sandbox is not started */
extern int psb_socket_scan_incomplete;
int psb_build_root(const struct psb_config *cfg, char *err, size_t errlen);
int psb_open_nofollow(int dirfd, const char *path, int flags, int create, int want_dir);
/* An O_PATH fd of a bind source: without following any symlink when the source is writable or
 * beneath a writable one (1 in *strict), else as the path resolves. */
int psb_open_source(const struct psb_config *cfg, int i, int *strict);

/* user.c: --user and --map-owner (proctor run as root). */
/* Helper, before clone: the idmapped detached trees of the --map-owner binds (init attaches them). */
int psb_user_prepare_trees(const struct psb_config *cfg, char *err, size_t errlen);
/* The prepared tree of mount option i, or -1. */
int psb_user_tree(int i);
/* Helper, after clone: init's uid and gid maps (root and the user), then one byte on `sync_wr`. */
int psb_user_map_init(const struct psb_config *cfg, pid_t init, int sync_wr, char *err, size_t errlen);
/* Command: no supplementary groups, then the user's gid and uid (needs CAP_SETGID/CAP_SETUID). */
void psb_user_switch(const struct psb_config *cfg, int sk);

/* seccomp.c */
int psb_seccomp_build(const struct psb_config *cfg, void **prog_out, char *err, size_t errlen);
int psb_seccomp_get(const struct psb_config *cfg, void **prog_out, char *err, size_t errlen);
int psb_seccomp_load(const void *prog, int want_listener);

/* landlock.c */
int psb_landlock_abi(void);
/* Returns 0 on success, -errno on failure; *applied set to 1 when a ruleset was enforced. */
int psb_landlock_apply(const struct psb_config *cfg, int abi, char *err, size_t errlen);

/* limits.c */
struct psb_cgroups;
struct psb_cgroups *psb_cgroups_setup_v2(const struct psb_config *cfg);
struct psb_cgroups *psb_cgroups_setup_v1(const struct psb_config *cfg, struct psb_plan *plan);
int psb_cgroups_v2_fd(struct psb_cgroups *cg);
void psb_cgroups_mark_joined(struct psb_cgroups *cg);
int psb_cgroups_procs(const struct psb_cgroups *cg, pid_t **out, size_t *n);
int psb_cgroups_attach(struct psb_cgroups *cg, pid_t pid, int sk, char *err, size_t errlen);
void psb_cgroups_finish(struct psb_cgroups *cg, long long *peak, int *oom, int *pids_hit);
void psb_cgroups_kill_and_remove(struct psb_cgroups *cg);
int psb_rlimits_apply(const struct psb_config *cfg, const struct psb_plan *plan, char *err, size_t errlen);
void psb_report_rlimits(const struct psb_config *cfg);

/* audit.c */
struct psb_audit;
struct psb_audit *psb_audit_new(const struct psb_config *cfg, int notify_fd);
void psb_audit_handle(struct psb_audit *a);
void psb_audit_finish(struct psb_audit *a);
int psb_audit_fd(const struct psb_audit *a);
int psb_path_beneath(const char *path, const char *base);
/* Why a node may not be passed with --dev-node (NULL: it may): only character devices, never
 * memory, ports, the kernel log, terminals or raw disks. */
const char *psb_dev_node_refusal(const struct stat *st);
void psb_path_normalize(char *path);

/* proxy.c: the allowlist proxy, a child of the helper outside the sandbox, accepting on `listen_fd`
 * (a socket of the sandbox's network namespace). Returns its pid, or -1. */
pid_t psb_proxy_start(const struct psb_config *cfg, int listen_fd);
/* Ends it and waits: its last records (open connections' byte counts) precede the result line. */
void psb_proxy_stop(pid_t proxy);

/* output.c */
/* What the --output-limit directories hold (bytes, entries): with --output-growth, the caps
 * count from this, taken before the sandbox starts. */
struct psb_output_base {
    long long bytes, entries;
};
void psb_output_base(const struct psb_config *cfg, struct psb_output_base *base);
/* Polls --output-limit: true when the outputs are over a cap (the limit line is reported). */
int psb_output_over(const struct psb_config *cfg, pid_t init, const struct psb_cgroups *cg,
                    const struct psb_output_base *base);

#endif
