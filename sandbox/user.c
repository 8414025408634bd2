/*
 * --user UID GID and --map-owner PATH: proctor run as root runs the command as an unprivileged
 * host user, so the kernel's own permission checks deny what no hide list names (a root-only
 * file under a mounted system path: issue 10). Only root passes them (args.c).
 *
 * - init stays root inside its user namespace (it builds the mount tree); the helper writes its
 *   maps, "0 0 1" plus "UID UID 1" (and the same for gids): a map of two ids needs CAP_SETUID in
 *   the parent namespace, which init does not have there.
 * - The command switches to UID:GID with no supplementary groups (psb_user_switch), between the
 *   capability bounding set drop and the clearing of its capabilities (init.c).
 * - The binds of sources at or beneath a --map-owner path (the workspace, the agent's home) are
 *   idmapped: the owner of each source appears as UID:GID, and what the command creates there is
 *   stored as that owner. So the command writes the outputs and the editable files, and the
 *   user's files never change owner (nothing to restore after a crash). An idmapped mount needs
 *   CAP_SYS_ADMIN over the filesystem (init_user_ns), so the helper clones these trees before
 *   init exists and init attaches them.
 */
#include "psb.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>


#define ERR(...) (snprintf(err, errlen, __VA_ARGS__), -1)

static int trees[PSB_MAX_OPS];
static int trees_ready;

int psb_user_tree(int i)
{
    return trees_ready ? trees[i] : -1;
}

/* A user namespace whose only ids are the owner's, mapped to the user's: the idmapping of the
 * binds of sources `uid`:`gid` owns. A child enters a new user namespace and waits on a pipe
 * while the helper writes its maps and opens it. */
static int owner_userns(const struct psb_config *cfg, uid_t uid, gid_t gid, char *err, size_t errlen)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return ERR("pipe for the idmapping");
    pid_t pid = (pid_t)syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, 0UL);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        close(p[1]); /* EOF once the helper closes its end */
        char c;
        (void)read(p[0], &c, 1);
        _exit(0);
    }
    close(p[0]);
    if (pid < 0) {
        close(p[1]);
        return ERR("clone a user namespace for the idmapping");
    }
    char path[64], map[64];
    int fd = -1;
    snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
    snprintf(map, sizeof map, "%u %u 1\n", (unsigned)uid, (unsigned)cfg->user_uid);
    if (psb_write_file(path, map) == 0) {
        snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
        snprintf(map, sizeof map, "%u %u 1\n", (unsigned)gid, (unsigned)cfg->user_gid);
        if (psb_write_file(path, map) == 0) {
            snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
            fd = open(path, O_RDONLY | O_CLOEXEC);
        }
    }
    int e = errno;
    close(p[1]);
    (void)waitpid(pid, NULL, 0);
    errno = e;
    return fd >= 0 ? fd : ERR("write the idmapping %u:%u -> %u:%u", (unsigned)uid, (unsigned)gid,
                              (unsigned)cfg->user_uid, (unsigned)cfg->user_gid);
}

static int mapped(const struct psb_config *cfg, const char *src)
{
    for (int k = 0; k < cfg->nmap_owner; k++)
        if (psb_path_beneath(src, cfg->map_owner[k]))
            return 1;
    return 0;
}

int psb_user_prepare_trees(const struct psb_config *cfg, char *err, size_t errlen)
{
    /* One user namespace per owner (usually one: the workspace's). */
    struct { uid_t uid; gid_t gid; int fd; } ns[PSB_MAX_MAP_OWNER];
    int nns = 0, rc = 0;
    for (int i = 0; i < PSB_MAX_OPS; i++)
        trees[i] = -1;
    trees_ready = 1;
    for (int i = 0; i < cfg->nops && rc == 0; i++) {
        const struct psb_op *o = &cfg->ops[i];
        if ((o->kind != PSB_OP_RO && o->kind != PSB_OP_RO_TRY && o->kind != PSB_OP_RW) || !mapped(cfg, o->src))
            continue;
        int strict;
        int src = psb_open_source(cfg, i, &strict);
        struct stat st;
        if (src < 0) {
            if (o->kind == PSB_OP_RO_TRY && (errno == ENOENT || errno == ENOTDIR))
                continue;
            rc = ERR("open %s %s%s", o->kind == PSB_OP_RW ? "--rw" : "--ro", o->src, strict ? " (no symlinks allowed)" : "");
            break;
        }
        if (fstat(src, &st) < 0) {
            rc = ERR("stat %s", o->src);
            close(src);
            break;
        }
        int k = 0;
        while (k < nns && (ns[k].uid != st.st_uid || ns[k].gid != st.st_gid))
            k++;
        if (k == nns) {
            if (nns == PSB_MAX_MAP_OWNER) {
                errno = E2BIG;
                rc = ERR("--map-owner: bind sources of more than %d owners", PSB_MAX_MAP_OWNER);
                close(src);
                break;
            }
            ns[k].uid = st.st_uid;
            ns[k].gid = st.st_gid;
            if ((ns[k].fd = owner_userns(cfg, st.st_uid, st.st_gid, err, errlen)) < 0) {
                rc = -1;
                close(src);
                break;
            }
            nns++;
        }
        /* Cloned detached, made private (a shared host mount would carry init's hides back to
         * the host), nosuid, nodev, read-only unless --rw, idmapped, all before anyone sees it. */
        int t = (int)syscall(SYS_open_tree, src, "", OPEN_TREE_CLONE | O_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
        close(src);
        if (t < 0) {
            rc = ERR("open_tree %s (idmapped binds need Linux 5.12)", o->src);
            break;
        }
        struct psb_mount_attr ma = {PSB_MOUNT_ATTR_IDMAP | PSB_MOUNT_ATTR_NOSUID | PSB_MOUNT_ATTR_NODEV |
                    (o->kind == PSB_OP_RW ? 0 : PSB_MOUNT_ATTR_RDONLY),
                0, MS_PRIVATE, (uint64_t)ns[k].fd};
        if (syscall(SYS_mount_setattr, t, "", AT_EMPTY_PATH | AT_RECURSIVE, &ma, sizeof ma) < 0) {
            rc = ERR("idmapped bind of %s (its filesystem, or one mounted beneath it, may not support idmapped mounts)",
                     o->src);
            close(t);
            break;
        }
        trees[i] = t;
    }
    for (int k = 0; k < nns; k++)
        close(ns[k].fd);
    return rc;
}

int psb_user_map_init(const struct psb_config *cfg, pid_t init, int sync_wr, char *err, size_t errlen)
{
    char path[64], map[64];
    snprintf(path, sizeof path, "/proc/%d/uid_map", (int)init);
    snprintf(map, sizeof map, "0 0 1\n%u %u 1\n", (unsigned)cfg->user_uid, (unsigned)cfg->user_uid);
    if (psb_write_file(path, map) < 0)
        return ERR("write %s", path);
    /* setgroups stays "allow": the command drops every supplementary group (root's included). */
    snprintf(path, sizeof path, "/proc/%d/gid_map", (int)init);
    snprintf(map, sizeof map, "0 0 1\n%u %u 1\n", (unsigned)cfg->user_gid, (unsigned)cfg->user_gid);
    if (psb_write_file(path, map) < 0)
        return ERR("write %s", path);
    if (psb_write_all(sync_wr, "m", 1) < 0)
        return ERR("tell init its ids are mapped");
    return 0;
}

void psb_user_switch(const struct psb_config *cfg, int sk)
{
    /* Groups first: once the uid is not 0 the command has no CAP_SETGID to drop them with. */
    if (setgroups(0, NULL) < 0)
        psb_child_fail(sk, 1, "user", errno, "setgroups none");
    if (setresgid(cfg->user_gid, cfg->user_gid, cfg->user_gid) < 0)
        psb_child_fail(sk, 1, "user", errno, "setresgid %u", (unsigned)cfg->user_gid);
    if (setresuid(cfg->user_uid, cfg->user_uid, cfg->user_uid) < 0)
        psb_child_fail(sk, 1, "user", errno, "setresuid %u", (unsigned)cfg->user_uid);
    uid_t r, e, s;
    gid_t gr, ge, gs;
    if (getresuid(&r, &e, &s) < 0 || getresgid(&gr, &ge, &gs) < 0 || r != cfg->user_uid || e != r || s != r ||
        gr != cfg->user_gid || ge != gr || gs != gr || getgroups(0, NULL) != 0)
        psb_child_fail(sk, 1, "user", EPERM, "%s", "the user switch did not take");
}
