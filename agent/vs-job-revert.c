/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The revert job: a snapshot's content goes back into each disk's current top image of a
 * shut-off domain, in place (qemu-img convert -n keeps the file, its owner, mode, format
 * and backing reference; the domain's XML is never touched). First the current content
 * becomes an ordinary snapshot (the safety snapshot), so that undo -- after a failure, a
 * cancel or a crash -- writes it back: a disk ends with its old or its new content. */
#include "vs-revert-private.h"
#include "vs-catalog.h"
#include "vs-convert.h"
#include "vs-error.h"
#include "vs-names.h"
#include "vs-qemu-img.h"
#include "vs-result.h"
#include "vs-util.h"
#include "vs-virt-util.h"

#include <glib/gstdio.h>
#include <string.h>

/* How long a guest gets to shut down cleanly before it is destroyed (stop=true). */
#define SHUTDOWN_TIMEOUT_S 60

static void
revert_disk_free(gpointer p)
{
    VsRevertDisk *d = p;

    g_free(d->target);
    g_free(d->image);
    g_free(d->format);
    g_free(d->rbd_parent);
    g_free(d->rbd_snap);
    g_free(d->secret);
    g_free(d);
}

void
vs_revert_free(VsRevert *revert)
{
    if (!revert)
        return;
    g_free(revert->id);
    g_free(revert->name);
    g_free(revert->dir);
    g_clear_pointer(&revert->plan, vs_plan_free);
    g_clear_pointer(&revert->disks, g_ptr_array_unref);
    g_strfreev(revert->targets);
    g_free(revert->stop_note);
    g_free(revert);
}

const char *
vs_revert_get_domain(VsRevert *revert)
{
    return revert->plan->name;
}

const char *
vs_revert_get_uuid(VsRevert *revert)
{
    return revert->plan->uuid;
}

/* ---- the request ------------------------------------------------------------------------ */

static const VsOptionField revert_fields[] = {
    {VS_OPT_STOP, "b", G_STRUCT_OFFSET(VsRevertOptions, stop)},
    {VS_OPT_SAFETY, "b", G_STRUCT_OFFSET(VsRevertOptions, safety)},
    {VS_OPT_BANDWIDTH, "t", G_STRUCT_OFFSET(VsRevertOptions, bandwidth)},
    {NULL},
};

gboolean
vs_revert_options_parse(VsRevertOptions *opts, GVariant *dict, GError **error)
{
    opts->stop = FALSE;
    opts->safety = TRUE;
    opts->bandwidth = 0;
    return vs_options_parse_fields(dict, revert_fields, opts, "RevertSnapshot", error);
}

/* The snapshot's metadata.json; NULL with NO_SUCH_SNAPSHOT when there is none. Never
 * through a link: a folder or metadata.json that is one is not ours. */
static JsonNode *
read_metadata(const char *dir, const char *id, GError **error)
{
    g_autofree char *snapshot_dir = g_path_get_dirname(dir);

    return vs_catalog_read_metadata(snapshot_dir, id, error);
}

/* An RBD snapshot puts back what the disk's image held at its source snapshot, which the
 * snapshot's clone hangs off (a flattened clone has none left). */
static gboolean
read_rbd_disk(VsRevert *r, VsRevertDisk *d, JsonObject *o, GError **error)
{
    JsonObject *rbd = json_object_get_object_member(o, "rbd");
    const char *parent = rbd ? json_object_get_string_member_with_default(rbd, "parent", "") : "";
    const char *at = strrchr(parent, '@');

    if (!at || !g_str_has_prefix(at + 1, "virtsnap-")) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "snapshot %s: the clone of disk %s was flattened, so no snapshot of the "
                    "disk's image is left to roll back to; reverting it is not supported",
                    r->id, d->target);
        return FALSE;
    }
    d->rbd_parent = g_strndup(parent, at - parent);
    d->rbd_snap = g_strdup(at + 1);
    return TRUE;
}

/* The snapshot's disks: image files in its own folder, or RBD clones. */
static gboolean
read_disks(VsRevert *r, JsonObject *meta, GError **error)
{
    JsonArray *disks =
        json_object_has_member(meta, "disks") ? json_object_get_array_member(meta, "disks") : NULL;
    g_autoptr(GStrvBuilder) targets = g_strv_builder_new();

    r->disks = g_ptr_array_new_with_free_func(revert_disk_free);
    for (guint i = 0; disks && i < json_array_get_length(disks); i++) {
        JsonObject *o = json_array_get_object_element(disks, i);
        VsRevertDisk *d;
        g_autofree char *base = NULL;

        if (!o)
            continue;
        d = g_new0(VsRevertDisk, 1);
        g_ptr_array_add(r->disks, d);
        d->target = g_strdup(json_object_get_string_member_with_default(o, "target", ""));
        d->format = g_strdup(json_object_get_string_member_with_default(o, "format", ""));
        d->size = json_object_get_int_member_with_default(o, "virtual-size", 0);
        base = g_path_get_basename(json_object_get_string_member_with_default(o, "image", ""));
        /* Only a file of the snapshot's own folder is read, whatever the metadata says. */
        d->image = g_build_filename(r->dir, base, NULL);
        d->rbd = json_object_has_member(o, "rbd") || strcmp(d->format, "rbd") == 0;
        if (i > 0 && d->rbd != r->rbd) {
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "snapshot %s mixes RBD and file disks", r->id);
            return FALSE;
        }
        r->rbd = d->rbd;
        g_strv_builder_add(targets, d->target);
        if (d->rbd) {
            if (!read_rbd_disk(r, d, o, error))
                return FALSE;
            continue;
        }
        if (json_object_has_member(o, "encryption") &&
            JSON_NODE_HOLDS_OBJECT(json_object_get_member(o, "encryption"))) {
            JsonObject *enc = json_object_get_object_member(o, "encryption");

            d->secret =
                g_strdup(json_object_get_string_member_with_default(enc, "secret-uuid", ""));
        }
        if (!vs_name_is_valid(d->target) || !vs_name_is_valid(base) ||
            (strcmp(d->format, "qcow2") != 0 && strcmp(d->format, "raw") != 0) ||
            g_file_test(d->image, G_FILE_TEST_IS_SYMLINK) ||
            !g_file_test(d->image, G_FILE_TEST_IS_REGULAR)) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO,
                        "snapshot %s: the image of disk %s (%s) is missing or not ours", r->id,
                        d->target, d->image);
            return FALSE;
        }
    }
    if (r->disks->len == 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "snapshot %s lists no disks", r->id);
        return FALSE;
    }
    r->targets = g_strv_builder_end(targets);
    return TRUE;
}

VsRevertDisk *
vs_revert_find_disk(VsRevert *r, const char *target)
{
    for (guint i = 0; i < r->disks->len; i++) {
        VsRevertDisk *d = g_ptr_array_index(r->disks, i);

        if (strcmp(d->target, target) == 0)
            return d;
    }
    return NULL;
}

/* An encrypted disk takes back only an image encrypted with its own secret (one
 * passphrase opens both), and an encrypted image is never written into a clear disk. */
static gboolean
encryption_matches(VsPlanDisk *pd, VsRevertDisk *d, GError **error)
{
    const char *disk_secret = pd->secret ? vs_secret_uuid(pd->secret) : NULL;

    if (!disk_secret && !d->secret)
        return TRUE;
    if (disk_secret && d->secret && strcmp(disk_secret, d->secret) == 0)
        return TRUE;
    g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED, "disk %s %s; nothing was changed",
                pd->target,
                !disk_secret ? "is not encrypted and the snapshot's image is: a revert would "
                               "write it out in the clear"
                : !d->secret ? "is encrypted and the snapshot's image is not"
                             : "is encrypted with another secret than the snapshot's image");
    return FALSE;
}

/* A disk the plan does not find is NO_SUCH_DISK from the plan itself. */
VsPlan *
vs_revert_plan_disks(VsRevert *r, virConnectPtr conn, const char *domain, const char *snapshot_dir,
                     const char *safety_name, GError **error)
{
    g_auto(VsSnapshotOptions) popts = {0};
    g_autoptr(VsPlan) plan = NULL;

    vs_snapshot_options_init(&popts);
    /* auto: rbd for disks in Ceph, else cold (the domain is shut off by then) */
    popts.method = r->rbd ? VS_METHOD_RBD : VS_METHOD_COLD;
    popts.disks = g_strdupv(r->targets);
    popts.name = g_strdup(safety_name);
    if (!(plan = vs_plan_make(conn, domain, &popts, snapshot_dir, error)))
        return NULL;
    for (guint i = 0; i < plan->disks->len; i++) {
        VsPlanDisk *pd = g_ptr_array_index(plan->disks, i);
        VsRevertDisk *d = vs_revert_find_disk(r, pd->target);

        if (!d || pd->rbd != d->rbd) {
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "disk %s of '%s' is not the kind of disk the snapshot has (%s); nothing "
                        "was changed",
                        pd->target, plan->name, r->rbd ? "RBD" : "a file");
            return NULL;
        }
        if (!pd->rbd && !encryption_matches(pd, d, error))
            return NULL;
        if (!pd->rbd && pd->capacity != d->size) {
            g_set_error(
                error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                "disk %s of '%s' differs from the snapshot: its virtual size is %" G_GUINT64_FORMAT
                " bytes, the snapshot's %" G_GUINT64_FORMAT "; nothing was changed",
                pd->target, plan->name, pd->capacity, d->size);
            return NULL;
        }
    }
    return g_steal_pointer(&plan);
}

VsRevert *
vs_revert_check(virConnectPtr conn, const VsConfig *config, const char *id,
                const VsRevertOptions *opts, GError **error)
{
    const char *snapshot_dir = config->snapshot_dir;
    g_autoptr(VsRevert) r = g_new0(VsRevert, 1);
    g_autoptr(JsonNode) node = NULL;
    g_autoptr(virDomain) dom = NULL;
    g_autoptr(GError) local = NULL;
    JsonObject *meta;
    const char *uuid;
    int state = 0, reason = 0, active, persistent, managed_save;

    r->opts = *opts;
    /* Ids start with a digit: "clones" and other folders are never snapshots. */
    if (!vs_name_is_valid(id)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT, "'%s' is not a snapshot id", id);
        return NULL;
    }
    if (!g_ascii_isdigit(id[0])) {
        g_set_error(error, VS_ERROR, VS_ERROR_NO_SUCH_SNAPSHOT, "no snapshot with id '%s'", id);
        return NULL;
    }
    r->id = g_strdup(id);
    r->dir = vs_catalog_final_dir(snapshot_dir, id);
    if (!(node = read_metadata(r->dir, id, error)))
        return NULL;
    meta = json_node_get_object(node);
    uuid = json_object_get_string_member_with_default(meta, "uuid", "");
    r->name = g_strdup(json_object_get_string_member_with_default(meta, "name", id));
    if (!read_disks(r, meta, error))
        return NULL;

    if (!(dom = vs_lookup_domain(conn, uuid, &local))) {
        if (local->code != VS_ERROR_NO_SUCH_DOMAIN) {
            g_propagate_error(error, g_steal_pointer(&local));
            return NULL;
        }
        g_set_error(error, VS_ERROR, VS_ERROR_NO_SUCH_DOMAIN,
                    "the domain of snapshot %s ('%s', UUID %s) is not defined any more", id,
                    json_object_get_string_member_with_default(meta, "domain", ""), uuid);
        return NULL;
    }
    if (virDomainGetState(dom, &state, &reason, 0) < 0 || (active = virDomainIsActive(dom)) < 0 ||
        (persistent = virDomainIsPersistent(dom)) < 0 ||
        (managed_save = virDomainHasManagedSaveImage(dom, 0)) < 0)
        return vs_set_libvirt_error(error, "reading domain %s", uuid), NULL;
    if (!persistent) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "domain '%s' is transient: a revert needs a defined domain that is shut off",
                    virDomainGetName(dom));
        return NULL;
    }
    if (active && !opts->stop) {
        g_set_error(error, VS_ERROR, VS_ERROR_RUNNING,
                    "domain '%s' is %s: a revert needs it shut off (stop=true shuts it down "
                    "first); nothing was changed",
                    virDomainGetName(dom), vs_domain_state_name(state));
        return NULL;
    }
    /* A start would resume RAM that belongs to the disks' current content. */
    if (managed_save) {
        g_set_error(error, VS_ERROR, VS_ERROR_BUSY,
                    "domain '%s' has a managed-save image, whose RAM belongs to the current "
                    "disks: start it or remove the image first; nothing was changed",
                    virDomainGetName(dom));
        return NULL;
    }
    if (!(r->plan = vs_revert_plan_disks(r, conn, uuid, snapshot_dir, NULL, error)))
        return NULL;
    if (r->rbd && !vs_revert_rbd_check(r, r->plan, &config->rbd, error))
        return NULL;
    return g_steal_pointer(&r);
}

/* ---- the steps -------------------------------------------------------------------------- */

void
vs_revert_job_disk_free(gpointer p)
{
    VsJobDisk *d = p;

    g_clear_pointer(&d->src, vs_rbd_close);
    g_free(d->image);
    g_free(d->part);
    g_free(d);
}

static void
add_note(VsRevert *r, const char *note)
{
    g_free(r->stop_note);
    r->stop_note = g_strdup(note);
}

gboolean
vs_revert_stop_wanted(VsJob *job)
{
    return job->revert->opts.stop;
}

/* A clean shutdown first, so that the guest's filesystems are consistent in the safety
 * snapshot; a guest that does not go within SHUTDOWN_TIMEOUT_S is destroyed. */
gboolean
vs_revert_stop_thread(VsJob *job, GError **error)
{
    VsRevert *r = job->revert;
    virDomainPtr dom = job->plan->dom;
    int state = 0, reason = 0;
    gint64 t0 = vs_now_ms();

    if (virDomainGetState(dom, &state, &reason, 0) < 0)
        return vs_set_libvirt_error(error, "reading the state of '%s'", job->domain);
    if (state == VIR_DOMAIN_SHUTOFF) {
        add_note(r, "the domain was shut off already");
        return TRUE;
    }
    if (state == VIR_DOMAIN_RUNNING && virDomainShutdown(dom) == 0) {
        while (vs_now_ms() - t0 < SHUTDOWN_TIMEOUT_S * 1000) {
            if (g_atomic_int_get(&job->cancel_requested)) {
                g_set_error(error, VS_ERROR, VS_ERROR_CANCELLED, "cancelled");
                return FALSE;
            }
            if (virDomainIsActive(dom) == 0) {
                g_autofree char *note =
                    g_strdup_printf("shut down cleanly in %.1f s", (vs_now_ms() - t0) / 1000.0);

                r->stopped = TRUE;
                add_note(r, note);
                JOB_LOG(job, G_LOG_LEVEL_MESSAGE, "%s %s", job->domain, note);
                return TRUE;
            }
            g_usleep(200 * 1000);
        }
    }
    if (virDomainDestroy(dom) < 0 && virDomainIsActive(dom) != 0)
        return vs_set_libvirt_error(error, "stopping '%s'", job->domain);
    r->stopped = TRUE;
    add_note(r, state == VIR_DOMAIN_RUNNING
                    ? "did not shut down within " G_STRINGIFY(SHUTDOWN_TIMEOUT_S) " s: destroyed"
                    : "not running (paused or suspended): destroyed");
    JOB_LOG(job, G_LOG_LEVEL_MESSAGE, "%s %s", job->domain, r->stop_note);
    return TRUE;
}

/* The domain as it is now (shut off), read again: the safety snapshot is a plan of its
 * own; the journal names every disk before anything is made. */
static gboolean
prepare_thread(VsJob *job, GError **error)
{
    VsRevert *r = job->revert;
    g_autoptr(VsPlan) plan = NULL;
    g_autofree char *safety_dir = vs_catalog_final_dir(job->snapshot_dir, job->snapshot_id);

    if (virDomainIsActive(job->plan->dom) != 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_RUNNING,
                    "domain '%s' is running: a revert needs it shut off; nothing was changed",
                    job->domain);
        return FALSE;
    }
    if (!(plan = vs_revert_plan_disks(r, job->plan->conn, job->uuid, job->snapshot_dir,
                                      r->opts.safety ? job->name : NULL, error)))
        return FALSE;
    vs_plan_free(job->plan);
    job->plan = g_steal_pointer(&plan);

    job->disks = g_ptr_array_new_with_free_func(vs_revert_job_disk_free);
    g_mutex_lock(&job->lock);
    for (guint i = 0; i < job->plan->disks->len; i++) {
        VsJobDisk *d = g_new0(VsJobDisk, 1);
        VsJournalRevertDisk *jd = g_new0(VsJournalRevertDisk, 1);

        d->plan = g_ptr_array_index(job->plan->disks, i);
        d->image = g_strdup_printf("%s/%s.qcow2", job->folder, d->plan->target);
        d->part = g_strdup_printf("%s.part", d->image);
        d->size = d->plan->capacity;
        g_ptr_array_add(job->disks, d);
        jd->target = g_strdup(d->plan->target);
        jd->image = g_strdup(d->plan->source);
        jd->format = g_strdup(d->plan->format);
        jd->secret = g_strdup(d->plan->secret ? vs_secret_uuid(d->plan->secret) : "");
        jd->safety = r->opts.safety ? g_strdup_printf("%s/%s.qcow2", safety_dir, d->plan->target)
                                    : g_strdup("");
        g_ptr_array_add(job->journal->revert_disks, jd);
    }
    g_mutex_unlock(&job->lock);
    return r->opts.safety ? vs_job_prepare_folder(job, error) : vs_job_journal_save(job, error);
}

/* The safety snapshot reads each disk's whole chain, as an offline snapshot does. */
static gboolean
chain_input(VsJob *job, VsJobDisk *d, const char **path, const char **format)
{
    *path = d->plan->source;
    *format = d->plan->format;
    return TRUE;
}

static const VsConvertInput safety_input = {0.0, chain_input};

static void
safety_start(VsJob *job)
{
    vs_convert_start(job, &safety_input);
}

/* The safety snapshot is published before any disk is written: an ordinary snapshot of
 * the domain, whose metadata also names the snapshot that is put back. */
gboolean
vs_revert_publish_thread(VsJob *job, GError **error)
{
    g_autoptr(GVariant) facts = g_variant_ref_sink(vs_result_facts(job));
    g_autoptr(JsonNode) meta = vs_result_metadata(facts);

    json_object_set_string_member(json_node_get_object(meta), "safety-for", job->revert->id);
    g_mutex_lock(&job->lock);
    job->journal->revert_published = TRUE;
    g_mutex_unlock(&job->lock);
    if (!vs_catalog_write_metadata(job->folder, meta, error) || !vs_job_journal_save(job, error) ||
        !vs_catalog_publish(job->snapshot_dir, job->snapshot_id, error))
        return FALSE;
    JOB_LOG(job, G_LOG_LEVEL_MESSAGE, "safety snapshot %s of %s published", job->snapshot_id,
            job->domain);
    return TRUE;
}

static void write_next(VsJob *job);

static VsRevertDisk *
snapshot_disk(VsJob *job, VsJobDisk *d)
{
    return vs_revert_find_disk(job->revert, d->plan->target);
}

static void
on_write_progress(double fraction, gpointer data)
{
    VsJob *job = data;
    VsJobDisk *d = vs_job_disk(job, job->revert->index);

    vs_job_set_progress(job, (job->revert->index + fraction) / job->disks->len,
                        (guint64)(fraction * d->size), d->size);
}

static GVariant *
str(const char *s)
{
    return g_variant_new_string(s ? s : "");
}

/* The Result's facts: the snapshot put back, the safety snapshot, each disk written. */
GVariant *
vs_revert_facts(VsJob *job)
{
    VsRevert *r = job->revert;
    g_autofree char *safety_dir =
        r->opts.safety ? vs_catalog_final_dir(job->snapshot_dir, job->snapshot_id) : NULL;
    GVariantBuilder b, disks;

    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&b, "{sv}", "id", str(r->id));
    g_variant_builder_add(&b, "{sv}", "name", str(r->name));
    g_variant_builder_add(&b, "{sv}", "directory", str(r->dir));
    g_variant_builder_add(&b, "{sv}", "method", str("revert"));
    g_variant_builder_add(&b, "{sv}", "safety-id", str(r->opts.safety ? job->snapshot_id : ""));
    g_variant_builder_add(&b, "{sv}", "safety-directory", str(safety_dir));
    g_variant_builder_add(&b, "{sv}", "stopped", g_variant_new_boolean(r->stopped));
    g_variant_builder_add(&b, "{sv}", "stop-note", str(r->stop_note));
    g_variant_builder_add(&b, "{sv}", "safety-ms",
                          g_variant_new_int64(job->t_flatten_end - job->t_flatten_start));
    g_variant_builder_add(&b, "{sv}", "write-ms",
                          g_variant_new_int64(r->t_write_end - r->t_write_start));
    g_variant_builder_init(&disks, G_VARIANT_TYPE("aa{sv}"));
    for (guint i = 0; i < job->disks->len; i++) {
        VsJobDisk *d = vs_job_disk(job, i);
        VsRevertDisk *sd = snapshot_disk(job, d);
        GStatBuf st = {0};

        if (sd && !sd->rbd) /* an RBD rollback copies nothing through the host */
            g_stat(sd->image, &st);
        g_variant_builder_open(&disks, G_VARIANT_TYPE_VARDICT);
        g_variant_builder_add(&disks, "{sv}", "target", str(d->plan->target));
        g_variant_builder_add(&disks, "{sv}", "image", str(d->plan->source));
        g_variant_builder_add(&disks, "{sv}", "format", str(d->plan->format));
        g_variant_builder_add(&disks, "{sv}", "virtual-size", g_variant_new_uint64(d->size));
        /* What was read from the snapshot: its image's allocated bytes. */
        g_variant_builder_add(&disks, "{sv}", "bytes",
                              g_variant_new_uint64((guint64)st.st_blocks * 512));
        g_variant_builder_close(&disks);
    }
    g_variant_builder_add(&b, "{sv}", "disks", g_variant_builder_end(&disks));
    return g_variant_builder_end(&b);
}

static void
write_done(GObject *source, GAsyncResult *result, gpointer data)
{
    g_autoptr(VsJob) job = data;
    g_autofree char *out = NULL;
    GError *error = NULL;

    if (!(out = vs_qemu_img_run_finish(result, &error))) {
        job->step_done(job, error);
        return;
    }
    JOB_LOG(job, G_LOG_LEVEL_MESSAGE, "disk %s reverted to snapshot %s",
            vs_job_disk(job, job->revert->index)->plan->target, job->revert->id);
    job->revert->index++;
    write_next(job);
}

/* An encrypted disk: the snapshot's image read and the disk written with the disk's
 * secret (encryption_matches made sure it is the image's too). */
static void
write_encrypted(VsJob *job, VsJobDisk *d, VsRevertDisk *sd)
{
    g_autofree char *rate = g_strdup_printf("%" G_GUINT64_FORMAT, job->revert->opts.bandwidth);
    g_autofree char *from = vs_secret_image_spec(sd->image, 0, TRUE);
    g_autofree char *to = vs_secret_image_spec(d->plan->source, 0, TRUE);
    VsSecret *secrets[] = {d->plan->secret, NULL};
    const char *args[12];
    int n = 0;

    args[n++] = "convert";
    args[n++] = "-p";
    args[n++] = "-n";
    if (job->revert->opts.bandwidth) {
        args[n++] = "-r";
        args[n++] = rate;
    }
    args[n++] = "-f";
    args[n++] = "qcow2";
    args[n++] = "-O";
    args[n++] = "qcow2";
    args[n++] = from;
    args[n++] = to;
    args[n] = NULL;
    vs_qemu_img_run_async_full(args, secrets, vs_job_child_note, job, on_write_progress, job,
                               job->cancellable, write_done, g_object_ref(job));
}

static void
write_next(VsJob *job)
{
    VsRevert *r = job->revert;
    VsJobDisk *d;
    VsRevertDisk *sd;
    g_autofree char *rate = NULL;
    const char *args[16];
    int n = 0;

    if (job->cancel_requested) {
        job->step_done(job, g_error_new(VS_ERROR, VS_ERROR_CANCELLED, "cancelled"));
        return;
    }
    if (r->index >= job->disks->len) {
        r->t_write_end = vs_now_ms();
        g_clear_pointer(&job->facts, g_variant_unref);
        job->facts = g_variant_ref_sink(vs_revert_facts(job));
        /* Every disk holds the snapshot's content: nothing is left to undo. */
        vs_journal_remove(job->state_dir, job->snapshot_id);
        vs_job_step_done_later(job);
        return;
    }
    d = vs_job_disk(job, r->index);
    if (!(sd = snapshot_disk(job, d))) { /* the plan holds the snapshot's disks only */
        job->step_done(job, g_error_new(VS_ERROR, VS_ERROR_FAILED, "disk %s is not in snapshot %s",
                                        d->plan->target, r->id));
        return;
    }
    if (d->plan->secret) {
        write_encrypted(job, d, sd);
        return;
    }
    args[n++] = "convert";
    args[n++] = "-p";
    args[n++] = "-n"; /* into the existing image: its file, owner, mode and backing stay */
    if (r->opts.bandwidth) {
        rate = g_strdup_printf("%" G_GUINT64_FORMAT, r->opts.bandwidth);
        args[n++] = "-r";
        args[n++] = rate;
    }
    args[n++] = "-f";
    args[n++] = sd->format;
    args[n++] = "-O";
    args[n++] = d->plan->format;
    args[n++] = sd->image;
    args[n++] = d->plan->source;
    args[n] = NULL;
    /* Journaled: a restarted agent ends a qemu-img that outlived us (it names the disk,
     * not the job's folder: vs-job-undo.c accepts the journaled disks' images too). */
    vs_qemu_img_run_async_full(args, NULL, vs_job_child_note, job, on_write_progress, job,
                               job->cancellable, write_done, g_object_ref(job));
}

/* Journaled first: from here on, undo writes the safety copy back. */
static void
write_back_start(VsJob *job)
{
    GError *error = NULL;

    g_mutex_lock(&job->lock);
    job->journal->revert_writing = TRUE;
    g_mutex_unlock(&job->lock);
    if (!vs_job_journal_save(job, &error)) {
        job->step_done(job, error);
        return;
    }
    job->revert->index = 0;
    job->revert->t_write_start = vs_now_ms();
    /* Progress is the write-back's from here: not the safety copy's finished 1.0. */
    vs_job_set_progress(job, 0.0, 0, vs_job_disk(job, 0)->size);
    write_next(job);
}

/* Every step holds the disks: the libvirt hook refuses a start while the job runs. */
static const VsJobStep revert_steps[] = {
    {VS_PHASE_STOP, .wanted = vs_revert_stop_wanted, .thread = vs_revert_stop_thread,
     .flags = VS_STEP_DISKS_OFFLINE},
    {VS_PHASE_PREPARE, .thread = prepare_thread, .flags = VS_STEP_DISKS_OFFLINE},
    {VS_PHASE_EXTRACT, .enter = vs_job_after_cut, .start = safety_start,
     .flags = VS_STEP_DISKS_OFFLINE},
    {VS_PHASE_CATALOG, .thread = vs_revert_publish_thread, .undo = VS_UNDO_REVERT,
     .flags = VS_STEP_DISKS_OFFLINE},
    {VS_PHASE_WRITE_BACK, .start = write_back_start, .undo = VS_UNDO_REVERT,
     .flags = VS_STEP_DISKS_OFFLINE},
};

/* Without a safety snapshot nothing can be written back: a write-back once begun is not
 * cancellable (a failure of qemu-img itself leaves the disk partly written). */
static const VsJobStep revert_unsafe_steps[] = {
    {VS_PHASE_STOP, .wanted = vs_revert_stop_wanted, .thread = vs_revert_stop_thread,
     .flags = VS_STEP_DISKS_OFFLINE},
    {VS_PHASE_PREPARE, .thread = prepare_thread, .flags = VS_STEP_DISKS_OFFLINE},
    {VS_PHASE_WRITE_BACK, .start = write_back_start, .undo = VS_UNDO_REVERT,
     .flags = VS_STEP_DISKS_OFFLINE | VS_STEP_NOT_CANCELLABLE},
};

const VsResultField vs_revert_result[] = {
    {"reverted-to", "id"},
    {"safety-snapshot-id", "safety-id"},
    {"safety-directory", "safety-directory"},
    {"stopped", "stopped"},
    {"stop-note", "stop-note"},
    {"safety-ms", "safety-ms"},
    {"write-ms", "write-ms"},
    {NULL, NULL},
};

const VsJobMethod vs_job_method_revert = {
    .name = "revert",
    .steps = revert_steps,
    .n_steps = G_N_ELEMENTS(revert_steps),
    .result_fields = vs_revert_result,
};

const VsJobMethod vs_job_method_revert_unsafe = {
    .name = "revert",
    .steps = revert_unsafe_steps,
    .n_steps = G_N_ELEMENTS(revert_unsafe_steps),
    .result_fields = vs_revert_result,
};

VsJob *
vs_job_new_revert(guint id, const VsConfig *config, VsLibvirt *libvirt, VsRevert *revert)
{
    VsJob *self = vs_job_new_common(id, config, libvirt, revert->plan->name, revert->plan->uuid);
    g_autofree char *reason =
        g_strdup_printf("revert to snapshot %s (%s)%s", revert->id, revert->name,
                        revert->opts.safety ? ""
                                            : ", without a safety "
                                              "snapshot");

    self->revert = revert;
    self->plan = g_steal_pointer(&revert->plan);
    self->t_requested = vs_now_ms();
    vs_snapshot_options_init(&self->opts);
    self->opts.method = VS_METHOD_COLD;
    /* The safety snapshot's id: the journal record and the folder are named after it. */
    self->snapshot_id = vs_make_snapshot_id();
    self->name = g_strdup_printf("before-revert-%s", self->snapshot_id);
    self->folder = vs_catalog_partial_dir(self->snapshot_dir, self->snapshot_id);
    self->journal = vs_journal_entry_new();
    self->journal->snapshot_id = g_strdup(self->snapshot_id);
    self->journal->domain = g_strdup(self->domain);
    self->journal->uuid = g_strdup(self->uuid);
    self->journal->folder = g_strdup(self->folder);
    self->journal->revert_of = g_strdup(revert->id);
    if (revert->rbd)
        self->method =
            revert->opts.safety ? &vs_job_method_revert_rbd : &vs_job_method_revert_rbd_unsafe;
    else
        self->method = revert->opts.safety ? &vs_job_method_revert : &vs_job_method_revert_unsafe;
    vs_dbus_job1_set_method(self->iface, "revert");
    vs_dbus_job1_set_method_reason(self->iface, reason);
    return self;
}

/* ---- undo ------------------------------------------------------------------------------- */

/* The journal is ours, but a disk is only written when the domain still has it, as the
 * same file or RBD image, and is not running; and a safety image is only read from our
 * safety folder (RBD: only a snapshot of ours). */
static gboolean
may_write_back(VsJob *job, virDomainPtr dom, VsJournalRevertDisk *jd, GString *why)
{
    g_autofree char *safety_dir =
        vs_catalog_final_dir(job->snapshot_dir, job->journal->snapshot_id);
    g_autofree char *prefix = g_strconcat(safety_dir, "/", NULL);
    g_autofree char *xml = NULL;
    g_autoptr(VsDomainXml) dx = NULL;
    VsDisk *disk;

    if (!jd->safety || !*jd->safety) {
        g_string_append_printf(why, "there is no safety snapshot to write back");
        return FALSE;
    }
    if (strcmp(jd->format, "rbd") == 0
            ? !g_str_has_prefix(jd->safety, "virtsnap-")
            : !g_str_has_prefix(jd->safety, prefix) || strstr(jd->safety, "/../") ||
                  g_file_test(jd->safety, G_FILE_TEST_IS_SYMLINK) ||
                  !g_file_test(jd->safety, G_FILE_TEST_IS_REGULAR)) {
        g_string_append_printf(why, "its safety image %s is missing", jd->safety);
        return FALSE;
    }
    if (!dom || !(xml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE)) ||
        !(dx = vs_domain_xml_parse(xml, NULL)) ||
        !(disk = vs_domain_xml_find_disk(dx, jd->target)) ||
        g_strcmp0(disk->source, jd->image) != 0) {
        g_string_append_printf(why, "the domain has no disk %s at %s any more", jd->target,
                               jd->image);
        return FALSE;
    }
    if (virDomainIsActive(dom) != 0) {
        g_string_append_printf(why, "the domain runs");
        return FALSE;
    }
    return TRUE;
}

/* The qemu-img an agent killed mid write-back had started may still hold the image's
 * write lock a moment (until its next progress line meets the closed pipe): retry. */
static gboolean
write_back_safety(VsJob *job, VsJournalRevertDisk *jd, GError **error)
{
    g_autoptr(VsSecret) secret = NULL;
    g_autofree char *from = NULL, *to = NULL;
    const char *args[] = {"convert",  "-n",       "-f",      "qcow2", "-O",
                          jd->format, jd->safety, jd->image, NULL};
    VsSecret *secrets[] = {NULL, NULL};
    g_autoptr(GError) local = NULL;

    /* An encrypted disk's safety image has its secret: both are opened with it. */
    if (jd->secret && *jd->secret) {
        if (!(secret = vs_secret_fetch(job->undo_conn, jd->target, jd->secret, error)))
            return FALSE;
        secrets[0] = secret;
        args[6] = from = vs_secret_image_spec(jd->safety, 0, TRUE);
        args[7] = to = vs_secret_image_spec(jd->image, 0, TRUE);
    }

    for (int attempt = 0; attempt < 60; attempt++) {
        g_autofree char *out = NULL;

        g_clear_error(&local);
        if ((out = vs_qemu_img_run_sync_secrets(args, secrets, &local)))
            return TRUE;
        if (!strstr(local->message, "lock") && !strstr(local->message, "another process"))
            break;
        g_usleep(500 * 1000);
    }
    g_propagate_error(error, g_steal_pointer(&local));
    return FALSE;
}

gboolean
vs_revert_undo(VsJob *job, virDomainPtr dom, GError **error)
{
    VsJournalEntry *j = job->journal;

    if (j->revert_writing) {
        for (guint i = 0; i < j->revert_disks->len; i++) {
            VsJournalRevertDisk *jd = g_ptr_array_index(j->revert_disks, i);
            g_autoptr(GString) why = g_string_new(NULL);

            if (!may_write_back(job, dom, jd, why)) {
                g_string_append_printf(job->undo_notes, "disk %s may be partly reverted: %s; ",
                                       jd->target, why->str);
                /* The safety snapshot then stays (in the cluster too): the one copy of the
                 * old content. */
                if (*jd->safety) {
                    j->revert_published = FALSE;
                    for (guint k = 0; k < j->rbd->len; k++) {
                        VsJournalRbd *r = g_ptr_array_index(j->rbd, k);

                        r->snap_made = r->clone_made = FALSE;
                    }
                }
                continue;
            }
            if (strcmp(jd->format, "rbd") == 0 ? !vs_revert_rbd_undo_disk(job, jd, error)
                                               : !write_back_safety(job, jd, error))
                return FALSE; /* the journal keeps it; the next start tries again */
            g_string_append_printf(job->undo_notes,
                                   "disk %s has its content from before the "
                                   "revert again; ",
                                   jd->target);
        }
        g_mutex_lock(&job->lock);
        j->revert_writing = FALSE;
        g_mutex_unlock(&job->lock);
        vs_job_journal_save(job, NULL);
    }
    if (j->revert_published) {
        g_autofree char *dir = vs_catalog_final_dir(job->snapshot_dir, j->snapshot_id);

        /* The disks hold what the safety snapshot holds: it would only be a copy (an RBD
         * one's clone and source snapshot go with undo's rbd part, which follows). */
        if (g_file_test(dir, G_FILE_TEST_IS_DIR) &&
            !vs_catalog_delete(job->snapshot_dir, j->snapshot_id, error))
            return FALSE;
        g_string_append_printf(job->undo_notes, "safety snapshot %s removed; ", j->snapshot_id);
        j->revert_published = FALSE;
    }
    return TRUE;
}
