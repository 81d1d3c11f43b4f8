/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* virtsnapctl snapshots and delete: the finished snapshots the agent keeps. */
#include "ctl.h"

int
ctl_snapshots(Ctl *ctl, const Invocation *inv)
{
    g_autoptr(GVariant) list = NULL;
    g_autoptr(GError) error = NULL;

    if (!vs_dbus_agent1_call_list_snapshots_sync(ctl->agent, inv_n_args(inv) ? inv_arg(inv, 0) : "",
                                                 &list, NULL, &error))
        return ctl_fail(error);
    ctl_print_snapshots(list, inv_flag(inv, "ids"), ctl->json);
    return EXIT_OK;
}

int
ctl_delete(Ctl *ctl, const Invocation *inv)
{
    g_autoptr(GError) error = NULL;

    if (!vs_dbus_agent1_call_delete_snapshot_sync(ctl->agent, inv_arg(inv, 0), NULL, &error))
        return ctl_fail(error);
    if (!ctl->json)
        g_print("deleted %s\n", inv_arg(inv, 0));
    return EXIT_OK;
}
