#!/usr/bin/env bash
# Attack tests for proctor-sandbox: hostile code runs inside a sandbox built like the real
# policy; every verdict is taken from OUTSIDE (file bytes, host listing, listener, process
# table, report lines, exit status). Runs as root and as an unprivileged user.
#
#   sandbox/tests/attack.sh            # builds the launcher with gcc into a temp dir
#   PSB=/path/to/proctor-sandbox sandbox/tests/attack.sh   (or PROCTOR_SANDBOX=...)
#
# Exits non-zero on any failure; the last line is "N passed, M failed".
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "ok   - $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL - $*"; }
skip() { echo "skip - $*"; }
check() { local d=$1; shift; if "$@"; then pass "$d"; else fail "$d"; fi; }

T=$(mktemp -d /var/tmp/psb-attack.XXXXXX)
chmod 755 "$T"
LISTENER_PID=
cleanup() {
    [ -n "$LISTENER_PID" ] && kill "$LISTENER_PID" 2>/dev/null
    chmod -R u+w "$T" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

# The shipped binary when CI names it (.ci/test sets PROCTOR_SANDBOX), else one linked like it.
PSB=${PSB:-${PROCTOR_SANDBOX:-}}
if [ -z "$PSB" ]; then
    gcc -D_GNU_SOURCE -O2 -Wall -Wno-format-truncation -static-pie "$HERE"/../*.c -lseccomp -o "$T/psb" || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
    PSB=$T/psb
fi
ME=$(id -un)
ROOT=0; [ "$(id -u)" = 0 ] && ROOT=1
echo "# proctor-sandbox attack tests as $ME, binary $PSB"

# ---------- workspace ----------
WS=$T/ws
mkdir -p "$WS/outputs" "$WS/holdout" "$WS/.git/hooks" "$WS/bin" "$WS/sub"
echo "def prepare(): return 42  # pinned" > "$WS/prepare.py"
echo "label,secret_seed=42" > "$WS/holdout/labels.csv"
echo "config" > "$WS/sub/config.toml"
echo "ref: refs/heads/main" > "$WS/.git/HEAD"
gcc -O2 -x c -o "$WS/bin/probe" "$HERE/probe.c.in" || { echo "probe build failed"; echo "0 passed, 1 failed"; exit 1; }
PROBE=$WS/bin/probe
manifest() { (cd "$WS" && find . -mindepth 1 -path ./outputs -prune -o -print0 | sort -z | xargs -0 stat -c '%n %s %a %Y' && find . -path ./outputs -prune -o -type f -print0 | sort -z | xargs -0 sha256sum); }
manifest > "$T/manifest.before"

PY=
if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3
elif [ $ROOT = 1 ] && [ -x /root/.pyenv/versions/3.11.7/bin/python3 ]; then PY=/root/.pyenv/versions/3.11.7/bin/python3
fi
PYBIND=()
case "$PY" in /root/*) PYBIND=(--ro /root/.pyenv/versions/3.11.7 /root/.pyenv/versions/3.11.7) ;; esac
[ -z "$PY" ] && echo "# no python3 usable by $ME: python cases are skipped"
needpy() { [ -n "$PY" ] || { skip "$1 (no python3)"; return 1; }; }

# ---------- host-side listeners that must receive nothing ----------
HITS=$T/listener.hits
PORT=
ABSTRACT="psb-attack-$$"
HOSTSOCK=$T/host.sock
if [ -n "$PY" ] || command -v python3 >/dev/null; then
    HPY=${PY:-python3}
    "$HPY" - "$T/port" "$HITS" "$ABSTRACT" "$HOSTSOCK" <<'EOF' &
import socket, sys, select, os
portf, hits, abstract, path = sys.argv[1:5]
t = socket.socket(); t.bind(("127.0.0.1", 0)); t.listen(16)
a = socket.socket(socket.AF_UNIX); a.bind("\0" + abstract); a.listen(16)
p = socket.socket(socket.AF_UNIX); p.bind(path); p.listen(16)
open(portf + ".tmp", "w").write(str(t.getsockname()[1])); os.rename(portf + ".tmp", portf)
while True:
    r, _, _ = select.select([t, a, p], [], [])
    for s in r:
        c, _ = s.accept()
        open(hits, "a").write("hit %s\n" % s.family)
        c.close()
EOF
    LISTENER_PID=$!
    for _ in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.05; done
    PORT=$(cat "$T/port")
fi

# ---------- the policy ----------
POLICY=(--ro /usr /usr --ro-try /lib /lib --ro-try /lib64 /lib64 --ro-try /bin /bin --ro-try /sbin /sbin
    --ro /etc /etc --hide /etc/shadow --hide /etc/gshadow
    "${PYBIND[@]}"
    --ro "$WS" "$WS" --rw "$WS/outputs" "$WS/outputs" --hide "$WS/holdout"
    --tmpfs /tmp 64MiB --dev /dev --proc /proc --net loopback --audit-writes --report-fd 3
    --timeout 5000 --chdir "$WS"
    --setenv PATH /usr/bin:/bin --setenv HOME "$WS/outputs" --setenv WS "$WS")
R=$T/report; O=$T/out; E=$T/err
# run [EXTRA OPTIONS...] -- CMD...: output in $O/$E/$R, exit status in $RC, wall time in $WALL ms.
run() {
    local t0 t1
    t0=$(date +%s%N)
    env SECRET_API_KEY=sk-live-hunter2 "$PSB" "${POLICY[@]}" "$@" 3>"$R" >"$O" 2>"$E" </dev/null
    RC=$?
    t1=$(date +%s%N)
    WALL=$(((t1 - t0) / 1000000))
}
reported() { grep -qP "$1" "$R"; }
no_deny() { ! grep -q '^deny' "$R"; }
outhas() { grep -qF -- "$1" "$O"; }
rc_is() { [ "$RC" = "$1" ]; }
no_procs() { sleep 0.1; ! pgrep -f "$1" >/dev/null; }
probe_ok() { ! grep -q ' BAD' "$O" && grep -q ' ok' "$O"; }
result_last() { tail -n1 "$R" | grep -q '^result'; }

# ================= writing where it must not =================
run -- sh -c 'echo pwn > prepare.py; echo pwn >> prepare.py; : > prepare.py; echo pwn > sub/config.toml; exit 0'
check "direct write/append/truncate via shell denied" true
check "  deny line for openat of prepare.py (absolute path)" reported "^deny\t\d+\t\d+\topenat\t$WS/prepare.py$"
check "  result is the last report line" result_last

if needpy "python direct writes"; then
run -- "$PY" -c '
import os, sys
ws = os.environ["WS"]; p = ws + "/prepare.py"
def t(name, f):
    try: f(); print(name, "BAD")
    except OSError as e: print(name, "ok", e.errno)
t("truncate", lambda: os.truncate(p, 0))
t("chmod", lambda: os.chmod(p, 0o777))
t("utime", lambda: os.utime(p, (0, 0)))
t("unlink", lambda: os.unlink(p))
t("mkdir", lambda: os.mkdir(ws + "/newdir"))
t("mkfifo", lambda: os.mkfifo(ws + "/fifo"))
t("mknod", lambda: os.mknod(ws + "/node"))
t("setxattr", lambda: os.setxattr(p, "user.x", b"1"))
t("rmdir", lambda: os.rmdir(ws + "/sub"))
t("chown", lambda: os.chown(p, os.getuid(), os.getgid()))
t("symlink", lambda: os.symlink("/etc/passwd", ws + "/newlink"))
t("open-rw", lambda: open(p, "r+"))
t("open-append", lambda: open(p, "a"))
t("creat-missing", lambda: open(ws + "/.git/hooks/pre-commit", "w"))
t("creat-missing-x", lambda: os.open(ws + "/.git/hooks/post-checkout", os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o755))
t("dotdot", lambda: open(ws + "/outputs/../prepare.py", "w"))
t("dotdot-deep", lambda: open(ws + "/outputs/../../ws/sub/../prepare.py", "a"))
'
check "python: truncate/chmod/utime/unlink/mkdir/mkfifo/mknod/xattr/rmdir/chown/symlink/open/creat/.. all fail" bash -c "! grep -q BAD '$O' && [ \$(grep -c ' ok' '$O') = 17 ]"
check "  audit: truncate reported" reported "\ttruncate\t$WS/prepare.py$"
check "  audit: chmod reported" reported "\tchmod\t$WS/prepare.py$"
check "  audit: utime reported" reported "\tutimensat\t$WS/prepare.py$"
check "  audit: unlink reported" reported "\tunlink\t$WS/prepare.py$"
check "  audit: mkdir reported" reported "\tmkdir\t$WS/newdir$"
check "  audit: mknod reported" reported "\tmknod(at)?\t$WS/fifo$"
check "  audit: new .git hook reported" reported "\topenat\t$WS/.git/hooks/pre-commit$"
check "  audit: '..' normalised" reported "\topenat\t$WS/prepare.py$"
fi

# Extended attributes on a file the sandbox MAY write: git keeps none, so one on an editable file
# carried a program past the diff (kept, not reproducible). Refused everywhere, with and without
# --audit-writes; checked from outside with the host's view of the file.
if needpy "xattr on a writable file"; then
# The host's own attribute on the same file system first: without it, EOPNOTSUPP inside would prove nothing.
if ! "$PY" -c 'import os,sys; open(sys.argv[1],"w"); os.setxattr(sys.argv[1], "user.t", b"1")' "$WS/outputs/x.txt" 2>/dev/null; then
    skip "xattr on a writable file (this file system keeps no user attributes)"
else
rm -f "$WS/outputs/x.txt"
XPROBE='
import os
p = os.environ["WS"] + "/outputs/x.txt"
open(p, "w").write("x")
for name, f in [("set", lambda: os.setxattr(p, "user.payload", b"exec(1)")),
                ("lset", lambda: os.setxattr(p, "user.payload", b"1", follow_symlinks=False)),
                ("fset", lambda: os.setxattr(os.open(p, os.O_RDWR), "user.payload", b"1")),
                ("remove", lambda: os.removexattr(p, "user.absent"))]:
    try: f(); print(name, "BAD")
    except OSError as e: print(name, "ok" if e.errno == 95 else "BAD errno %d" % e.errno)
'
run -- "$PY" -c "$XPROBE"
check "xattr set/lset/fset/remove on a writable file fail with EOPNOTSUPP (audited)" bash -c "! grep -q BAD '$O' && [ \$(grep -c ' ok' '$O') = 4 ]"
check "  audit: setxattr of the writable file reported" reported "\t(setxattr|fsetxattr)\t$WS/outputs/x.txt$"
check "  outside: the file carries no attribute" bash -c "! $PY -c 'import os,sys; sys.exit(0 if os.listxattr(sys.argv[1]) else 1)' '$WS/outputs/x.txt'"
rm -f "$WS/outputs/x.txt"
POLICY_NOAUDIT=()
for a in "${POLICY[@]}"; do [ "$a" = --audit-writes ] || POLICY_NOAUDIT+=("$a"); done
env "$PSB" "${POLICY_NOAUDIT[@]}" -- "$PY" -c "$XPROBE" 3>"$R" >"$O" 2>"$E" </dev/null
check "  the same without --audit-writes" bash -c "! grep -q BAD '$O' && [ \$(grep -c ' ok' '$O') = 4 ]"
check "  outside: still no attribute" bash -c "! $PY -c 'import os,sys; sys.exit(0 if os.listxattr(sys.argv[1]) else 1)' '$WS/outputs/x.txt'"
rm -f "$WS/outputs/x.txt"
fi
fi

run -- sh -c 'echo new > outputs/new.txt; mv outputs/new.txt prepare.py; mv prepare.py outputs/stolen.py; echo pwn >> outputs/stolen.py; exit 0'
check "rename over a protected file / rename it away fails" true
check "  audit: rename over reported (destination)" reported "\trename(at|at2)?\t$WS/prepare.py$"
run -- "$PROBE" exchange "$WS/outputs/stolen.py" "$WS/prepare.py"
check "renameat2(RENAME_EXCHANGE) fails" probe_ok
check "  audit: renameat2 reported" reported "\trenameat2\t$WS/prepare.py$"

run -- sh -c 'ln prepare.py outputs/hard && echo pwn >> outputs/hard; ln -s '"$WS"'/prepare.py outputs/sym; echo pwn > outputs/sym; echo pwn >> outputs/sym; ln -s '"$WS"' outputs/wsdir; echo pwn > outputs/wsdir/prepare.py; exit 0'
check "hard link + symlink (file and dir) out of outputs: writes fail" true
check "  audit: link of a protected file reported" reported "\tlink(at)?\t$WS/prepare.py$"
check "  audit: write through a symlink in outputs reported with the real path" reported "\t\d+\topenat\t$WS/prepare.py$"
run -- "$PROBE" fdreopen "$WS/prepare.py"
check "/proc/self/fd reopen of a read-only fd for writing fails" probe_ok
check "  audit: reopen reported as the file" reported "\topenat\t$WS/prepare.py$"
run -- "$PROBE" tmpfile "$WS" "$WS/planted.py"
check "O_TMPFILE + linkat into the workspace fails" probe_ok
run -- "$PROBE" tmpfile "$WS/outputs" "$WS/planted.py"
check "O_TMPFILE in outputs + linkat outside fails" probe_ok

# allowed writes leave no record (stdout is a pipe, as under the supervisor)
run --stdio-limit 100000 -- sh -c 'echo a > outputs/ok.txt; mkdir -p outputs/d/e; echo b >> outputs/d/e/f; mv outputs/ok.txt outputs/ok2.txt; rm outputs/ok2.txt; echo t > /tmp/x; echo n > /dev/null; ln -s ok outputs/l; touch outputs/d; chmod 600 outputs/d/e/f; echo x > /dev/stdout'
check "allowed writes (outputs, /tmp, /dev/null, stdout) succeed" rc_is 0
check "  and produce no deny line" no_deny

# ================= reading what it must not =================
run -- sh -c 'cat holdout/labels.csv; ls -A holdout; cat /etc/shadow; env; cat /proc/1/environ; cat /proc/1/cmdline; ls /proc; cat /proc/self/mountinfo; ls -a /root /home 2>&1; exit 0'
check "hidden holdout unreadable (no label bytes)" bash -c "! grep -q secret_seed '$O'"
check "/etc/shadow empty" bash -c "! grep -qE '^root:[^:]*:[0-9]+:[0-9]*:' '$O'"
check "env secret absent" bash -c "! grep -q hunter2 '$O'"
check "policy (argv) not visible in /proc/1/cmdline" bash -c "! grep -q -- '--report-fd' '$O'"
check "no home directories visible" bash -c "[ \$(grep -c 'No such file' '$O') = 2 ]"
# /proc/PID/exe of the launcher's own processes (runc CVE-2019-5736): pid 1 is init, a copy of the
# launcher; no handle on it, for reading or writing, and the binary on the host stays intact.
PSB_SUM=$(sha256sum "$PSB" | cut -d' ' -f1)
run -- sh -c 'for p in /proc/1/exe /proc/1/root/proc/1/exe; do cat "$p" >/dev/null 2>&1 && echo "READ $p"; (exec 3>>"$p") 2>/dev/null && echo "WRITE $p"; done; echo done'
check "the launcher's image (/proc/1/exe) cannot be opened from inside" \
    bash -c "grep -qx done '$O' && ! grep -qE '^(READ|WRITE)' '$O' && [ \"\$(sha256sum '$PSB' | cut -d' ' -f1)\" = '$PSB_SUM' ]"
if [ -e /etc/shadow ] && [ $ROOT = 1 ]; then
    run -- cat /etc/shadow
    check "/etc/shadow is an empty hidden file (as root)" bash -c "[ ! -s '$O' ]"
fi

# ================= escaping the filter =================
run -- "$PROBE" io_uring; check "io_uring_setup/enter/register -> EPERM" probe_ok
run -- "$PROBE" tiocsti; check "TIOCSTI/TIOCLINUX incl. high bits -> EPERM" probe_ok
run -- "$PROBE" x32; check "x32 syscall kills the process (SIGSYS, 159)" rc_is 159
run -- "$PROBE" i386; check "i386 int 0x80 kills the process (SIGSYS, 159)" rc_is 159
run -- "$PROBE" personality; check "personality: only PER_LINUX and query" probe_ok
run -- "$PROBE" namespaces; check "unshare/setns/clone(CLONE_NEW*)/clone3(ENOSYS)/mount/pivot_root/chroot/new mount API denied" probe_ok

# The compiled-filter cache (in real use .proctor/cache, which no sandbox sees): only a file that is
# ours, writable by nobody else and intact is ever loaded. The planted filter allows everything.
FC=$T/state/cache
mkdir -p "$T/state"
plant_filter() { # FILE SUM-OK(1|0): one instruction, SECCOMP_RET_ALLOW
    "${PY:-python3}" - "$1" "$2" <<'EOF'
import struct, sys
ins = struct.pack("<HBBI", 0x06, 0, 0, 0x7FFF0000)
h = 1469598103934665603
for b in ins:
    h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
if sys.argv[2] == "0":
    h ^= 1
open(sys.argv[1], "wb").write(struct.pack("<IIQ", 0x31664250, 1, h) + ins)
EOF
}
run --filter-cache "$FC" -- "$PROBE" namespaces
check "filter cache: the first run stores one filter, mode 0600, and it holds" \
    bash -c "[ \$(ls '$FC' | grep -c '^seccomp-.*\.bpf\$') = 1 ] && [ \$(stat -c %a '$FC'/seccomp-*.bpf) = 600 ] && ! grep -q ' BAD' '$O'"
run --filter-cache "$FC" -- "$PROBE" namespaces; check "  the cached filter holds" probe_ok
CACHED=$(ls "$FC"/seccomp-*.bpf)
if command -v "${PY:-python3}" >/dev/null; then
    plant_filter "$CACHED" 1; chmod 666 "$CACHED"
    run --filter-cache "$FC" -- "$PROBE" namespaces; check "  a planted allow-all filter writable by others is not loaded" probe_ok
    plant_filter "$CACHED" 0; chmod 600 "$CACHED"
    run --filter-cache "$FC" -- "$PROBE" namespaces; check "  a planted filter with a bad checksum is not loaded" probe_ok
    run --filter-cache "$FC" -- "$PROBE" namespaces; check "  and is replaced by a good one" probe_ok
    chmod 777 "$FC"; plant_filter "$CACHED" 1; chmod 600 "$CACHED"
    run --filter-cache "$FC" -- "$PROBE" namespaces; check "  nothing is loaded from a cache directory writable by others" probe_ok
    chmod 700 "$FC"
    # A miss prunes what no launcher used for a week, and nothing else.
    printf x > "$FC/seccomp-old.bpf"; printf x > "$FC/.tmp-999999"; printf x > "$FC/seccomp-recent.bpf"
    touch -a -d '10 days ago' "$FC/seccomp-old.bpf" "$FC/.tmp-999999"
    run --filter-cache "$FC" --net none -- true
    check "  a cache miss prunes week-old entries and keeps recent ones" \
        bash -c "[ ! -e '$FC/seccomp-old.bpf' ] && [ ! -e '$FC/.tmp-999999' ] && [ -e '$FC/seccomp-recent.bpf' ]"
    # A cache directory the sandbox can write (beneath an --rw source) is never used: the child
    # runs as our uid, so a filter it plants there passes the owner and mode checks.
    FCW=$WS/outputs/state/cache; mkdir -p "$WS/outputs/state"
    plant_filter "$WS/outputs/allow.bpf" 1
    run --filter-cache "$FCW" -- true
    run --filter-cache "$FCW" -- sh -c 'for f in '"$FCW"'/seccomp-*.bpf; do [ -f "$f" ] && cat '"$WS"'/outputs/allow.bpf > "$f"; done; exit 0'
    run --filter-cache "$FCW" -- "$PROBE" namespaces
    check "  a cache beneath an --rw source is not used (a filter planted from inside is never loaded)" \
        bash -c "probe_ok() { ! grep -q ' BAD' '$O' && grep -q ' ok' '$O'; }; probe_ok && ! ls '$FCW' 2>/dev/null | grep -q '^seccomp-'"
    rm -rf "$WS/outputs/state" "$WS/outputs/allow.bpf"
else
    skip "planted filter cache files (no python3)"
fi

# --symlink (merged-/usr aliases): the link is there, resolves inside the sandbox, and cannot be
# replaced or removed (the root tmpfs is read-only).
run --symlink usr/bin /xbin -- /xbin/sh -c 'test "$(readlink /xbin)" = usr/bin && echo linked; rm -f /xbin; ln -sfn /tmp /xbin; test "$(readlink /xbin)" = usr/bin && echo kept'
check "--symlink: a read-only alias that resolves inside the sandbox" bash -c "grep -qx linked '$O' && grep -qx kept '$O' && [ $RC = 0 ]"
run -- "$PROBE" kernel; check "ptrace/process_vm/bpf/perf/userfaultfd/keyctl/open_by_handle_at/kexec/modules/iopl/... denied" probe_ok
run -- "$PROBE" sockets; check "AF_NETLINK/AF_PACKET/AF_VSOCK/AF_ALG/MPTCP denied, AF_UNIX allowed" probe_ok
run -- "$PROBE" fds; check "no fd beyond 0,1,2 leaks into the command (CVE-2024-21626)" probe_ok
run -- sh -c 'grep -E "^(CapEff|CapPrm|CapBnd|CapAmb|CapInh|NoNewPrivs|Seccomp):" /proc/self/status'
check "no capabilities, no_new_privs, seccomp filter mode" bash -c "grep -q 'CapEff:\s*0000000000000000' '$O' && grep -q 'CapBnd:\s*0000000000000000' '$O' && grep -q 'CapPrm:\s*0000000000000000' '$O' && grep -q 'NoNewPrivs:\s*1' '$O' && grep -q 'Seccomp:\s*2' '$O'"

# A setuid/setgid program left in a writable place is one on the host (outputs is not nosuid
# outside the sandbox): made from a copy of any binary, it ran as the sandbox's owner (root when
# proctor runs as root) for every local user.
run -- sh -c 'cp /usr/bin/id outputs/suid && chmod 755 outputs/suid && echo plain; chmod 4755 outputs/suid; chmod u+s,g+s outputs/suid; chmod 2755 outputs/suid; mkdir -p outputs/sgid; chmod 2775 outputs/sgid; exit 0'
check "no setuid/setgid bit can be set in a writable place (checked on the host)" \
    bash -c "grep -qx plain '$O' && [ -z \"\$(find '$WS/outputs' -perm /6000)\" ]"
check "  audit: the refused setuid chmod reported" reported "\tfchmodat\t$WS/outputs/suid$"
rm -rf "$WS/outputs/suid" "$WS/outputs/sgid"
# ... nor given to a file as it is made (mknod, a creating open, creat, O_TMPFILE then a link): a
# sandbox's write clears such bits, host root's does not; and openat2, whose mode the filter
# cannot see, fails as on an old kernel.
if needpy "setuid/setgid bits at creation"; then
SPROBE='import ctypes, os, stat, sys
libc = ctypes.CDLL(None, use_errno=True)
o = "outputs/"
def attempt(name, f):
    try:
        f(); print(name, "BAD made")
    except OSError as e:
        print(name, "ok refused", e.errno)
attempt("mknod", lambda: os.mknod(o + "m", stat.S_IFREG | 0o4755))
attempt("mknod-g", lambda: os.mknod(o + "mg", stat.S_IFREG | 0o2755))
attempt("open", lambda: os.close(os.open(o + "c", os.O_CREAT | os.O_WRONLY, 0o4755)))
attempt("openat", lambda: os.close(os.open("c2", os.O_CREAT | os.O_WRONLY, 0o2755, dir_fd=os.open(o, os.O_RDONLY))))
def tmpfile():
    fd = os.open(o, os.O_TMPFILE | os.O_WRONLY, 0o4755)
    os.link("/proc/self/fd/%d" % fd, o + "t", follow_symlinks=True)
attempt("tmpfile", tmpfile)
def creat():
    fd = libc.creat(o.encode() + b"k", 0o6755)
    if fd < 0: raise OSError(ctypes.get_errno(), "creat")
attempt("creat", creat)
class How(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]
how = How(os.O_CREAT | os.O_WRONLY, 0o4755, 0)
fd = libc.syscall(437, -100, (o + "a2").encode(), ctypes.byref(how), ctypes.c_size_t(24))
print("openat2", "ok ENOSYS" if fd < 0 and ctypes.get_errno() == 38 else "BAD %d %d" % (fd, ctypes.get_errno()))
print("plain", "ok" if os.open(o + "p", os.O_CREAT | os.O_WRONLY, 0o755) >= 0 else "BAD")
'
NOAUDIT=()
for a in "${POLICY[@]}"; do [ "$a" = --audit-writes ] || NOAUDIT+=("$a"); done
for audit in with without; do
    if [ $audit = with ]; then run -- "$PY" -c "$SPROBE"; else env "$PSB" "${NOAUDIT[@]}" -- "$PY" -c "$SPROBE" 3>"$R" >"$O" 2>"$E" </dev/null; fi
    check "no setuid/setgid bit at creation, $audit --audit-writes (checked on the host)" \
        bash -c "! grep -q BAD '$O' && [ \$(grep -c ' ok' '$O') = 8 ] && [ -z \"\$(find '$WS/outputs' -perm /6000)\" ] && [ -f '$WS/outputs/p' ]"
    [ $audit = with ] && check "  audit: the refused mknod reported" reported "\tmknod(at)?\t$WS/outputs/m$"
    rm -rf "$WS/outputs/"*
done
fi

# ================= talking to the outside =================
if [ -n "$PORT" ]; then
    run -- "$PROBE" tcp "$PORT"; check "TCP connect to a host listener on 127.0.0.1 fails" probe_ok
    run -- "$PROBE" unix "@$ABSTRACT"; check "abstract unix socket of the host unreachable" probe_ok
    run -- "$PROBE" unix "$HOSTSOCK"; check "pathname unix socket of the host (not mounted) unreachable" probe_ok
    run --net none -- "$PROBE" tcp "$PORT"; check "--net none: no TCP socket at all" probe_ok
    # A host process's pathname socket inside a read-only mount: connect() needs no write
    # access, so only hiding the socket keeps the sandbox out (--hide-sockets, which proctor
    # passes for the workspace).
    SW=$T/sockws; WSHITS=$T/wsock.hits
    mkdir -p "$SW/a/b"
    SOCK_LISTENERS=()
    unix_listener() { # PATH [N]: a host process accepting on PATH, or on s.sock N levels of
        # 250-character directories below PATH (a path longer than PATH_MAX); each connection adds
        # a line to $WSHITS
        local ready=$T/listener.ready.${#SOCK_LISTENERS[@]}
        "$HPY" - "$1" "$WSHITS" "${2:-0}" "$ready" <<'EOF' &
import os, socket, sys
path, hits, levels, ready = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
if levels:
    os.makedirs(path, exist_ok=True); os.chdir(path)
    for i in range(levels):
        os.mkdir("d" * 250); os.chdir("d" * 250)
    path = "s.sock"
p = socket.socket(socket.AF_UNIX); p.bind(path); p.listen(16)
open(ready, "w").close()
while True:
    c, _ = p.accept()
    open(hits, "a").write("hit\n")
    c.close()
EOF
        SOCK_LISTENERS+=($!)
        for _ in $(seq 100); do [ -e "$ready" ] && break; sleep 0.05; done
    }
    unix_listener "$SW/a/b/agent.sock"
    run --ro "$SW" "$SW" -- "$PROBE" unix "$SW/a/b/agent.sock"
    check "  control: without --hide-sockets a host socket in a read-only mount is connectable" \
        bash -c "grep -q 'unix-path BAD' '$O' && sleep 0.2 && [ -s '$WSHITS' ]"
    rm -f "$WSHITS"
    run --ro "$SW" "$SW" --hide-sockets "$SW" -- "$PROBE" unix "$SW/a/b/agent.sock"
    check "host unix socket in a read-only mount hidden (--hide-sockets): connect fails, listener gets nothing" \
        bash -c "grep -q 'unix-path ok' '$O' && sleep 0.2 && [ ! -s '$WSHITS' ]"
    run --ro "$SW" "$SW" --hide-sockets "$SW" -- sh -c "[ -S '$SW/a/b/agent.sock' ] && echo still-a-socket; rm -f '$SW/a/b/agent.sock'; exit 0"
    check "  the hidden socket is an empty read-only file that cannot be removed" \
        bash -c "! grep -q still-a-socket '$O' && [ -S '$SW/a/b/agent.sock' ]"
    # The scan's cache (in the --filter-cache directory; sandbox/cache.c): a directory unchanged
    # for 2 s is listed once and not read again while its ctime stays. A socket made in it later
    # moves that ctime, so the next start reads it again and hides the socket; a torn cache file
    # is not believed.
    SC=$T/scancache; mkdir -p "$SW/c/d"
    scan_has() { # DIR: whether sockets.scan (valid checksum) lists DIR's inode
        "$HPY" - "$SC/sockets.scan" "$1" <<'EOF'
import os, struct, sys
data = open(sys.argv[1], "rb").read()
magic, version, n, names_len, total = struct.unpack_from("<IIQQQ", data)
body = data[32:]
h = 1469598103934665603
for b in body:
    h = ((h ^ b) * 1099511628211) & (2**64 - 1)
inos = {struct.unpack_from("<QQ", body, 56 * i)[1] for i in range(n)}
sys.exit(0 if h == total and os.stat(sys.argv[2]).st_ino in inos else 1)
EOF
    }
    scan_lacks() { [ -s "$SC/sockets.scan" ] && ! scan_has "$1"; }
    sleep 3.1   # settled: unchanged for 2 s, counted in whole seconds
    run --ro "$SW" "$SW" --hide-sockets "$SW" --filter-cache "$SC" -- true
    check "socket scan cache: a settled directory is listed" scan_has "$SW/c/d"
    check "  one holding a socket is not" scan_lacks "$SW/a/b"
    STAMP=$(stat -c %Y.%i "$SC/sockets.scan")
    sleep 1.1
    run --ro "$SW" "$SW" --hide-sockets "$SW" --filter-cache "$SC" -- true
    check "  a start with nothing changed reads the listings and leaves the file alone" \
        test "$(stat -c %Y.%i "$SC/sockets.scan")" = "$STAMP"
    unix_listener "$SW/c/d/late.sock"
    rm -f "$WSHITS"
    run --ro "$SW" "$SW" --hide-sockets "$SW" --filter-cache "$SC" -- "$PROBE" unix "$SW/c/d/late.sock"
    check "  a socket made in a cached directory afterwards is hidden: connect fails, listener gets nothing" \
        bash -c "grep -q 'unix-path ok' '$O' && sleep 0.2 && [ ! -s '$WSHITS' ]"
    check "  and that directory's listing is dropped from the cache" scan_lacks "$SW/c/d"
    head -c 100 /dev/urandom >"$SC/sockets.scan"
    run --ro "$SW" "$SW" --hide-sockets "$SW" --filter-cache "$SC" -- "$PROBE" unix "$SW/c/d/late.sock"
    check "  a torn cache file is ignored: the socket stays hidden" \
        bash -c "grep -q 'unix-path ok' '$O' && sleep 0.2 && [ ! -s '$WSHITS' ]"
    check "  and the file is written anew" scan_has "$SW/a"
    # Entries piled up in a writable place cannot use up the walk's budget (200 000) before
    # the read-only part is seen; the cut itself is reported.
    mkdir -p "$SW/out/many" "$SW/z"
    "$HPY" -c 'import os, sys; [os.symlink("x", "%s/%d" % (sys.argv[1], i)) for i in range(200001)]' "$SW/out/many"
    unix_listener "$SW/z/late.sock"
    run --ro "$SW" "$SW" --rw "$SW/out" "$SW/out" --hide-sockets "$SW" -- "$PROBE" unix "$SW/z/late.sock"
    check "socket scan: a writable place full of entries does not hide a host socket from the walk" \
        bash -c "grep -q 'unix-path ok' '$O' && sleep 0.2 && [ ! -s '$WSHITS' ]"
    check "  the walk's cut is reported (warn sockets)" reported '^warn\tsockets\t'
    rm -rf "$SW/out"
    # A socket below a path longer than PATH_MAX is still reachable by chdir and a relative name;
    # one below the walk's depth limit is hidden with its whole directory; a socket named as a
    # mount source becomes an empty file; a pile of sockets stops the start instead of mounting
    # one hide each without end.
    if needpy "deep unix sockets"; then
        unix_listener "$SW/long" 17
        DEEP=$SW/deep$(printf '/d%.0s' $(seq 70))
        mkdir -p "$DEEP"
        unix_listener "$DEEP/s.sock"
        run --ro "$SW" "$SW" --hide-sockets "$SW" -- "$PY" -c '
import os, socket, sys
def tryconnect(where):
    s = socket.socket(socket.AF_UNIX)
    try: s.connect("s.sock"); print("CONNECTED", where)
    except OSError as e: print("refused", where, e.errno)
os.chdir(sys.argv[1])
for i in range(17): os.chdir("d" * 250)
tryconnect("long")
try: os.chdir(sys.argv[2]); tryconnect("deep")
except OSError as e: print("refused deep (directory hidden)", e.errno)
' "$SW/long" "$DEEP"
        check "sockets below PATH_MAX-long paths and below the depth limit are hidden too" \
            bash -c "grep -q 'refused long' '$O' && grep -q 'refused deep' '$O' && ! grep -q CONNECTED '$O' && sleep 0.2 && [ ! -s '$WSHITS' ]"
    fi
    run --tmpfs "$T/w" 1MiB --ro "$SW/a/b/agent.sock" "$T/w/s" --hide-sockets "$T/w" -- "$PROBE" unix "$T/w/s"
    check "a socket bound onto a mount point beneath --hide-sockets is hidden" \
        bash -c "grep -q 'unix-path ok' '$O' && sleep 0.2 && [ ! -s '$WSHITS' ]"
    run --tmpfs "$T/w" 1MiB --ro "$SW/a/b/agent.sock" /run/s --hide-sockets "$T/w" -- "$PROBE" unix /run/s
    check "  one bound elsewhere on purpose (a session's) stays connectable" \
        bash -c "grep -q 'unix-path BAD' '$O' && sleep 0.2 && [ -s '$WSHITS' ]"
    rm -f "$WSHITS"
    mkdir -p "$SW/pile"
    "$HPY" -c 'import socket, sys; [socket.socket(socket.AF_UNIX).bind("%s/%d.sock" % (sys.argv[1], i)) for i in range(1025)]' "$SW/pile"
    run --ro "$SW" "$SW" --hide-sockets "$SW" -- /bin/true
    check "more than 1024 sockets to hide: not started (125), with the reason" \
        bash -c "[ $RC = 125 ] && grep -q 'more than 1024 unix sockets' '$E'"
    rm -rf "$SW/pile"
    kill "${SOCK_LISTENERS[@]}" 2>/dev/null
    if needpy "loopback inside"; then
        run -- "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(); c=socket.create_connection(s.getsockname()); print("loopback-ok")'
        check "--net loopback: TCP on the sandbox's own lo works" outhas loopback-ok
    fi
    # --net allowlist: the only way out is the helper's proxy; the host listener is reached only
    # through it, only when its name, port and (loopback) address are allowed.
    if needpy "allowlist proxy"; then
        printf 'allowed.test 127.0.0.1\nmeta.test 169.254.169.254\n' > "$T/hosts"
        ASK='import socket, sys
for req in sys.argv[1:]:
    s = socket.create_connection(("127.0.0.1", 3128)); s.sendall(req.encode() + b"\r\n\r\n")
    print(req.split()[1], s.recv(200).split(b"\r\n")[0].decode())
try: socket.create_connection(("127.0.0.1", '"$PORT"'), timeout=2); print("direct CONNECTED")
except OSError: print("direct refused")'
        rm -f "$HITS"
        run --net allowlist --proxy-port 3128 --allow-host "allowed.test:$PORT" --allow-host meta.test \
            --proxy-hosts "$T/hosts" -- "$PY" -c "$ASK" "CONNECT allowed.test:$PORT HTTP/1.1" \
            "CONNECT meta.test:443 HTTP/1.1" "CONNECT elsewhere.test:$PORT HTTP/1.1" "CONNECT 127.0.0.1:$PORT HTTP/1.1"
        check "--net allowlist: loopback, link-local and unlisted destinations refused (403), no direct route" \
            bash -c "[ \$(grep -c ' 403 Forbidden' '$O') = 4 ] && grep -q 'direct refused' '$O' && [ $RC = 0 ]"
        check "  each refusal reported (net ... denied), the host listener untouched" \
            bash -c "[ \$(grep -cP '^net\t.*\tdenied\t' '$R') = 4 ] && grep -qP '^net\t\d+\tmeta.test\t443\tdenied\tresolves to 169.254.169.254, a link-local' '$R' && sleep 0.2 && [ ! -s '$HITS' ]"
        run --net allowlist --proxy-port 3128 --allow-host "allowed.test:$PORT" --allow-private \
            --proxy-hosts "$T/hosts" -- "$PY" -c "$ASK" "CONNECT allowed.test:$PORT HTTP/1.1"
        check "  with --allow-private the listed name and port get through, once" \
            bash -c "grep -q ' 200 Connection established' '$O' && grep -qP '^net\t\d+\tallowed.test\t$PORT\tallowed\t' '$R' && sleep 0.2 && [ \$(wc -l < '$HITS') = 1 ]"
        rm -f "$HITS"
    fi
else
    skip "network listener tests (no python3 on host)"
fi

# ================= exhausting the machine =================
MARK=psbmark$$
run --pids 64 --timeout 4000 -- sh -c "b() { b | b & }; b; sleep 1; echo $MARK"
check "fork bomb with --pids 64 ends (exit $RC, ${WALL} ms)" bash -c "[ $WALL -lt 8000 ]"
if grep -q $'^enforce\tpids\tcgroup' "$R"; then
    check "  pids enforced by cgroup; limit pids reported" reported '^limit\tpids\t'
else
    check "  pids: warn line for the rlimit fallback" reported '^warn\tpids\t'
fi
check "  no process left" no_procs "$MARK"

if needpy "memory hog"; then
    run --memory 256MiB -- "$PY" -c 'x=[]
while True: x.append(bytearray(16<<20))'
    if grep -q $'^enforce\tmemory\tcgroup' "$R"; then
        check "memory hog with --memory 256MiB killed (137) with limit memory" bash -c "[ $RC = 137 ] && grep -qP '^limit\tmemory\t' '$R'"
        check "  peak memory reported <= ~256MiB" bash -c "p=\$(tail -n1 '$R' | cut -f7); [ \"\$p\" -le 300000000 ] && [ \"\$p\" -gt 100000000 ]"
    else
        check "memory hog: rlimit fallback warned and stopped (MemoryError)" bash -c "grep -qP '^warn\tmemory\t' '$R' && [ $RC = 1 ] && grep -q MemoryError '$E'"
    fi
fi
run -- sh -c 'test -e /dev/shm && echo SHM; ls /dev; echo x > /dev/newfile; echo x > /dev/shm/x; exit 0'
check "/dev/shm absent and /dev read-only" bash -c "! grep -q SHM '$O' && grep -q 'null' '$O' && ! grep -q newfile '$O'"
run -- sh -c 'dd if=/dev/zero of=/tmp/fill bs=1M count=200 2>&1; du -sm /tmp/fill'
check "tmpfs fill bounded by --tmpfs size (64MiB)" bash -c "grep -q 'No space left' '$O' && [ \$(tail -n1 '$O' | cut -f1) -le 64 ]"
run --output-limit "$WS/outputs" 10MiB -- sh -c 'dd if=/dev/zero of=outputs/big bs=1M count=2000 status=none; sleep 5'
check "disk fill under outputs stopped by --output-limit (exit $RC, ${WALL} ms)" bash -c "[ $RC = 137 ] && grep -qP '^limit\toutput\t' '$R' && [ $WALL -lt 4000 ]"
check "  host file bounded" bash -c "[ \$(stat -c %s '$WS/outputs/big') -lt 1000000000 ]"
rm -f "$WS/outputs/big"
# Per-uid kernel counters shared with the host: inotify instances are charged to the owner's
# uid in every enclosing user namespace. The sandbox takes all it can and holds them while the
# host (same user) asks for one.
if needpy "inotify instances"; then
    "$PSB" "${POLICY[@]}" -- "$PY" -c '
import ctypes, time
libc = ctypes.CDLL(None, use_errno=True)
n = 0
while n < 100000 and libc.inotify_init1(0) >= 0: n += 1
print("held", n, flush=True); time.sleep(3)' 3>/dev/null >"$T/ino.out" 2>&1 &
    INO_PID=$!
    for _ in $(seq 50); do grep -q held "$T/ino.out" && break; sleep 0.1; done
    HOSTINO=$("$PY" -c 'import ctypes; l = ctypes.CDLL(None, use_errno=True); print("host-ok" if l.inotify_init1(0) >= 0 else "host-EMFILE")')
    wait $INO_PID
    check "inotify instances held by the sandbox leave the host user some ($HOSTINO; $(cat "$T/ino.out"))" \
        bash -c "grep -q held '$T/ino.out' && [ '$HOSTINO' = host-ok ]"
fi

# Blocks of a file that has no name any more (unlinked while open, O_TMPFILE, a mapping that
# outlives its fd) are on the host's disk all the same, invisible to a directory walk.
run --output-limit "$WS/outputs" 10MiB -- sh -c 'exec 5>outputs/gone; rm outputs/gone; dd if=/dev/zero bs=1M count=100 status=none >&5; sleep 5'
check "disk fill through an unlinked open file stopped by --output-limit (exit $RC)" bash -c "[ $RC = 137 ] && grep -qP '^limit\toutput\t' '$R'"
if needpy "disk fill through O_TMPFILE and a mapping"; then
    run --output-limit "$WS/outputs" 10MiB -- "$PY" -c '
import os, mmap, time
fd = os.open("outputs", os.O_TMPFILE | os.O_WRONLY, 0o600)
for i in range(40): os.write(fd, b"x" * (1 << 20))
fd2 = os.open("outputs/m", os.O_RDWR | os.O_CREAT, 0o600); os.unlink("outputs/m")
os.ftruncate(fd2, 40 << 20); m = mmap.mmap(fd2, 40 << 20); os.close(fd2); m[:] = b"y" * (40 << 20)
time.sleep(5)'
    check "disk fill through O_TMPFILE and a mapping of an unlinked file stopped by --output-limit (exit $RC)" bash -c "[ $RC = 137 ] && grep -qP '^limit\toutput\t' '$R'"
fi
run --timeout 30000 --output-limit "$WS/outputs" 1GiB --output-entries 3000 -- sh -c 'mkdir outputs/many; cd outputs/many; i=0; while [ $i -lt 200000 ]; do : > f$i; i=$((i+1)); done'
check "file-count explosion stopped by --output-limit entry cap" bash -c "grep -qP '^limit\toutput\t.*entries' '$R'"
rm -rf "$WS/outputs/many"
run --timeout 30000 --output-limit "$WS/outputs" 10MiB -- sh -c 'cd outputs; i=0; while [ $i -lt 200 ]; do mkdir d; cd d; i=$((i+1)); done; dd if=/dev/zero of=big bs=1M count=2000 status=none; sleep 5'
check "200 MB below 200 nested directories stopped by --output-limit (exit $RC)" bash -c "[ $RC = 137 ] && grep -qP '^limit\toutput\t.*nested' '$R'"
check "  deep file bounded" bash -c "[ \$(du -sm '$WS/outputs' | cut -f1) -lt 1000 ]"
rm -rf "$WS/outputs/d"
run --stdio-limit 1000 -- sh -c 'yes flood | head -c 10000000; yes err | head -c 1000000 >&2'
check "stdout flood capped at 1000 bytes by --stdio-limit" bash -c "[ \$(cat '$O' '$E' | wc -c) -le 1000 ] && grep -qP '^limit\tstdio\tdropped \d+ bytes' '$R' && [ $RC = 0 ]"
if needpy "fd exhaustion"; then
    run --nofile 32 -- "$PY" -c '
fs = []
try:
    while True: fs.append(open("/dev/null"))
except OSError as e: print("EMFILE", e.errno, len(fs))'
    check "fd exhaustion bounded by --nofile 32" bash -c "grep -q 'EMFILE 24' '$O' && [ \$(awk '{print \$3}' '$O') -lt 32 ]"
fi
run --timeout 1000 --grace 300 -- sh -c "(trap '' TERM HUP INT; setsid sh -c \"trap '' TERM HUP INT; while :; do sleep 0.1; done; echo $MARK-daemon\" &) ; trap '' TERM; while :; do sleep 0.1; done"
check "double-fork setsid daemon ignoring SIGTERM/SIGHUP: exit 124" rc_is 124
check "  and no process left" no_procs "$MARK-daemon"
check "  limit timeout reported, TIMEDOUT=1" bash -c "grep -qP '^limit\ttimeout\t' '$R' && tail -n1 '$R' | grep -qP '^result\t124\t\d+\t1\t'"
run --timeout 2000 -- sleep 100
check "sleep 100 with --timeout 2000 -> 124 in < 4 s (${WALL} ms)" bash -c "[ $RC = 124 ] && [ $WALL -lt 4000 ]"
if needpy "cpu"; then
    run --cpu 1 -- "$PY" -c 'while True: pass'
    check "--cpu 1: busy loop stopped by SIGXCPU (exit $RC)" bash -c "[ $RC = 152 ] || [ $RC = 137 ]"
fi

# helper killed with SIGKILL -> sandbox dies
env "$PSB" "${POLICY[@]}" -- sh -c "sleep 1000; echo $MARK-orphan" 3>/dev/null >/dev/null 2>&1 </dev/null &
HP=$!
sleep 0.3
kill -9 $HP; wait $HP 2>/dev/null
check "helper SIGKILLed: the sandbox dies with it" no_procs "$MARK-orphan"
# supervisor death pipe
mkfifo "$T/death"
( exec 9>"$T/death"; sleep 1 ) &
exec {PFD}<"$T/death"
run --parent-fd "$PFD" -- sh -c "sleep 1000; echo $MARK-parent"
exec {PFD}<&-
check "parent-fd closed: sandbox killed (${WALL} ms)" bash -c "[ $WALL -lt 3000 ] && [ $RC = 137 ] && grep -qP '^limit\tparent\t' '$R'"
check "  no process left" no_procs "$MARK-parent"
# SIGTERM to the helper is a graceful stop
"$PSB" "${POLICY[@]}" -- sh -c "sleep 1000; echo $MARK-term" 3>/dev/null >/dev/null 2>&1 </dev/null &
HP=$!; sleep 0.3; kill -TERM $HP; wait $HP; TRC=$?
check "SIGTERM to the helper stops the sandbox (exit $TRC = 143)" bash -c "[ $TRC = 143 ]"
check "  no process left" no_procs "$MARK-term"

# ================= audit =================
run -- sh -c 'sh -c "sh -c \"echo x > prepare.py\""; exit 0'
check "audit: denied write from a grandchild reported" reported "^deny\t\d+\t\d+\topenat\t$WS/prepare.py$"
if needpy "audit thread/exec"; then
    run -- "$PY" -c '
import threading, os
def w():
    try: open(os.environ["WS"] + "/thread.txt", "w")
    except OSError: pass
t = threading.Thread(target=w); t.start(); t.join()
os.execv("/bin/sh", ["sh", "-c", "echo x > " + os.environ["WS"] + "/after_exec.txt; exit 0"])'
    check "audit: denied write from a thread reported" reported "^deny\t\d+\t\d+\topenat\t$WS/thread.txt$"
    check "audit: denied write after execve reported" reported "^deny\t\d+\t\d+\topenat\t$WS/after_exec.txt$"
    run --timeout 60000 -- "$PY" -c '
import os
p = os.environ["WS"] + "/prepare.py"
n = 0
for i in range(100000):
    try: os.close(os.open(p, os.O_WRONLY))
    except OSError: n += 1
print("denied", n)'
    check "audit flood: 100000 denied opens complete (${WALL} ms)" bash -c "grep -q 'denied 100000' '$O' && [ $WALL -lt 30000 ]"
    check "  at most 2000 deny lines, and a dropped line" bash -c "[ \$(grep -c '^deny' '$R') -le 2000 ] && grep -qP '^dropped\t98000$' '$R'"
fi

# ================= planted symlink for the next run =================
mv "$WS/outputs" "$WS/outputs.real"
ln -s /etc "$WS/outputs"
run -- sh -c 'echo pwn > outputs/passwd'
check "outputs replaced by a symlink between runs: refused with 125" rc_is 125
check "  one stderr line naming the stage" bash -c "grep -q 'stage: mounts' '$E' && [ \$(wc -l < '$E') = 1 ]"
rm "$WS/outputs"; mv "$WS/outputs.real" "$WS/outputs"
mkdir -p "$T/elsewhere"
mv "$WS/outputs" "$WS/outputs.real"; mkdir "$WS/outputs"; rmdir "$WS/outputs"
ln -s "$T/elsewhere" "$WS/outputs"
run -- true
check "  also for a symlink to a writable elsewhere" rc_is 125
rm "$WS/outputs"; mv "$WS/outputs.real" "$WS/outputs"

# ================= exit statuses =================
run -- true; check "exit 0" rc_is 0
run -- sh -c 'exit 7'; check "exit N passes through" rc_is 7
run -- sh -c 'kill -SEGV $$'; check "signal N -> 128+N (139)" rc_is 139
check "  result line carries the signal" bash -c "tail -n1 '$R' | grep -qP '^result\t139\t11\t0\t'"
run -- /nonexistent/cmd; check "command not found -> 127" rc_is 127
run -- "$WS/prepare.py"; check "not executable -> 126" rc_is 126
run --bogus -- true; check "bad option -> 125 with (stage: args)" bash -c "[ $RC = 125 ] && grep -q 'stage: args' '$E'"
run --ro /nonexistent /x -- true; check "missing --ro source -> 125" rc_is 125
run --ro-try /nonexistent /x -- true; check "missing --ro-try source is skipped" rc_is 0

# ================= devices passed through (a GPU's nodes; issue 13) =================
# Stand-ins for /dev/nvidia*: /dev/zero bound at /dev/nvidia0 (reads zeros, takes writes), and as
# root a node made with mknod (null's numbers) at a temporary path, bound at a nested name.
STANDIN=/dev/null
if [ $ROOT = 1 ] && mknod "$T/standin" c 1 3 2>/dev/null && chmod 666 "$T/standin"; then STANDIN=$T/standin; fi
run --dev-node /dev/zero /dev/nvidia0 --dev-node "$STANDIN" /dev/nvidia-caps/nvidia-cap1 -- sh -c '
ls /dev | tr "\n" " "; echo
[ "$(head -c 4 /dev/nvidia0 | od -An -tx1 | tr -d " ")" = 00000000 ] && echo read-ok
echo x > /dev/nvidia0 && echo write-ok
echo x > /dev/nvidia-caps/nvidia-cap1 && echo nested-ok
[ -c /dev/nvidia0 ] && echo chr-ok'
check "--dev-node: the node is there, a character device, read and written" bash -c "[ $RC = 0 ] && grep -q read-ok '$O' && grep -q write-ok '$O' && grep -q nested-ok '$O' && grep -q chr-ok '$O'"
check "  /dev holds the usual nodes plus the ones asked for, nothing else" bash -c "head -n1 '$O' | grep -qx 'fd full null nvidia-caps nvidia0 random stderr stdin stdout urandom zero '"
check "  writing to it is no denied write" no_deny
if needpy "device ioctl and mmap"; then
    run --dev-node /dev/zero /dev/nvidia0 -- "$PY" -c '
import errno, fcntl, mmap, os
fd = os.open("/dev/nvidia0", os.O_RDWR)
try: fcntl.ioctl(fd, 0x5401, bytes(64)); print("ioctl BAD no error")
except OSError as e: print("ioctl", "ok" if e.errno == errno.ENOTTY else "BAD", e.errno)
m = mmap.mmap(fd, 4096); print("mmap", "ok" if m[:4] == bytes(4) else "BAD")
try: os.close(os.open("/dev/random", os.O_RDONLY)); fd2 = os.open("/dev/random", os.O_RDONLY); fcntl.ioctl(fd2, 0x80045200, bytes(4)); print("other-ioctl BAD")
except OSError as e: print("other-ioctl ok", e.errno)'
    check "  ioctl reaches the driver (ENOTTY, not EACCES) and mmap works; other nodes keep no ioctl" probe_ok
    check "  python: no BAD line" bash -c "[ \$(grep -c ' ok' '$O') = 3 ]"
    run --dev-node /dev/zero /dev/nvidia0 -- "$PY" -c '
import os, socket, stat
ws = os.environ["WS"]
def t(name, f):
    try: f(); print(name, "BAD")
    except OSError as e: print(name, "ok", e.errno)
t("mknod mem in outputs", lambda: os.mknod(ws + "/outputs/mem", stat.S_IFCHR | 0o666, os.makedev(1, 1)))
t("mknod in /dev", lambda: os.mknod("/dev/nvidia1", stat.S_IFCHR | 0o666, os.makedev(195, 1)))
t("mknod in /tmp", lambda: os.mknod("/tmp/nvidia1", stat.S_IFCHR | 0o666, os.makedev(195, 1)))
t("write locked", lambda: open(ws + "/prepare.py", "a").write("pwn"))
t("rename onto the node", lambda: os.rename("/tmp/x" if open("/tmp/x", "w") else "", "/dev/nvidia0"))
t("unlink the node", lambda: os.unlink("/dev/nvidia0"))
port = int(os.environ.get("PORT") or 0)
if port:
    def conn():
        s = socket.socket(); s.settimeout(2); s.connect(("127.0.0.1", port))
    t("connect host listener", conn)' --setenv PORT "${PORT:-0}"
    check "a sandbox with a device: mknod (outputs, /dev, /tmp), locked writes, renames onto it, the network all fail" bash -c "! grep -q BAD '$O' && [ \$(grep -c ' ok' '$O') -ge 6 ]"
    check "  no device node appeared on the host" bash -c "[ ! -e '$WS/outputs/mem' ]"
fi
run -- sh -c 'ls /dev | tr "\n" " "'
check "no --dev-node: no device but the usual ones" bash -c "grep -qx 'fd full null random stderr stdin stdout urandom zero ' '$O'"
for bad in /dev/kmsg /dev/tty /dev/console /dev/ptmx /dev/loop0 /dev/loop-control /dev/kvm /dev/fuse /dev/net/tun \
           /dev/userfaultfd /dev/vsock /dev/cpu_dma_latency /dev/btrfs-control "$WS/prepare.py" /dev/stdin; do
    [ -e "$bad" ] || continue
    run --dev-node "$bad" /dev/nvidia0 -- true
    check "--dev-node $bad refused (125, stage mounts)" bash -c "[ $RC = 125 ] && grep -q 'stage: mounts' '$E'"
done
if [ $ROOT = 1 ] && mknod "$T/mem" c 1 1 2>/dev/null && mknod "$T/blk" b 7 0 2>/dev/null; then
    run --dev-node "$T/mem" /dev/nvidia0 -- true
    check "--dev-node of a node with /dev/mem's numbers, under another name, refused" bash -c "[ $RC = 125 ] && grep -q 'physical memory' '$E'"
    run --dev-node "$T/blk" /dev/nvidia0 -- true
    check "--dev-node of a block device refused" bash -c "[ $RC = 125 ] && grep -q 'block device' '$E'"
    rm -f "$T/mem" "$T/blk"
fi
# userfaultfd's minor is given at boot: the launcher reads it in /proc/misc, whatever the node's name.
UFFD_MINOR=$(awk '$2 == "userfaultfd" { print $1 }' /proc/misc 2>/dev/null)
if [ $ROOT = 1 ] && [ -n "$UFFD_MINOR" ] && mknod "$T/uffd" c 10 "$UFFD_MINOR" 2>/dev/null; then
    run --dev-node "$T/uffd" /dev/nvidia0 -- true
    check "--dev-node of a node with userfaultfd's numbers, under another name, refused" bash -c "[ $RC = 125 ] && grep -q 'filter denies' '$E'"
    rm -f "$T/uffd"
fi
run --dev-node /dev/zero /tmp/nvidia0 -- true
check "--dev-node outside /dev refused" rc_is 125
run --dev-node /dev/zero /dev/null -- true
check "--dev-node over a node /dev already has refused" rc_is 125
rm -f "$T/standin"

# ================= judged from outside =================
manifest > "$T/manifest.after"
check "protected workspace bytes, modes and listing unchanged" diff "$T/manifest.before" "$T/manifest.after"
check "no planted files in the workspace" bash -c "[ ! -e '$WS/planted.py' ] && [ ! -e '$WS/.git/hooks/pre-commit' ] && [ ! -e '$WS/thread.txt' ]"
if [ -n "$PORT" ]; then
    check "host listeners received nothing" bash -c "[ ! -s '$HITS' ]"
fi
check "no sandbox process left at all" no_procs "$MARK"
if [ $ROOT = 1 ]; then
    # Only cgroups whose launcher is gone count: other proctor runs on this machine may be live.
    stale_cgroups() {
        for d in /sys/fs/cgroup/*/proctor/psb-* /sys/fs/cgroup/*/*/*/proctor/psb-*; do
            [ -d "$d" ] || continue
            [ -d "/proc/${d##*psb-}" ] || echo "$d"
        done
    }
    sleep 0.5
    check "no cgroup left behind" bash -c "$(declare -f stale_cgroups); [ -z \"\$(stale_cgroups)\" ]"
fi

# ================= reading what only root may (issue 10) =================
if [ $ROOT = 1 ]; then
    # A root-only file under a mounted system path that no --hide names: host uid 0 reads it
    # without any capability; as --user the kernel refuses it.
    SECRETF=/etc/psb-attack-root-only-$$
    echo ROOT-ONLY-SECRET >"$SECRETF" && chmod 600 "$SECRETF"
    NU=$(id -u nobody) NG=$(id -g nobody)
    run --user "$NU" "$NG" --map-owner "$WS" -- sh -c "id -u; id -G; echo by-user >outputs/by-user; cat $SECRETF"
    check "--user: the root-only file is unreadable" bash -c "rc_is() { [ '$RC' = \$1 ]; }; rc_is 1 && ! grep -q ROOT-ONLY '$O' && grep -q 'Permission denied' '$E'"
    check "  the command is the user, with no other group" bash -c "[ \"\$(head -n2 '$O' | tr '\n' ' ')\" = '$NU $NG ' ]"
    check "  the idmapped output is written and stored as the workspace's owner" bash -c "[ \"\$(stat -c '%u %s' '$WS/outputs/by-user')\" = '0 8' ]"
    check "  the report names the user" reported "^enforce\tuser\tsetresuid\+idmap\t$NU:$NG$"
    rm -f "$SECRETF" "$WS/outputs/by-user"
else
    skip "--user needs root"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
