/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The one function that writes job log lines with their journal fields. */
#include "vs-log.h"

#include <stdarg.h>

/* The syslog priority GLib gives each level (g_log_structured() adds it itself;
 * g_log_structured_array() does not). */
static const char *
priority_of(GLogLevelFlags level)
{
    if (level & G_LOG_LEVEL_ERROR)
        return "3";
    if (level & (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING))
        return "4";
    if (level & G_LOG_LEVEL_MESSAGE)
        return "5";
    if (level & G_LOG_LEVEL_INFO)
        return "6";
    return "7";
}

void
vs_log_job(GLogLevelFlags level, const char *message_id, guint job_id, const char *domain,
           const char *format, ...)
{
    g_autofree char *text = NULL;
    g_autofree char *message = NULL;
    g_autofree char *job = job_id ? g_strdup_printf("%u", job_id) : NULL;
    GLogField fields[6];
    gsize n = 0;
    va_list args;

    va_start(args, format);
    text = g_strdup_vprintf(format, args);
    va_end(args);
    if (job_id && domain)
        message = g_strdup_printf("job %u (%s): %s", job_id, domain, text);
    else if (job_id)
        message = g_strdup_printf("job %u: %s", job_id, text);
    else
        message = g_steal_pointer(&text);

    fields[n++] = (GLogField){"MESSAGE", message, -1};
    fields[n++] = (GLogField){"PRIORITY", priority_of(level), -1};
    fields[n++] = (GLogField){"GLIB_DOMAIN", G_LOG_DOMAIN, -1};
    if (message_id)
        fields[n++] = (GLogField){"MESSAGE_ID", message_id, -1};
    if (job)
        fields[n++] = (GLogField){VS_LOG_FIELD_JOB, job, -1};
    if (domain)
        fields[n++] = (GLogField){VS_LOG_FIELD_DOMAIN, domain, -1};
    g_log_structured_array(level, fields, n);
}
