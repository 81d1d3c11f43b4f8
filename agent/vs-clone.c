/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* CloneSnapshot's request: its options, the snapshot's metadata read back, the checks
 * (unknown snapshot, name taken) and the clone's XML, all before a job exists, so that
 * bad input is answered at once and changes nothing. */
#include "vs-clone.h"
#include "vs-catalog.h"
#include "vs-clone-xml.h"
#include "vs-error.h"
#include "vs-holds.h"
#include "vs-names.h"
#include "vs-util.h"
#include "vs-virt-util.h"

#include <json-glib/json-glib.h>
#include <string.h>

static void
clone_disk_free(gpointer p)
{
    VsCloneDisk *d = p;

    g_free(d->target);
    g_free(d->image);
    g_free(d->format);
    g_free(d->dest);
    g_free(d->pool);
    g_free(d->ns);
    g_free(d->parent);
    g_free(d->conf);
    g_free(d->hosts);
    g_free(d->user);
    g_free(d->rbd_image);
    g_free(d);
}

void
vs_clone_plan_free(VsClonePlan *plan)
{
    if (!plan)
        return;
    g_free(plan->snapshot_id);
    g_free(plan->name);
    g_free(plan->uuid);
    g_free(plan->source_domain);
    g_free(plan->partial_dir);
    g_free(plan->final_dir);
    g_free(plan->xml);
    g_ptr_array_unref(plan->notes);
    g_ptr_array_unref(plan->disks);
    g_clear_pointer(&plan->conn, virConnectClose);
    g_free(plan);
}

char *
vs_clone_partial_dir(const char *snapshot_dir, const char *name)
{
    g_autofree char *base = g_strdup_printf(".%s.partial", name);

    return g_build_filename(snapshot_dir, VS_CLONES_DIR, base, NULL);
}

char *
vs_clone_final_dir(const char *snapshot_dir, const char *name)
{
    return g_build_filename(snapshot_dir, VS_CLONES_DIR, name, NULL);
}

gboolean
vs_clone_name_is_valid(const char *name)
{
    return vs_name_is_valid(name) && !strstr(name, "..");
}

/* Never through a link: a snapshot folder or metadata.json that is one is not ours. */
static JsonObject *
read_metadata(const char *snapshot_dir, const char *id, JsonNode **root, GError **error)
{
    if (!(*root = vs_catalog_read_metadata(snapshot_dir, id, error)))
        return NULL;
    return json_node_get_object(*root);
}

static char *
member(JsonObject *o, const char *key)
{
    return g_strdup(json_object_get_string_member_with_default(o, key, ""));
}

/* One disk of the snapshot's metadata as a disk of the clone. The metadata is ours, but
 * a file image is only ever taken from the snapshot's own folder: it is made read-only
 * and becomes a backing file. */
static VsCloneDisk *
clone_disk(VsClonePlan *plan, const char *snapshot_dir, JsonObject *o, GError **error)
{
    g_autoptr(GPtrArray) keep = g_ptr_array_new_with_free_func(clone_disk_free);
    g_autofree char *folder = vs_catalog_final_dir(snapshot_dir, plan->snapshot_id);
    g_autofree char *dir = NULL;
    VsCloneDisk *d = g_new0(VsCloneDisk, 1);
    JsonObject *rbd =
        json_object_has_member(o, "rbd") ? json_object_get_object_member(o, "rbd") : NULL;

    g_ptr_array_add(keep, d);
    d->target = member(o, "target");
    d->image = member(o, "image");
    d->format = member(o, "format");
    d->size = json_object_get_int_member_with_default(o, "virtual-size", 0);
    if (!vs_name_is_valid(d->target)) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "snapshot %s: bad disk target '%s'",
                    plan->snapshot_id, d->target);
        return NULL;
    }
    if (json_object_has_member(o, "encryption")) {
        /* An overlay on an encrypted image, and the clone's XML, would each need the
         * secret's <encryption>: not done yet. */
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                    "snapshot %s: disk %s is encrypted; cloning encrypted snapshots is not "
                    "supported (RevertSnapshot is)",
                    plan->snapshot_id, d->target);
        return NULL;
    }
    if (rbd) {
        const char *ns;

        plan->rbd = TRUE;
        d->pool = member(rbd, "pool");
        d->ns = member(rbd, "namespace");
        d->parent = member(rbd, "image");
        d->conf = member(rbd, "conf");
        d->hosts = member(rbd, "hosts");
        d->user = member(rbd, "user");
        /* Named so that users recognise it, beside the snapshot's image. */
        d->rbd_image = g_strdup_printf("%s-%s", plan->name, d->target);
        ns = d->ns;
        d->dest = g_strdup_printf("%s/%s%s%s", d->pool, ns, *ns ? "/" : "", d->rbd_image);
        return g_ptr_array_steal_index(keep, 0);
    }
    dir = g_path_get_dirname(d->image);
    if (strcmp(dir, folder) != 0 || !g_file_test(d->image, G_FILE_TEST_IS_REGULAR) ||
        g_file_test(d->image, G_FILE_TEST_IS_SYMLINK) ||
        (strcmp(d->format, "qcow2") != 0 && strcmp(d->format, "raw") != 0)) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO,
                    "snapshot %s: disk %s's image %s (%s) is not an image in its folder",
                    plan->snapshot_id, d->target, d->image, d->format);
        return NULL;
    }
    d->dest = g_strdup_printf("%s/%s.qcow2", plan->final_dir, d->target);
    return g_ptr_array_steal_index(keep, 0);
}

/* A snapshot of the mixed method (RBD and file disks) would need a clone of both kinds:
 * each kind's steps take the whole plan as theirs. Refused before anything is made. */
static gboolean
mixed_clone_check(VsClonePlan *plan, GError **error)
{
    for (guint i = 0; i < plan->disks->len; i++) {
        VsCloneDisk *d = g_ptr_array_index(plan->disks, i);

        if (!d->rbd_image) {
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "snapshot %s has RBD and file disks (disk %s is a file); cloning such "
                        "a snapshot is not supported",
                        plan->snapshot_id, d->target);
            return FALSE;
        }
    }
    return TRUE;
}

/* A name is taken by a domain (any, running or not) or by a clone folder, finished or not. */
static gboolean
check_name_free(VsClonePlan *plan, GError **error)
{
    virDomainPtr other = virDomainLookupByName(plan->conn, plan->name);

    if (other) {
        virDomainFree(other);
        g_set_error(error, VS_ERROR, VS_ERROR_EXISTS, "a domain named '%s' already exists",
                    plan->name);
        return FALSE;
    }
    if (virGetLastErrorCode() != VIR_ERR_NO_DOMAIN)
        return vs_set_libvirt_error(error, "looking up domain '%s'", plan->name);
    if (g_file_test(plan->final_dir, G_FILE_TEST_EXISTS) ||
        g_file_test(plan->partial_dir, G_FILE_TEST_EXISTS)) {
        g_set_error(error, VS_ERROR, VS_ERROR_EXISTS, "a clone named '%s' already exists (%s)",
                    plan->name, plan->final_dir);
        return FALSE;
    }
    return TRUE;
}

static gboolean
make_xml(VsClonePlan *plan, const char *saved_xml, GError **error)
{
    g_autofree VsCloneXmlDisk *disks = g_new0(VsCloneXmlDisk, plan->disks->len);
    VsCloneXmlSpec spec = {plan->name, plan->uuid, plan->final_dir, disks, plan->disks->len};

    for (guint i = 0; i < plan->disks->len; i++) {
        VsCloneDisk *d = g_ptr_array_index(plan->disks, i);

        disks[i].target = d->target;
        disks[i].file = plan->rbd ? NULL : d->dest;
        disks[i].rbd_name = plan->rbd ? d->dest : NULL;
    }
    plan->xml = vs_clone_xml_rewrite(saved_xml, &spec, plan->notes, error);
    return plan->xml != NULL;
}

VsClonePlan *
vs_clone_plan_make(virConnectPtr conn, const char *snapshot_dir, const char *id, const char *name,
                   gboolean full, gboolean start, GError **error)
{
    g_autoptr(VsClonePlan) plan = g_new0(VsClonePlan, 1);
    g_autoptr(JsonNode) root = NULL;
    JsonObject *meta;
    JsonArray *disks;
    const char *saved_xml;

    plan->conn = virConnectRef(conn) == 0 ? conn : NULL;
    plan->snapshot_id = g_strdup(id);
    plan->name = g_strdup(name);
    plan->uuid = g_uuid_string_random();
    plan->full = full;
    plan->start = start;
    plan->notes = g_ptr_array_new_with_free_func(g_free);
    plan->disks = g_ptr_array_new_with_free_func(clone_disk_free);
    plan->partial_dir = vs_clone_partial_dir(snapshot_dir, name);
    plan->final_dir = vs_clone_final_dir(snapshot_dir, name);

    if (!vs_name_is_valid(id)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT, "'%s' is not a snapshot id", id);
        return NULL;
    }
    if (!(meta = read_metadata(snapshot_dir, id, &root, error)))
        return NULL;
    plan->source_domain = member(meta, "domain");
    saved_xml = json_object_get_string_member_with_default(meta, "domain-xml", "");
    disks =
        json_object_has_member(meta, "disks") ? json_object_get_array_member(meta, "disks") : NULL;
    if (!*saved_xml || !disks || !json_array_get_length(disks)) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "snapshot %s has no domain XML or no disks", id);
        return NULL;
    }
    for (guint i = 0; i < json_array_get_length(disks); i++) {
        JsonObject *o = json_array_get_object_element(disks, i);
        VsCloneDisk *d = o ? clone_disk(plan, snapshot_dir, o, error) : NULL;

        if (!d) {
            if (error && !*error)
                g_set_error(error, VS_ERROR, VS_ERROR_IO, "snapshot %s: bad disk entry", id);
            return NULL;
        }
        g_ptr_array_add(plan->disks, d);
    }
    if (plan->rbd && !mixed_clone_check(plan, error))
        return NULL;
    if (!check_name_free(plan, error) || !make_xml(plan, saved_xml, error))
        return NULL;
    return g_steal_pointer(&plan);
}

/* ---- the D-Bus request ----------------------------------------------------------------------- */

typedef struct {
    VsQueue *queue;
    VsConfig *config;
    VsLibvirt *libvirt;
    GDBusMethodInvocation *invocation;
    virConnectPtr conn;
    char *id;
    char *name;
    gboolean full, start;
    gint64 requested_ms;
} Request;

static void
request_free(gpointer p)
{
    Request *r = p;

    g_object_unref(r->queue);
    vs_config_free(r->config);
    g_object_unref(r->libvirt);
    g_object_unref(r->invocation);
    g_clear_pointer(&r->conn, virConnectClose);
    g_free(r->id);
    g_free(r->name);
    g_free(r);
}

static const VsOptionField clone_fields[] = {
    {VS_OPT_CLONE_NAME, "s", G_STRUCT_OFFSET(Request, name)},
    {VS_OPT_CLONE_START, "b", G_STRUCT_OFFSET(Request, start)},
    {VS_OPT_CLONE_FULL, "b", G_STRUCT_OFFSET(Request, full)},
    {NULL},
};

static gboolean
parse_options(Request *r, GVariant *options, GError **error)
{
    if (!vs_options_parse_fields(options, clone_fields, r, "CloneSnapshot", error))
        return FALSE;
    if (!r->name) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT,
                    "option 'name' is required: the clone's domain name");
        return FALSE;
    }
    if (!vs_clone_name_is_valid(r->name)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT,
                    "option 'name': '%s' is not a valid name (1 to %d of A-Z a-z 0-9 . _ -, "
                    "not starting with . or -, no '..')",
                    r->name, VS_NAME_MAX);
        return FALSE;
    }
    return TRUE;
}

/* A job of ours on that name (a clone being made) takes the name too. */
static gboolean
check_no_job(Request *r, GError **error)
{
    VsJob *other = vs_queue_find_active(r->queue, r->name);

    if (!other)
        return TRUE;
    g_set_error(error, VS_ERROR, VS_ERROR_EXISTS, "the name '%s' is taken by job %s", r->name,
                vs_job_get_path(other));
    return FALSE;
}

static void
plan_thread(GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
    Request *r = data;
    GError *error = NULL;
    VsClonePlan *plan = vs_clone_plan_make(r->conn, r->config->snapshot_dir, r->id, r->name,
                                           r->full, r->start, &error);

    if (plan)
        g_task_return_pointer(task, plan, (GDestroyNotify)vs_clone_plan_free);
    else
        g_task_return_error(task, error);
}

static void
plan_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
    Request *r = g_task_get_task_data(G_TASK(result));
    g_autoptr(GError) error = NULL;
    g_autoptr(VsClonePlan) plan = g_task_propagate_pointer(G_TASK(result), &error);
    VsJob *job;

    if (!plan || !check_no_job(r, &error)) {
        g_dbus_method_invocation_return_gerror(r->invocation, error);
        return;
    }
    plan->requested_ms = r->requested_ms;
    job =
        vs_job_new_clone(vs_queue_take_id(r->queue), r->config, r->libvirt, g_steal_pointer(&plan));
    vs_queue_add(r->queue, job);
    g_dbus_method_invocation_return_value(r->invocation,
                                          g_variant_new("(o)", vs_job_get_path(job)));
    vs_queue_schedule(r->queue);
}

void
vs_clone_handle(VsQueue *queue, const VsConfig *config, VsLibvirt *libvirt,
                GDBusMethodInvocation *invocation, const char *id, GVariant *options)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GTask) task = NULL;
    Request *r = g_new0(Request, 1);

    r->queue = g_object_ref(queue);
    r->config = vs_config_copy(config);
    r->libvirt = g_object_ref(libvirt);
    r->invocation = g_object_ref(invocation);
    r->id = g_strdup(id);
    r->requested_ms = vs_now_ms();
    if (!parse_options(r, options, &error) || !check_no_job(r, &error) ||
        !(r->conn = vs_libvirt_get_connection(libvirt, &error))) {
        g_dbus_method_invocation_return_gerror(invocation, error);
        request_free(r);
        return;
    }
    task = g_task_new(NULL, NULL, plan_done, NULL);
    g_task_set_task_data(task, r, request_free);
    g_task_run_in_thread(task, plan_thread);
}
