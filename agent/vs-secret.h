/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The passphrase of a LUKS-encrypted qcow2 disk: fetched from libvirt's secret store and
 * handed to qemu-img through a pipe, so that it is never in a file, in argv or in the
 * snapshot's metadata (which names the secret's UUID only). */
#pragma once

#include <gio/gio.h>
#include <libvirt/libvirt.h>

G_BEGIN_DECLS

typedef struct _VsSecret VsSecret;

/* qemu-img sees at most this many secrets in one run (source and target of a convert). */
#define VS_SECRET_MAX 2

/* The value of secret @uuid, the passphrase of disk @target. A private secret (libvirt
 * gives its value to no client) is VS_ERROR_UNSUPPORTED. Blocking. */
VsSecret *vs_secret_fetch(virConnectPtr conn, const char *target, const char *uuid, GError **error);
VsSecret *vs_secret_ref(VsSecret *secret);
void vs_secret_unref(VsSecret *secret);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsSecret, vs_secret_unref)

const char *vs_secret_uuid(const VsSecret *secret);

/* The qemu-img object id of the @i-th secret of a run ("vssec0"): what key-secret= names. */
const char *vs_secret_id(guint i);

/* Adds "--object secret,id=vssecI,file=/dev/fd/N" for each of @secrets (NULL-terminated,
 * at most VS_SECRET_MAX) to @argv and gives @launcher the pipes the child reads them
 * from: the passphrase is written into each pipe before the child starts. */
gboolean vs_secret_pass(VsSecret *const *secrets, GPtrArray *argv, GSubprocessLauncher *launcher,
                        GError **error);

/* qemu-img's json: name of the qcow2 image @path encrypted with secret @i (its backing
 * file, if any, opened as the image says). */
char *vs_secret_image_spec(const char *path, guint i);

/* The -o value for a new image encrypted like the source: "encrypt.format=luks,..." */
char *vs_secret_create_options(guint i);

G_END_DECLS
