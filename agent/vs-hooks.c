/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The guards behind HookEvent. libvirtd waits for the hook, and the hook waits for us:
 * the answer comes from the agent's own job table only. */
#include "vs-hooks.h"

#include <string.h>

gboolean
vs_hook_allows(const char *operation, guint job_id, gboolean job_offline, char **message)
{
    gboolean starting = g_strcmp0(operation, "prepare") == 0 || g_strcmp0(operation, "start") == 0;
    gboolean moving = g_strcmp0(operation, "migrate") == 0 || g_strcmp0(operation, "restore") == 0;

    if (starting && job_id && job_offline) {
        if (message)
            *message = g_strdup_printf("virtsnap: snapshot job %u is reading this domain's "
                                       "disks; try again when it ends",
                                       job_id);
        return FALSE;
    }
    if (moving && job_id) {
        if (message)
            *message = g_strdup_printf("virtsnap: snapshot job %u is running on this domain; "
                                       "try again when it ends",
                                       job_id);
        return FALSE;
    }
    if (message)
        *message = g_strdup("");
    return TRUE;
}
