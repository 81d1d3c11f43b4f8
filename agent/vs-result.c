/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One set of facts about a finished job, many views: metadata.json and the D-Bus Result
 * are both derived from the GVariant built here, mapping keys where they differ. */
#include "vs-result.h"
#include "vs-job-private.h"
#include "vs-build-config.h"
#include "vs-catalog.h"
#include "vs-util.h"

#include <glib/gstdio.h>

/* metadata.json's members, in their order; a missing fact is left out. */
static const char *const metadata_keys[] = {
    "id",           "name",          "domain",   "uuid",        "created",    "created-us",
    "method",       "method-reason", "copy",     "downtime-ms", "offline",    "quiesced",
    "quiesce-note", "freeze-ms",     "pause-ms", "disks",       "domain-xml", "agent-version",
};

/* The Result's fields every method shows, before its own. */
static const VsResultField common_fields[] = {
    {"snapshot-id", "id"},
    {"name", "name"},
    {"directory", "directory"},
    {"quiesced", "quiesced"},
    {"quiesce-note", "quiesce-note"},
    {"method", "method"},
    {"method-reason", "method-reason"},
    {NULL, NULL},
};

/* Each disk in the Result: these facts, under the same names. */
static const char *const dbus_disk_keys[] = {"target", "image", "format", "virtual-size", "bytes"};

static void
add(GVariantBuilder *b, const char *key, GVariant *value)
{
    g_variant_builder_add(b, "{sv}", key, value);
}

static GVariant *
str(const char *s)
{
    return g_variant_new_string(s ? s : "");
}

void
vs_result_file_disk_facts(VsJob *job, VsJobDisk *d, GVariantBuilder *b)
{
    g_autofree char *base = g_path_get_basename(d->image);
    g_autofree char *location = g_build_filename(job->snapshot_dir, job->snapshot_id, base, NULL);
    GStatBuf st = {0};

    g_stat(d->image, &st);
    add(b, "image", str(location));
    add(b, "format", str(vs_format_name(job->opts.format)));
    add(b, "virtual-size", g_variant_new_uint64(d->size));
    add(b, "bytes", g_variant_new_uint64((guint64)st.st_blocks * 512));
    add(b, "source", str(d->plan->source));
    if (d->plan->secret) { /* the secret's UUID, never its value */
        GVariantBuilder e;

        g_variant_builder_init(&e, G_VARIANT_TYPE_VARDICT);
        add(&e, "format", str("luks"));
        add(&e, "secret-uuid", str(vs_secret_uuid(d->plan->secret)));
        add(b, "encryption", g_variant_builder_end(&e));
    }
}

GVariant *
vs_result_facts(VsJob *job)
{
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autofree char *created = g_date_time_format_iso8601(now);
    g_autofree char *dir = vs_catalog_final_dir(job->snapshot_dir, job->snapshot_id);
    gboolean cold = job->plan->method == VS_METHOD_COLD;
    GVariantBuilder b, disks;

    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    add(&b, "id", str(job->snapshot_id));
    add(&b, "name", str(job->name));
    add(&b, "domain", str(job->domain));
    add(&b, "uuid", str(job->uuid));
    add(&b, "created", str(created));
    add(&b, "created-us",
        g_variant_new_int64(g_date_time_to_unix(now) * G_USEC_PER_SEC +
                            g_date_time_get_microsecond(now)));
    add(&b, "method", str(vs_method_name(job->plan->method)));
    add(&b, "method-reason", str(job->plan->method_reason));
    add(&b, "copy", str(cold ? "" : vs_copy_name(job->opts.copy)));
    add(&b, "downtime-ms", g_variant_new_int64(job->downtime_ms));
    add(&b, "offline", g_variant_new_boolean(cold && !job->plan->active));
    add(&b, "quiesced", g_variant_new_boolean(job->quiesced));
    if (job->quiesce_note)
        add(&b, "quiesce-note", str(job->quiesce_note));
    add(&b, "freeze-ms", g_variant_new_int64(job->freeze_ms));
    add(&b, "pause-ms", g_variant_new_int64(job->pause_ms));
    add(&b, "copy-ms", g_variant_new_int64(job->t_copy_end - job->t_copy_start));
    add(&b, "flatten-ms", g_variant_new_int64(job->t_flatten_end - job->t_flatten_start));
    add(&b, "flattened", g_variant_new_boolean(job->flatten));
    g_variant_builder_init(&disks, G_VARIANT_TYPE("aa{sv}"));
    for (guint i = 0; i < job->disks->len; i++) {
        VsJobDisk *d = vs_job_disk(job, i);

        g_variant_builder_open(&disks, G_VARIANT_TYPE_VARDICT);
        add(&disks, "target", str(d->plan->target));
        if (job->method->disk_facts)
            job->method->disk_facts(job, d, &disks);
        else
            vs_result_file_disk_facts(job, d, &disks);
        g_variant_builder_close(&disks);
    }
    add(&b, "disks", g_variant_builder_end(&disks));
    add(&b, "domain-xml",
        str(job->plan->inactive_xml ? job->plan->inactive_xml : job->plan->live_xml));
    add(&b, "agent-version", str(VS_VERSION));
    add(&b, "directory", str(dir));
    return g_variant_builder_end(&b);
}

static void json_add_value(JsonBuilder *b, GVariant *value);

static void
json_add_dict(JsonBuilder *b, GVariant *dict)
{
    GVariantIter iter;
    const char *key;
    GVariant *value;

    json_builder_begin_object(b);
    g_variant_iter_init(&iter, dict);
    while (g_variant_iter_loop(&iter, "{&sv}", &key, &value)) {
        json_builder_set_member_name(b, key);
        json_add_value(b, value);
    }
    json_builder_end_object(b);
}

static void
json_add_value(JsonBuilder *b, GVariant *value)
{
    if (g_variant_is_of_type(value, G_VARIANT_TYPE_STRING)) {
        json_builder_add_string_value(b, g_variant_get_string(value, NULL));
    } else if (g_variant_is_of_type(value, G_VARIANT_TYPE_BOOLEAN)) {
        json_builder_add_boolean_value(b, g_variant_get_boolean(value));
    } else if (g_variant_is_of_type(value, G_VARIANT_TYPE_INT64)) {
        json_builder_add_int_value(b, g_variant_get_int64(value));
    } else if (g_variant_is_of_type(value, G_VARIANT_TYPE_UINT64)) {
        json_builder_add_int_value(b, (gint64)g_variant_get_uint64(value));
    } else if (g_variant_is_of_type(value, G_VARIANT_TYPE_VARDICT)) {
        json_add_dict(b, value);
    } else if (g_variant_is_of_type(value, G_VARIANT_TYPE("aa{sv}"))) {
        json_builder_begin_array(b);
        for (gsize i = 0; i < g_variant_n_children(value); i++) {
            g_autoptr(GVariant) child = g_variant_get_child_value(value, i);

            json_add_dict(b, child);
        }
        json_builder_end_array(b);
    } else {
        g_return_if_reached();
    }
}

JsonNode *
vs_result_metadata(GVariant *facts)
{
    g_autoptr(JsonBuilder) b = json_builder_new();

    json_builder_begin_object(b);
    for (guint i = 0; i < G_N_ELEMENTS(metadata_keys); i++) {
        g_autoptr(GVariant) value = g_variant_lookup_value(facts, metadata_keys[i], NULL);

        if (!value)
            continue;
        json_builder_set_member_name(b, metadata_keys[i]);
        json_add_value(b, value);
    }
    json_builder_end_object(b);
    return json_builder_get_root(b);
}

static void
add_fields(GVariantBuilder *b, GVariant *facts, const VsResultField *fields)
{
    for (guint i = 0; fields && fields[i].key; i++) {
        g_autoptr(GVariant) value = g_variant_lookup_value(facts, fields[i].fact, NULL);

        if (value)
            add(b, fields[i].key, value);
    }
}

GVariant *
vs_result_dbus(GVariant *facts, const VsResultField *fields, gint64 total_ms)
{
    g_autoptr(GVariant) disks = g_variant_lookup_value(facts, "disks", G_VARIANT_TYPE("aa{sv}"));
    GVariantBuilder b, out;

    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    add_fields(&b, facts, common_fields);
    add_fields(&b, facts, fields);
    add(&b, "total-ms", g_variant_new_int64(total_ms));
    g_variant_builder_init(&out, G_VARIANT_TYPE("aa{sv}"));
    for (gsize i = 0; disks && i < g_variant_n_children(disks); i++) {
        g_autoptr(GVariant) disk = g_variant_get_child_value(disks, i);

        g_variant_builder_open(&out, G_VARIANT_TYPE_VARDICT);
        for (guint k = 0; k < G_N_ELEMENTS(dbus_disk_keys); k++) {
            g_autoptr(GVariant) value = g_variant_lookup_value(disk, dbus_disk_keys[k], NULL);

            if (value)
                add(&out, dbus_disk_keys[k], value);
        }
        g_variant_builder_close(&out);
    }
    add(&b, "disks", g_variant_builder_end(&out));
    return g_variant_builder_end(&b);
}
