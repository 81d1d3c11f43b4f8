/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The verify method: CHECK every image against its metadata (qemu-img info and check; an
 * RBD disk: its image and protected "snap"), DEEP (a read-only file system check of a
 * private raw copy), RECORD ("verified" into metadata.json). The snapshot's images are only
 * ever read, by qemu-img with -U, so that a clone, an export or a delete at the same time
 * is not disturbed; a problem found fails the job with VS_ERROR_CORRUPT. */
#include "vs-job-verify.h"
#include "vs-catalog.h"
#include "vs-error.h"
#include "vs-holds.h"
#include "vs-job-private.h"
#include "vs-child.h"
#include "vs-names.h"
#include "vs-rbd.h"
#include "vs-secret.h"
#include "vs-util.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SCRATCH_SUFFIX ".verify"

typedef struct {
    char *target;
    char *image;   /* a file disk's image, in the snapshot's folder; NULL for RBD */
    char *format;  /* as recorded */
    guint64 size;  /* virtual size, as recorded */
    GVariant *rbd; /* an RBD disk's "rbd" object */
    gboolean bad;  /* CHECK found a problem: DEEP leaves it alone */
    char *secret;  /* a LUKS-encrypted image's libvirt secret (UUID), or NULL */
} VerifyDisk;

struct _VsVerify {
    char *id, *name, *domain, *uuid;
    char *folder;
    GPtrArray *disks; /* VerifyDisk* */
    gboolean deep;
    char *scratch;           /* <snapshot_dir>/.<id>.<job>.verify: DEEP's private copies */
    GPtrArray *problems;     /* char*: each one fails the verification */
    GPtrArray *notes;        /* char*: worth saying, no failure */
    GPtrArray *file_systems; /* char*: "vda: ext4 clean" */
    guint64 units_done, units_total;
    virConnectPtr conn; /* for the secrets of encrypted images, or NULL */
};

static void
verify_disk_free(gpointer p)
{
    VerifyDisk *d = p;

    g_free(d->target);
    g_free(d->image);
    g_free(d->format);
    g_clear_pointer(&d->rbd, g_variant_unref);
    g_free(d->secret);
    g_free(d);
}

void
vs_verify_free(VsVerify *v)
{
    if (!v)
        return;
    g_free(v->id);
    g_free(v->name);
    g_free(v->domain);
    g_free(v->uuid);
    g_free(v->folder);
    g_free(v->scratch);
    g_ptr_array_unref(v->disks);
    g_ptr_array_unref(v->problems);
    g_ptr_array_unref(v->notes);
    g_ptr_array_unref(v->file_systems);
    if (v->conn)
        virConnectClose(v->conn);
    g_free(v);
}

static void problem(VsVerify *v, VerifyDisk *d, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

/* A problem of disk @d (NULL: of the snapshot). */
static void
problem(VsVerify *v, VerifyDisk *d, const char *fmt, ...)
{
    g_autofree char *text = NULL;
    va_list args;

    va_start(args, fmt);
    text = g_strdup_vprintf(fmt, args);
    va_end(args);
    if (d)
        d->bad = TRUE;
    g_ptr_array_add(v->problems,
                    d ? g_strdup_printf("%s: %s", d->target, text) : g_steal_pointer(&text));
}

gboolean
vs_verify_parse_options(GVariant *options, gboolean *deep, GError **error)
{
    static const VsOptionField fields[] = {{VS_OPT_DEEP, "b", 0}, {NULL}};

    *deep = FALSE;
    return vs_options_parse_fields(options, fields, deep, "VerifySnapshot", error);
}

/* ---- loading ---------------------------------------------------------------------------- */

static const char *
member_string(JsonObject *o, const char *key)
{
    JsonNode *node = json_object_get_member(o, key);

    if (!node || !JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_STRING)
        return NULL;
    return json_node_get_string(node);
}

static JsonNode *
read_metadata(const char *folder, const char *id, GError **error)
{
    g_autofree char *path = g_build_filename(folder, VS_METADATA_FILE, NULL);
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) local = NULL;
    GStatBuf st;

    /* The folder is ours; a link in its place is not a snapshot. */
    if (g_lstat(folder, &st) < 0 || !S_ISDIR(st.st_mode) || g_lstat(path, &st) < 0 ||
        !S_ISREG(st.st_mode)) {
        g_set_error(error, VS_ERROR, VS_ERROR_NO_SUCH_SNAPSHOT, "no snapshot with id '%s'", id);
        return NULL;
    }
    if (!json_parser_load_from_file(parser, path, &local) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "cannot read the metadata of snapshot %s: %s", id,
                    local ? local->message : "not a JSON object");
        return NULL;
    }
    return json_node_copy(json_parser_get_root(parser));
}

static void
load_disk(VsVerify *v, JsonNode *node)
{
    VerifyDisk *d = g_new0(VerifyDisk, 1);
    JsonObject *o = JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;
    const char *target = o ? member_string(o, "target") : NULL;
    const char *image = o ? member_string(o, "image") : NULL;
    JsonNode *rbd = o ? json_object_get_member(o, "rbd") : NULL;
    g_autofree char *base = image ? g_path_get_basename(image) : NULL;

    d->target = g_strdup(vs_name_is_valid(target) ? target : "?");
    d->format = g_strdup(o && member_string(o, "format") ? member_string(o, "format") : "");
    d->size = o ? json_object_get_int_member_with_default(o, "virtual-size", 0) : 0;
    g_ptr_array_add(v->disks, d);
    if (!o || !vs_name_is_valid(target)) {
        problem(v, d, "the metadata describes a disk without a valid target");
    } else if (rbd && JSON_NODE_HOLDS_OBJECT(rbd)) {
        d->rbd = g_variant_ref_sink(vs_json_to_variant(rbd));
    } else if (!vs_name_is_valid(base)) {
        problem(v, d, "the metadata names no image");
    } else {
        JsonNode *enc = json_object_get_member(o, "encryption");

        /* Only the file's name counts: it is read in this snapshot's own folder, wherever
         * the metadata says the folder was. */
        d->image = g_build_filename(v->folder, base, NULL);
        if (enc && JSON_NODE_HOLDS_OBJECT(enc)) {
            const char *uuid = member_string(json_node_get_object(enc), "secret-uuid");

            if (uuid && g_uuid_string_is_valid(uuid))
                d->secret = g_strdup(uuid);
            else
                problem(v, d, "the metadata names no valid secret of the encrypted image");
        }
    }
}

VsVerify *
vs_verify_load(const char *snapshot_dir, const char *id, GError **error)
{
    g_autoptr(VsVerify) v = NULL;
    g_autoptr(JsonNode) root = NULL;
    JsonObject *o;
    JsonNode *disks;

    if (!vs_name_is_valid(id)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT, "'%s' is not a snapshot id", id);
        return NULL;
    }
    v = g_new0(VsVerify, 1);
    v->id = g_strdup(id);
    v->folder = vs_catalog_final_dir(snapshot_dir, id);
    v->disks = g_ptr_array_new_with_free_func(verify_disk_free);
    v->problems = g_ptr_array_new_with_free_func(g_free);
    v->notes = g_ptr_array_new_with_free_func(g_free);
    v->file_systems = g_ptr_array_new_with_free_func(g_free);
    if (!(root = read_metadata(v->folder, id, error)))
        return NULL;
    o = json_node_get_object(root);
    v->name = g_strdup(member_string(o, "name") ? member_string(o, "name") : id);
    v->domain = g_strdup(member_string(o, "domain") ? member_string(o, "domain") : "");
    v->uuid = g_strdup(member_string(o, "uuid") ? member_string(o, "uuid") : "");
    disks = json_object_get_member(o, "disks");
    for (guint i = 0; disks && JSON_NODE_HOLDS_ARRAY(disks) &&
                      i < json_array_get_length(json_node_get_array(disks));
         i++)
        load_disk(v, json_array_get_element(json_node_get_array(disks), i));
    if (v->disks->len == 0)
        problem(v, NULL, "the metadata lists no disks");
    return g_steal_pointer(&v);
}

/* ---- running tools ------------------------------------------------------------------------ */

static void
kill_tool(GCancellable *cancellable, gpointer proc)
{
    g_subprocess_force_exit(proc);
}

/* e2fsck and xfs_repair live in sbin, which an unprivileged agent's PATH may lack. */
static char *
find_tool(const char *name)
{
    static const char *const dirs[] = {"/usr/sbin", "/sbin", "/usr/bin"};
    char *path = g_find_program_in_path(name);

    for (guint i = 0; !path && i < G_N_ELEMENTS(dirs); i++) {
        g_autofree char *candidate = g_build_filename(dirs[i], name, NULL);

        if (g_file_test(candidate, G_FILE_TEST_IS_EXECUTABLE))
            path = g_steal_pointer(&candidate);
    }
    return path;
}

/* Runs @argv (argv[0] a program name) to its end: its exit status, stdout in @out and
 * stderr in @err. The job's cancel kills it (VS_ERROR_CANCELLED). */
static gboolean run_tool_secret(VsJob *job, const char *const *argv, VsSecret *secret, int *status,
                                char **out, char **err, GError **error);

static gboolean
run_tool(VsJob *job, const char *const *argv, int *status, char **out, char **err, GError **error)
{
    return run_tool_secret(job, argv, NULL, status, out, err, error);
}

/* The same; qemu-img gets @secret (if any) as object vs_secret_id(0), through a pipe. */
static gboolean
run_tool_secret(VsJob *job, const char *const *argv, VsSecret *secret, int *status, char **out,
                char **err, GError **error)
{
    g_autofree char *program = find_tool(argv[0]);
    g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func(g_free);
    VsSecret *secrets[] = {secret, NULL};
    g_autoptr(GSubprocessLauncher) launcher = NULL;
    g_autoptr(GSubprocess) proc = NULL;
    g_autoptr(GError) local = NULL;
    gboolean ok;
    gulong handler;

    if (!program) {
        g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED, "%s is not installed", argv[0]);
        return FALSE;
    }
    /* This worker thread waits for the tool: it outlives it, as PDEATHSIG needs. */
    launcher =
        vs_child_launcher_new(G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE);
    g_ptr_array_add(args, g_strdup(program));
    for (guint i = 1; argv[i]; i++) {
        g_ptr_array_add(args, g_strdup(argv[i]));
        /* after qemu-img's subcommand */
        if (i == 1 && secret && !vs_secret_pass(secrets, args, launcher, error))
            return FALSE;
    }
    g_ptr_array_add(args, NULL);
    /* The host's e2fsck.conf has no say in a check of a guest's file system. */
    g_subprocess_launcher_setenv(launcher, "E2FSCK_CONFIG", "/dev/null", TRUE);
    g_subprocess_launcher_setenv(launcher, "LC_ALL", "C", TRUE);
    proc = g_subprocess_launcher_spawnv(launcher, (const char *const *)args->pdata, &local);
    if (!proc) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "cannot run %s: %s", argv[0], local->message);
        return FALSE;
    }
    handler = g_cancellable_connect(job->cancellable, G_CALLBACK(kill_tool), proc, NULL);
    ok = g_subprocess_communicate_utf8(proc, NULL, NULL, out, err, &local);
    if (!ok)
        g_subprocess_wait(proc, NULL, NULL);
    g_cancellable_disconnect(job->cancellable, handler);
    if (g_cancellable_is_cancelled(job->cancellable)) {
        g_set_error(error, VS_ERROR, VS_ERROR_CANCELLED, "cancelled");
        return FALSE;
    }
    if (!ok) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "%s: %s", argv[0], local->message);
        return FALSE;
    }
    *status = g_subprocess_get_if_exited(proc) ? g_subprocess_get_exit_status(proc) : -1;
    return TRUE;
}

/* The last non-empty line of a tool's output, for a problem's text. */
static char *
last_line(const char *text)
{
    g_auto(GStrv) lines = g_strsplit(text ? text : "", "\n", -1);

    for (guint n = g_strv_length(lines); n > 0; n--) {
        g_strstrip(lines[n - 1]);
        if (*lines[n - 1])
            return g_strdup(lines[n - 1]);
    }
    return g_strdup("no output");
}

/* The first thing e2fsck -n would have fixed ("Inode 2 ref count is 9, should be 3."), or
 * NULL: its questions are the findings, answered "no". */
static char *
first_finding(const char *text)
{
    g_auto(GStrv) lines = g_strsplit(text ? text : "", "\n", -1);

    for (guint i = 0; lines[i]; i++) {
        char *q = strstr(lines[i], "?  no");

        if (!q && !(q = strstr(lines[i], "? no")))
            continue;
        /* the question itself ("Fix", "Clear", ...) goes: the finding stays */
        while (q > lines[i] && q[-1] != '.' && q[-1] != ':')
            q--;
        *q = '\0';
        g_strstrip(lines[i]);
        if (*lines[i])
            return g_strdup(lines[i]);
    }
    return NULL;
}

/* qemu-img's name for a file image opened as @format alone: a qcow2 image's backing file
 * (a guest could have written any) is never opened. */
static char *
file_spec(const char *format, const char *path, gint64 offset, gint64 size)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    g_autofree char *text = NULL;

    json_builder_begin_object(b);
    vs_json_add_string(b, "driver", format);
    if (strcmp(format, "qcow2") == 0) {
        json_builder_set_member_name(b, "backing");
        json_builder_add_null_value(b);
    }
    if (size > 0) {
        vs_json_add_int(b, "offset", offset);
        vs_json_add_int(b, "size", size);
    }
    json_builder_set_member_name(b, "file");
    json_builder_begin_object(b);
    vs_json_add_string(b, "driver", "file");
    vs_json_add_string(b, "filename", path);
    json_builder_end_object(b);
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    text = json_generator_to_data(gen, NULL);
    return g_strconcat("json:", text, NULL);
}

/* The same for an RBD disk's protected "snap", through QEMU's rbd driver. */
static char *
rbd_spec(GVariant *rbd)
{
    const char *pool = "", *ns = "", *image = "", *snap = "snap", *conf = "", *user = "";
    const char *hosts = "";
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    g_autofree char *text = NULL;

    g_variant_lookup(rbd, "pool", "&s", &pool);
    g_variant_lookup(rbd, "namespace", "&s", &ns);
    g_variant_lookup(rbd, "image", "&s", &image);
    g_variant_lookup(rbd, "snap", "&s", &snap);
    g_variant_lookup(rbd, "conf", "&s", &conf);
    g_variant_lookup(rbd, "user", "&s", &user);
    g_variant_lookup(rbd, "hosts", "&s", &hosts);
    json_builder_begin_object(b);
    vs_json_add_string(b, "driver", "raw");
    json_builder_set_member_name(b, "file");
    json_builder_begin_object(b);
    vs_json_add_string(b, "driver", "rbd");
    vs_json_add_string(b, "pool", pool);
    if (*ns)
        vs_json_add_string(b, "namespace", ns);
    vs_json_add_string(b, "image", image);
    vs_json_add_string(b, "snapshot", snap);
    if (*conf)
        vs_json_add_string(b, "conf", conf);
    if (*user)
        vs_json_add_string(b, "user", user);
    if (*hosts) {
        g_auto(GStrv) list = g_strsplit(hosts, ",", -1);

        json_builder_set_member_name(b, "server");
        json_builder_begin_array(b);
        for (guint i = 0; list[i]; i++) {
            char *colon = strrchr(list[i], ':');

            json_builder_begin_object(b);
            if (colon)
                *colon = '\0';
            vs_json_add_string(b, "host", list[i]);
            vs_json_add_string(b, "port", colon ? colon + 1 : "6789");
            json_builder_end_object(b);
        }
        json_builder_end_array(b);
    }
    json_builder_end_object(b);
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    text = json_generator_to_data(gen, NULL);
    return g_strconcat("json:", text, NULL);
}

/* ---- progress ------------------------------------------------------------------------------ */

/* One more disk's share done (its virtual size: a big disk takes longer). Worker thread:
 * the property is set on the main loop. */
static void
advance_progress(VsJob *job, VerifyDisk *d)
{
    VsVerify *v = job->verify;

    v->units_done += MAX(d->size, 1);
    vs_job_set_progress_later(job, v->units_total ? (double)v->units_done / v->units_total : 0.0,
                              v->units_done, v->units_total);
}

/* ---- CHECK -------------------------------------------------------------------------------- */

/* The format the file's first bytes say: qcow2 by its magic, else raw. */
static const char *
sniff_format(const char *path)
{
    char magic[4] = {0};
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, magic, sizeof(magic)) : -1;

    if (fd >= 0)
        close(fd);
    return n == 4 && memcmp(magic, "QFI\xfb", 4) == 0 ? "qcow2" : "raw";
}

/* An encrypted image opened with secret vs_secret_id(0); never its backing file. */
static char *
encrypted_spec(const char *path)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    g_autofree char *text = NULL;

    json_builder_begin_object(b);
    vs_json_add_string(b, "driver", "qcow2");
    vs_json_add_string(b, "encrypt.key-secret", vs_secret_id(0));
    json_builder_set_member_name(b, "backing");
    json_builder_add_null_value(b);
    json_builder_set_member_name(b, "file");
    json_builder_begin_object(b);
    vs_json_add_string(b, "driver", "file");
    vs_json_add_string(b, "filename", path);
    json_builder_end_object(b);
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    text = json_generator_to_data(gen, NULL);
    return g_strconcat("json:", text, NULL);
}

/* The passphrase of encrypted disk @d, from libvirt: a secret that is gone or unreadable
 * is the job's error (not a problem of the image). */
static VsSecret *
disk_secret(VsJob *job, VerifyDisk *d, GError **error)
{
    if (!job->verify->conn) {
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_CONNECTED,
                    "disk %s is encrypted: its secret needs libvirt, which is not connected",
                    d->target);
        return NULL;
    }
    return vs_secret_fetch(job->verify->conn, d->target, d->secret, error);
}

static gboolean
check_file(VsJob *job, VerifyDisk *d, GError **error)
{
    VsVerify *v = job->verify;
    g_autofree char *spec = NULL;
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(VsSecret) secret = NULL;
    const char *found;
    JsonObject *info;
    GStatBuf st;
    gint64 size;
    int status;

    if (g_lstat(d->image, &st) < 0 || !S_ISREG(st.st_mode)) {
        problem(v, d, "the image %s is missing", d->image);
        return TRUE;
    }
    if (strcmp(d->format, "qcow2") != 0 && strcmp(d->format, "raw") != 0) {
        problem(v, d, "the recorded format '%s' is not qcow2 or raw", d->format);
        return TRUE;
    }
    found = sniff_format(d->image);
    if (strcmp(found, d->format) != 0) {
        problem(v, d, "the recorded format is %s, the image is %s", d->format, found);
        return TRUE;
    }
    if (d->secret && !(secret = disk_secret(job, d, error)))
        return FALSE;
    spec = secret ? encrypted_spec(d->image) : file_spec(d->format, d->image, 0, 0);
    {
        const char *argv[] = {"qemu-img", "info", "-U", "--output=json", spec, NULL};

        if (!run_tool_secret(job, argv, secret, &status, &out, &err, error))
            return FALSE;
    }
    if (status != 0 || !json_parser_load_from_data(parser, out, -1, NULL) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
        g_autofree char *why = last_line(err);

        problem(v, d, "qemu-img cannot read the image: %s", why);
        return TRUE;
    }
    info = json_node_get_object(json_parser_get_root(parser));
    size = json_object_get_int_member_with_default(info, "virtual-size", -1);
    if (size < 0 || (guint64)size != d->size)
        problem(v, d,
                "the recorded virtual size is %" G_GUINT64_FORMAT
                ", the image has %" G_GINT64_FORMAT,
                d->size, size);
    if (json_object_has_member(info, "backing-filename"))
        problem(v, d, "the image depends on a backing file (%s)",
                json_object_get_string_member_with_default(info, "backing-filename", "?"));
    g_clear_pointer(&out, g_free);
    g_clear_pointer(&err, g_free);
    {
        const char *argv[] = {"qemu-img", "check", "-U", "--output=json", spec, NULL};

        if (!run_tool_secret(job, argv, secret, &status, &out, &err, error))
            return FALSE;
    }
    if (status == 0 || status == 63) /* 63: raw has nothing to check */
        return TRUE;
    if (json_parser_load_from_data(parser, out ? out : "", -1, NULL) &&
        JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
        JsonObject *c = json_node_get_object(json_parser_get_root(parser));

        if (status == 3) {
            g_ptr_array_add(
                v->notes, g_strdup_printf(
                              "%s: %" G_GINT64_FORMAT " leaked clusters (space only, no data lost)",
                              d->target, json_object_get_int_member_with_default(c, "leaks", 0)));
            return TRUE;
        }
        if (status == 2) {
            problem(v, d, "qemu-img check found %" G_GINT64_FORMAT " corruptions",
                    json_object_get_int_member_with_default(c, "corruptions", 0));
            return TRUE;
        }
    }
    {
        g_autofree char *why = last_line(err);

        problem(v, d, "qemu-img check could not complete (exit %d): %s", status, why);
    }
    return TRUE;
}

static gboolean
check_rbd(VsJob *job, VerifyDisk *d, GError **error)
{
    VsVerify *v = job->verify;
    const char *pool = "", *ns = "", *name = "", *snap = "snap", *conf = "", *hosts = "",
               *user = "";
    VsRbdSpec spec = {0};
    g_autoptr(VsRbdCluster) cluster = NULL;
    g_autoptr(VsRbdImage) img = NULL;
    g_autoptr(GError) local = NULL;
    gboolean is_protected = FALSE;

    g_variant_lookup(d->rbd, "pool", "&s", &pool);
    g_variant_lookup(d->rbd, "namespace", "&s", &ns);
    g_variant_lookup(d->rbd, "image", "&s", &name);
    g_variant_lookup(d->rbd, "snap", "&s", &snap);
    g_variant_lookup(d->rbd, "conf", "&s", &conf);
    g_variant_lookup(d->rbd, "hosts", "&s", &hosts);
    g_variant_lookup(d->rbd, "user", "&s", &user);
    if (!*pool || !*name) {
        problem(v, d, "the metadata names no RBD image");
        return TRUE;
    }
    spec.conf = *conf ? (char *)conf : NULL;
    spec.hosts = *hosts ? (char *)hosts : NULL;
    spec.user = *user ? (char *)user : NULL;
    /* A cluster we cannot reach says nothing about the snapshot: the job fails. */
    if (!(cluster = vs_rbd_connect(&job->config->rbd, &spec, error)))
        return FALSE;
    if (!(img = vs_rbd_open(cluster, pool, ns, name, &local))) {
        if (!g_error_matches(local, VS_ERROR, VS_ERROR_NO_SUCH_DISK))
            return g_propagate_error(error, g_steal_pointer(&local)), FALSE;
        problem(v, d, "the RBD image %s/%s is missing", pool, name);
        return TRUE;
    }
    if (vs_rbd_size(img) != d->size)
        problem(v, d,
                "the recorded virtual size is %" G_GUINT64_FORMAT
                ", the RBD image has %" G_GUINT64_FORMAT,
                d->size, vs_rbd_size(img));
    if (!vs_rbd_snap_is_protected(img, snap, &is_protected, &local)) {
        if (!g_error_matches(local, VS_ERROR, VS_ERROR_NO_SUCH_DISK))
            return g_propagate_error(error, g_steal_pointer(&local)), FALSE;
        problem(v, d, "the RBD snapshot %s/%s@%s is missing", pool, name, snap);
    } else if (!is_protected) {
        problem(v, d, "the RBD snapshot %s/%s@%s is not protected", pool, name, snap);
    }
    return TRUE;
}

static gboolean
check_thread(VsJob *job, GError **error)
{
    VsVerify *v = job->verify;

    for (guint i = 0; i < v->disks->len; i++) {
        VerifyDisk *d = g_ptr_array_index(v->disks, i);

        if (g_cancellable_is_cancelled(job->cancellable)) {
            g_set_error(error, VS_ERROR, VS_ERROR_CANCELLED, "cancelled");
            return FALSE;
        }
        if (d->bad)
            ; /* the metadata already failed it */
        else if (d->rbd ? !check_rbd(job, d, error) : !check_file(job, d, error))
            return FALSE;
        advance_progress(job, d);
    }
    JOB_LOG(job, G_LOG_LEVEL_MESSAGE, "snapshot %s: %u image(s) checked, %u problem(s)", v->id,
            v->disks->len, v->problems->len);
    return TRUE;
}

/* ---- DEEP --------------------------------------------------------------------------------- */

static gboolean
deep_wanted(VsJob *job)
{
    return job->verify->deep;
}

/* Copies what qemu-img reads as @spec into the raw file @to (sparse). FALSE with a
 * problem when it cannot be read to the end. */
static gboolean
copy_raw(VsJob *job, VerifyDisk *d, const char *spec, const char *to, gboolean *readable,
         GError **error)
{
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    const char *argv[] = {"qemu-img", "convert", "-U", "-O", "raw", spec, to, NULL};
    int status;

    *readable = FALSE;
    if (!run_tool(job, argv, &status, &out, &err, error))
        return FALSE;
    if (status != 0) {
        g_autofree char *why = last_line(err);

        problem(job->verify, d, "the image cannot be read to the end: %s", why);
        return TRUE;
    }
    *readable = TRUE;
    return TRUE;
}

/* blkid's TYPE and PTTYPE of @path ("" when none). */
static gboolean
probe(VsJob *job, const char *path, char **type, char **pttype, GError **error)
{
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    const char *argv[] = {"blkid", "-p", "-o", "export", path, NULL};
    g_auto(GStrv) lines = NULL;
    int status;

    *type = g_strdup("");
    *pttype = g_strdup("");
    if (!run_tool(job, argv, &status, &out, &err, error))
        return FALSE;
    lines = g_strsplit(out ? out : "", "\n", -1);
    for (guint i = 0; lines[i]; i++) {
        if (g_str_has_prefix(lines[i], "TYPE=")) {
            g_free(*type);
            *type = g_strdup(lines[i] + 5);
        } else if (g_str_has_prefix(lines[i], "PTTYPE=")) {
            g_free(*pttype);
            *pttype = g_strdup(lines[i] + 7);
        }
    }
    return TRUE;
}

/* How a file system is named: "vda" or "vda partition 2" in the lists, and the same
 * after the disk's own "vda: " in problems. */
#define FS_NAMES(d, part)                                                                          \
    g_autofree char *where =                                                                       \
        part ? g_strdup_printf("%s partition %u", d->target, part) : g_strdup(d->target);          \
    g_autofree char *pfx = part ? g_strdup_printf("partition %u: ", part) : g_strdup("")

static gboolean
check_ext(VsJob *job, VerifyDisk *d, guint part, const char *path, const char *type, GError **error)
{
    VsVerify *v = job->verify;
    FS_NAMES(d, part);
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    int status;

    /* A live snapshot's file system was mounted: its journal is replayed first, into the
     * private copy only, as a mount would; then the check itself changes nothing. */
    {
        const char *argv[] = {"e2fsck", "-E", "journal_only", "-p", path, NULL};

        if (!run_tool(job, argv, &status, &out, &err, error))
            return FALSE;
    }
    if (status & ~1) {
        g_autofree char *why = last_line(err && *err ? err : out);

        problem(v, d, "%sthe %s journal cannot be replayed (e2fsck exit %d): %s", pfx, type, status,
                why);
        return TRUE;
    }
    g_clear_pointer(&out, g_free);
    g_clear_pointer(&err, g_free);
    {
        const char *argv[] = {"e2fsck", "-f", "-n", path, NULL};

        if (!run_tool(job, argv, &status, &out, &err, error))
            return FALSE;
    }
    if (status == 0) {
        g_ptr_array_add(v->file_systems, g_strdup_printf("%s: %s clean", where, type));
        return TRUE;
    }
    {
        g_autofree char *why = status == 4 ? first_finding(out) : NULL;

        if (!why)
            why = last_line(err && *err ? err : out);
        problem(v, d, "%se2fsck -fn %s the %s file system (exit %d): %s", pfx,
                status == 4 ? "found errors in" : "could not check", type, status, why);
        g_ptr_array_add(v->file_systems, g_strdup_printf("%s: %s damaged", where, type));
    }
    return TRUE;
}

static gboolean
check_xfs(VsJob *job, VerifyDisk *d, guint part, const char *path, GError **error)
{
    VsVerify *v = job->verify;
    FS_NAMES(d, part);
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    const char *argv[] = {"xfs_repair", "-n", path, NULL};
    int status;

    if (!run_tool(job, argv, &status, &out, &err, error))
        return FALSE;
    if (status == 0) {
        g_ptr_array_add(v->file_systems, g_strdup_printf("%s: xfs clean", where));
        return TRUE;
    }
    {
        g_autofree char *why = last_line(err && *err ? err : out);

        /* xfs replays its log only when mounted: a live, unfrozen copy may show this. */
        problem(v, d, "%sxfs_repair -n found problems (exit %d): %s%s", pfx, status, why,
                strstr(err ? err : "", "log") ? " (its log was not replayed)" : "");
        g_ptr_array_add(v->file_systems, g_strdup_printf("%s: xfs damaged", where));
    }
    return TRUE;
}

/* The file system in @path, checked by the tool for its type. */
static gboolean
check_fs(VsJob *job, VerifyDisk *d, guint part, const char *path, const char *type, GError **error)
{
    FS_NAMES(d, part);

    if (strcmp(type, "ext2") == 0 || strcmp(type, "ext3") == 0 || strcmp(type, "ext4") == 0)
        return check_ext(job, d, part, path, type, error);
    if (strcmp(type, "xfs") == 0)
        return check_xfs(job, d, part, path, error);
    g_ptr_array_add(job->verify->notes,
                    g_strdup_printf("%s: %s is not a file system verify checks", where, type));
    g_ptr_array_add(job->verify->file_systems, g_strdup_printf("%s: %s not checked", where, type));
    return TRUE;
}

/* A partitioned disk: each partition is cut out of the private copy and checked alone. */
static gboolean
check_partitions(VsJob *job, VerifyDisk *d, const char *copy, GError **error)
{
    VsVerify *v = job->verify;
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    g_autoptr(JsonParser) parser = json_parser_new();
    const char *argv[] = {"sfdisk", "--json", copy, NULL};
    JsonObject *table;
    JsonArray *parts;
    gint64 sector;
    int status;

    if (!run_tool(job, argv, &status, &out, &err, error))
        return FALSE;
    if (status != 0 || !json_parser_load_from_data(parser, out, -1, NULL) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser)) ||
        !json_object_has_member(json_node_get_object(json_parser_get_root(parser)),
                                "partitiontable")) {
        g_autofree char *why = last_line(err);

        problem(v, d, "its partition table cannot be read: %s", why);
        return TRUE;
    }
    table = json_object_get_object_member(json_node_get_object(json_parser_get_root(parser)),
                                          "partitiontable");
    sector = json_object_get_int_member_with_default(table, "sectorsize", 512);
    parts = json_object_has_member(table, "partitions")
                ? json_object_get_array_member(table, "partitions")
                : NULL;
    for (guint i = 0; parts && i < json_array_get_length(parts); i++) {
        JsonObject *p = json_array_get_object_element(parts, i);
        gint64 start = json_object_get_int_member_with_default(p, "start", 0) * sector;
        gint64 size = json_object_get_int_member_with_default(p, "size", 0) * sector;
        g_autofree char *base = g_strdup_printf("%s.p%u.raw", d->target, i + 1);
        g_autofree char *part = g_build_filename(v->scratch, base, NULL);
        g_autofree char *spec = file_spec("raw", copy, start, size);
        g_autofree char *type = NULL;
        g_autofree char *pttype = NULL;
        gboolean readable;
        gboolean ok;

        if (size <= 0)
            continue;
        if (!copy_raw(job, d, spec, part, &readable, error))
            return FALSE;
        ok = !readable || (probe(job, part, &type, &pttype, error) &&
                           (!*type || check_fs(job, d, i + 1, part, type, error)));
        if (readable && ok && !*type)
            g_ptr_array_add(v->notes, g_strdup_printf("%s partition %u: no file system found",
                                                      d->target, i + 1));
        g_unlink(part);
        if (!ok)
            return FALSE;
    }
    return TRUE;
}

static gboolean
deep_disk(VsJob *job, VerifyDisk *d, GError **error)
{
    VsVerify *v = job->verify;
    g_autofree char *base = g_strdup_printf("%s.raw", d->target);
    g_autofree char *copy = g_build_filename(v->scratch, base, NULL);
    g_autofree char *spec = d->rbd ? rbd_spec(d->rbd) : file_spec(d->format, d->image, 0, 0);
    g_autofree char *type = NULL;
    g_autofree char *pttype = NULL;
    gboolean readable, ok;

    if (!copy_raw(job, d, spec, copy, &readable, error))
        return FALSE;
    if (!readable)
        return TRUE;
    ok = probe(job, copy, &type, &pttype, error);
    if (ok && *type)
        ok = check_fs(job, d, 0, copy, type, error);
    else if (ok && *pttype)
        ok = check_partitions(job, d, copy, error);
    else if (ok)
        g_ptr_array_add(v->notes,
                        g_strdup_printf("%s: no file system found (not checked)", d->target));
    g_unlink(copy);
    return ok;
}

static gboolean
deep_thread(VsJob *job, GError **error)
{
    VsVerify *v = job->verify;

    /* Root's alone: the copies hold the guest's data. */
    if (g_mkdir(v->scratch, 0700) < 0 && errno != EEXIST)
        return vs_set_errno_error(error, errno, "cannot create %s", v->scratch);
    for (guint i = 0; i < v->disks->len; i++) {
        VerifyDisk *d = g_ptr_array_index(v->disks, i);

        if (g_cancellable_is_cancelled(job->cancellable)) {
            g_set_error(error, VS_ERROR, VS_ERROR_CANCELLED, "cancelled");
            return FALSE;
        }
        if (d->bad)
            g_ptr_array_add(v->notes, g_strdup_printf("%s: file systems not checked (the image "
                                                      "failed its check)",
                                                      d->target));
        else if (!deep_disk(job, d, error))
            return FALSE;
        advance_progress(job, d);
    }
    return vs_remove_flat_dir(v->scratch, error);
}

/* ---- RECORD ------------------------------------------------------------------------------- */

static GVariant *
strv_variant(GPtrArray *items)
{
    GVariantBuilder b;

    g_variant_builder_init(&b, G_VARIANT_TYPE_STRING_ARRAY);
    for (guint i = 0; i < items->len; i++)
        g_variant_builder_add(&b, "s", (const char *)g_ptr_array_index(items, i));
    return g_variant_builder_end(&b);
}

static void
add_strings(JsonBuilder *b, const char *key, GPtrArray *items)
{
    json_builder_set_member_name(b, key);
    json_builder_begin_array(b);
    for (guint i = 0; i < items->len; i++)
        json_builder_add_string_value(b, g_ptr_array_index(items, i));
    json_builder_end_array(b);
}

/* metadata.json gains "verified", read and written again under the holds lock, so that a
 * delete that runs at the same time either sees it or finds the snapshot gone. */
static gboolean
record(VsJob *job, const char *time, GError **error)
{
    VsVerify *v = job->verify;
    g_autoptr(JsonNode) root = read_metadata(v->folder, v->id, NULL);
    g_autoptr(JsonBuilder) b = json_builder_new();

    if (!root) {
        g_set_error(error, VS_ERROR, VS_ERROR_NO_SUCH_SNAPSHOT,
                    "snapshot %s was deleted while it was verified", v->id);
        return FALSE;
    }
    json_builder_begin_object(b);
    vs_json_add_string(b, "time", time);
    vs_json_add_bool(b, "ok", v->problems->len == 0);
    vs_json_add_bool(b, "deep", v->deep);
    add_strings(b, "problems", v->problems);
    add_strings(b, "notes", v->notes);
    add_strings(b, "file-systems", v->file_systems);
    json_builder_end_object(b);
    json_object_set_member(json_node_get_object(root), "verified", json_builder_get_root(b));
    return vs_catalog_write_metadata(v->folder, root, error);
}

static gboolean
record_thread(VsJob *job, GError **error)
{
    VsVerify *v = job->verify;
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autofree char *time = g_date_time_format_iso8601(now);
    g_autofree char *problems = NULL;
    GVariantBuilder facts, disks;
    gboolean ok;

    vs_holds_lock();
    ok = record(job, time, error);
    vs_holds_unlock();
    if (!ok)
        return FALSE;

    g_variant_builder_init(&facts, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&facts, "{sv}", "id", g_variant_new_string(v->id));
    g_variant_builder_add(&facts, "{sv}", "name", g_variant_new_string(v->name));
    g_variant_builder_add(&facts, "{sv}", "directory", g_variant_new_string(v->folder));
    g_variant_builder_add(&facts, "{sv}", "verified", g_variant_new_string(time));
    g_variant_builder_add(&facts, "{sv}", "ok", g_variant_new_boolean(v->problems->len == 0));
    g_variant_builder_add(&facts, "{sv}", "deep", g_variant_new_boolean(v->deep));
    g_variant_builder_add(&facts, "{sv}", "problems", strv_variant(v->problems));
    g_variant_builder_add(&facts, "{sv}", "notes", strv_variant(v->notes));
    g_variant_builder_add(&facts, "{sv}", "file-systems", strv_variant(v->file_systems));
    g_variant_builder_init(&disks, G_VARIANT_TYPE("aa{sv}"));
    for (guint i = 0; i < v->disks->len; i++) {
        VerifyDisk *d = g_ptr_array_index(v->disks, i);

        g_variant_builder_open(&disks, G_VARIANT_TYPE_VARDICT);
        g_variant_builder_add(&disks, "{sv}", "target", g_variant_new_string(d->target));
        g_variant_builder_add(&disks, "{sv}", "image",
                              g_variant_new_string(d->image ? d->image : ""));
        g_variant_builder_add(&disks, "{sv}", "format", g_variant_new_string(d->format));
        g_variant_builder_add(&disks, "{sv}", "virtual-size", g_variant_new_uint64(d->size));
        g_variant_builder_close(&disks);
    }
    g_variant_builder_add(&facts, "{sv}", "disks", g_variant_builder_end(&disks));
    job->facts = g_variant_ref_sink(g_variant_builder_end(&facts));

    if (v->problems->len == 0)
        return TRUE;
    g_ptr_array_add(v->problems, NULL);
    problems = g_strjoinv("; ", (char **)v->problems->pdata);
    g_ptr_array_remove_index(v->problems, v->problems->len - 1);
    g_set_error(error, VS_ERROR, VS_ERROR_CORRUPT, "snapshot %s failed verification: %s", v->id,
                problems);
    return FALSE;
}

static const VsJobStep verify_steps[] = {
    {VS_PHASE_CHECK, .thread = check_thread},
    {VS_PHASE_DEEP_CHECK, .wanted = deep_wanted, .thread = deep_thread},
    {VS_PHASE_RECORD, .thread = record_thread, .flags = VS_STEP_NOT_CANCELLABLE},
};

static const VsResultField verify_result[] = {
    {"verified", "verified"},
    {"ok", "ok"},
    {"deep", "deep"},
    {"problems", "problems"},
    {"notes", "notes"},
    {"file-systems", "file-systems"},
    {NULL, NULL},
};

const VsJobMethod vs_job_method_verify = {
    .name = "verify",
    .steps = verify_steps,
    .n_steps = G_N_ELEMENTS(verify_steps),
    .result_fields = verify_result,
};

gboolean
vs_verify_deep_allowed(VsVerify *verify, GError **error)
{
    for (guint i = 0; i < verify->disks->len; i++) {
        VerifyDisk *d = g_ptr_array_index(verify->disks, i);

        if (d->secret) {
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "disk %s of snapshot %s is encrypted: a deep check would write it out "
                        "in the clear; verify it without deep",
                        d->target, verify->id);
            return FALSE;
        }
    }
    return TRUE;
}

VsJob *
vs_job_new_verify(guint id, const VsConfig *config, VsLibvirt *libvirt, VsVerify *verify,
                  gboolean deep)
{
    VsJob *self = vs_job_new_common(id, config, libvirt, verify->domain, verify->uuid);
    g_autofree char *base = g_strdup_printf(".%s.%u" SCRATCH_SUFFIX, verify->id, id);
    g_autofree char *reason = g_strdup_printf("snapshot %s%s", verify->id, deep ? ", deep" : "");

    self->method = &vs_job_method_verify;
    self->verify = verify;
    self->domain_untouched = TRUE;
    verify->deep = deep;
    for (guint i = 0; i < verify->disks->len && !verify->conn; i++) {
        /* the secrets are read in the job's thread, over this connection */
        if (((VerifyDisk *)g_ptr_array_index(verify->disks, i))->secret)
            verify->conn = vs_libvirt_get_connection(libvirt, NULL);
    }
    verify->scratch = g_build_filename(config->snapshot_dir, base, NULL);
    for (guint i = 0; i < verify->disks->len; i++)
        verify->units_total += MAX(((VerifyDisk *)g_ptr_array_index(verify->disks, i))->size, 1);
    verify->units_total *= deep ? 2 : 1;
    /* Undo's one part for us: the scratch folder. The record never goes to disk: nothing
     * of a domain changes, and a folder left by a crash goes at start-up (sweep). */
    self->journal = vs_journal_entry_new();
    self->journal->snapshot_id = g_strdup(base + 1);
    self->journal->domain = g_strdup(verify->domain);
    self->journal->uuid = g_strdup(verify->uuid);
    self->journal->folder = g_strdup(verify->scratch);
    vs_dbus_job1_set_method(self->iface, vs_job_method_verify.name);
    vs_dbus_job1_set_method_reason(self->iface, reason);
    return self;
}

void
vs_verify_sweep(const char *snapshot_dir)
{
    g_autoptr(GDir) dir = g_dir_open(snapshot_dir, 0, NULL);
    const char *name;

    while (dir && (name = g_dir_read_name(dir))) {
        g_autofree char *path = NULL;
        g_autoptr(GError) error = NULL;

        if (name[0] != '.' || !g_str_has_suffix(name, SCRATCH_SUFFIX))
            continue;
        path = g_build_filename(snapshot_dir, name, NULL);
        if (vs_remove_flat_dir(path, &error))
            g_message("removed %s, left by an interrupted verification", path);
        else
            g_warning("%s", error->message);
    }
}

GVariant *
vs_verify_annotate_list(GVariant *list)
{
    GVariantBuilder b;

    g_variant_builder_init(&b, G_VARIANT_TYPE("aa{sv}"));
    for (gsize i = 0; i < g_variant_n_children(list); i++) {
        g_autoptr(GVariant) snap = g_variant_get_child_value(list, i);
        g_autoptr(GVariant) verified =
            g_variant_lookup_value(snap, "verified", G_VARIANT_TYPE_VARDICT);
        g_autoptr(GVariant) problems = NULL;
        const char *time = "", *key;
        gboolean ok = FALSE, deep = FALSE;
        GVariantBuilder entry;
        GVariantIter iter;
        GVariant *value;

        if (!verified) {
            g_variant_builder_add_value(&b, snap);
            continue;
        }
        g_variant_lookup(verified, "time", "&s", &time);
        g_variant_lookup(verified, "ok", "b", &ok);
        g_variant_lookup(verified, "deep", "b", &deep);
        problems = g_variant_lookup_value(verified, "problems", G_VARIANT_TYPE_STRING_ARRAY);
        g_variant_builder_init(&entry, G_VARIANT_TYPE_VARDICT);
        g_variant_iter_init(&iter, snap);
        while (g_variant_iter_next(&iter, "{&sv}", &key, &value)) {
            if (strcmp(key, "verified") != 0)
                g_variant_builder_add(&entry, "{sv}", key, value);
            g_variant_unref(value);
        }
        g_variant_builder_add(&entry, "{sv}", "verified", g_variant_new_string(time));
        g_variant_builder_add(&entry, "{sv}", "verified-ok", g_variant_new_boolean(ok));
        g_variant_builder_add(&entry, "{sv}", "verified-deep", g_variant_new_boolean(deep));
        g_variant_builder_add(&entry, "{sv}", "verified-problems",
                              problems ? problems : g_variant_new_strv(NULL, 0));
        g_variant_builder_add_value(&b, g_variant_builder_end(&entry));
    }
    return g_variant_builder_end(&b);
}
