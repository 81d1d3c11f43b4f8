/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Log lines an admin can filter on: the journal fields of job messages and the one
 * MESSAGE_ID per kind of event (journalctl MESSAGE_ID=... or VIRTSNAP_DOMAIN=web). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Fixed 128-bit ids, one per kind of event; documented in README.md ("Logs"). */
#define VS_MSGID_JOB_STARTED      "03b3af23c1634c03870b0ebb585e07ea"
#define VS_MSGID_JOB_SUCCEEDED    "76428ad675f64d36b020dab926d88211"
#define VS_MSGID_JOB_FAILED       "af60373bf3a4470cbcd4a3ee80ed78d0"
#define VS_MSGID_JOB_CANCELLED    "92f4d4477f2c409994018bacca26fd26"
#define VS_MSGID_JOB_INTERRUPTED  "411fd959f18649d88cb31b13a37ddf2f" /* repaired at start-up */
#define VS_MSGID_POLICY_TRIGGERED "1db430c895564d308a5dd719a666170f"
#define VS_MSGID_AUTH_DENIED      "b28ccba32b2542d6bd24d5c5816b6ab6"

/* Journal fields */
#define VS_LOG_FIELD_JOB    "VIRTSNAP_JOB"    /* the job number, as in /org/virtsnap/Agent1/job/N */
#define VS_LOG_FIELD_DOMAIN "VIRTSNAP_DOMAIN" /* the domain name */

/* Logs "job N (DOMAIN): MESSAGE" at @level with VIRTSNAP_JOB, VIRTSNAP_DOMAIN and, when
 * @message_id is not NULL, MESSAGE_ID. @job_id 0 and @domain NULL leave their field (and
 * the prefix) out, for events that are not about one job. */
void vs_log_job(GLogLevelFlags level, const char *message_id, guint job_id, const char *domain,
                const char *format, ...) G_GNUC_PRINTF(5, 6);

G_END_DECLS
