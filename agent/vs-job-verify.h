/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VerifySnapshot: a job that reads a finished snapshot's images and records what it found
 * (vs-job-verify.c). */
#pragma once

#include <gio/gio.h>

#include "vs-config.h"
#include "vs-job.h"
#include "vs-libvirt.h"

G_BEGIN_DECLS

/* What a verification needs of a snapshot, read from its metadata.json. */
typedef struct _VsVerify VsVerify;

/* VerifySnapshot's options: deep (b). VS_ERROR_INVALID_ARGUMENT for anything else. */
gboolean vs_verify_parse_options(GVariant *options, gboolean *deep, GError **error);

/* Reads snapshot @id's metadata: VS_ERROR_INVALID_ARGUMENT for an id that cannot be one,
 * VS_ERROR_NO_SUCH_SNAPSHOT when there is none, VS_ERROR_IO when it cannot be read.
 * Blocks: worker threads. */
VsVerify *vs_verify_load(const char *snapshot_dir, const char *id, GError **error);
void vs_verify_free(VsVerify *verify);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsVerify, vs_verify_free)

/* A deep check copies every disk to a raw file: refused (VS_ERROR_UNSUPPORTED) for a
 * snapshot with an encrypted disk, which it would write out in the clear. */
gboolean vs_verify_deep_allowed(VsVerify *verify, GError **error);

/* A queued verify job for @verify (taken). It changes no domain: it is not a job "on" the
 * snapshot's domain (snapshots of it and its hooks go on). */
VsJob *vs_job_new_verify(guint id, const VsConfig *config, VsLibvirt *libvirt, VsVerify *verify,
                         gboolean deep);

/* Removes the scratch folders (".<id>.<n>.verify") a verification left behind: at start-up,
 * before any job runs. */
void vs_verify_sweep(const char *snapshot_dir);

/* ListSnapshots' view of metadata's "verified" object: verified (s, time), verified-ok (b),
 * verified-deep (b), verified-problems (as). Returns @list's entries so changed, floating. */
GVariant *vs_verify_annotate_list(GVariant *list);

G_END_DECLS
