/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The one pure decision of the exports: is a leftover record's pid still our server? */
#include "vs-export.h"

#include <string.h>

static void
test_cmdline(void)
{
    static const char ours[] = "/usr/bin/qemu-nbd\0--read-only\0--persistent\0--shared=0\0"
                               "--format=qcow2\0--socket=/run/virtsnap/nbd-3.sock\0/x/vda.qcow2";
    static const char plain[] = "qemu-nbd\0--socket=/run/virtsnap/nbd-3.sock";
    static const char other_socket[] = "qemu-nbd\0--socket=/run/virtsnap/nbd-30.sock";
    static const char other_prog[] = "/usr/bin/sleep\0--socket=/run/virtsnap/nbd-3.sock";
    static const char no_nul[] = {'q', 'e', 'm', 'u'};
    const char *sock = "/run/virtsnap/nbd-3.sock";

    g_assert_true(vs_exports_cmdline_is_server(ours, sizeof(ours), sock));
    g_assert_true(vs_exports_cmdline_is_server(plain, sizeof(plain), sock));
    /* a reused pid: another server, another program, a zombie's empty command line */
    g_assert_false(vs_exports_cmdline_is_server(other_socket, sizeof(other_socket), sock));
    g_assert_false(vs_exports_cmdline_is_server(other_prog, sizeof(other_prog), sock));
    g_assert_false(vs_exports_cmdline_is_server("", 0, sock));
    g_assert_false(vs_exports_cmdline_is_server(no_nul, sizeof(no_nul), sock));
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/export/cmdline", test_cmdline);
    return g_test_run();
}
