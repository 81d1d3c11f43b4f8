/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* virtsnapctl clone: a new domain from a snapshot, through Agent1.CloneSnapshot. */
#include "ctl.h"
#include "vs-names.h"

static const char *
str(GVariant *dict, const char *key)
{
    const char *value = NULL;

    return g_variant_lookup(dict, key, "&s", &value) ? value : "";
}

static gboolean
flag(GVariant *dict, const char *key)
{
    gboolean value = FALSE;

    g_variant_lookup(dict, key, "b", &value);
    return value;
}

void
ctl_print_clone_result(GVariant *result)
{
    g_autoptr(GVariant) disks = g_variant_lookup_value(result, "disks", G_VARIANT_TYPE("aa{sv}"));
    g_autofree const char **notes = NULL;
    gint64 total = 0;

    g_variant_lookup(result, "total-ms", "x", &total);
    g_print("  clone: %s (uuid %s) of snapshot %s of %s\n", str(result, "name"),
            str(result, "uuid"), str(result, "snapshot-id"), str(result, "source-domain"));
    g_print("  %s, %s, total %" G_GINT64_FORMAT " ms\n",
            flag(result, "full") ? "full copy" : "instant (overlays on the snapshot)",
            flag(result, "started") ? "started" : "not started", total);
    for (gsize i = 0; disks && i < g_variant_n_children(disks); i++) {
        g_autoptr(GVariant) d = g_variant_get_child_value(disks, i);

        g_print("  %-6s %s  %s\n", str(d, "target"), str(d, "image"), str(d, "format"));
    }
    if (g_variant_lookup(result, "notes", "^a&s", &notes)) {
        for (guint i = 0; notes[i]; i++)
            g_print("  note: %s\n", notes[i]);
    }
}

int
ctl_clone(Ctl *ctl, const Invocation *inv)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *path = NULL;
    GVariantBuilder b;

    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&b, "{sv}", VS_OPT_CLONE_NAME, g_variant_new_string(inv_arg(inv, 1)));
    if (inv_flag(inv, "start"))
        g_variant_builder_add(&b, "{sv}", VS_OPT_CLONE_START, g_variant_new_boolean(TRUE));
    if (inv_flag(inv, "full"))
        g_variant_builder_add(&b, "{sv}", VS_OPT_CLONE_FULL, g_variant_new_boolean(TRUE));
    if (!vs_dbus_agent1_call_clone_snapshot_sync(ctl->agent, inv_arg(inv, 0),
                                                 g_variant_builder_end(&b), &path, NULL, &error))
        return ctl_fail(error);
    return ctl_job_started(ctl, inv, path);
}
