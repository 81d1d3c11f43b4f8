/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the agent answers to libvirt hook calls: pure decisions, no libvirt. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Whether libvirt may go on with @operation on a domain. @job_id is the domain's
 * running job (0: none); @job_offline tells that it reads the disks with the domain
 * down. On refusal, @message (if not NULL) says why, for the user of virsh. */
gboolean vs_hook_allows(const char *operation, guint job_id, gboolean job_offline, char **message);

/* Counts one hook call of @operation in @counts (operation -> count; keys are freed with
 * g_free) and returns the whole table as the a{su} of the HookCounts property. At most 32
 * keys of at most 32 bytes: further operations count as "other". */
GVariant *vs_hook_count(GHashTable *counts, const char *operation);

G_END_DECLS
