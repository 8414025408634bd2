/*
 * proctor-sandbox: the command line, parsed through PSB_OPTIONS (protocol/psb_protocol.h), which
 * gives each option's name and argument count. Any error exits 125 with stage "args".
 */
#include "psb.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

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

static struct psb_op *new_op(struct psb_config *c, enum psb_op_kind kind)
{
    if (c->nops >= PSB_MAX_OPS)
        die_args("too many mount options");
    struct psb_op *o = &c->ops[c->nops++];
    o->kind = kind;
    o->src_fd = -1;
    return o;
}

/* A mount option whose only argument is its destination. */
static void add_target_op(struct psb_config *c, enum psb_op_kind kind, const char *opt, const char *dst)
{
    new_op(c, kind)->dst = check_path(opt, dst);
}

/* --ro, --ro-try, --rw: SRC DST. */
static void add_bind_op(struct psb_config *c, enum psb_op_kind kind, const char *opt, char **v)
{
    struct psb_op *o = new_op(c, kind);
    o->src = check_path(opt, v[0]);
    o->dst = check_path(opt, v[1]);
}

/* One option `a` with its arguments `v` (as many as the table says). */
static void apply_option(struct psb_config *c, enum psb_option opt, const char *a, char **v)
{
    switch (opt) {
    case PSB_OPTION_RO: add_bind_op(c, PSB_OP_RO, a, v); break;
    case PSB_OPTION_RO_TRY: add_bind_op(c, PSB_OP_RO_TRY, a, v); break;
    case PSB_OPTION_RW: add_bind_op(c, PSB_OP_RW, a, v); break;
    case PSB_OPTION_HIDE: add_target_op(c, PSB_OP_HIDE, a, v[0]); break;
    case PSB_OPTION_HIDE_SOCKETS: add_target_op(c, PSB_OP_HIDE_SOCKETS, a, v[0]); break;
    case PSB_OPTION_DEV: add_target_op(c, PSB_OP_DEV, a, v[0]); break;
    case PSB_OPTION_PROC: add_target_op(c, PSB_OP_PROC, a, v[0]); break;
    case PSB_OPTION_DEV_NODE: {
        /* SRC DST: DST must lie strictly beneath a --dev destination (checked when mounting). */
        struct psb_op *o = new_op(c, PSB_OP_DEV_NODE);
        o->src = check_path(a, v[0]);
        o->dst = check_path(a, v[1]);
        break;
    }
    case PSB_OPTION_SYMLINK: {
        struct psb_op *o = new_op(c, PSB_OP_SYMLINK);
        o->src = v[0];
        if (!*o->src || strlen(o->src) >= PATH_MAX)
            die_args("--symlink: bad link text");
        o->dst = check_path(a, v[1]);
        break;
    }
    case PSB_OPTION_TMPFS: {
        struct psb_op *o = new_op(c, PSB_OP_TMPFS);
        o->dst = check_path(a, v[0]);
        o->size = (uint64_t)parse_num(a, v[1]);
        break;
    }
    case PSB_OPTION_CHDIR: c->chdir_to = check_path(a, v[0]); break;
    case PSB_OPTION_SETENV: {
        if (!*v[0] || strchr(v[0], '='))
            die_args("--setenv %s: bad name", v[0]);
        if (c->nenv >= PSB_MAX_ENV)
            die_args("too many --setenv");
        char *e;
        if (asprintf(&e, "%s=%s", v[0], v[1]) < 0)
            die_args("out of memory");
        c->env[c->nenv++] = e;
        break;
    }
    case PSB_OPTION_NET:
        if (!strcmp(v[0], "none"))
            c->net = PSB_NET_NONE;
        else if (!strcmp(v[0], "loopback"))
            c->net = PSB_NET_LOOPBACK;
        else if (!strcmp(v[0], "host"))
            c->net = PSB_NET_HOST;
        else if (!strcmp(v[0], "allowlist"))
            c->net = PSB_NET_ALLOWLIST;
        else
            die_args("--net %s: expected none, loopback, allowlist or host", v[0]);
        break;
    case PSB_OPTION_TIMEOUT: c->timeout_ms = parse_num(a, v[0]); break;
    case PSB_OPTION_GRACE: c->grace_ms = parse_num(a, v[0]); break;
    case PSB_OPTION_CPU: c->cpu_s = parse_num(a, v[0]); break;
    case PSB_OPTION_MEMORY: c->memory = parse_num(a, v[0]); break;
    case PSB_OPTION_PIDS: c->pids = parse_num(a, v[0]); break;
    case PSB_OPTION_FSIZE: c->fsize = parse_num(a, v[0]); break;
    case PSB_OPTION_NOFILE: c->nofile = parse_num(a, v[0]); break;
    case PSB_OPTION_OUTPUT_LIMIT: {
        /* One per outputs directory, all counted together: a later option replaced the earlier one,
         * and every directory but the last was written without a cap. */
        if (c->noutput >= PSB_MAX_OUTPUTS)
            die_args("too many --output-limit");
        c->output_dirs[c->noutput++] = check_path(a, v[0]);
        long long limit = parse_num(a, v[1]);
        if (c->output_limit < 0 || limit < c->output_limit)
            c->output_limit = limit;
        break;
    }
    case PSB_OPTION_OUTPUT_ENTRIES: c->output_entries = parse_num(a, v[0]); break;
    case PSB_OPTION_OUTPUT_GROWTH: c->output_growth = 1; break;
    case PSB_OPTION_NO_WAKE: c->no_wake = 1; break;
    case PSB_OPTION_STDIO_LIMIT: c->stdio_limit = parse_num(a, v[0]); break;
    case PSB_OPTION_FILTER_CACHE: c->filter_cache = check_path(a, v[0]); break;
    case PSB_OPTION_AUDIT_WRITES: c->audit_writes = 1; break;
    case PSB_OPTION_WRITABLE:
        if (c->nwritable >= PSB_MAX_WRITABLE)
            die_args("too many --writable");
        c->writable[c->nwritable++] = check_path(a, v[0]);
        break;
    case PSB_OPTION_REPORT_FD: c->report_fd = parse_fd(a, v[0]); break;
    case PSB_OPTION_PARENT_FD: c->parent_fd = parse_fd(a, v[0]); break;
    case PSB_OPTION_PASS_FD:
        if (c->npass_fds >= PSB_MAX_PASS_FDS)
            die_args("too many --pass-fd");
        c->pass_fds[c->npass_fds++] = parse_fd(a, v[0]);
        break;
    case PSB_OPTION_USER: {
        long long uid = parse_num(a, v[0]), gid = parse_num(a, v[1]);
        /* Root (or its group) would own what only root may read: the point of --user. */
        if (uid <= 0 || gid <= 0 || uid >= 0xffffffffLL || gid >= 0xffffffffLL)
            die_args("--user %s %s: expected a uid and a gid other than 0", v[0], v[1]);
        c->user_uid = (uid_t)uid;
        c->user_gid = (gid_t)gid;
        break;
    }
    case PSB_OPTION_MAP_OWNER:
        if (c->nmap_owner >= PSB_MAX_MAP_OWNER)
            die_args("too many --map-owner");
        c->map_owner[c->nmap_owner++] = check_path(a, v[0]);
        break;
    case PSB_OPTION_PROXY_PORT: {
        long long port = parse_num(a, v[0]);
        if (port < 1 || port > 65535)
            die_args("--proxy-port %s: expected a port from 1 to 65535", v[0]);
        c->proxy_port = (int)port;
        break;
    }
    case PSB_OPTION_ALLOW_HOST:
        if (c->nallow_hosts >= PSB_MAX_ALLOW_HOSTS)
            die_args("too many --allow-host");
        if (!v[0][0] || strlen(v[0]) > 260)
            die_args("--allow-host: expected a host name or address, optionally with :port");
        c->allow_hosts[c->nallow_hosts++] = v[0];
        break;
    case PSB_OPTION_ALLOW_PRIVATE: c->allow_private = 1; break;
    case PSB_OPTION_PROXY_HOSTS: c->proxy_hosts = check_path(a, v[0]); break;
    case PSB_OPTION_COUNT: die_args("unknown option %s", a);
    }
}

void psb_parse_args(int argc, char **argv, struct psb_config *c)
{
    memset(c, 0, sizeof *c);
    c->grace_ms = 500;
    c->cpu_s = c->memory = c->pids = c->fsize = c->nofile = -1;
    c->output_limit = c->stdio_limit = -1;
    c->output_entries = 100000;
    c->report_fd = c->parent_fd = -1;
    c->net = PSB_NET_NONE;
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            i++;
            break;
        }
        enum psb_option opt = psb_option_find(a);
        int nargs = opt == PSB_OPTION_COUNT ? 0 : psb_option_spec(opt).nargs;
        if (i + nargs >= argc)
            die_args("%s: needs %d argument(s)", a, nargs);
        apply_option(c, opt, a, &argv[i + 1]);
        i += nargs;
    }
    if (i >= argc)
        die_args("missing -- COMMAND");
    c->argv = &argv[i];
    c->env[c->nenv] = NULL;
    if (c->report_fd >= 0 && c->report_fd <= 2)
        die_args("--report-fd must not be 0, 1 or 2");
    if (c->parent_fd >= 0 && c->parent_fd <= 2)
        die_args("--parent-fd must not be 0, 1 or 2");
    for (int k = 0; k < c->npass_fds; k++) {
        int fd = c->pass_fds[k];
        if (fd <= 2 || fd == c->report_fd || fd == c->parent_fd)
            die_args("--pass-fd must not be 0, 1, 2, the report or the parent descriptor");
    }
    if (c->nmap_owner > 0 && !c->user_uid)
        die_args("--map-owner needs --user");
    if (c->user_uid && geteuid() != 0)
        die_args("--user: only root can run the command as another user");
    if ((c->net == PSB_NET_ALLOWLIST) != (c->proxy_port > 0))
        die_args("--net allowlist and --proxy-port go together");
    if (c->net != PSB_NET_ALLOWLIST && (c->nallow_hosts || c->allow_private || c->proxy_hosts))
        die_args("--allow-host, --allow-private and --proxy-hosts need --net allowlist");
    if (c->pids == 0 || c->nofile == 0)
        die_args("--pids and --nofile must be positive");
}
