/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What virtsnap needs to know of a libvirt domain XML: its disks (with their
 * backing chains, RBD sources, encryption) and its guest-agent channel. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
    char *type;   /* file|block|network|... */
    char *format; /* qcow2, raw, ... ("" when libvirt does not say) */
    char *path;   /* file or device path */
} VsBacking;

typedef struct {
    char *target;   /* vda */
    char *bus;      /* virtio */
    char *device;   /* disk|cdrom|lun|floppy */
    char *type;     /* file|block|network|volume|dir|nvme|vhostuser */
    char *format;   /* driver type: qcow2|raw|... */
    char *source;   /* file path, block device, or "pool/image" for network disks */
    char *protocol; /* network disks: rbd, nbd, ... */
    gboolean readonly;
    gboolean shareable;
    gboolean encrypted;
    gboolean mirror;       /* a block job's <mirror> is attached right now */
    gboolean mirror_ready; /* ... and it is in sync (ready=yes) */
    char *mirror_source;   /* ... and it writes here */
    GPtrArray *backing;    /* VsBacking*, nearest first */
    /* RBD */
    GPtrArray *hosts; /* "name:port" */
    char *auth_user;
    char *secret_uuid;
    char *config_file;
    /* <encryption> of the top image: format (luks, qcow) and its passphrase secret,
     * named by uuid or by usage */
    char *encryption_format;
    char *encryption_secret;
    char *encryption_usage;
} VsDisk;

typedef struct {
    char *name;
    char *uuid;
    GPtrArray *disks;         /* VsDisk* in XML order */
    gboolean agent_channel;   /* has an org.qemu.guest_agent.0 channel */
    gboolean agent_connected; /* libvirt says the agent is connected (live XML only) */
} VsDomainXml;

VsDomainXml *vs_domain_xml_parse(const char *xml, GError **error);
void vs_domain_xml_free(VsDomainXml *dx);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsDomainXml, vs_domain_xml_free)

VsDisk *vs_domain_xml_find_disk(VsDomainXml *dx, const char *target);

/* A writable disk whose data lives in a local file (qcow2 or raw): what the live
 * and cold methods can copy. */
gboolean vs_disk_is_local_image(const VsDisk *disk);

/* The disk's description as an a{sv} (for ListDomains). */
GVariant *vs_disk_to_variant(const VsDisk *disk);

G_END_DECLS
