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

/* Hook calls carry whatever libvirt (or anyone allowed on the bus) sends: the count
 * table stays small whatever the input. */
#define HOOK_COUNT_KEYS_MAX 32
#define HOOK_OPERATION_MAX  32

GVariant *
vs_hook_count(GHashTable *counts, const char *operation)
{
    g_autofree char *key = g_utf8_make_valid(operation, MIN(strlen(operation), HOOK_OPERATION_MAX));
    guint n = GPOINTER_TO_UINT(g_hash_table_lookup(counts, key));
    GVariantBuilder b;
    GHashTableIter iter;
    gpointer k, v;

    /* The last key is kept for "other". */
    if (n == 0 && g_hash_table_size(counts) >= HOOK_COUNT_KEYS_MAX - 1) {
        g_free(key);
        key = g_strdup("other");
    }
    n = GPOINTER_TO_UINT(g_hash_table_lookup(counts, key));
    g_hash_table_replace(counts, g_steal_pointer(&key), GUINT_TO_POINTER(n + 1));

    g_variant_builder_init(&b, G_VARIANT_TYPE("a{su}"));
    g_hash_table_iter_init(&iter, counts);
    while (g_hash_table_iter_next(&iter, &k, &v))
        g_variant_builder_add(&b, "{su}", (const char *)k, GPOINTER_TO_UINT(v));
    return g_variant_builder_end(&b);
}
