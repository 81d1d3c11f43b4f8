/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The clone method: a new persistent domain on a snapshot's images. Instant: a qcow2
 * overlay per disk whose backing file is the snapshot's image (made read-only); full: a
 * standalone copy (qemu-img convert, or an RBD flatten); RBD: a clone of the snapshot's
 * protected "snap". The original domain is never touched; of the snapshot, only the mode
 * of its images changes (read-only once an instant clone reads through them). */
#include "vs-job-private.h"
#include "vs-catalog.h"
#include "vs-clone.h"
#include "vs-convert.h"
#include "vs-error.h"
#include "vs-holds.h"
#include "vs-names.h"
#include "vs-qemu-img.h"
#include "vs-util.h"
#include "vs-virt-util.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <stdio.h>

static VsCloneDisk *
clone_disk(VsJob *job, guint i)
{
    return g_ptr_array_index(job->clone_plan->disks, i);
}

/* The clone's image while it is made: in the partial folder, named as in the final one. */
static char *
partial_image(VsJob *job, VsCloneDisk *d)
{
    g_autofree char *base = g_path_get_basename(d->dest);

    return g_build_filename(job->clone_plan->partial_dir, base, NULL);
}

static gboolean
clone_prepare_thread(VsJob *job, GError **error)
{
    VsClonePlan *p = job->clone_plan;
    g_autofree char *clones = g_build_filename(job->snapshot_dir, VS_CLONES_DIR, NULL);

    /* The journal names the folder before it exists: a crash after mkdir is cleaned up. */
    if (!vs_job_journal_save(job, error))
        return FALSE;
    /* 0711 like the snapshot directory: QEMU (another user on a system libvirtd) reaches
     * the clone's images by path; nobody but us lists them. */
    if ((g_mkdir(clones, 0711) < 0 && errno != EEXIST) || g_chmod(clones, 0711) < 0)
        return vs_set_errno_error(error, errno, "cannot create %s", clones);
    if (g_mkdir(p->partial_dir, 0711) < 0) {
        int errsv = errno;

        /* Not made by us: undo must leave it alone. */
        g_mutex_lock(&job->lock);
        g_clear_pointer(&job->journal->folder, g_free);
        g_mutex_unlock(&job->lock);
        return vs_set_errno_error(error, errsv, "cannot create %s", p->partial_dir);
    }
    if (g_chmod(p->partial_dir, 0711) < 0)
        return vs_set_errno_error(error, errno, "cannot create %s", p->partial_dir);
    return TRUE;
}

static gboolean
overlay_wanted(VsJob *job)
{
    return job->clone_plan->rbd || !job->clone_plan->full;
}

/* The snapshot's image stays as it is while a clone reads through it: 0400, so that no
 * one writes it by mistake (libvirt's DAC labelling lends it to QEMU's user while a clone
 * runs, and QEMU opens backing files read-only). */
static gboolean
file_overlay(VsJob *job, VsCloneDisk *d, GError **error)
{
    g_autofree char *overlay = partial_image(job, d);
    g_autofree char *out = NULL;
    const char *args[] = {"create",  "-q", "-f",     "qcow2", "-F",
                          d->format, "-b", d->image, overlay, NULL};

    if (g_chmod(d->image, 0400) < 0)
        return vs_set_errno_error(error, errno, "cannot make %s read-only", d->image);
    /* Journaled like every child of a job; this worker waits for it (PDEATHSIG). */
    if (!(out = vs_qemu_img_run_sync_full(args, NULL, vs_job_child_note, job, error)))
        return FALSE;
    if (g_chmod(overlay, 0600) < 0)
        return vs_set_errno_error(error, errno, "cannot set the mode of %s", overlay);
    return TRUE;
}

static VsRbdCluster *
rbd_connect(VsJob *job, VsCloneDisk *d, GError **error)
{
    VsRbdSpec spec = {d->pool,
                      d->ns,
                      d->parent,
                      *d->conf ? d->conf : NULL,
                      *d->hosts ? d->hosts : NULL,
                      *d->user ? d->user : NULL};

    return vs_rbd_connect(&job->config->rbd, &spec, error);
}

/* An RBD clone of the snapshot's protected "snap", journaled before it exists. An image
 * of that name is never reused or overwritten. */
static gboolean
rbd_overlay(VsJob *job, guint i, GError **error)
{
    VsCloneDisk *d = clone_disk(job, i);
    VsJournalRbd *jr = g_ptr_array_index(job->journal->rbd, i);
    g_autoptr(VsRbdCluster) cluster = rbd_connect(job, d, error);
    g_autoptr(VsRbdImage) parent = NULL;
    g_autoptr(VsRbdImage) existing = NULL;

    if (!cluster || !(parent = vs_rbd_open(cluster, d->pool, d->ns, d->parent, error)))
        return FALSE;
    existing = vs_rbd_open(cluster, d->pool, d->ns, d->rbd_image, NULL);
    if (existing) {
        g_set_error(error, VS_ERROR, VS_ERROR_EXISTS,
                    "an RBD image named %s already exists; nothing was overwritten", d->dest);
        return FALSE;
    }
    g_mutex_lock(&job->lock);
    jr->clone_made = TRUE;
    g_mutex_unlock(&job->lock);
    if (!vs_job_journal_save(job, error))
        return FALSE;
    return vs_rbd_clone(parent, "snap", cluster, d->pool, d->ns, d->rbd_image, error);
}

static gboolean
overlay_thread(VsJob *job, GError **error)
{
    for (guint i = 0; i < job->clone_plan->disks->len; i++) {
        if (job->cancel_requested)
            return TRUE; /* the engine turns this into the cancel */
        if (job->clone_plan->rbd ? !rbd_overlay(job, i, error)
                                 : !file_overlay(job, clone_disk(job, i), error))
            return FALSE;
    }
    return TRUE;
}

static gboolean
copy_wanted(VsJob *job)
{
    return job->clone_plan->full && !job->clone_plan->rbd;
}

/* --full: the whole chain of the snapshot's image into a standalone qcow2. */
static gboolean
copy_input(VsJob *job, VsJobDisk *d, const char **path, const char **format)
{
    *path = d->plan->source;
    *format = d->plan->format;
    return TRUE;
}

static const VsConvertInput copy_convert = {0.0, copy_input};

static void
copy_start(VsJob *job)
{
    job->t_flatten_start = vs_now_ms();
    vs_convert_start(job, &copy_convert);
}

static gboolean
flatten_wanted(VsJob *job)
{
    return job->clone_plan->full && job->clone_plan->rbd;
}

typedef struct {
    VsJob *job;
    guint index;
    int last_percent;
} FlattenState;

static gboolean
on_flatten_progress(guint64 done, guint64 total, gpointer data)
{
    FlattenState *fs = data;
    int percent = total ? (int)(100 * done / total) : 0;

    if (percent != fs->last_percent) {
        fs->last_percent = percent;
        vs_job_set_progress_later(fs->job,
                                  (fs->index + (total ? (double)done / total : 0)) /
                                      fs->job->clone_plan->disks->len,
                                  done, total);
    }
    return !g_atomic_int_get(&fs->job->cancel_requested);
}

/* --full for RBD: the clone gets its parent's data and no longer needs the snapshot. */
static gboolean
flatten_thread(VsJob *job, GError **error)
{
    job->t_flatten_start = vs_now_ms();
    for (guint i = 0; i < job->clone_plan->disks->len; i++) {
        VsCloneDisk *d = clone_disk(job, i);
        g_autoptr(VsRbdCluster) cluster = rbd_connect(job, d, error);
        g_autoptr(VsRbdImage) img = NULL;
        FlattenState fs = {job, i, -1};

        if (!cluster || !(img = vs_rbd_open(cluster, d->pool, d->ns, d->rbd_image, error)) ||
            !vs_rbd_flatten(img, on_flatten_progress, &fs, error))
            return FALSE;
    }
    job->t_flatten_end = vs_now_ms();
    return TRUE;
}

/* clone.json: what holds the snapshot (vs-holds.c reads it) and what the clone is. */
static gboolean
write_clone_file(VsJob *job, GError **error)
{
    VsClonePlan *p = job->clone_plan;
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonNode) root = NULL;
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autofree char *created = g_date_time_format_iso8601(now);
    g_autofree char *path = g_build_filename(p->partial_dir, VS_CLONE_FILE, NULL);
    g_autofree char *text = NULL;

    json_builder_begin_object(b);
    vs_json_add_string(b, "name", p->name);
    vs_json_add_string(b, "uuid", p->uuid);
    vs_json_add_string(b, "snapshot-id", p->snapshot_id);
    vs_json_add_string(b, "source-domain", p->source_domain);
    vs_json_add_bool(b, "full", p->full);
    vs_json_add_string(b, "created", created);
    json_builder_set_member_name(b, "disks");
    json_builder_begin_array(b);
    for (guint i = 0; i < p->disks->len; i++) {
        VsCloneDisk *d = clone_disk(job, i);

        json_builder_begin_object(b);
        vs_json_add_string(b, "target", d->target);
        if (p->rbd) {
            json_builder_set_member_name(b, "rbd");
            json_builder_begin_object(b);
            vs_json_add_string(b, "pool", d->pool);
            vs_json_add_string(b, "namespace", d->ns);
            vs_json_add_string(b, "image", d->rbd_image);
            vs_json_add_string(b, "parent", d->parent);
            vs_json_add_string(b, "conf", d->conf);
            vs_json_add_string(b, "hosts", d->hosts);
            vs_json_add_string(b, "user", d->user);
            json_builder_end_object(b);
        } else {
            vs_json_add_string(b, "image", d->dest);
        }
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    text = json_to_string(root, TRUE);
    return vs_write_file_atomic(path, text, -1, 0640, error);
}

/* The folder under its final name makes the clone a holder of the snapshot (vs-holds.c).
 * Under the holds lock, with the snapshot still there: a DeleteSnapshot that was already
 * past its checks when this job began must not leave the clone without its backing. */
static gboolean
publish(VsJob *job, GError **error)
{
    VsClonePlan *p = job->clone_plan;
    g_autofree char *folder = vs_catalog_final_dir(job->snapshot_dir, p->snapshot_id);
    g_autofree char *meta = g_build_filename(folder, VS_METADATA_FILE, NULL);
    gboolean ok = TRUE;

    vs_holds_lock();
    if (!g_file_test(meta, G_FILE_TEST_IS_REGULAR)) {
        g_set_error(error, VS_ERROR, VS_ERROR_NO_SUCH_SNAPSHOT,
                    "snapshot %s was deleted while the clone was made", p->snapshot_id);
        ok = FALSE;
    } else if (rename(p->partial_dir, p->final_dir) < 0) {
        ok = vs_set_errno_error(error, errno, "cannot publish clone folder %s", p->final_dir);
    }
    vs_holds_unlock();
    return ok;
}

/* The domain, then its folder under its final name, with clone.json already inside: the
 * folder appears complete. Both are journaled before they happen; undo finds the domain
 * by the UUID we chose, never by name (a domain of that name may be someone else's). */
static gboolean
define_thread(VsJob *job, GError **error)
{
    VsClonePlan *p = job->clone_plan;
    virDomainPtr dom;

    if (!write_clone_file(job, error))
        return FALSE;
    g_mutex_lock(&job->lock);
    job->journal->clone_defined = TRUE;
    g_mutex_unlock(&job->lock);
    if (!vs_job_journal_save(job, error))
        return FALSE;
    if (!(dom = virDomainDefineXML(p->conn, p->xml)))
        return vs_set_libvirt_error(error, "defining the clone '%s'", p->name);
    virDomainFree(dom);
    g_mutex_lock(&job->lock);
    job->journal->clone_published = TRUE;
    g_mutex_unlock(&job->lock);
    if (!vs_job_journal_save(job, error) || !publish(job, error))
        return FALSE;
    JOB_LOG(job, G_LOG_LEVEL_MESSAGE, "clone '%s' of snapshot %s defined", p->name, p->snapshot_id);
    return TRUE;
}

static gboolean
start_wanted(VsJob *job)
{
    return job->clone_plan->start;
}

static gboolean
start_thread(VsJob *job, GError **error)
{
    VsClonePlan *p = job->clone_plan;
    g_autoptr(virDomain) dom = vs_lookup_domain(p->conn, p->uuid, error);

    if (!dom)
        return FALSE;
    if (virDomainCreate(dom) < 0)
        return vs_set_libvirt_error(error, "starting the clone '%s'", p->name);
    return TRUE;
}

static void
add(GVariantBuilder *b, const char *key, GVariant *value)
{
    g_variant_builder_add(b, "{sv}", key, value);
}

static GVariant *
clone_facts(VsJob *job)
{
    VsClonePlan *p = job->clone_plan;
    GVariantBuilder b, disks;

    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    add(&b, "id", g_variant_new_string(p->snapshot_id));
    add(&b, "name", g_variant_new_string(p->name));
    add(&b, "directory", g_variant_new_string(p->final_dir));
    add(&b, "method", g_variant_new_string(job->method->name));
    add(&b, "method-reason", g_variant_new_string(vs_dbus_job1_get_method_reason(job->iface)));
    add(&b, "uuid", g_variant_new_string(p->uuid));
    add(&b, "source-domain", g_variant_new_string(p->source_domain));
    add(&b, "full", g_variant_new_boolean(p->full));
    add(&b, "started", g_variant_new_boolean(p->start));
    add(&b, "notes", g_variant_new_strv((const char *const *)p->notes->pdata, p->notes->len));
    add(&b, "copy-ms",
        g_variant_new_int64(job->t_flatten_end ? job->t_flatten_end - job->t_flatten_start : 0));
    g_variant_builder_init(&disks, G_VARIANT_TYPE("aa{sv}"));
    for (guint i = 0; i < p->disks->len; i++) {
        VsCloneDisk *d = clone_disk(job, i);
        GStatBuf st = {0};

        g_variant_builder_open(&disks, G_VARIANT_TYPE_VARDICT);
        add(&disks, "target", g_variant_new_string(d->target));
        add(&disks, "image", g_variant_new_string(d->dest));
        add(&disks, "format", g_variant_new_string(p->rbd ? "rbd" : "qcow2"));
        add(&disks, "virtual-size", g_variant_new_uint64(d->size));
        if (!p->rbd)
            g_stat(d->dest, &st);
        add(&disks, "bytes", g_variant_new_uint64((guint64)st.st_blocks * 512));
        g_variant_builder_close(&disks);
    }
    add(&b, "disks", g_variant_builder_end(&disks));
    return g_variant_builder_end(&b);
}

static gboolean
clone_catalog_thread(VsJob *job, GError **error)
{
    g_autofree char *key = vs_journal_entry_key(job->journal);

    job->facts = g_variant_ref_sink(clone_facts(job));
    vs_journal_remove(job->state_dir, key);
    return TRUE;
}

/* The clone part of undo: the domain we defined (stopped first), the folder under its
 * final name; the partial folder and our RBD images go through the common parts. */
gboolean
vs_job_clone_undo(VsJob *job, GError **error)
{
    VsJournalEntry *j = job->journal;
    g_autoptr(GError) local = NULL;

    if (j->clone_defined && j->clone_uuid && *j->clone_uuid) {
        g_autoptr(virDomain) dom = vs_lookup_domain(job->undo_conn, j->clone_uuid, &local);

        if (!dom && local->code != VS_ERROR_NO_SUCH_DOMAIN) {
            g_propagate_error(error, g_steal_pointer(&local));
            return FALSE;
        }
        if (dom && virDomainIsActive(dom) == 1 && virDomainDestroy(dom) < 0)
            return vs_set_libvirt_error(error, "stopping the clone '%s'", j->clone_name);
        if (dom && virDomainUndefineFlags(dom, VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                                                   VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                                                   VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA |
                                                   VIR_DOMAIN_UNDEFINE_NVRAM) < 0)
            return vs_set_libvirt_error(error, "undefining the clone '%s'", j->clone_name);
        if (dom)
            g_string_append_printf(job->undo_notes, "clone domain '%s' undefined; ", j->clone_name);
        j->clone_defined = FALSE;
    }
    if (j->clone_published) {
        g_autofree char *final = vs_clone_final_dir(job->snapshot_dir, j->clone_name);

        if (!vs_remove_flat_dir(final, error))
            return FALSE;
        j->clone_published = FALSE;
    }
    return TRUE;
}

static const VsJobStep clone_steps[] = {
    {VS_PHASE_PREPARE, .thread = clone_prepare_thread},
    {VS_PHASE_OVERLAY, .wanted = overlay_wanted, .thread = overlay_thread, .undo = VS_UNDO_RBD},
    {VS_PHASE_COPY, .wanted = copy_wanted, .start = copy_start},
    {VS_PHASE_FLATTEN, .wanted = flatten_wanted, .thread = flatten_thread},
    {VS_PHASE_DEFINE, .thread = define_thread, .undo = VS_UNDO_CLONE},
    {VS_PHASE_START, .wanted = start_wanted, .thread = start_thread, .undo = VS_UNDO_CLONE},
    {VS_PHASE_CATALOG, .thread = clone_catalog_thread, .flags = VS_STEP_NOT_CANCELLABLE},
};

static const VsResultField clone_result[] = {
    {"uuid", "uuid"},   {"source-domain", "source-domain"},
    {"full", "full"},   {"started", "started"},
    {"notes", "notes"}, {"copy-ms", "copy-ms"},
    {NULL, NULL},
};

const VsJobMethod vs_job_method_clone = {
    .name = "clone",
    .steps = clone_steps,
    .n_steps = G_N_ELEMENTS(clone_steps),
    .result_fields = clone_result,
};

static void
plan_disk_free(gpointer p)
{
    VsPlanDisk *pd = p;

    g_free(pd->target);
    g_free(pd->source);
    g_free(pd->format);
    g_free(pd);
}

static void
job_disk_free(gpointer p)
{
    VsJobDisk *d = p;

    g_free(d->image);
    g_free(d->part);
    g_free(d);
}

VsJob *
vs_job_new_clone(guint id, const VsConfig *config, VsLibvirt *libvirt, VsClonePlan *plan)
{
    VsJob *self = vs_job_new_common(id, config, libvirt, plan->name, plan->uuid);
    const char *reason;

    self->clone_plan = plan;
    self->t_requested = plan->requested_ms;
    self->method = &vs_job_method_clone;
    self->snapshot_id = g_strdup(plan->snapshot_id);
    self->name = g_strdup(plan->name);
    self->folder = g_strdup(plan->partial_dir);
    self->journal = vs_journal_entry_new();
    self->journal->snapshot_id = g_strdup(plan->snapshot_id);
    self->journal->domain = g_strdup(plan->name);
    self->journal->uuid = g_strdup(plan->uuid);
    self->journal->folder = g_strdup(plan->partial_dir);
    self->journal->clone_name = g_strdup(plan->name);
    self->journal->clone_uuid = g_strdup(plan->uuid);

    /* --full of file disks goes through vs-convert.c, which walks job->disks. */
    self->clone_plan_disks = g_ptr_array_new_with_free_func(plan_disk_free);
    self->disks = g_ptr_array_new_with_free_func(job_disk_free);
    for (guint i = 0; i < plan->disks->len; i++) {
        VsCloneDisk *cd = g_ptr_array_index(plan->disks, i);

        if (plan->rbd) {
            VsJournalRbd *jr = g_new0(VsJournalRbd, 1);

            jr->conf = g_strdup(cd->conf);
            jr->hosts = g_strdup(cd->hosts);
            jr->user = g_strdup(cd->user);
            jr->pool = g_strdup(cd->pool);
            jr->ns = g_strdup(cd->ns);
            jr->image = g_strdup(cd->parent);
            jr->snap = g_strdup("snap"); /* the snapshot's: never made nor removed by us */
            jr->clone_pool = g_strdup(cd->pool);
            jr->clone = g_strdup(cd->rbd_image);
            g_ptr_array_add(self->journal->rbd, jr);
        } else {
            VsPlanDisk *pd = g_new0(VsPlanDisk, 1);
            VsJobDisk *d = g_new0(VsJobDisk, 1);

            pd->target = g_strdup(cd->target);
            pd->source = g_strdup(cd->image);
            pd->format = g_strdup(cd->format);
            pd->capacity = cd->size;
            g_ptr_array_add(self->clone_plan_disks, pd);
            d->plan = pd;
            d->image = partial_image(self, cd);
            d->part = g_strdup_printf("%s.part", d->image);
            d->size = cd->size;
            g_ptr_array_add(self->disks, d);
        }
    }
    reason = plan->rbd    ? (plan->full ? "RBD clone of the snapshot, flattened (standalone)"
                                        : "RBD clone of the snapshot's protected snap (instant)")
             : plan->full ? "full copy of the snapshot's images (standalone qcow2)"
                          : "qcow2 overlays on the snapshot's images (instant)";
    vs_dbus_job1_set_method(self->iface, vs_job_method_clone.name);
    vs_dbus_job1_set_method_reason(self->iface, reason);
    return self;
}
