import Foundation
import ProctorSandbox

#if canImport(Glibc)
    import Glibc
#endif

/// A stand-in for the NVIDIA driver's NVML (issue 13), compiled with gcc into a temporary directory:
/// nvmlInit_v2, nvmlDeviceGetCount_v2 (one GPU), nvmlDeviceGetHandleByIndex_v2,
/// nvmlDeviceGetComputeRunningProcesses_v3, nvmlDeviceGetProcessUtilization and nvmlShutdown, as the
/// real library exports them. It reports, as using GPU memory, every process on the machine whose
/// name is in its script file (`NAME BYTES [SM]` lines; no file: an NVML error), and with SM, a
/// utilization sample of SM percent at each call. `decoy` is a copy of sleep named `gpuhog`, for a
/// process outside any sandbox.
public final class StubNVML {
    public let directory: TemporaryDirectory
    public var library: String { directory.path + "/libnvml-stub.so" }
    public var decoy: String { directory.path + "/gpuhog" }

    static let source = #"""
        #include <dirent.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #include <time.h>
        typedef struct { unsigned int pid; unsigned long long used; unsigned int gi, ci; } info_t;
        typedef struct { unsigned int pid; unsigned long long ts; unsigned int sm, mem, enc, dec; } sample_t;
        int nvmlInit_v2(void) { return 0; }
        int nvmlShutdown(void) { return 0; }
        int nvmlDeviceGetCount_v2(unsigned int *n) { *n = 1; return 0; }
        int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void **h) { *h = (void *)(long)(i + 1); return i == 0 ? 0 : 2; }
        /* SCRIPT: lines "NAME BYTES [SM]"; each process whose comm is NAME holds BYTES, and uses SM
           percent of the GPU's SMs when SM is given. Returns how many processes match (pids, bytes
           and SM in the arrays), or -1 without a script. */
        static int matching(unsigned int *pids, unsigned long long *used, unsigned int *sm, unsigned int cap) {
            char names[16][32], line[128]; unsigned long long bytes[16]; unsigned int sms[16]; int nn = 0;
            FILE *f = fopen(SCRIPT, "r");
            if (!f) return -1;
            while (nn < 16 && fgets(line, sizeof line, f)) {
                sms[nn] = 0;
                if (sscanf(line, "%31s %llu %u", names[nn], &bytes[nn], &sms[nn]) >= 2) nn++;
            }
            fclose(f);
            unsigned int n = 0;
            DIR *d = opendir("/proc");
            struct dirent *e;
            while (d && (e = readdir(d))) {
                char p[300], comm[64] = "";
                snprintf(p, sizeof p, "/proc/%s/comm", e->d_name);
                FILE *c = fopen(p, "r");
                if (!c) continue;
                if (!fgets(comm, sizeof comm, c)) comm[0] = 0;
                fclose(c);
                comm[strcspn(comm, "\n")] = 0;
                for (int k = 0; k < nn; k++)
                    if (!strcmp(comm, names[k])) {
                        if (n < cap) { pids[n] = (unsigned)atoi(e->d_name); used[n] = bytes[k]; sm[n] = sms[k]; }
                        n++;
                    }
            }
            if (d) closedir(d);
            return (int)n;
        }
        int nvmlDeviceGetComputeRunningProcesses_v3(void *dev, unsigned int *count, info_t *out) {
            unsigned int pids[256], sm[256]; unsigned long long used[256];
            int n = matching(pids, used, sm, 256);
            if (n < 0) return 999;
            for (int k = 0; k < n && k < (int)*count; k++) { out[k].pid = pids[k]; out[k].used = used[k]; out[k].gi = out[k].ci = 0; }
            int rc = (unsigned)n > *count ? 7 : 0;
            *count = (unsigned)n;
            return rc;
        }
        /* A sample now for every matching process given an SM percent (NVML_ERROR_NOT_FOUND: none). */
        int nvmlDeviceGetProcessUtilization(void *dev, sample_t *out, unsigned int *count, unsigned long long since) {
            unsigned int pids[256], sm[256]; unsigned long long used[256];
            int n = matching(pids, used, sm, 256);
            if (n < 0) return 999;
            struct timespec now;
            clock_gettime(CLOCK_REALTIME, &now);
            unsigned long long ts = (unsigned long long)now.tv_sec * 1000000ULL + (unsigned long long)now.tv_nsec / 1000;
            unsigned int m = 0;
            for (int k = 0; k < n; k++) {
                if (!sm[k] || ts <= since) continue;
                if (out && m < *count) { out[m].pid = pids[k]; out[m].ts = ts; out[m].sm = sm[k]; out[m].mem = out[m].enc = out[m].dec = 0; }
                m++;
            }
            if (!m) return 6;
            int rc = !out || m > *count ? 7 : 0;
            *count = m;
            return rc;
        }
        """#

    public init() throws {
        directory = try TemporaryDirectory("proctor-nvml")
        chmod(directory.path, 0o755)
        let dir = directory.path
        try Data(Self.source.utf8).write(to: URL(fileURLWithPath: dir + "/stub.c"))
        // gcc comes with .ci/setup (the attack tests build their probe with it too).
        let cc = try runChild(["/usr/bin/env", "gcc", "-shared", "-fPIC", "-DSCRIPT=\"\(dir)/script\"", "-o", library, dir + "/stub.c"])
        guard cc.status == 0 else { throw NSError(domain: "building the stub NVML: \(cc.stderr)", code: Int(cc.status)) }
        try FileManager.default.copyItem(atPath: "/bin/sleep", toPath: decoy)
    }

    /// A host with one GPU as the stub counts them: /dev/zero at /dev/nvidia0, /dev/null at /dev/nvidiactl.
    public static let oneGPU = GPUHost(control: [DeviceNode(source: "/dev/null", target: "/dev/nvidiactl")],
                                       gpus: [(0, DeviceNode(source: "/dev/zero", target: "/dev/nvidia0"))])

    /// What the next calls report.
    public func script(_ text: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: directory.path + "/script"))
    }
}
