/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The error table: every code has its own D-Bus name, and errors survive the bus. */
#include <gio/gio.h>
#include <libvirt/virterror.h>

#include "vs-error.h"
#include "vs-names.h"
#include "vs-virt-util.h"

static void
test_names_unique(void)
{
    g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);

    for (int code = 0; code < VS_ERROR_LAST_CODE; code++) {
        const char *name = vs_error_dbus_name(code);

        g_assert_true(g_str_has_prefix(name, VS_ERROR_NAME_PREFIX));
        g_assert_true(g_dbus_is_interface_name(name));
        g_assert_false(g_hash_table_contains(seen, name));
        g_hash_table_add(seen, (gpointer)name);
        g_assert_cmpint(vs_error_from_dbus_name(name), ==, code);
        g_assert_nonnull(vs_error_nick(code));
    }
    g_assert_cmpint(vs_error_from_dbus_name("org.example.Other"), ==, VS_ERROR_FAILED);
    g_assert_cmpstr(vs_error_dbus_name(VS_ERROR_BUSY), ==, "org.virtsnap.Error.Busy");
}

static void
test_round_trip(void)
{
    for (int code = 0; code < VS_ERROR_LAST_CODE; code++) {
        g_autoptr(GError) error = g_error_new(VS_ERROR, code, "message %d", code);
        g_autofree char *name = g_dbus_error_encode_gerror(error);
        g_autoptr(GError) back = g_dbus_error_new_for_dbus_error(name, "message");

        g_assert_cmpstr(name, ==, vs_error_dbus_name(code));
        g_assert_error(back, VS_ERROR, code);
    }
}

static void
test_libvirt_mapping(void)
{
    g_assert_cmpint(vs_error_code_from_libvirt(VIR_ERR_NO_DOMAIN), ==, VS_ERROR_NO_SUCH_DOMAIN);
    g_assert_cmpint(vs_error_code_from_libvirt(VIR_ERR_CONFIG_UNSUPPORTED), ==,
                    VS_ERROR_UNSUPPORTED);
    g_assert_cmpint(vs_error_code_from_libvirt(VIR_ERR_AGENT_UNRESPONSIVE), ==,
                    VS_ERROR_QUIESCE_FAILED);
    g_assert_cmpint(vs_error_code_from_libvirt(VIR_ERR_OPERATION_INVALID), ==,
                    VS_ERROR_NOT_RUNNING);
    g_assert_cmpint(vs_error_code_from_libvirt(VIR_ERR_RPC), ==, VS_ERROR_NOT_CONNECTED);
    g_assert_cmpint(vs_error_code_from_libvirt(VIR_ERR_BLOCK_COPY_ACTIVE), ==, VS_ERROR_BUSY);
    g_assert_cmpint(vs_error_code_from_libvirt(VIR_ERR_INTERNAL_ERROR), ==, VS_ERROR_LIBVIRT);
}

static void
test_event_words(void)
{
    g_assert_cmpstr(vs_lifecycle_event_name(VIR_DOMAIN_EVENT_STARTED), ==, "started");
    g_assert_cmpstr(
        vs_lifecycle_detail_name(VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_BOOTED), ==,
        "booted");
    g_assert_cmpstr(
        vs_lifecycle_detail_name(VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_DESTROYED), ==,
        "destroyed");
    g_assert_cmpstr(
        vs_lifecycle_detail_name(VIR_DOMAIN_EVENT_SUSPENDED, VIR_DOMAIN_EVENT_SUSPENDED_PAUSED), ==,
        "paused");
    g_assert_cmpstr(vs_lifecycle_event_name(99), ==, "unknown");
    g_assert_cmpstr(vs_lifecycle_detail_name(VIR_DOMAIN_EVENT_STARTED, 99), ==, "unknown");
    g_assert_cmpstr(vs_domain_state_name(VIR_DOMAIN_SHUTOFF), ==, "shutoff");
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/error/names-unique", test_names_unique);
    g_test_add_func("/error/round-trip", test_round_trip);
    g_test_add_func("/error/libvirt-mapping", test_libvirt_mapping);
    g_test_add_func("/error/event-words", test_event_words);
    return g_test_run();
}
