/*
 * proctor-sandbox: the report channel. Every line goes through the record table in
 * protocol/psb_protocol.h, the one proctor parses with; one write(2) per record so concurrent
 * readers never see torn lines.
 */
#include "psb.h"

#include <stdarg.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

int psb_report_fd = -1;

void psb_emit_fields(enum psb_record r, const struct psb_field *f, size_t n)
{
    if (psb_report_fd < 0)
        return;
    char buf[PSB_REPORT_LINE_MAX];
    int len = psb_format_record(buf, sizeof buf - 1, r, f, n);
    if (len < 0) {
        /* A field of the wrong type: a bug here, and a line proctor would refuse. */
        dprintf(2, "proctor-sandbox: record %d does not match PSB_RECORDS\n", (int)r);
        abort();
    }
    buf[len++] = '\n';
    (void)psb_write_all(psb_report_fd, buf, (size_t)len);
}

void psb_enforce(const char *limit, const char *mechanism, const char *fmt, ...)
{
    char value[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(value, sizeof value, fmt, ap);
    va_end(ap);
    psb_emit(ENFORCE, PSB_T(limit), PSB_T(mechanism), PSB_T(value));
}

void psb_warn(const char *limit, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    psb_emit(WARN, PSB_T(limit), PSB_T(msg));
    /* With a report channel the supervisor says it (once, on its own stderr and in the audit);
     * stderr here may be the experiment's log. Alone, the launcher must say it itself. */
    if (psb_report_fd < 0)
        dprintf(2, "proctor-sandbox: warning: %s: %s\n", limit, msg);
}

void psb_limit(const char *kind, const char *fmt, ...)
{
    char detail[PATH_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    psb_emit(LIMIT, PSB_T(kind), PSB_T(detail));
}
