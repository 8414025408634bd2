"""GPU check (issue 13), run by bench/gpu_check.sh on a machine with an NVIDIA GPU.

1. `nvidia-smi -L` inside the experiment sandbox of a workspace with `gpus = 1`.
2. This file's `--cuda` part inside the same sandbox: through libcuda.so.1 with ctypes (no CUDA
   toolkit, no framework), cuInit, cuDeviceGet, cuCtxCreate, cuMemAlloc, cuModuleLoadData of a
   small PTX kernel, cuLaunchKernel, then the result copied back and checked.
3. Inside a workspace without `gpus`: no /dev/nvidia* at all, and the CUDA part fails at cuInit.
4. Spawn cost: `proctor exec -- /bin/true` with `gpus = 0` and `gpus = 1`, median of N runs.
Exit status 0 when every check passed, 1 otherwise.
"""
import ctypes
import os
import statistics
import subprocess
import sys
import tempfile
import time

PTX = rb"""
.version 6.0
.target sm_50
.address_size 64
.visible .entry fill(.param .u64 out, .param .u32 n)
{
    .reg .pred %p;
    .reg .b32 %r<7>;
    .reg .b64 %rd<5>;
    ld.param.u64 %rd1, [out];
    ld.param.u32 %r1, [n];
    mov.u32 %r2, %ctaid.x;
    mov.u32 %r3, %ntid.x;
    mov.u32 %r4, %tid.x;
    mad.lo.s32 %r5, %r2, %r3, %r4;
    setp.ge.u32 %p, %r5, %r1;
    @%p bra DONE;
    cvta.to.global.u64 %rd2, %rd1;
    mul.wide.u32 %rd3, %r5, 4;
    add.s64 %rd4, %rd2, %rd3;
    shl.b32 %r6, %r5, 1;
    st.global.u32 [%rd4], %r6;
DONE:
    ret;
}
"""


def cuda():
    """Allocates, launches `fill` over N ints, checks out[i] == 2*i. Prints one line per step."""
    cu = ctypes.CDLL("libcuda.so.1")

    def call(name, *args):
        rc = getattr(cu, name)(*args)
        if rc != 0:
            print("FAIL %s: CUresult %d" % (name, rc))
            sys.exit(1)
        print("ok   %s" % name)

    n = 1 << 20
    call("cuInit", 0)
    count = ctypes.c_int()
    call("cuDeviceGetCount", ctypes.byref(count))
    dev = ctypes.c_int()
    call("cuDeviceGet", ctypes.byref(dev), 0)
    ctx = ctypes.c_void_p()
    call("cuCtxCreate_v2", ctypes.byref(ctx), 0, dev)
    buf = ctypes.c_uint64()
    call("cuMemAlloc_v2", ctypes.byref(buf), ctypes.c_size_t(4 * n))
    module = ctypes.c_void_p()
    call("cuModuleLoadData", ctypes.byref(module), ctypes.c_char_p(PTX + b"\0"))
    fn = ctypes.c_void_p()
    call("cuModuleGetFunction", ctypes.byref(fn), module, b"fill")
    out, count_arg = ctypes.c_uint64(buf.value), ctypes.c_uint32(n)
    params = (ctypes.c_void_p * 2)(ctypes.cast(ctypes.byref(out), ctypes.c_void_p),
                                   ctypes.cast(ctypes.byref(count_arg), ctypes.c_void_p))
    call("cuLaunchKernel", fn, (n + 255) // 256, 1, 1, 256, 1, 1, 0, None, params, None)
    call("cuCtxSynchronize")
    host = (ctypes.c_uint32 * n)()
    call("cuMemcpyDtoH_v2", host, buf, ctypes.c_size_t(4 * n))
    bad = sum(1 for i in range(0, n, 4099) if host[i] != 2 * i)
    print("%s kernel result (%d devices visible, CUDA_VISIBLE_DEVICES=%s)"
          % ("ok  " if bad == 0 else "FAIL", count.value, os.environ.get("CUDA_VISIBLE_DEVICES")))
    call("cuMemFree_v2", buf)
    sys.exit(0 if bad == 0 else 1)


def workspace(root, gpus):
    os.makedirs(root + "/outputs", exist_ok=True)
    with open(root + "/proctor.toml", "w") as f:
        f.write('[files]\neditable = ["train.py"]\nlocked = ["prepare.py", "gpu_check.py"]\noutputs = ["outputs/"]\n\n'
                '[experiment]\ncommand = ["python3", "train.py"]\ntimeout = "120s"\nmemory = "8GiB"\ngpus = %d\n\n'
                '[evaluator]\ncommand = ["python3", "prepare.py"]\n' % gpus)
    for name, text in (("train.py", "print(1)\n"), ("prepare.py", "print('{\"score\": 1}')\n")):
        with open(root + "/" + name, "w") as f:
            f.write(text)
    with open(__file__) as src, open(root + "/gpu_check.py", "w") as dst:
        dst.write(src.read())
    return root


def main():
    if "--cuda" in sys.argv:
        cuda()
    runs = int(sys.argv[sys.argv.index("-n") + 1]) if "-n" in sys.argv else 20
    proctor = os.environ["PROCTOR_BIN"]
    failed = 0
    with tempfile.TemporaryDirectory(prefix="proctor-gpu-") as tmp:
        gpu = workspace(tmp + "/gpu", 1)
        plain = workspace(tmp + "/plain", 0)

        # A machine lock of its own: another proctor on this machine does not hold these starts up.
        env = dict(os.environ, PROCTOR_MACHINE_LOCK=tmp + "/machine.lock")

        def run(ws, *cmd):
            return subprocess.run([proctor, "exec", "--workspace", ws, "--"] + list(cmd), capture_output=True, text=True, env=env)

        def check(name, ok, detail=""):
            nonlocal failed
            failed += 0 if ok else 1
            print("%s %s%s" % ("ok  " if ok else "FAIL", name, ("\n" + detail.rstrip()) if detail and not ok else ""))

        smi = run(gpu, "nvidia-smi", "-L")
        check("nvidia-smi -L in the sandbox: %s" % smi.stdout.strip().replace("\n", "; "), smi.returncode == 0 and "GPU 0" in smi.stdout, smi.stderr)
        k = run(gpu, "python3", "gpu_check.py", "--cuda")
        print(k.stdout.rstrip())
        check("CUDA allocation, PTX module load and kernel launch in the sandbox", k.returncode == 0, k.stderr)
        absent = run(plain, "/bin/sh", "-c", "ls /dev | grep -c nvidia; python3 gpu_check.py --cuda")
        check("without gpus: no /dev/nvidia*, cuInit fails", absent.stdout.startswith("0\n") and absent.returncode != 0,
              absent.stdout + absent.stderr)
        for label, ws in (("gpus = 0", plain), ("gpus = 1", gpu)):
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                r = run(ws, "/bin/true")
                if r.returncode != 0:
                    check("proctor exec /bin/true with %s" % label, False, r.stderr)
                    break
                times.append((time.perf_counter() - t0) * 1000)
            if times:
                print("spawn %s: median %.1f ms, min %.1f ms over %d runs" % (label, statistics.median(times), min(times), len(times)))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
