#ifndef PROCTOR_CNVML_SHIM_H
#define PROCTOR_CNVML_SHIM_H

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// NVML (libnvidia-ml.so.1, installed with the NVIDIA driver) is loaded with dlopen when a phase has
// GPUs, never linked: most hosts have no GPU, and proctor must start without the driver. Only the
// six calls below are used (the sixth, per-process utilization, is optional: without it no GPU time); their signatures are NVML's (nvml.h), declared here so that no CUDA
// header is needed to build. A process's GPU memory is read through
// nvmlDeviceGetComputeRunningProcesses (_v3 where the driver has it, else _v2: the same record).

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} proctor_nvml_process;

/// nvmlProcessUtilizationSample_t: a process's SM use (percent) over the driver's last sampling
/// period, which ends at `timeStamp` (microseconds).
typedef struct {
    unsigned int pid;
    unsigned long long timeStamp;
    unsigned int smUtil;
    unsigned int memUtil;
    unsigned int encUtil;
    unsigned int decUtil;
} proctor_nvml_sample;

struct proctor_nvml {
    void *lib;
    int (*init)(void);
    int (*shutdown)(void);
    int (*count)(unsigned int *);
    int (*handle)(unsigned int, void **);
    int (*processes)(void *, unsigned int *, proctor_nvml_process *);
    int (*utilization)(void *, proctor_nvml_sample *, unsigned int *, unsigned long long);
};

/// Loads `path` and initialises NVML. Returns 0, or -1 with a message in `error`.
static inline int proctor_nvml_open(struct proctor_nvml *n, const char *path, char *error, size_t size) {
    memset(n, 0, sizeof *n);
    n->lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!n->lib) {
        const char *why = dlerror();
        snprintf(error, size, "cannot load %s: %s", path, why ? why : "unknown error");
        return -1;
    }
    *(void **)&n->init = dlsym(n->lib, "nvmlInit_v2");
    *(void **)&n->shutdown = dlsym(n->lib, "nvmlShutdown");
    *(void **)&n->count = dlsym(n->lib, "nvmlDeviceGetCount_v2");
    *(void **)&n->handle = dlsym(n->lib, "nvmlDeviceGetHandleByIndex_v2");
    *(void **)&n->processes = dlsym(n->lib, "nvmlDeviceGetComputeRunningProcesses_v3");
    if (!n->processes)
        *(void **)&n->processes = dlsym(n->lib, "nvmlDeviceGetComputeRunningProcesses_v2");
    *(void **)&n->utilization = dlsym(n->lib, "nvmlDeviceGetProcessUtilization");
    if (!n->init || !n->shutdown || !n->count || !n->handle || !n->processes) {
        snprintf(error, size, "%s lacks an NVML function proctor calls: not a usable NVML", path);
        dlclose(n->lib);
        n->lib = NULL;
        return -1;
    }
    int rc = n->init();
    if (rc != 0) {
        snprintf(error, size, "nvmlInit_v2 failed (NVML error %d)", rc);
        dlclose(n->lib);
        n->lib = NULL;
        return -1;
    }
    return 0;
}

static inline void proctor_nvml_close(struct proctor_nvml *n) {
    if (!n->lib)
        return;
    n->shutdown();
    dlclose(n->lib);
    n->lib = NULL;
}

/// Every compute process on every GPU, up to `cap` records in `out` (a process on two GPUs
/// appears twice). Returns how many, or -1 when NVML fails.
static inline int proctor_nvml_processes(struct proctor_nvml *n, proctor_nvml_process *out, unsigned int cap) {
    unsigned int devices = 0;
    if (n->count(&devices) != 0)
        return -1;
    unsigned int total = 0;
    for (unsigned int d = 0; d < devices && total < cap; d++) {
        void *dev = NULL;
        if (n->handle(d, &dev) != 0)
            return -1;
        unsigned int room = cap - total;
        /* NVML_ERROR_INSUFFICIENT_SIZE (more processes than room) fills nothing: a failure too. */
        if (n->processes(dev, &room, out + total) != 0 || room > cap - total)
            return -1;
        total += room;
    }
    return (int)total;
}

/// The utilization samples newer than `since` (microseconds) on every GPU, up to `cap` in `out`.
/// Returns how many; -1 when NVML fails, -2 when this NVML has no per-process utilization.
/// NVML_ERROR_NOT_FOUND (6: no sample since `since`) is no sample, not a failure.
static inline int proctor_nvml_utilization(struct proctor_nvml *n, proctor_nvml_sample *out, unsigned int cap,
                                           unsigned long long since) {
    if (!n->utilization)
        return -2;
    unsigned int devices = 0;
    if (n->count(&devices) != 0)
        return -1;
    unsigned int total = 0;
    for (unsigned int d = 0; d < devices && total < cap; d++) {
        void *dev = NULL;
        if (n->handle(d, &dev) != 0)
            return -1;
        unsigned int room = cap - total;
        int rc = n->utilization(dev, out + total, &room, since);
        if (rc == 6)
            continue;
        if (rc != 0 || room > cap - total)
            return -1;
        total += room;
    }
    return (int)total;
}

#endif
