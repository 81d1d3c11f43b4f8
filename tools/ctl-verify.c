/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* virtsnapctl verify: checks a finished snapshot's images (and with --deep its file
 * systems) and records the outcome in its metadata. */
#include "ctl.h"
#include "vs-names.h"

int
ctl_verify(Ctl *ctl, const Invocation *inv)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *path = NULL;
    GVariantBuilder b;

    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    if (inv_flag(inv, "deep"))
        g_variant_builder_add(&b, "{sv}", VS_OPT_DEEP, g_variant_new_boolean(TRUE));
    if (!vs_dbus_agent1_call_verify_snapshot_sync(ctl->agent, inv_arg(inv, 0),
                                                  g_variant_builder_end(&b), &path, NULL, &error))
        return ctl_fail(error);
    return ctl_job_started(ctl, inv, path);
}
