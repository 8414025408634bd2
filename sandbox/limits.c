/*
 * Budgets: rlimits for the command, cgroups (v2, else v1) for memory and pids, with rlimit
 * fallbacks that are always reported as such.
 *
 * Cgroups are created beneath the helper's own cgroup (so outer limits still apply):
 *   v2: <own>/psb-<pid>, when <own> can delegate memory/pids to children;
 *   v1: <mount>/<own>/proctor/psb-<pid> in the memory and pids hierarchies.
 * Stale psb-<pid> directories whose helper is gone are removed at start.
 */
#include "psb.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct psb_cgroups {
    int version;          /* 0 none, 1, 2 */
    char mem[PATH_MAX];   /* v1 memory dir or v2 dir */
    char pids[PATH_MAX];  /* v1 pids dir (v2: same as mem) */
    int has_mem, has_pids;
    int joined; /* init was cloned straight into the v2 cgroup */
};

static int read_file(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = 0;
    return (int)n;
}

static long long read_ll(const char *dir, const char *file)
{
    char p[PATH_MAX], b[64];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    if (read_file(p, b, sizeof b) < 0)
        return -1;
    if (!strncmp(b, "max", 3))
        return LLONG_MAX;
    return strtoll(b, NULL, 10);
}

/* "key N" lines (memory.events, pids.events, memory.oom_control). */
static long long read_key(const char *dir, const char *file, const char *key)
{
    char p[PATH_MAX], b[4096];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    if (read_file(p, b, sizeof b) < 0)
        return -1;
    size_t kl = strlen(key);
    for (char *l = b; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (!strncmp(l, key, kl) && l[kl] == ' ')
            return strtoll(l + kl + 1, NULL, 10);
    return -1;
}

static int write_ll(const char *dir, const char *file, long long v)
{
    char p[PATH_MAX], b[32];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    snprintf(b, sizeof b, "%lld", v);
    return psb_write_file(p, b);
}

/* The whole of a /proc file, read once per launcher (v2 and both v1 controllers ask). */
static const char *proc_text(const char *path, char **cache)
{
    if (*cache)
        return *cache;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t cap = 8192, len = 0;
    char *b = malloc(cap);
    for (ssize_t n; b; len += (size_t)n) {
        if (len + 1 >= cap) {
            char *nb = cap < (16u << 20) ? realloc(b, cap *= 2) : NULL;
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
        }
        n = read(fd, b + len, cap - len - 1);
        if (n <= 0) {
            if (n < 0) {
                free(b);
                b = NULL;
            }
            break;
        }
    }
    close(fd);
    if (b)
        b[len] = 0;
    return *cache = b;
}

static char *self_cgroup, *self_mounts;

/* Own cgroup path for a v1 controller ("memory") or v2 (NULL). */
static int own_cgroup(const char *controller, char *out, size_t len)
{
    const char *text = proc_text("/proc/self/cgroup", &self_cgroup);
    char *b = text ? strdup(text) : NULL;
    if (!b)
        return -1;
    int found = -1;
    for (char *l = strtok(b, "\n"); l && found < 0; l = strtok(NULL, "\n")) {
        char *c1 = strchr(l, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = 0;
        const char *ctrls = c1 + 1;
        int match = 0;
        if (!controller)
            match = !strcmp(l, "0") && !*ctrls;
        else {
            char tmp[256];
            snprintf(tmp, sizeof tmp, "%s", ctrls);
            for (char *s2, *t = strtok_r(tmp, ",", &s2); t; t = strtok_r(NULL, ",", &s2))
                if (!strcmp(t, controller))
                    match = 1;
        }
        if (match) {
            snprintf(out, len, "%s", c2 + 1);
            found = 0;
        }
    }
    free(b);
    return found;
}

/* Mount point of cgroup2 (controller NULL) or of the v1 hierarchy holding controller. */
static int mount_point(const char *controller, char *out, size_t len)
{
    const char *text = proc_text("/proc/self/mounts", &self_mounts);
    if (!text)
        return -1;
    char dev[256], dir[PATH_MAX], type[64], opts[1024];
    int found = -1;
    for (const char *l = text; *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : "") {
        if (sscanf(l, "%255s %4095s %63s %1023s", dev, dir, type, opts) != 4)
            continue;
        if (!controller && !strcmp(type, "cgroup2")) {
            snprintf(out, len, "%s", dir);
            found = 0;
            break;
        }
        if (controller && !strcmp(type, "cgroup")) {
            for (char *s2, *t = strtok_r(opts, ",", &s2); t; t = strtok_r(NULL, ",", &s2))
                if (!strcmp(t, controller)) {
                    snprintf(out, len, "%s", dir);
                    found = 0;
                }
            if (!found)
                break;
        }
    }
    return found;
}

static int has_word(const char *list, const char *w)
{
    size_t n = strlen(w);
    for (const char *p = list; (p = strstr(p, w)); p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == 0 || p[n] == ' ' || p[n] == '\n'))
            return 1;
    return 0;
}

static void remove_stale(const char *parent)
{
    DIR *d = opendir(parent);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        int pid;
        if (sscanf(de->d_name, "psb-%d", &pid) != 1 || pid <= 0)
            continue;
        if (kill(pid, 0) == 0 || errno == EPERM)
            continue; /* its helper is alive (or pid reused): leave it */
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", parent, de->d_name);
        (void)rmdir(p); /* fails (EBUSY) while processes remain: harmless */
    }
    closedir(d);
}

/* Makes `dir` able to hold cgroups with the controllers we need (creating it when asked). */
static int v2_parent(const char *dir, int need_mem, int need_pids, int create)
{
    char p[PATH_MAX + 32], b[512];
    if (create && mkdir(dir, 0755) < 0 && errno != EEXIST)
        return -1;
    snprintf(p, sizeof p, "%s/cgroup.controllers", dir);
    if (read_file(p, b, sizeof b) < 0)
        return -1;
    if ((need_mem && !has_word(b, "memory")) || (need_pids && !has_word(b, "pids")))
        return -1;
    snprintf(p, sizeof p, "%s/cgroup.subtree_control", dir);
    if (read_file(p, b, sizeof b) < 0)
        return -1;
    if ((need_mem && !has_word(b, "memory")) || (need_pids && !has_word(b, "pids"))) {
        /* Fails with EBUSY when the cgroup holds processes ("no internal processes"). */
        char req[64];
        snprintf(req, sizeof req, "%s%s", need_mem ? "+memory " : "", need_pids ? "+pids" : "");
        if (psb_write_file(p, req) < 0)
            return -1;
    }
    return 0;
}

static int setup_v2(const struct psb_config *cfg, struct psb_cgroups *cg)
{
    char mnt[PATH_MAX], own[PATH_MAX], dir[PATH_MAX];
    if (mount_point(NULL, mnt, sizeof mnt) < 0 || own_cgroup(NULL, own, sizeof own) < 0)
        return -1;
    int need_mem = cfg->memory >= 0, need_pids = cfg->pids >= 0;
    /* Our own cgroup where it is delegated and free of processes (a systemd user service's
     * subtree); else a `proctor` cgroup below the root of the hierarchy, which root may create
     * on a v2-only host where our own cgroup (a login session's scope) holds processes. */
    snprintf(dir, sizeof dir, "%s%s", mnt, strcmp(own, "/") ? own : "");
    if (v2_parent(dir, need_mem, need_pids, 0) < 0) {
        /* Only where the root hands the controllers down already: nothing is created in vain
         * (on a v1 host the unified hierarchy has none). */
        char p[PATH_MAX + 32], b[512];
        snprintf(p, sizeof p, "%s/cgroup.subtree_control", mnt);
        if (read_file(p, b, sizeof b) < 0 || (need_mem && !has_word(b, "memory")) ||
            (need_pids && !has_word(b, "pids")))
            return -1;
        snprintf(dir, sizeof dir, "%s/proctor", mnt);
        if (v2_parent(dir, need_mem, need_pids, 1) < 0)
            return -1;
    }
    remove_stale(dir);
    snprintf(cg->mem, sizeof cg->mem, "%s/psb-%d", dir, (int)getpid());
    if (mkdir(cg->mem, 0755) < 0)
        return -1;
    snprintf(cg->pids, sizeof cg->pids, "%s", cg->mem);
    if (need_mem) {
        if (write_ll(cg->mem, "memory.max", cfg->memory) < 0)
            goto fail;
        char sp[PATH_MAX + 32];
        snprintf(sp, sizeof sp, "%s/memory.swap.max", cg->mem);
        if (access(sp, F_OK) == 0)
            (void)psb_write_file(sp, "0");
        cg->has_mem = 1;
    }
    if (need_pids) {
        if (write_ll(cg->pids, "pids.max", cfg->pids) < 0)
            goto fail;
        cg->has_pids = 1;
    }
    cg->version = 2;
    return 0;
fail:
    rmdir(cg->mem);
    cg->has_mem = cg->has_pids = 0;
    return -1;
}

static int setup_v1_one(const char *controller, char *out, size_t len)
{
    char mnt[PATH_MAX], own[PATH_MAX], parent[PATH_MAX + PATH_MAX];
    if (mount_point(controller, mnt, sizeof mnt) < 0 || own_cgroup(controller, own, sizeof own) < 0)
        return -1;
    snprintf(parent, sizeof parent, "%s%s/proctor", mnt, strcmp(own, "/") ? own : "");
    if (mkdir(parent, 0755) < 0 && errno != EEXIST)
        return -1;
    remove_stale(parent);
    snprintf(out, len, "%s/psb-%d", parent, (int)getpid());
    if (mkdir(out, 0755) < 0)
        return -1;
    return 0;
}

static struct psb_cgroups cgroups;

/* Before clone: with cgroup v2, init is born inside its cgroup (CLONE_INTO_CGROUP). NULL when
 * v2 is not usable here; psb_cgroups_setup_v1 then runs after clone. */
struct psb_cgroups *psb_cgroups_setup_v2(const struct psb_config *cfg)
{
    struct psb_cgroups *cg = &cgroups;
    memset(cg, 0, sizeof *cg);
    if (cfg->memory < 0 && cfg->pids < 0)
        return cg;
    if (setup_v2(cfg, cg) < 0)
        return NULL;
    if (cg->has_mem)
        psb_enforce("memory", "cgroup-v2", "%lld", cfg->memory);
    if (cg->has_pids)
        psb_enforce("pids", "cgroup-v2", "%lld", cfg->pids);
    return cg;
}

/* cgroup v1 where v2 is not usable, else rlimits, with a warning for each limit that falls back. */
struct psb_cgroups *psb_cgroups_setup_v1(const struct psb_config *cfg, struct psb_plan *plan)
{
    struct psb_cgroups *cg = &cgroups;
    memset(cg, 0, sizeof *cg);
    const char *why = "no cgroup v2 delegation";
    if (cfg->memory >= 0) {
        if (setup_v1_one("memory", cg->mem, sizeof cg->mem) == 0) {
            if (write_ll(cg->mem, "memory.limit_in_bytes", cfg->memory) == 0) {
                char sp[PATH_MAX + 32];
                snprintf(sp, sizeof sp, "%s/memory.memsw.limit_in_bytes", cg->mem);
                if (access(sp, F_OK) == 0)
                    (void)write_ll(cg->mem, "memory.memsw.limit_in_bytes", cfg->memory);
                cg->has_mem = 1;
                cg->version = 1;
                psb_enforce("memory", "cgroup-v1", "%lld", cfg->memory);
            } else {
                rmdir(cg->mem);
            }
        } else {
            why = errno == EACCES || errno == EROFS || errno == EPERM ? "cgroup not writable" : "no usable cgroup";
        }
        if (!cg->has_mem) {
            plan->use_rlimit_as = 1;
            psb_enforce("memory", "rlimit-as", "%lld", cfg->memory);
            psb_warn("memory", "%s; RLIMIT_AS only: virtual memory, per process (N processes may hold N times it), "
                               "not the private /tmp or /dev/shm", why);
        }
    }
    if (cfg->pids >= 0) {
        if (setup_v1_one("pids", cg->pids, sizeof cg->pids) == 0) {
            if (write_ll(cg->pids, "pids.max", cfg->pids) == 0) {
                cg->has_pids = 1;
                cg->version = 1;
                psb_enforce("pids", "cgroup-v1", "%lld", cfg->pids);
            } else {
                rmdir(cg->pids);
            }
        } else {
            why = errno == EACCES || errno == EROFS || errno == EPERM ? "cgroup not writable" : "no usable cgroup";
        }
        if (!cg->has_pids) {
            plan->use_rlimit_nproc = 1;
            psb_enforce("pids", "rlimit-nproc", "%lld", cfg->pids);
            psb_warn("pids", "%s; RLIMIT_NPROC only (per uid in the sandbox's user namespace)", why);
        }
    }
    return cg;
}

/* Puts init into the cgroups. v1: init joins itself, through "tasks" files opened here and sent
 * on `sk` (returns how many; init writes "0" to each): moving another task, by pid, takes
 * cgroup_threadgroup_rwsem for writing, which waits for an RCU grace period (0.1-15 ms here),
 * while a single thread moving itself needs no such lock. init is single-threaded, so its one
 * thread is the process. v2 without CLONE_INTO_CGROUP: by pid (returns 0). */
int psb_cgroups_attach(struct psb_cgroups *cg, pid_t pid, int sk, char *err, size_t errlen)
{
    if (cg->joined)
        return 0;
    const char *dirs[2] = {cg->has_mem ? cg->mem : NULL,
                           cg->has_pids && (cg->version == 1 || !cg->has_mem) ? cg->pids : NULL};
    int sent = 0;
    for (int i = 0; i < 2; i++) {
        if (!dirs[i])
            continue;
        if (cg->version == 2) {
            if (write_ll(dirs[i], "cgroup.procs", pid) < 0)
                return snprintf(err, errlen, "join %s", dirs[i]), -1;
            continue;
        }
        char p[PATH_MAX + 32];
        snprintf(p, sizeof p, "%s/tasks", dirs[i]);
        int fd = open(p, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || psb_send_fd(sk, "j", 1, fd) < 0) {
            int e = errno;
            if (fd >= 0)
                close(fd);
            errno = e;
            return snprintf(err, errlen, "join %s", dirs[i]), -1;
        }
        close(fd);
        sent++;
    }
    return sent;
}

int psb_cgroups_v2_fd(struct psb_cgroups *cg)
{
    if (!cg || cg->version != 2 || !(cg->has_mem || cg->has_pids))
        return -1;
    return open(cg->mem, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

void psb_cgroups_mark_joined(struct psb_cgroups *cg) { cg->joined = 1; }

/* The processes in the sandbox's cgroup (host pids, a malloc'd array), or -1 without one. */
int psb_cgroups_procs(const struct psb_cgroups *cg, pid_t **out, size_t *n)
{
    if (!cg || !(cg->has_mem || cg->has_pids))
        return -1;
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/cgroup.procs", cg->has_mem ? cg->mem : cg->pids);
    FILE *f = fopen(p, "re");
    if (!f)
        return -1;
    size_t cap = 64;
    *n = 0;
    *out = malloc(cap * sizeof **out);
    int pid;
    while (*out && fscanf(f, "%d", &pid) == 1) {
        if (*n == cap) {
            pid_t *a = realloc(*out, (cap *= 2) * sizeof **out);
            if (!a) {
                free(*out);
                *out = NULL;
                break;
            }
            *out = a;
        }
        (*out)[(*n)++] = (pid_t)pid;
    }
    fclose(f);
    return *out ? 0 : -1;
}

void psb_cgroups_finish(struct psb_cgroups *cg, long long *peak, int *oom, int *pids_hit)
{
    *peak = -1;
    *oom = 0;
    *pids_hit = 0;
    if (!cg)
        return;
    if (cg->has_mem) {
        if (cg->version == 2) {
            *peak = read_ll(cg->mem, "memory.peak");
            long long k = read_key(cg->mem, "memory.events", "oom_kill");
            *oom = k > 0 ? (int)k : 0;
        } else {
            *peak = read_ll(cg->mem, "memory.max_usage_in_bytes");
            long long k = read_key(cg->mem, "memory.oom_control", "oom_kill");
            if (k < 0) /* kernels before 4.13: hitting the limit is the best signal there is */
                k = read_ll(cg->mem, "memory.failcnt") > 0;
            *oom = k > 0 ? (int)k : 0;
        }
    }
    if (cg->has_pids) {
        long long k = read_key(cg->pids, "pids.events", "max");
        *pids_hit = k > 0 ? (int)k : 0;
    }
}

static void kill_and_rmdir(const char *dir)
{
    char p[PATH_MAX + 32], b[4096];
    snprintf(p, sizeof p, "%s/cgroup.procs", dir);
    if (rmdir(dir) == 0 || errno == ENOENT)
        return; /* the usual case: the PID namespace is gone, so is everything in the cgroup */
    for (int tries = 0; tries < 200; tries++) {
        if (read_file(p, b, sizeof b) > 0)
            for (char *l = strtok(b, "\n"); l; l = strtok(NULL, "\n"))
                kill((pid_t)atoi(l), SIGKILL);
        if (rmdir(dir) == 0 || errno == ENOENT)
            return;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    psb_warn("cgroup", "could not remove %s", dir);
}

void psb_cgroups_kill_and_remove(struct psb_cgroups *cg)
{
    if (!cg)
        return;
    if (cg->has_mem)
        kill_and_rmdir(cg->mem);
    if (cg->has_pids && strcmp(cg->pids, cg->mem))
        kill_and_rmdir(cg->pids);
    cg->has_mem = cg->has_pids = 0;
}

void psb_report_rlimits(const struct psb_config *cfg)
{
    if (cfg->cpu_s >= 0)
        psb_enforce("cpu", "rlimit-cpu", "%lld", cfg->cpu_s);
    if (cfg->fsize >= 0)
        psb_enforce("fsize", "rlimit-fsize", "%lld", cfg->fsize);
    if (cfg->nofile >= 0)
        psb_enforce("nofile", "rlimit-nofile", "%lld", cfg->nofile);
}

/* Limits only ever go down: a request above the inherited hard limit is clamped to it. */
static int set1(int res, long long v, const char *name, char *err, size_t errlen)
{
    struct rlimit cur;
    if (getrlimit(res, &cur) == 0 && cur.rlim_max != RLIM_INFINITY && (rlim_t)v > cur.rlim_max)
        v = (long long)cur.rlim_max;
    struct rlimit rl = {(rlim_t)v, (rlim_t)v};
    /* RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL one second later. */
    if (res == RLIMIT_CPU && (cur.rlim_max == RLIM_INFINITY || (rlim_t)v < cur.rlim_max))
        rl.rlim_max = (rlim_t)v + 1;
    if (setrlimit(res, &rl) < 0) {
        snprintf(err, errlen, "setrlimit %s %lld", name, v);
        return -1;
    }
    return 0;
}

int psb_rlimits_apply(const struct psb_config *cfg, const struct psb_plan *plan, char *err, size_t errlen)
{
    /* No core dumps: they would land in the writable place and leak memory contents. */
    if (set1(RLIMIT_CORE, 0, "RLIMIT_CORE", err, errlen) < 0)
        return -1;
    if (cfg->cpu_s >= 0 && set1(RLIMIT_CPU, cfg->cpu_s, "RLIMIT_CPU", err, errlen) < 0)
        return -1;
    if (cfg->fsize >= 0 && set1(RLIMIT_FSIZE, cfg->fsize, "RLIMIT_FSIZE", err, errlen) < 0)
        return -1;
    if (cfg->nofile >= 0 && set1(RLIMIT_NOFILE, cfg->nofile, "RLIMIT_NOFILE", err, errlen) < 0)
        return -1;
    if (plan->use_rlimit_as && set1(RLIMIT_AS, cfg->memory, "RLIMIT_AS", err, errlen) < 0)
        return -1;
    if (plan->use_rlimit_nproc && set1(RLIMIT_NPROC, cfg->pids, "RLIMIT_NPROC", err, errlen) < 0)
        return -1;
    return 0;
}
