/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* virtsnapctl clone: a new domain from a snapshot, through Agent1.CloneSnapshot. */
#include "ctl.h"
#include "vs-names.h"

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
    if (inv_flag(inv, "wait"))
        return ctl_wait_for_job(ctl, path);
    if (ctl->json)
        ctl_print_json(g_variant_new_parsed("{'job': <%o>}", path));
    else
        g_print("%s\n", path);
    return EXIT_OK;
}
