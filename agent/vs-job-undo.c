/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The one way back: stop our copies, resume, start again, thaw, define again, remove our
 * clones and files. Each part is read from the journal, so the same code repairs the job
 * of an agent that crashed (a recovery job runs every part). */
#include "vs-job-private.h"
#include "vs-freeze.h"
#include "vs-child.h"
#include "vs-domain-xml.h"
#include "vs-error.h"
#include "vs-revert.h"
#include "vs-util.h"
#include "vs-virt-util.h"

/* Only a mirror that writes into our folder is ours to stop. */
static gboolean
undo_copies(VsJob *job, virDomainPtr dom, GError **error)
{
    VsJournalEntry *j = job->journal;
    g_autoptr(VsDomainXml) dx = NULL;
    g_autoptr(GError) local = NULL;
    g_autofree char *xml = NULL;

    if (dom && (xml = virDomainGetXMLDesc(dom, 0)))
        dx = vs_domain_xml_parse(xml, NULL);
    for (guint i = 0; dom && i < j->copies->len; i++) {
        const char *target = g_ptr_array_index(j->copies, i);
        VsDisk *disk = dx ? vs_domain_xml_find_disk(dx, target) : NULL;

        if (!disk || !disk->mirror || !disk->mirror_source || !j->folder ||
            !g_str_has_prefix(disk->mirror_source, j->folder))
            continue;
        if (virDomainBlockJobAbort(dom, target, 0) < 0) {
            vs_set_libvirt_error(&local, "stopping the copy of %s", target);
            g_string_append_printf(job->undo_notes, "%s; ", local->message);
            if (local->code == VS_ERROR_NOT_CONNECTED)
                return g_propagate_error(error, g_steal_pointer(&local)), FALSE;
            g_clear_error(&local);
        }
    }
    g_mutex_lock(&job->lock);
    g_ptr_array_set_size(j->copies, 0);
    g_mutex_unlock(&job->lock);
    return TRUE;
}

static void
undo_resume(VsJob *job, virDomainPtr dom)
{
    int state = 0, reason = 0;

    if (virDomainGetState(dom, &state, &reason, 0) == 0 && state == VIR_DOMAIN_PAUSED &&
        virDomainResume(dom) < 0)
        g_string_append_printf(job->undo_notes, "resume failed: %s; ", virGetLastErrorMessage());
    job->journal->suspended = FALSE;
}

/* How long undo waits for libvirt to finish a managed save a killed agent began. */
#define SAVE_WAIT_S 600

/* A managed save of ours may still be in flight: the agent was killed while libvirt wrote
 * it, and libvirt goes on. Until it ends the domain is active (paused); after it, off with
 * our image. Deciding before it ends would leave the guest off: wait for libvirt's job on
 * the domain to end (libvirt 9.0 keeps a dead client's save running). */
static void
wait_domain_job(VsJob *job, virDomainPtr dom)
{
    for (int i = 0; i < SAVE_WAIT_S * 10; i++) {
        virDomainJobInfo info = {0};

        if (virDomainGetJobInfo(dom, &info) < 0 || info.type == VIR_DOMAIN_JOB_NONE)
            return;
        if (i == 0)
            JOB_LOG(job, G_LOG_LEVEL_MESSAGE,
                    "waiting for libvirt's job on %s (a managed save) "
                    "to end",
                    job->journal->domain);
        g_usleep(100 * 1000);
    }
}

/* Our managed save is never orphaned: the guest starts again from it. The state is read
 * again before each try (a save that ended, a start by someone else); a killed qemu-img
 * was ended before (undo_children), but its lock may outlive it a moment: retry briefly. */
static gboolean
undo_restart(VsJob *job, virDomainPtr dom, GError **error)
{
    int active = -1;

    wait_domain_job(job, dom);
    for (int attempt = 0; attempt < 10; attempt++) {
        active = virDomainIsActive(dom);
        if (active != 0)
            break;
        if (virDomainCreate(dom) == 0) {
            g_string_append_printf(job->undo_notes, "domain started again from its managed "
                                                    "save; ");
            active = 1;
            break;
        }
        g_usleep(200 * 1000);
    }
    if (active != 1) {
        vs_set_libvirt_error(error, "starting '%s' again from its managed save",
                             job->journal->domain);
        return FALSE; /* the journal keeps "saved"; the next start tries again */
    }
    if (job->t_down_start)
        job->downtime_ms = vs_now_ms() - job->t_down_start;
    job->journal->saved = FALSE;
    return TRUE;
}

static void
undo_thaw(VsJob *job, virDomainPtr dom)
{
    /* A thaw of a guest that is not frozen is harmless; a missed one is not: one that a
     * hung agent did not answer goes on in the background until it does. */
    if (virDomainFSThaw(dom, NULL, 0, 0) < 0) {
        JOB_LOG(job, G_LOG_LEVEL_DEBUG, "thaw during cleanup: %s", virGetLastErrorMessage());
        if (vs_freeze_agent_hangs(virGetLastErrorCode()))
            vs_freeze_keep_thawing(job, dom);
    }
    job->journal->frozen = FALSE;
}

static gboolean
undo_redefine(VsJob *job, virDomainPtr dom, GError **error)
{
    VsJournalEntry *j = job->journal;

    if (!dom || virDomainIsPersistent(dom) != 1) {
        virDomainPtr defined = virDomainDefineXML(job->undo_conn, j->saved_xml);

        if (!defined) {
            vs_set_libvirt_error(error, "defining '%s' again", j->domain);
            return FALSE; /* the journal keeps the XML; the next start tries again */
        }
        virDomainFree(defined);
        g_string_append_printf(job->undo_notes, "domain defined again; ");
    }
    j->undefined = FALSE;
    return TRUE;
}

/* The half-made clone goes (its "snap" first), then the snapshot on the source. */
static gboolean
undo_rbd(VsJob *job, VsJournalRbd *r, GError **error)
{
    /* A record read back from disk has "" where a live job has NULL. */
    VsRbdSpec spec = {r->pool,
                      r->ns,
                      r->image,
                      r->conf && *r->conf ? r->conf : NULL,
                      r->hosts && *r->hosts ? r->hosts : NULL,
                      r->user && *r->user ? r->user : NULL};
    g_autoptr(VsRbdCluster) cluster = vs_rbd_connect(&job->config->rbd, &spec, error);

    if (!cluster)
        return FALSE;
    if (r->clone_made) {
        g_autoptr(VsRbdImage) clone = vs_rbd_open(cluster, r->clone_pool, r->ns, r->clone, NULL);

        if (clone && !vs_rbd_snap_drop(clone, "snap", error))
            return FALSE;
        g_clear_pointer(&clone, vs_rbd_close);
        if (!vs_rbd_remove(cluster, r->clone_pool, r->ns, r->clone, error))
            return FALSE;
        g_string_append_printf(job->undo_notes, "removed clone %s/%s; ", r->clone_pool, r->clone);
        r->clone_made = FALSE;
    }
    if (r->snap_made) {
        g_autoptr(VsRbdImage) src = vs_rbd_open(cluster, r->pool, r->ns, r->image, error);

        if (!src || !vs_rbd_snap_drop(src, r->snap, error))
            return FALSE;
        r->snap_made = FALSE;
    }
    return TRUE;
}

/* First of all: a child of ours that lived on (e.g. a qemu-img of a killed agent) holds
 * the disks' locks and writes into the folder that undo removes. */
static gboolean
undo_children(VsJob *job, GError **error)
{
    VsJournalEntry *j = job->journal;
    g_autoptr(GPtrArray) names = g_ptr_array_new();

    /* A revert's write-back names the disk it writes, not the job's folder. */
    if (j->folder)
        g_ptr_array_add(names, j->folder);
    for (guint i = 0; j->revert_disks && i < j->revert_disks->len; i++) {
        VsJournalRevertDisk *jd = g_ptr_array_index(j->revert_disks, i);

        if (jd->image && *jd->image)
            g_ptr_array_add(names, jd->image);
    }
    g_ptr_array_add(names, NULL);
    for (guint i = 0; i < j->children->len; i++) {
        const VsJournalChild *c = &g_array_index(j->children, VsJournalChild, i);

        if (!vs_child_end_leftover_names((GPid)c->pid, c->start,
                                         (const char *const *)names->pdata)) {
            g_set_error(error, VS_ERROR, VS_ERROR_FAILED,
                        "cannot end the job's leftover process %" G_GINT64_FORMAT, c->pid);
            return FALSE; /* the journal keeps it; the next start tries again */
        }
    }
    g_mutex_lock(&job->lock);
    g_array_set_size(j->children, 0);
    g_mutex_unlock(&job->lock);
    return TRUE;
}

/* A killed agent's Ceph client keeps its watches on the images it had open until the OSDs
 * time it out (30 s): every snapshot, removal and the next job's cut would wait for it.
 * Only a recovery job does this: a running agent's own client is alive. */
static void
undo_dead_clients(VsJob *job)
{
    g_autoptr(GHashTable) done = g_hash_table_new(g_str_hash, g_str_equal);

    for (guint i = 0; i < job->journal->rbd->len; i++) {
        VsJournalRbd *r = g_ptr_array_index(job->journal->rbd, i);
        VsRbdSpec spec = {r->pool,
                          r->ns,
                          r->image,
                          r->conf && *r->conf ? r->conf : NULL,
                          r->hosts && *r->hosts ? r->hosts : NULL,
                          r->user && *r->user ? r->user : NULL};
        g_autoptr(VsRbdCluster) cluster = NULL;
        g_autofree char *ours = NULL;
        g_autoptr(GError) local = NULL;

        if (!r->client || !*r->client || g_hash_table_contains(done, r->client))
            continue;
        g_hash_table_add(done, r->client);
        if (!(cluster = vs_rbd_connect(&job->config->rbd, &spec, &local)))
            continue; /* undo_rbd reports the cluster */
        ours = vs_rbd_cluster_client_addr(cluster);
        if (g_strcmp0(ours, r->client) == 0)
            continue;
        if (vs_rbd_blocklist(cluster, r->client, 600, &local))
            JOB_LOG(job, G_LOG_LEVEL_MESSAGE, "blocklisted the dead agent's Ceph client %s",
                    r->client);
        else
            JOB_LOG(job, G_LOG_LEVEL_WARNING, "%s (the next snapshot may wait 30 s)",
                    local->message);
    }
}

gboolean
vs_job_undo_thread(VsJob *job, GError **error)
{
    VsJournalEntry *j = job->journal;
    VsUndoParts parts = job->undo_parts;
    g_autofree char *key = NULL;
    g_autoptr(virDomain) dom = NULL;
    g_autoptr(GError) local = NULL;
    g_autoptr(GError) children_error = NULL;
    /* A leftover that will not die (stuck in D state, say) keeps the parts that need the
     * disks or the folder for the next start; the guest-facing ones go on regardless. */
    gboolean children_gone = undo_children(job, &children_error);

    dom = vs_lookup_domain(job->undo_conn, j->uuid && *j->uuid ? j->uuid : j->domain, &local);
    if (!dom && local && local->code == VS_ERROR_NOT_CONNECTED) {
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
    }
    g_clear_error(&local);

    if ((parts & VS_UNDO_COPIES) && !undo_copies(job, dom, error))
        return FALSE;
    if ((parts & VS_UNDO_RESUME) && dom && j->suspended)
        undo_resume(job, dom);
    if ((parts & VS_UNDO_THAW) && dom && j->frozen)
        undo_thaw(job, dom);
    if ((parts & VS_UNDO_REDEFINE) && j->undefined && !undo_redefine(job, dom, error))
        return FALSE;
    if (!children_gone) {
        g_propagate_error(error, g_steal_pointer(&children_error));
        return FALSE; /* the journal keeps them; the next start tries again */
    }
    if ((parts & VS_UNDO_RESTART) && dom && j->saved && !undo_restart(job, dom, error))
        return FALSE;
    /* Before the RBD part: a running clone keeps its RBD images open. */
    if ((parts & VS_UNDO_CLONE) && j->clone_name && !vs_job_clone_undo(job, error))
        return FALSE;
    /* Before the rbd part: an RBD revert's safety copy is a snapshot that part removes. */
    if ((parts & VS_UNDO_REVERT) && j->revert_of && !vs_revert_undo(job, dom, error))
        return FALSE; /* the journal keeps it; the next start tries again */
    if (job->recovery)
        undo_dead_clients(job);
    for (guint i = j->rbd->len; (parts & VS_UNDO_RBD) && i > 0; i--) {
        VsJournalRbd *r = g_ptr_array_index(j->rbd, i - 1);

        if ((r->clone_made || r->snap_made) && !undo_rbd(job, r, error))
            return FALSE; /* the journal keeps it; the next start tries again */
    }
    if (j->folder && !vs_remove_flat_dir(j->folder, error))
        return FALSE;
    key = vs_journal_entry_key(j);
    vs_journal_remove(job->state_dir, key);
    return TRUE;
}

/* A recovery job: nothing to do but take back, with every part, what the journal says. */
const VsJobMethod vs_job_method_recovery = {
    .name = "recovery",
};
