/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Validation of a snapshot request against the live domain: which disks, which
 * method, and whether anything stands in the way (another block job, no agent
 * for quiesce=require, a name already used). Nothing here changes the domain. */
#include "vs-plan.h"
#include "vs-catalog.h"
#include "vs-domain-xml.h"
#include "vs-error.h"
#include "vs-qemu-img.h"
#include "vs-virt-util.h"

#include <json-glib/json-glib.h>
#include <string.h>

/* virDomainBlockCopy's TRANSIENT_JOB flag exists since libvirt 4.5.0. */
#define TRANSIENT_JOB_MIN_VERSION 4005000

static void
plan_disk_free(gpointer p)
{
    VsPlanDisk *d = p;

    g_free(d->target);
    g_free(d->source);
    g_free(d->format);
    g_free(d->backing);
    g_free(d->backing_format);
    vs_rbd_spec_clear(&d->rbd_spec);
    vs_secret_unref(d->secret);
    g_free(d);
}

void
vs_plan_free(VsPlan *plan)
{
    if (!plan)
        return;
    if (plan->dom)
        virDomainFree(plan->dom);
    if (plan->conn)
        virConnectClose(plan->conn);
    g_free(plan->name);
    g_free(plan->uuid);
    g_free(plan->inactive_xml);
    g_free(plan->live_xml);
    g_free(plan->method_reason);
    g_free(plan->skipped);
    if (plan->rbd_targets)
        g_string_free(plan->rbd_targets, TRUE);
    if (plan->file_targets)
        g_string_free(plan->file_targets, TRUE);
    g_ptr_array_unref(plan->disks);
    g_free(plan);
}

/* qemu-img info of an image in use by a running guest (-U: no lock needed to read
 * the header). */
static JsonObject *
image_info(const char *path, JsonParser *parser, GError **error)
{
    const char *args[] = {"info", "-U", "--output=json", path, NULL};
    g_autofree char *out = vs_qemu_img_run_sync(args, error);

    if (!out)
        return NULL;
    if (!json_parser_load_from_data(parser, out, -1, error) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
        g_clear_error(error);
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "cannot read qemu-img info of %s", path);
        return NULL;
    }
    return json_node_get_object(json_parser_get_root(parser));
}

static char *
disk_list_text(VsDomainXml *dx)
{
    g_autoptr(GString) s = g_string_new(NULL);

    for (guint i = 0; i < dx->disks->len; i++)
        g_string_append_printf(s, "%s%s", i ? ", " : "",
                               ((VsDisk *)g_ptr_array_index(dx->disks, i))->target);
    return g_strdup(s->len ? s->str : "none");
}

/* Disks a snapshot leaves out by default: not data a guest writes. */
static gboolean
is_skippable(const VsDisk *disk)
{
    return strcmp(disk->device, "disk") != 0 || disk->readonly || disk->shareable;
}

/* Why an encrypted disk cannot be snapshotted, or NULL. What works: a qcow2 with LUKS
 * encryption, its passphrase in a libvirt secret named by UUID, no backing file (a chain
 * would need every layer's secret, which libvirt's XML does not always show). */
static char *
encryption_obstacle(const VsDisk *disk)
{
    if (g_strcmp0(disk->encryption_format, "luks") != 0 || strcmp(disk->format, "qcow2") != 0)
        return g_strdup_printf("disk %s is encrypted as %s '%s'; virtsnap snapshots qcow2 images "
                               "with LUKS encryption only",
                               disk->target, disk->format,
                               disk->encryption_format ? disk->encryption_format : "");
    if (!disk->encryption_secret || !*disk->encryption_secret)
        return g_strdup_printf("disk %s: its encryption names no secret by UUID (a secret "
                               "named by usage is not supported)",
                               disk->target);
    if (disk->backing->len > 0)
        return g_strdup_printf("disk %s is encrypted and has a backing file; virtsnap snapshots "
                               "encrypted disks without backing files only",
                               disk->target);
    return NULL;
}

/* Why the options would write encrypted disk @disk out in the clear (or not at all). */
static char *
encryption_option_obstacle(const VsDisk *disk, const VsSnapshotOptions *opts)
{
    if (!disk->encrypted)
        return NULL;
    if (opts->format == VS_FORMAT_RAW)
        return g_strdup_printf("disk %s is encrypted: format=raw would write it out in the "
                               "clear; use qcow2 (the snapshot stays encrypted)",
                               disk->target);
    if (opts->compress)
        return g_strdup_printf("disk %s is encrypted: qcow2 cannot be compressed and encrypted "
                               "at once; leave out compress",
                               disk->target);
    return NULL;
}

/* Why a disk cannot be snapshotted by any method here, or NULL. */
static char *
any_obstacle(const VsDisk *disk)
{
    if (strcmp(disk->device, "disk") != 0)
        return g_strdup_printf("disk %s is a %s, not a disk", disk->target, disk->device);
    if (disk->readonly || disk->shareable)
        return g_strdup_printf("disk %s is %s; it is not snapshotted", disk->target,
                               disk->readonly ? "read-only" : "shareable");
    if (disk->protocol && strcmp(disk->protocol, "rbd") == 0) {
        g_autofree char *pool = NULL, *ns = NULL, *image = NULL;

        if (!vs_rbd_parse_name(disk->source, &pool, &ns, &image))
            return g_strdup_printf("disk %s: RBD name '%s' is not pool/image", disk->target,
                                   disk->source ? disk->source : "");
        return NULL; /* snapshotted in the cluster */
    }
    if (strcmp(disk->type, "file") != 0 && strcmp(disk->type, "block") != 0)
        return g_strdup_printf("disk %s is a %s disk (%s); virtsnap copies local files and "
                               "block devices",
                               disk->target, disk->type, disk->source ? disk->source : "?");
    if (!disk->source)
        return g_strdup_printf("disk %s has no source (empty drive)", disk->target);
    if (disk->encrypted)
        return encryption_obstacle(disk);
    if (strcmp(disk->format, "qcow2") != 0 && strcmp(disk->format, "raw") != 0)
        return g_strdup_printf("disk %s has format '%s'; virtsnap handles qcow2 and raw",
                               disk->target, disk->format);
    return NULL;
}

/* Why a (snapshottable) disk cannot be copied live, or NULL: the mirror writes into a
 * qcow2 delta beside a file; a block device or LVM volume has no such place. */
static char *
live_obstacle(const VsDisk *disk)
{
    if (disk->protocol && strcmp(disk->protocol, "rbd") == 0)
        return g_strdup_printf("disk %s lives in Ceph RBD (%s)", disk->target, disk->source);
    if (strcmp(disk->type, "file") != 0)
        return g_strdup_printf("disk %s is a block device (%s)", disk->target, disk->source);
    return NULL;
}

static gboolean
fill_disk(VsPlan *plan, const VsDisk *disk, GError **error)
{
    VsPlanDisk *pd = g_new0(VsPlanDisk, 1);
    virDomainBlockInfo info;
    g_autoptr(JsonParser) parser = json_parser_new();
    JsonObject *o;

    g_ptr_array_add(plan->disks, pd);
    pd->target = g_strdup(disk->target);
    pd->source = g_strdup(disk->source);
    pd->format = g_strdup(disk->format);
    if (disk->protocol && strcmp(disk->protocol, "rbd") == 0) {
        pd->rbd = TRUE;
        vs_rbd_parse_name(disk->source, &pd->rbd_spec.pool, &pd->rbd_spec.ns, &pd->rbd_spec.image);
        pd->rbd_spec.conf = g_strdup(disk->config_file);
        pd->rbd_spec.user = g_strdup(disk->auth_user);
        if (disk->hosts->len > 0) {
            g_ptr_array_add(disk->hosts, NULL);
            pd->rbd_spec.hosts = g_strjoinv(",", (char **)disk->hosts->pdata);
            g_ptr_array_remove_index(disk->hosts, disk->hosts->len - 1);
        }
        return TRUE; /* its size comes from the cluster */
    }
    if (virDomainGetBlockInfo(plan->dom, disk->target, &info, 0) < 0)
        return vs_set_libvirt_error(error, "reading size of disk %s", disk->target);
    pd->capacity = info.capacity;

    if (disk->backing->len > 0) {
        VsBacking *b = g_ptr_array_index(disk->backing, 0);

        if (!b->path || strcmp(b->type, "file") != 0) {
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "disk %s has a backing store that is not a local file", disk->target);
            return FALSE;
        }
        pd->backing = g_strdup(b->path);
        pd->backing_format = g_strdup(b->format);
    }
    if (disk->encrypted &&
        !(pd->secret = vs_secret_fetch(plan->conn, disk->target, disk->encryption_secret, error)))
        return FALSE;
    if (strcmp(pd->format, "qcow2") == 0 && strcmp(disk->type, "file") == 0) {
        if (!(o = image_info(pd->source, parser, error)))
            return FALSE;
        pd->cluster_size = json_object_get_int_member_with_default(o, "cluster-size", 0);
        /* libvirt may not know the backing format; the image header does. */
        if (pd->backing && (!pd->backing_format || !*pd->backing_format)) {
            g_free(pd->backing_format);
            pd->backing_format = g_strdup(
                json_object_get_string_member_with_default(o, "backing-filename-format", "raw"));
        }
    }
    return TRUE;
}

/* Refuses a chosen disk with a block job running, unless @force (then the clear-jobs
 * step aborts it). Our own earlier jobs leave none behind. */
static gboolean
check_block_jobs(VsPlan *plan, const VsSnapshotOptions *opts, GError **error)
{
    for (guint i = 0; i < plan->disks->len; i++) {
        VsPlanDisk *pd = g_ptr_array_index(plan->disks, i);
        virDomainBlockJobInfo info;
        int r = virDomainGetBlockJobInfo(plan->dom, pd->target, &info, 0);

        if (r < 0) {
            vs_set_libvirt_error(error, "checking block jobs of disk %s", pd->target);
            return FALSE;
        }
        if (r == 0)
            continue;
        if (!opts->force) {
            g_set_error(error, VS_ERROR, VS_ERROR_BUSY,
                        "disk %s has a block job (type %d) that virtsnap did not start; "
                        "set force to abort it",
                        pd->target, info.type);
            return FALSE;
        }
        plan->foreign_jobs = TRUE;
    }
    return TRUE;
}

static void
append_target(GString **list, const char *target)
{
    if (!*list)
        *list = g_string_new(NULL);
    g_string_append_printf(*list, "%s%s", (*list)->len ? ", " : "", target);
}

/* The disks to snapshot: the ones asked for, or every writable disk. Each must be
 * snapshottable at all; @live_reason gets the first reason a live copy is impossible. */
static gboolean
choose_disks(VsPlan *plan, VsDomainXml *dx, const VsSnapshotOptions *opts, GPtrArray *chosen,
             char **live_reason, char **file_reason, GError **error)
{
    g_autoptr(GString) skipped = g_string_new(NULL);

    for (guint i = 0; opts->disks && opts->disks[i]; i++) {
        if (!vs_domain_xml_find_disk(dx, opts->disks[i])) {
            g_autofree char *have = disk_list_text(dx);

            g_set_error(error, VS_ERROR, VS_ERROR_NO_SUCH_DISK,
                        "domain '%s' has no disk '%s' (its disks: %s)", plan->name, opts->disks[i],
                        have);
            return FALSE;
        }
    }
    for (guint i = 0; i < dx->disks->len; i++) {
        VsDisk *disk = g_ptr_array_index(dx->disks, i);
        g_autofree char *obstacle = NULL;

        if (opts->disks && !g_strv_contains((const char *const *)opts->disks, disk->target))
            continue;
        if (!opts->disks && is_skippable(disk)) {
            g_string_append_printf(skipped, "%s%s", skipped->len ? ", " : "", disk->target);
            continue;
        }
        /* A writable disk that cannot be snapshotted is refused, never silently left
         * out: that would be a partial snapshot. */
        if ((obstacle = any_obstacle(disk)) ||
            (obstacle = encryption_option_obstacle(disk, opts))) {
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED, "%s", obstacle);
            return FALSE;
        }
        if (!*live_reason)
            *live_reason = live_obstacle(disk);
        g_ptr_array_add(chosen, disk);
        if (disk->protocol && strcmp(disk->protocol, "rbd") == 0) {
            append_target(&plan->rbd_targets, disk->target);
        } else {
            append_target(&plan->file_targets, disk->target);
            if (!*file_reason) /* mixed: the local disks are the live copy's */
                *file_reason = live_obstacle(disk);
        }
    }
    if (chosen->len == 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "domain '%s' has no writable disk to snapshot", plan->name);
        return FALSE;
    }
    plan->skipped = skipped->len ? g_strdup(skipped->str) : NULL;
    return TRUE;
}

/* Whether the hypervisor does block jobs on @target at all. A stale-job query that
 * answers CONFIG_UNSUPPORTED means no live copy (Nova reads the abort the same way). */
static gboolean
block_jobs_supported(gpointer data, const char *target)
{
    VsPlan *plan = data;
    virDomainBlockJobInfo info;
    virErrorPtr err;

    if (virDomainGetBlockJobInfo(plan->dom, target, &info, 0) >= 0)
        return TRUE;
    err = virGetLastError();
    return !(err && (err->code == VIR_ERR_CONFIG_UNSUPPORTED || err->code == VIR_ERR_NO_SUPPORT));
}

/* RBD and local disks together: the local ones are mirrored, the RBD ones snapshotted in
 * the cluster, both cut in one freeze window. Anything that cannot give that one instant
 * (a method for one kind, a domain that is off, a local disk no mirror can copy) is
 * refused rather than taking two points in time. */
static gboolean
choose_mixed(VsPlan *plan, const VsSnapshotOptions *opts, const char *file_reason,
             const char *first_target, VsBlockJobsProbe probe, gpointer probe_data, GError **error)
{
    gboolean active = plan->state == VIR_DOMAIN_RUNNING || plan->state == VIR_DOMAIN_PAUSED;
    const char *rbd = plan->rbd_targets->str, *files = plan->file_targets->str;

    if (opts->method != VS_METHOD_AUTO && opts->method != VS_METHOD_MIXED) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "domain '%s' mixes RBD disks (%s) and local disks (%s): method=%s cannot "
                    "snapshot both; use method=mixed (or auto), or one kind with --disk",
                    plan->name, rbd, files, vs_method_name(opts->method));
        return FALSE;
    }
    if (!active) {
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_RUNNING,
                    "domain '%s' is %s: a snapshot of RBD disks (%s) and local disks (%s) "
                    "together copies the local ones live; start it, or snapshot each kind "
                    "with --disk",
                    plan->name, vs_domain_state_name(plan->state), rbd, files);
        return FALSE;
    }
    if (file_reason) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "%s: beside RBD disks (%s) the local disks are copied live, which is "
                    "impossible here; snapshot each kind with --disk",
                    file_reason, rbd);
        return FALSE;
    }
    if (!probe(probe_data, first_target)) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "the hypervisor does no block copy for '%s', which its local disks (%s) "
                    "beside RBD disks need",
                    plan->name, files);
        return FALSE;
    }
    plan->method = VS_METHOD_MIXED;
    plan->method_reason = g_strdup_printf("RBD disks (%s) snapshotted in the cluster and local "
                                          "disks (%s) copied live, cut in one freeze window",
                                          rbd, files);
    return TRUE;
}

/* live, cold or offline, and why: the one place that picks the method. */
static gboolean
choose_method(VsPlan *plan, const VsSnapshotOptions *opts, const char *live_reason,
              const char *file_reason, const char *first_target, VsBlockJobsProbe probe,
              gpointer probe_data, GError **error)
{
    gboolean active = plan->state == VIR_DOMAIN_RUNNING || plan->state == VIR_DOMAIN_PAUSED;

    if (plan->rbd_targets && plan->file_targets)
        return choose_mixed(plan, opts, file_reason, first_target, probe, probe_data, error);
    if (plan->rbd_targets) {
        if (opts->method != VS_METHOD_AUTO && opts->method != VS_METHOD_RBD) {
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "disks %s live in Ceph RBD: use method=rbd (or auto)",
                        plan->rbd_targets->str);
            return FALSE;
        }
        plan->method = VS_METHOD_RBD;
        plan->method_reason = g_strdup("every disk lives in Ceph RBD: snapshot and clone in the "
                                       "cluster, nothing copied through the host");
        return TRUE;
    }
    switch (opts->method) {
    case VS_METHOD_MIXED:
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "method=mixed needs RBD and local disks together; '%s' has local disks "
                    "only (%s)",
                    plan->name, plan->file_targets->str);
        return FALSE;
    case VS_METHOD_RBD:
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "method=rbd needs disks in Ceph RBD; '%s' has local disks (%s)", plan->name,
                    plan->file_targets->str);
        return FALSE;
    case VS_METHOD_LIVE:
        if (!active) {
            g_set_error(error, VS_ERROR, VS_ERROR_NOT_RUNNING,
                        "domain '%s' is %s: a live snapshot needs a running or paused domain",
                        plan->name, vs_domain_state_name(plan->state));
            return FALSE;
        }
        if (live_reason) {
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "%s: a live copy is impossible (method=cold would work)", live_reason);
            return FALSE;
        }
        if (!probe(probe_data, first_target)) {
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "the hypervisor does no block copy for '%s'", plan->name);
            return FALSE;
        }
        plan->method = VS_METHOD_LIVE;
        plan->method_reason = g_strdup("asked for: live copy");
        return TRUE;
    case VS_METHOD_COLD:
        plan->method = VS_METHOD_COLD;
        plan->method_reason = g_strdup(active ? "asked for: managed save, extract, restore"
                                              : "domain is not running: disks read directly");
        return TRUE;
    case VS_METHOD_AUTO:
        break;
    }
    if (!active) {
        plan->method = VS_METHOD_COLD;
        plan->method_reason = g_strdup_printf("domain is %s: disks read directly, no save",
                                              vs_domain_state_name(plan->state));
    } else if (live_reason) {
        plan->method = VS_METHOD_COLD;
        plan->method_reason = g_strdup_printf(
            "%s, which a live copy cannot handle: managed save instead", live_reason);
    } else if (!probe(probe_data, first_target)) {
        plan->method = VS_METHOD_COLD;
        plan->method_reason =
            g_strdup("the hypervisor answers CONFIG_UNSUPPORTED to block jobs: managed save");
    } else {
        plan->method = VS_METHOD_LIVE;
        plan->method_reason = g_strdup("every disk is a local file: live copy");
    }
    return TRUE;
}

gboolean
vs_plan_choose(VsPlan *plan, VsDomainXml *dx, const VsSnapshotOptions *opts, VsBlockJobsProbe probe,
               gpointer probe_data, GPtrArray *chosen, GError **error)
{
    g_autofree char *live_reason = NULL, *file_reason = NULL;
    const char *first_file = NULL;

    if (!choose_disks(plan, dx, opts, chosen, &live_reason, &file_reason, error))
        return FALSE;
    /* The probe asks about a disk the mirror would copy. */
    for (guint i = 0; i < chosen->len && !first_file; i++) {
        VsDisk *disk = g_ptr_array_index(chosen, i);

        if (!disk->protocol || strcmp(disk->protocol, "rbd") != 0)
            first_file = disk->target;
    }
    return choose_method(plan, opts, live_reason, file_reason,
                         first_file ? first_file : ((VsDisk *)g_ptr_array_index(chosen, 0))->target,
                         probe, probe_data, error);
}

/* The legacy copy (virDomainBlockRebase) has no destination XML to carry the delta's
 * <encryption>: QEMU could not open an encrypted delta. */
static gboolean
plan_check_encrypted_copy(VsPlan *plan, GError **error)
{
    if (plan->method != VS_METHOD_LIVE || plan->transient_copy)
        return TRUE;
    for (guint i = 0; i < plan->disks->len; i++) {
        VsPlanDisk *pd = g_ptr_array_index(plan->disks, i);

        if (pd->secret) {
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "disk %s is encrypted: the legacy undefine/rebase copy cannot give its "
                        "copy the encryption (method=cold would work)",
                        pd->target);
            return FALSE;
        }
    }
    return TRUE;
}

VsPlan *
vs_plan_make(virConnectPtr conn, const char *domain, const VsSnapshotOptions *opts,
             const char *snapshot_dir, GError **error)
{
    g_autoptr(VsPlan) plan = g_new0(VsPlan, 1);
    g_autoptr(VsDomainXml) dx = NULL;
    g_autoptr(GPtrArray) chosen = g_ptr_array_new();
    char uuid[VIR_UUID_STRING_BUFLEN] = "";
    unsigned long lib_version = 0;
    int reason, persistent, managed_save;

    plan->disks = g_ptr_array_new_with_free_func(plan_disk_free);
    virConnectRef(conn);
    plan->conn = conn;
    if (!(plan->dom = vs_lookup_domain(conn, domain, error)))
        return NULL;
    plan->name = g_strdup(virDomainGetName(plan->dom));
    if (virDomainGetUUIDString(plan->dom, uuid) < 0 ||
        virDomainGetState(plan->dom, &plan->state, &reason, 0) < 0 ||
        (persistent = virDomainIsPersistent(plan->dom)) < 0 ||
        (managed_save = virDomainHasManagedSaveImage(plan->dom, 0)) < 0)
        return vs_set_libvirt_error(error, "reading domain '%s'", plan->name), NULL;
    plan->uuid = g_strdup(uuid);
    plan->persistent = persistent;
    plan->active = plan->state == VIR_DOMAIN_RUNNING || plan->state == VIR_DOMAIN_PAUSED;

    if (!(plan->live_xml = virDomainGetXMLDesc(plan->dom, 0)))
        return vs_set_libvirt_error(error, "reading XML of '%s'", plan->name), NULL;
    if (plan->persistent && !(plan->inactive_xml = virDomainGetXMLDesc(
                                  plan->dom, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE)))
        return vs_set_libvirt_error(error, "reading definition of '%s'", plan->name), NULL;
    if (!(dx = vs_domain_xml_parse(plan->live_xml, error)))
        return NULL;
    plan->agent_connected = dx->agent_connected;

    if (!vs_plan_choose(plan, dx, opts, block_jobs_supported, plan, chosen, error))
        return NULL;
    if (plan->method == VS_METHOD_COLD && plan->active && !plan->persistent) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "domain '%s' is transient: a cold snapshot needs managed save, which needs "
                    "a persistent domain",
                    plan->name);
        return NULL;
    }
    if (plan->method == VS_METHOD_COLD && plan->active && managed_save) {
        g_set_error(error, VS_ERROR, VS_ERROR_BUSY,
                    "domain '%s' already has a managed-save image; it is not ours to replace",
                    plan->name);
        return NULL;
    }
    for (guint i = 0; i < chosen->len; i++) {
        if (!fill_disk(plan, g_ptr_array_index(chosen, i), error))
            return NULL;
    }

    if (plan->method != VS_METHOD_COLD && opts->quiesce == VS_QUIESCE_REQUIRE &&
        (!plan->agent_connected || plan->state != VIR_DOMAIN_RUNNING)) {
        g_set_error(error, VS_ERROR, VS_ERROR_QUIESCE_FAILED,
                    "domain '%s' %s; quiesce=require cannot be met", plan->name,
                    plan->state != VIR_DOMAIN_RUNNING ? "is paused"
                    : dx->agent_channel               ? "has no guest agent connected"
                                                      : "has no guest agent channel");
        return NULL;
    }
    if (plan->active && plan->method != VS_METHOD_RBD && !check_block_jobs(plan, opts, error))
        return NULL;
    if (opts->name && vs_catalog_name_taken(snapshot_dir, plan->uuid, opts->name)) {
        g_set_error(error, VS_ERROR, VS_ERROR_EXISTS,
                    "domain '%s' already has a snapshot named '%s'", plan->name, opts->name);
        return NULL;
    }
    if (plan->skipped) {
        g_autofree char *reason_text = plan->method_reason;

        plan->method_reason = g_strdup_printf("%s (left out: %s)", reason_text, plan->skipped);
    }
    if (virConnectGetLibVersion(conn, &lib_version) < 0)
        return vs_set_libvirt_error(error, "reading libvirt version"), NULL;
    plan->transient_copy = lib_version >= TRANSIENT_JOB_MIN_VERSION && !opts->legacy_undefine;
    if (!plan_check_encrypted_copy(plan, error))
        return NULL;
    return g_steal_pointer(&plan);
}
