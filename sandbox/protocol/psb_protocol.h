/*
 * The launcher protocol: what crosses between proctor (Swift) and proctor-sandbox (C), defined
 * once. The launcher emits its report through this table (sandbox/report.c) and parses its
 * options through it (sandbox/args.c); Swift imports this header as the CLauncherProtocol module
 * and parses report lines through the same table (Sources/ProctorSandbox/LauncherEvent.swift).
 * Plain C with no launcher internals, so both sides compile it.
 */
#ifndef PSB_PROTOCOL_H
#define PSB_PROTOCOL_H

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* The first report line says it; proctor refuses a launcher that speaks another version.
 * Bump it when a record or an option changes its name, its fields or their meaning. */
#define PSB_PROTOCOL_VERSION 5

#define PSB_MAX_OPS 256      /* mount options: --ro, --ro-try, --rw, --symlink, --hide, --hide-sockets, --tmpfs, --dev, --dev-node, --proc */
#define PSB_MAX_ENV 256      /* --setenv */
#define PSB_MAX_WRITABLE 512 /* --writable */
#define PSB_MAX_PASS_FDS 8   /* --pass-fd */
#define PSB_MAX_OUTPUTS 512  /* --output-limit: one per directory (an agent's writable places), capped together */
#define PSB_MAX_MAP_OWNER 16 /* --map-owner */
#define PSB_MAX_ALLOW_HOSTS 64 /* --allow-host */
#define PSB_REPORT_LINE_MAX 8192 /* a longer line is cut (a deny path is the child's choice) */

/*
 * Report records, one tab-separated line each: X(ID, NAME, TYPES, FIELDS). TYPES has one letter
 * per field after NAME: 'i' a signed decimal integer, 't' text (a tab or a newline in it is
 * written as \x09 or \x0a, so it never splits a line). FIELDS names them, space-separated.
 */
#define PSB_RECORDS(X)                                                                             \
    X(VERSION, "version", "i", "PROTOCOL")                                                         \
    X(ENFORCE, "enforce", "ttt", "LIMIT MECHANISM VALUE")                                          \
    X(WARN, "warn", "tt", "LIMIT MESSAGE")                                                         \
    X(DENY, "deny", "iitt", "UNIX_MS PID SYSCALL PATH")                                            \
    X(DROPPED, "dropped", "i", "COUNT")                                                            \
    X(LIMIT, "limit", "tt", "KIND DETAIL")                                                         \
    X(NET, "net", "itittii", "UNIX_MS HOST PORT DECISION DETAIL UP DOWN")                          \
    X(RESULT, "result", "iiiiii", "EXIT SIGNAL TIMEDOUT WALL_MS CPU_MS PEAK_MEM_BYTES")

#define PSB_X_RECORD_ID(id, name, types, fields) PSB_RECORD_##id,
enum psb_record { PSB_RECORDS(PSB_X_RECORD_ID) PSB_RECORD_COUNT };
#undef PSB_X_RECORD_ID

/* PSB_NFIELDS_<ID>: a compile-time count, checked by psb_emit at every call. */
#define PSB_X_RECORD_NFIELDS(id, name, types, fields) PSB_NFIELDS_##id = sizeof(types) - 1,
enum psb_record_nfields { PSB_RECORDS(PSB_X_RECORD_NFIELDS) };
#undef PSB_X_RECORD_NFIELDS

struct psb_record_spec {
    const char *name;
    const char *types;
    const char *fields;
};

static inline struct psb_record_spec psb_record_spec(enum psb_record r)
{
#define PSB_X_RECORD_SPEC(id, name, types, fields) {name, types, fields},
    static const struct psb_record_spec specs[] = {PSB_RECORDS(PSB_X_RECORD_SPEC)};
#undef PSB_X_RECORD_SPEC
    return specs[r];
}

/* One field of a record: type 'i' with i, or 't' with t. */
struct psb_field {
    char type;
    long long i;
    const char *t;
};

/*
 * The record's line, without the newline, in buf (NUL-terminated, cut at cap - 1 bytes).
 * Returns its length, or -1 when the fields do not match the table (a programmer error).
 * Only snprintf and plain stores: the launcher formats with it, and Swift's tests check what it
 * formats against the parser.
 */
static inline int psb_format_record(char *buf, size_t cap, enum psb_record r, const struct psb_field *f, size_t n)
{
    if (cap == 0 || (unsigned)r >= PSB_RECORD_COUNT)
        return -1;
    struct psb_record_spec spec = psb_record_spec(r);
    if (n != strlen(spec.types))
        return -1;
    int k = snprintf(buf, cap, "%s", spec.name);
    size_t o = (size_t)k < cap ? (size_t)k : cap - 1;
    for (size_t j = 0; j < n; j++) {
        if (f[j].type != spec.types[j] || (f[j].type == 't' && !f[j].t))
            return -1;
        if (o + 1 < cap)
            buf[o++] = '\t';
        if (f[j].type == 'i') {
            k = snprintf(buf + o, cap - o, "%lld", f[j].i);
            o += (size_t)k < cap - o ? (size_t)k : cap - o - 1;
            continue;
        }
        for (const char *s = f[j].t; *s && o + 1 < cap; s++) {
            if (*s == '\t' || *s == '\n') {
                if (o + 4 >= cap)
                    break;
                buf[o++] = '\\';
                buf[o++] = 'x';
                buf[o++] = '0';
                buf[o++] = *s == '\t' ? '9' : 'a';
            } else
                buf[o++] = *s;
        }
    }
    buf[o] = 0;
    return (int)o;
}

/*
 * Launcher options: X(ID, NAME, NARGS). Proctor builds them (Sources/ProctorSandbox/Plan.swift,
 * checked against this table by its tests); the launcher parses them in order.
 */
#define PSB_OPTIONS(X)                                                                             \
    X(RO, "--ro", 2)                                                                               \
    X(RO_TRY, "--ro-try", 2)                                                                       \
    X(RW, "--rw", 2)                                                                               \
    X(SYMLINK, "--symlink", 2)                                                                     \
    X(HIDE, "--hide", 1)                                                                           \
    X(HIDE_SOCKETS, "--hide-sockets", 1)                                                           \
    X(TMPFS, "--tmpfs", 2)                                                                         \
    X(DEV, "--dev", 1)                                                                             \
    X(DEV_NODE, "--dev-node", 2)                                                                   \
    X(PROC, "--proc", 1)                                                                           \
    X(CHDIR, "--chdir", 1)                                                                         \
    X(SETENV, "--setenv", 2)                                                                       \
    X(NET, "--net", 1)                                                                             \
    X(TIMEOUT, "--timeout", 1)                                                                     \
    X(GRACE, "--grace", 1)                                                                         \
    X(CPU, "--cpu", 1)                                                                             \
    X(MEMORY, "--memory", 1)                                                                       \
    X(PIDS, "--pids", 1)                                                                           \
    X(FSIZE, "--fsize", 1)                                                                         \
    X(NOFILE, "--nofile", 1)                                                                       \
    X(OUTPUT_LIMIT, "--output-limit", 2)                                                           \
    X(OUTPUT_ENTRIES, "--output-entries", 1)                                                       \
    X(OUTPUT_GROWTH, "--output-growth", 0)                                                         \
    X(NO_WAKE, "--no-wake-signals", 0)                                                             \
    X(STDIO_LIMIT, "--stdio-limit", 1)                                                             \
    X(FILTER_CACHE, "--filter-cache", 1)                                                           \
    X(AUDIT_WRITES, "--audit-writes", 0)                                                           \
    X(WRITABLE, "--writable", 1)                                                                   \
    X(REPORT_FD, "--report-fd", 1)                                                                 \
    X(PARENT_FD, "--parent-fd", 1)                                                                 \
    X(PASS_FD, "--pass-fd", 1)                                                                     \
    X(USER, "--user", 2)                                                                           \
    X(MAP_OWNER, "--map-owner", 1)                                                                 \
    X(PROXY_PORT, "--proxy-port", 1)                                                               \
    X(ALLOW_HOST, "--allow-host", 1)                                                               \
    X(ALLOW_PRIVATE, "--allow-private", 0)                                                         \
    X(PROXY_HOSTS, "--proxy-hosts", 1)

#define PSB_X_OPTION_ID(id, name, nargs) PSB_OPTION_##id,
enum psb_option { PSB_OPTIONS(PSB_X_OPTION_ID) PSB_OPTION_COUNT };
#undef PSB_X_OPTION_ID

struct psb_option_spec {
    const char *name;
    int nargs;
};

static inline struct psb_option_spec psb_option_spec(enum psb_option o)
{
#define PSB_X_OPTION_SPEC(id, name, nargs) {name, nargs},
    static const struct psb_option_spec specs[] = {PSB_OPTIONS(PSB_X_OPTION_SPEC)};
#undef PSB_X_OPTION_SPEC
    return specs[o];
}

/* The option named `name`, or PSB_OPTION_COUNT. */
static inline enum psb_option psb_option_find(const char *name)
{
    int o = 0;
    while (o < PSB_OPTION_COUNT && strcmp(psb_option_spec((enum psb_option)o).name, name))
        o++;
    return (enum psb_option)o;
}

#endif
