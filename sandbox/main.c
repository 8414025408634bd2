/*
 * proctor-sandbox: the entry point. It keeps the original argument area for init to wipe,
 * parses the command line (args.c), opens the report with the protocol's version line and hands
 * off to the helper (helper.c), which sets up and supervises the sandbox. sandbox/README.md
 * describes the options, the report and the exit status.
 */
#include "psb.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

char *psb_wipe_start;
size_t psb_wipe_len;

int main(int argc, char **argv)
{
    static struct psb_config cfg;
    /* Work on a heap copy of argv: init wipes the original argument and environment area so
     * /proc/1/cmdline and /proc/1/environ inside the sandbox show nothing of the policy or
     * of the supervisor's environment (cmdline is readable without ptrace access). */
    char **av = calloc((size_t)argc + 1, sizeof *av);
    if (!av)
        return 125;
    for (int i = 0; i < argc; i++)
        if (!(av[i] = strdup(argv[i])))
            return 125;
    extern char **environ;
    char *end = argv[argc - 1] + strlen(argv[argc - 1]) + 1;
    for (char **e = environ; e && *e; e++)
        if (*e == end)
            end = *e + strlen(*e) + 1;
    psb_wipe_start = argv[0];
    psb_wipe_len = (size_t)(end - argv[0]);
    psb_parse_args(argc, av, &cfg);

    psb_report_fd = cfg.report_fd;
    if (psb_report_fd >= 0)
        fcntl(psb_report_fd, F_SETFD, FD_CLOEXEC);
    if (cfg.parent_fd >= 0)
        fcntl(cfg.parent_fd, F_SETFD, FD_CLOEXEC);
    signal(SIGPIPE, SIG_IGN);
    /* First, so that proctor refuses a launcher of another protocol before it reads anything. */
    psb_emit(VERSION, PSB_I(PSB_PROTOCOL_VERSION));
    return psb_helper_run(&cfg);
}
