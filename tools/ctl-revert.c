/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* virtsnapctl revert: puts a snapshot back into its (shut-off) domain's disks, through
 * RevertSnapshot; the job is followed like a snapshot job. */
#include "ctl.h"
#include "vs-names.h"

int
ctl_revert(Ctl *ctl, const Invocation *inv)
{
    const char *bandwidth = inv_value(inv, "bandwidth");
    guint64 bandwidth_bytes = 0;
    g_autoptr(GError) error = NULL;
    g_autofree char *path = NULL;
    GVariantBuilder b;

    if (bandwidth && !ctl_parse_size(bandwidth, &bandwidth_bytes))
        return ctl_usage_error(ctl->command, "--bandwidth: '%s' is not a rate like 50M", bandwidth);
    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    if (inv_flag(inv, "stop"))
        g_variant_builder_add(&b, "{sv}", VS_OPT_STOP, g_variant_new_boolean(TRUE));
    if (inv_flag(inv, "no-safety"))
        g_variant_builder_add(&b, "{sv}", VS_OPT_SAFETY, g_variant_new_boolean(FALSE));
    if (bandwidth_bytes)
        g_variant_builder_add(&b, "{sv}", VS_OPT_BANDWIDTH, g_variant_new_uint64(bandwidth_bytes));

    if (!vs_dbus_agent1_call_revert_snapshot_sync(ctl->agent, inv_arg(inv, 0),
                                                  g_variant_builder_end(&b), &path, NULL, &error))
        return ctl_fail(error);
    return ctl_job_started(ctl, inv, path);
}
