/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* virtsnapctl policy show|set|clear: a domain's snapshot policy, kept by the agent in the
 * domain's own XML metadata. */
#include <string.h>

#include "ctl.h"

static int
policy_show(Ctl *ctl, const char *domain)
{
    g_autoptr(GVariant) settings = NULL;
    g_autofree char *problem = NULL;
    g_autoptr(GError) error = NULL;

    if (!vs_dbus_agent1_call_get_policy_sync(ctl->agent, domain, &settings, &problem, NULL, &error))
        return ctl_fail(error);
    ctl_print_policy(settings, problem, ctl->json);
    return EXIT_OK;
}

/* set DOMAIN KEY=VALUE...: the arguments from the third on. */
static int
policy_set(Ctl *ctl, const char *domain, const Invocation *inv)
{
    g_autoptr(GError) error = NULL;
    GVariantBuilder b;

    g_variant_builder_init(&b, G_VARIANT_TYPE("a{ss}"));
    for (guint i = 2; i < inv_n_args(inv); i++) {
        g_auto(GStrv) kv = g_strsplit(inv_arg(inv, i), "=", 2);

        if (!kv[0] || !kv[1]) {
            g_variant_builder_clear(&b);
            return ctl_usage_error(ctl->command, "set: '%s' is not KEY=VALUE", inv_arg(inv, i));
        }
        g_variant_builder_add(&b, "{ss}", kv[0], kv[1]);
    }
    if (!vs_dbus_agent1_call_set_policy_sync(ctl->agent, domain, g_variant_builder_end(&b), NULL,
                                             &error))
        return ctl_fail(error);
    return EXIT_OK;
}

int
ctl_policy(Ctl *ctl, const Invocation *inv)
{
    g_autoptr(GError) error = NULL;
    const char *verb = inv_arg(inv, 0), *domain = inv_arg(inv, 1);
    guint n_args = inv_n_args(inv);

    if (strcmp(verb, "show") == 0 && n_args == 2)
        return policy_show(ctl, domain);
    if (strcmp(verb, "set") == 0 && n_args > 2)
        return policy_set(ctl, domain, inv);
    if (strcmp(verb, "clear") == 0 && n_args == 2) {
        if (!vs_dbus_agent1_call_clear_policy_sync(ctl->agent, domain, NULL, &error))
            return ctl_fail(error);
        return EXIT_OK;
    }
    if (strcmp(verb, "set") == 0)
        return ctl_usage_error(ctl->command, "set needs at least one KEY=VALUE");
    if (strcmp(verb, "show") == 0 || strcmp(verb, "clear") == 0)
        return ctl_usage_error(ctl->command, "%s takes one DOMAIN", verb);
    return ctl_usage_error(ctl->command, "'%s' is not show, set or clear", verb);
}
