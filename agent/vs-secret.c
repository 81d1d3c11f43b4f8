/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* LUKS passphrases for qemu-img. A pipe per secret: qemu-img's secret object reads
 * file=/dev/fd/N to its end, so nothing is written to disk and argv shows only the fd. */
#include "vs-secret.h"
#include "vs-error.h"
#include "vs-virt-util.h"

#include <fcntl.h>
#include <glib-unix.h>
#include <json-glib/json-glib.h>
#include <string.h>
#include <unistd.h>

/* The first fd the child reads a secret from (0..2 are its standard streams). */
#define CHILD_FD_BASE 3
/* More than any passphrase, and less than a pipe holds: the write never blocks. */
#define MAX_VALUE 4096

struct _VsSecret {
    char *uuid;
    guint8 *value;
    gsize len;
};

static void
secret_clear(gpointer p)
{
    VsSecret *s = p;

    if (s->value)
        explicit_bzero(s->value, s->len);
    g_free(s->value);
    g_free(s->uuid);
}

const char *
vs_secret_uuid(const VsSecret *secret)
{
    return secret->uuid;
}

VsSecret *
vs_secret_ref(VsSecret *secret)
{
    return g_atomic_rc_box_acquire(secret);
}

void
vs_secret_unref(VsSecret *secret)
{
    if (secret)
        g_atomic_rc_box_release_full(secret, secret_clear);
}

/* libvirt says "secret is private" with the same code as other refusals: its XML tells. */
static gboolean
is_private(virSecretPtr sec)
{
    g_autofree char *xml = virSecretGetXMLDesc(sec, 0);

    return xml && (strstr(xml, "private='yes'") || strstr(xml, "private=\"yes\""));
}

VsSecret *
vs_secret_fetch(virConnectPtr conn, const char *target, const char *uuid, GError **error)
{
    virSecretPtr sec = virSecretLookupByUUIDString(conn, uuid);
    unsigned char *value;
    size_t len = 0;
    VsSecret *s;

    if (!sec)
        return vs_set_libvirt_error(error, "looking up secret %s, the passphrase of disk %s", uuid,
                                    target),
               NULL;
    value = virSecretGetValue(sec, &len, 0);
    if (!value) {
        if (is_private(sec))
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "disk %s is encrypted with secret %s, which is private (private='yes'): "
                        "libvirt gives its value to no client, and virtsnap needs it to write "
                        "the snapshot encrypted; redefine the secret with private='no'",
                        target, uuid);
        else
            vs_set_libvirt_error(error, "reading secret %s, the passphrase of disk %s", uuid,
                                 target);
        virSecretFree(sec);
        return NULL;
    }
    virSecretFree(sec);
    if (len == 0 || len > MAX_VALUE) {
        explicit_bzero(value, len);
        free(value);
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "secret %s (disk %s) holds %zu bytes; a passphrase of 1 to %d bytes is "
                    "expected",
                    uuid, target, len, MAX_VALUE);
        return NULL;
    }
    s = g_atomic_rc_box_new0(VsSecret);
    s->uuid = g_strdup(uuid);
    s->value = g_memdup2(value, len);
    s->len = len;
    explicit_bzero(value, len);
    free(value);
    return s;
}

const char *
vs_secret_id(guint i)
{
    static const char *const ids[VS_SECRET_MAX] = {"vssec0", "vssec1"};

    g_return_val_if_fail(i < VS_SECRET_MAX, NULL);
    return ids[i];
}

gboolean
vs_secret_pass(VsSecret *const *secrets, GPtrArray *argv, GSubprocessLauncher *launcher,
               GError **error)
{
    for (guint i = 0; secrets && secrets[i]; i++) {
        int fds[2];
        gsize off = 0;

        g_return_val_if_fail(i < VS_SECRET_MAX, FALSE);
        if (!g_unix_open_pipe(fds, FD_CLOEXEC, error))
            return FALSE;
        while (off < secrets[i]->len) {
            ssize_t n = write(fds[1], secrets[i]->value + off, secrets[i]->len - off);

            if (n < 0) {
                close(fds[0]);
                close(fds[1]);
                g_set_error(error, VS_ERROR, VS_ERROR_IO, "cannot pass a secret to qemu-img");
                return FALSE;
            }
            off += n;
        }
        close(fds[1]); /* qemu-img reads to the end */
        g_subprocess_launcher_take_fd(launcher, fds[0], CHILD_FD_BASE + i);
        g_ptr_array_add(argv, g_strdup("--object"));
        g_ptr_array_add(argv, g_strdup_printf("secret,id=%s,file=/dev/fd/%u", vs_secret_id(i),
                                              CHILD_FD_BASE + i));
    }
    return TRUE;
}

char *
vs_secret_image_spec(const char *path, guint i)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    g_autofree char *text = NULL;

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "driver");
    json_builder_add_string_value(b, "qcow2");
    json_builder_set_member_name(b, "encrypt.key-secret");
    json_builder_add_string_value(b, vs_secret_id(i));
    json_builder_set_member_name(b, "file");
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "driver");
    json_builder_add_string_value(b, "file");
    json_builder_set_member_name(b, "filename");
    json_builder_add_string_value(b, path);
    json_builder_end_object(b);
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    text = json_generator_to_data(gen, NULL);
    return g_strconcat("json:", text, NULL);
}

char *
vs_secret_create_options(guint i)
{
    return g_strdup_printf("encrypt.format=luks,encrypt.key-secret=%s", vs_secret_id(i));
}
