/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Browse: one disk of a finished snapshot served read-only by qemu-nbd on a UNIX socket
 * that only the caller (and root) may open. The agent mounts nothing: under its unit it
 * has its own mount namespace and no CAP_SYS_ADMIN, so virtsnapctl mounts, as the caller,
 * from the socket. Each export is a child that dies with the agent (PR_SET_PDEATHSIG), a
 * record in <state_dir>/exports/<n>.json that a restarted agent cleans up from, and an
 * org.virtsnap.Export1 object. */
#include "vs-export.h"
#include "vs-build-config.h"
#include "vs-catalog.h"
#include "vs-dbus-generated.h"
#include "vs-error.h"
#include "vs-holds.h"
#include "vs-log.h"
#include "vs-names.h"
#include "vs-util.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <signal.h>
#include <string.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define RUNTIME_DIR_MODE 0711 /* callers reach their own socket, list none */
#define SOCKET_WAIT_MS   10000
#define SOCKET_POLL_MS   20

typedef struct {
    guint id;
    char *path; /* the D-Bus object's */
    char *snapshot_id;
    char *disk;
    char *socket;
    char *record;
    char *pidfile; /* qemu-nbd writes it once it serves */
    guint32 owner;
    gint64 created;
    GSubprocess *server;
    GCancellable *cancellable; /* cancelled when we stop the server ourselves */
    gboolean ended;            /* the server exited while we waited for its socket */
    VsDbusObjectSkeleton *object;
    VsDbusExport1 *iface;
    VsExports *exports; /* not a reference: exports die with their VsExports */
} Export;

struct _VsExports {
    GObject parent;
    VsConfig *config;
    GDBusObjectManagerServer *object_manager;
    VsBouncer *bouncer;
    GHashTable *exports; /* path -> Export */
    guint next_id;
};

G_DEFINE_TYPE(VsExports, vs_exports, G_TYPE_OBJECT)

static char *
exports_dir(VsExports *self)
{
    return g_build_filename(self->config->state_dir, VS_EXPORTS_DIR, NULL);
}

static void
export_free(Export *e)
{
    g_free(e->path);
    g_free(e->snapshot_id);
    g_free(e->disk);
    g_free(e->socket);
    g_free(e->record);
    g_free(e->pidfile);
    g_clear_object(&e->server);
    g_clear_object(&e->cancellable);
    g_clear_object(&e->iface);
    g_clear_object(&e->object);
    g_free(e);
}

static gboolean
exited(const char *pid)
{
    g_autofree char *path = g_strdup_printf("/proc/%s/stat", pid);
    g_autofree char *stat = NULL;
    const char *end;

    if (!g_file_get_contents(path, &stat, NULL, NULL))
        return TRUE;
    end = strrchr(stat, ')');
    return end && end[1] == ' ' && end[2] == 'Z';
}

/* SIGTERM first: qemu-nbd then closes its image, and for RBD that ends its watch on the
 * clone; a killed client's watch stays for the OSD's timeout (30 s), and removing the
 * snapshot meanwhile fails with EBUSY. It exits in milliseconds; SIGKILL after 2 s. */
static void
stop_server(GSubprocess *server)
{
    const char *pid = g_subprocess_get_identifier(server);

    if (pid) {
        g_subprocess_send_signal(server, SIGTERM);
        for (int i = 0; i < 100 && !exited(pid); i++)
            g_usleep(20 * 1000);
    }
    g_subprocess_force_exit(server);
    g_subprocess_wait(server, NULL, NULL);
}

/* Stops the server (if still running) and removes the socket and the record; the empty
 * exports folder goes too, so that an idle agent's state dir holds only journal records. */
static void
export_stop(VsExports *self, Export *e)
{
    g_autofree char *dir = exports_dir(self);

    g_cancellable_cancel(e->cancellable);
    if (e->server)
        stop_server(e->server);
    if (g_unlink(e->socket) < 0 && errno != ENOENT)
        g_warning("export %u: cannot remove %s: %s", e->id, e->socket, g_strerror(errno));
    if (g_unlink(e->record) < 0 && errno != ENOENT)
        g_warning("export %u: cannot remove %s: %s", e->id, e->record, g_strerror(errno));
    g_unlink(e->pidfile);
    g_rmdir(dir); /* fails while other records are there: fine */
}

/* Tears down a published export: server, socket, record, object. Frees @e. */
static void
export_remove(VsExports *self, Export *e)
{
    g_autofree char *path = g_strdup(e->path);

    g_message("export %u (snapshot %s, disk %s) removed", e->id, e->snapshot_id, e->disk);
    export_stop(self, e);
    g_dbus_object_manager_server_unexport(self->object_manager, path);
    g_hash_table_remove(self->exports, path);
}

/* ---- start-up: what a previous agent left ------------------------------------------------ */

gboolean
vs_exports_cmdline_is_server(const char *cmdline, gsize len, const char *socket)
{
    g_autofree char *want = g_strdup_printf("--socket=%s", socket);
    g_autofree char *arg0 = NULL;
    const char *end = cmdline + len;

    if (len == 0 || cmdline[len - 1] != '\0')
        return FALSE;
    arg0 = g_path_get_basename(cmdline);
    if (!g_str_equal(arg0, "qemu-nbd"))
        return FALSE;
    for (const char *p = cmdline; p < end; p += strlen(p) + 1) {
        if (g_str_equal(p, want))
            return TRUE;
    }
    return FALSE;
}

static void
recover_record(VsExports *self, const char *record)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autofree char *cmdline_path = NULL;
    g_autofree char *cmdline = NULL;
    g_autofree char *socket_dir = NULL;
    gsize len = 0;
    JsonObject *o;
    const char *socket;
    gint64 pid;

    if (!json_parser_load_from_file(parser, record, NULL) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
        g_warning("%s: not an export record; removed", record);
        g_unlink(record);
        return;
    }
    o = json_node_get_object(json_parser_get_root(parser));
    socket = json_object_get_string_member_with_default(o, "socket", "");
    pid = json_object_get_int_member_with_default(o, "pid", 0);
    cmdline_path = g_strdup_printf("/proc/%" G_GINT64_FORMAT "/cmdline", pid);
    /* A pid is only ours while its command line names our socket: pids are reused. */
    if (pid > 1 && *socket && g_file_get_contents(cmdline_path, &cmdline, &len, NULL) &&
        vs_exports_cmdline_is_server(cmdline, len, socket)) {
        g_message("export record %s: stopping its leftover server (pid %" G_GINT64_FORMAT ")",
                  record, pid);
        kill((pid_t)pid, SIGKILL);
    }
    /* The socket is removed only where we put sockets. */
    socket_dir = *socket ? g_path_get_dirname(socket) : NULL;
    if (socket_dir && g_str_equal(socket_dir, self->config->runtime_dir))
        g_unlink(socket);
    g_unlink(record);
    g_message("export record %s: cleaned up after an earlier agent", record);
}

static void
exports_recover(VsExports *self)
{
    g_autofree char *dir = exports_dir(self);
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *record = g_build_filename(dir, name, NULL);

        if (g_str_has_suffix(name, ".json"))
            recover_record(self, record);
        else if (g_str_has_suffix(name, ".pid"))
            g_unlink(record);
    }
    g_rmdir(dir);
}

/* ---- ExportSnapshot ------------------------------------------------------------------------ */

typedef struct {
    VsExports *self;
    GDBusMethodInvocation *invocation;
    char *id;
    char *disk; /* asked for; NULL: the first */
    guint32 uid;
    char *snapshot_dir;
    char *ceph_conf; /* [rbd], for snapshots that name no cluster */
    char *ceph_user;
    /* found by the worker */
    char *target;
    char *image;  /* a path, or a json: file name (rbd) */
    char *format; /* NULL: in the json: file name */
    Export *export;
    guint waited_ms;
} Request;

static void
request_free(Request *r)
{
    g_object_unref(r->self);
    g_object_unref(r->invocation);
    g_free(r->id);
    g_free(r->disk);
    g_free(r->snapshot_dir);
    g_free(r->ceph_conf);
    g_free(r->ceph_user);
    g_free(r->target);
    g_free(r->image);
    g_free(r->format);
    if (r->export)
        export_free(r->export);
    g_free(r);
}

static void
request_fail(Request *r, const GError *error)
{
    g_dbus_method_invocation_return_gerror(r->invocation, error);
    request_free(r);
}

static gboolean
parse_options(GVariant *options, char **disk, GError **error)
{
    GVariantIter iter;
    const char *key;
    GVariant *value;

    g_variant_iter_init(&iter, options);
    while (g_variant_iter_next(&iter, "{&sv}", &key, &value)) {
        g_autoptr(GVariant) owned = value;

        if (!g_str_equal(key, VS_OPT_DISK)) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT,
                        "unknown option '%s' (ExportSnapshot takes: disk)", key);
            return FALSE;
        }
        if (!g_variant_is_of_type(owned, G_VARIANT_TYPE_STRING)) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT,
                        "option 'disk' must be a string (s), not %s",
                        g_variant_get_type_string(owned));
            return FALSE;
        }
        g_free(*disk);
        *disk = g_variant_dup_string(owned, NULL);
        if (!vs_name_is_valid(*disk)) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT, "'%s' is not a disk target",
                        *disk);
            return FALSE;
        }
    }
    return TRUE;
}

static void
add_member(JsonBuilder *b, const char *key, const char *value)
{
    json_builder_set_member_name(b, key);
    json_builder_add_string_value(b, value);
}

/* An RBD snapshot is the clone's protected snapshot "snap" in the cluster: QEMU's rbd
 * driver reads it (qemu-nbd takes a json: file name, so no value needs escaping). The
 * cluster is the one the snapshot names (its config file, else ours). */
static gboolean
rbd_source(Request *r, JsonObject *rbd, GError **error)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonNode) root = NULL;
    g_autofree char *text = NULL;
    const char *pool = json_object_get_string_member_with_default(rbd, "pool", "");
    const char *ns = json_object_get_string_member_with_default(rbd, "namespace", "");
    const char *image = json_object_get_string_member_with_default(rbd, "image", "");
    const char *snap = json_object_get_string_member_with_default(rbd, "snap", "snap");
    const char *conf = json_object_get_string_member_with_default(rbd, "conf", "");
    const char *user = json_object_get_string_member_with_default(rbd, "user", "");

    if (!*pool || !*image) {
        g_set_error(error, VS_ERROR, VS_ERROR_FAILED,
                    "snapshot %s: disk %s has no RBD image in its metadata", r->id, r->target);
        return FALSE;
    }
    /* raw over rbd, in the file name: qemu-nbd refuses --format next to a json: driver. */
    json_builder_begin_object(b);
    add_member(b, "driver", "raw");
    json_builder_set_member_name(b, "file");
    json_builder_begin_object(b);
    add_member(b, "driver", "rbd");
    add_member(b, "pool", pool);
    if (*ns)
        add_member(b, "namespace", ns);
    add_member(b, "image", image);
    add_member(b, "snapshot", *snap ? snap : "snap");
    add_member(b, "conf", *conf ? conf : r->ceph_conf);
    add_member(b, "user", *user ? user : r->ceph_user);
    json_builder_end_object(b);
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    text = json_to_string(root, FALSE);
    r->image = g_strconcat("json:", text, NULL);
    return TRUE;
}

/* The disk's image, always rebuilt as <snapshot_dir>/<id>/<basename>: whatever a
 * metadata.json says, we serve only files of the snapshot's own folder (or, for RBD, the
 * snapshot's clone in the cluster). */
static gboolean
find_disk(Request *r, GError **error)
{
    g_autofree char *folder = vs_catalog_final_dir(r->snapshot_dir, r->id);
    /* Never through a link: a folder or metadata.json that is one is not ours. */
    g_autoptr(JsonNode) root = vs_catalog_read_metadata(r->snapshot_dir, r->id, error);
    JsonArray *disks = NULL;
    JsonObject *o;

    if (!root)
        return FALSE;
    o = json_node_get_object(root);
    if (json_object_has_member(o, "disks") &&
        JSON_NODE_HOLDS_ARRAY(json_object_get_member(o, "disks")))
        disks = json_object_get_array_member(o, "disks");
    for (guint i = 0; disks && i < json_array_get_length(disks); i++) {
        JsonNode *node = json_array_get_element(disks, i);
        JsonObject *d = JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;
        const char *target = d ? json_object_get_string_member_with_default(d, "target", "") : "";
        const char *format = NULL;
        g_autofree char *base = NULL;
        struct stat st;

        if (!d || (r->disk && !g_str_equal(target, r->disk)))
            continue;
        r->target = g_strdup(target);
        if (json_object_has_member(d, "rbd") &&
            JSON_NODE_HOLDS_OBJECT(json_object_get_member(d, "rbd")))
            return rbd_source(r, json_object_get_object_member(d, "rbd"), error);
        if (json_object_has_member(d, "encryption")) {
            /* qemu-nbd would need the secret, and would serve the disk decrypted */
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "snapshot %s: disk %s is encrypted; exporting encrypted snapshots is "
                        "not supported",
                        r->id, target);
            return FALSE;
        }
        base = g_path_get_basename(json_object_get_string_member_with_default(d, "image", ""));
        format = json_object_get_string_member_with_default(d, "format", "");
        if (!vs_name_is_valid(base) ||
            !(g_str_equal(format, "qcow2") || g_str_equal(format, "raw"))) {
            g_set_error(error, VS_ERROR, VS_ERROR_FAILED,
                        "snapshot %s: disk %s has no usable image in its metadata", r->id, target);
            return FALSE;
        }
        r->image = g_build_filename(folder, base, NULL);
        r->format = g_strdup(format);
        if (lstat(r->image, &st) < 0 || !S_ISREG(st.st_mode)) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "snapshot %s: %s is missing", r->id,
                        r->image);
            return FALSE;
        }
        return TRUE;
    }
    if (r->disk)
        g_set_error(error, VS_ERROR, VS_ERROR_NO_SUCH_DISK, "snapshot %s has no disk '%s'", r->id,
                    r->disk);
    else
        g_set_error(error, VS_ERROR, VS_ERROR_NO_SUCH_DISK, "snapshot %s has no disks", r->id);
    return FALSE;
}

static gboolean write_record(Export *e, GError **error);

/* The snapshot is there, and from now on held: checked and recorded under the holds lock,
 * so that a DeleteSnapshot either sees the record or has removed the snapshot first. The
 * record names no server yet (pid 0) until one runs. */
static void
find_disk_thread(GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
    Request *r = data;
    g_autofree char *dir = g_path_get_dirname(r->export->record);
    GError *error = NULL;
    gboolean ok;

    vs_holds_lock();
    ok = find_disk(r, &error) &&
         ((g_mkdir(dir, 0700) == 0 || errno == EEXIST) ||
          vs_set_errno_error(&error, errno, "cannot create %s", dir)) &&
         write_record(r->export, &error);
    vs_holds_unlock();
    if (ok)
        g_task_return_boolean(task, TRUE);
    else
        g_task_return_error(task, error);
}

/* In the child, before exec: it dies with the agent (not only with the thread that forked
 * it: we fork on the main thread, which lives as long as the agent). */
static void
die_with_agent(gpointer data)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != (pid_t)GPOINTER_TO_INT(data))
        _exit(127); /* the agent died before prctl */
}

static gboolean
write_record(Export *e, GError **error)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonNode) root = NULL;
    g_autofree char *text = NULL;

    json_builder_begin_object(b);
    vs_json_add_int(b, "id", e->id);
    vs_json_add_string(b, "path", e->path);
    vs_json_add_string(b, "snapshot-id", e->snapshot_id);
    vs_json_add_string(b, "disk", e->disk);
    vs_json_add_string(b, "socket", e->socket);
    vs_json_add_int(b, "pid", e->server ? atoll(g_subprocess_get_identifier(e->server)) : 0);
    vs_json_add_int(b, "owner", e->owner);
    vs_json_add_int(b, "created", e->created);
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    text = json_to_string(root, TRUE);
    return vs_write_file_atomic(e->record, text, -1, 0600, error);
}

static void
on_server_exited(GObject *source, GAsyncResult *result, gpointer data)
{
    g_autoptr(GError) error = NULL;
    Export *e = data;

    if (!g_subprocess_wait_finish(G_SUBPROCESS(source), result, &error) &&
        g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        return; /* we stopped it; @e may be gone */
    if (!e->iface) {
        e->ended = TRUE; /* still waiting for its socket */
        return;
    }
    g_warning("export %u: qemu-nbd exited on its own; the export is removed", e->id);
    export_remove(e->exports, e);
}

static gboolean
ensure_runtime_dir(const char *dir, GError **error)
{
    struct stat st;

    if (g_mkdir_with_parents(dir, RUNTIME_DIR_MODE) < 0)
        return vs_set_errno_error(error, errno, "cannot create %s", dir);
    if (lstat(dir, &st) < 0)
        return vs_set_errno_error(error, errno, "cannot read %s", dir);
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid()) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "runtime_dir %s is not a directory of ours", dir);
        return FALSE;
    }
    if ((st.st_mode & 07777) != RUNTIME_DIR_MODE && chmod(dir, RUNTIME_DIR_MODE) < 0)
        return vs_set_errno_error(error, errno, "cannot change the mode of %s", dir);
    return TRUE;
}

/* The export's names, before anything is written. */
static Export *
export_new(VsExports *self, Request *r)
{
    g_autofree char *records = exports_dir(self);
    g_autofree char *sock = NULL;
    g_autofree char *record = NULL;
    g_autofree char *pidfile = NULL;
    Export *e = g_new0(Export, 1);

    e->exports = self;
    e->id = self->next_id++;
    e->path = g_strdup_printf(VS_EXPORT_PATH_PREFIX "%u", e->id);
    e->snapshot_id = g_strdup(r->id);
    sock = g_strdup_printf("nbd-%u.sock", e->id);
    e->socket = g_build_filename(self->config->runtime_dir, sock, NULL);
    record = g_strdup_printf("%u.json", e->id);
    e->record = g_build_filename(records, record, NULL);
    pidfile = g_strdup_printf("%u.pid", e->id);
    e->pidfile = g_build_filename(records, pidfile, NULL);
    e->owner = r->uid;
    e->created = g_get_real_time();
    e->cancellable = g_cancellable_new();
    return e;
}

static gboolean
start_server(Request *r, GError **error)
{
    VsExports *self = r->self;
    g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_NONE);
    g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
    Export *e = r->export;

    e->disk = g_strdup(r->target);
    if (!ensure_runtime_dir(self->config->runtime_dir, error))
        return FALSE;
    g_unlink(e->socket); /* a stale one from a crash before a record was written */
    g_unlink(e->pidfile);

    /* --shared=0: any number of clients (a mount and a reader at once); --persistent:
     * served until we stop it, not until the first client leaves. */
    g_ptr_array_add(argv, g_strdup(VS_QEMU_NBD));
    g_ptr_array_add(argv, g_strdup("--read-only"));
    g_ptr_array_add(argv, g_strdup("--persistent"));
    g_ptr_array_add(argv, g_strdup("--shared=0"));
    if (r->format)
        g_ptr_array_add(argv, g_strdup_printf("--format=%s", r->format));
    g_ptr_array_add(argv, g_strdup_printf("--socket=%s", e->socket));
    g_ptr_array_add(argv, g_strdup_printf("--pid-file=%s", e->pidfile));
    g_ptr_array_add(argv, g_strdup(r->image));
    g_ptr_array_add(argv, NULL);
    g_subprocess_launcher_set_child_setup(launcher, die_with_agent, GINT_TO_POINTER(getpid()),
                                          NULL);
    e->server = g_subprocess_launcher_spawnv(launcher, (const char *const *)argv->pdata, error);
    if (!e->server)
        return FALSE;
    g_subprocess_wait_async(e->server, e->cancellable, on_server_exited, e);
    return write_record(e, error);
}

static gboolean handle_remove(VsDbusExport1 *iface, GDBusMethodInvocation *invocation,
                              VsExports *self);

static void
publish(Request *r)
{
    VsExports *self = r->self;
    Export *e = g_steal_pointer(&r->export);
    g_autofree char *uri = g_strdup_printf("nbd+unix:///?socket=%s", e->socket);

    e->object = vs_dbus_object_skeleton_new(e->path);
    e->iface = vs_dbus_export1_skeleton_new();
    vs_dbus_object_skeleton_set_export1(e->object, e->iface);
    vs_dbus_export1_set_id(e->iface, e->id);
    vs_dbus_export1_set_snapshot_id(e->iface, e->snapshot_id);
    vs_dbus_export1_set_disk(e->iface, e->disk);
    vs_dbus_export1_set_socket(e->iface, e->socket);
    vs_dbus_export1_set_uri(e->iface, uri);
    vs_dbus_export1_set_owner(e->iface, e->owner);
    vs_dbus_export1_set_created(e->iface, e->created);
    vs_bouncer_guard(self->bouncer, G_DBUS_INTERFACE_SKELETON(e->iface));
    g_signal_connect_object(e->iface, "handle-remove", G_CALLBACK(handle_remove), self, 0);
    g_hash_table_insert(self->exports, e->path, e);
    g_dbus_object_manager_server_export(self->object_manager, G_DBUS_OBJECT_SKELETON(e->object));
    g_message("export %u: snapshot %s disk %s served read-only on %s for uid %u", e->id,
              e->snapshot_id, e->disk, e->socket, e->owner);
    g_dbus_method_invocation_return_value(r->invocation, g_variant_new("(o)", e->path));
    request_free(r);
}

/* qemu-nbd listens before it opens the image (and leaves the socket behind when that
 * fails): it serves once it has written its pid file. The socket is root's (0600 under our
 * umask) until we hand it to the caller. */
static gboolean
wait_socket(gpointer data)
{
    Request *r = data;
    Export *e = r->export;
    g_autoptr(GError) error = NULL;
    struct stat st;

    if (g_file_test(e->pidfile, G_FILE_TEST_EXISTS) && lstat(e->socket, &st) == 0 &&
        S_ISSOCK(st.st_mode)) {
        if ((e->owner != geteuid() && lchown(e->socket, e->owner, (gid_t)-1) < 0) ||
            chmod(e->socket, 0600) < 0) {
            vs_set_errno_error(&error, errno, "cannot give %s to uid %u", e->socket, e->owner);
            export_stop(r->self, e);
            request_fail(r, error);
            return G_SOURCE_REMOVE;
        }
        publish(r);
        return G_SOURCE_REMOVE;
    }
    r->waited_ms += SOCKET_POLL_MS;
    if (!e->ended && r->waited_ms < SOCKET_WAIT_MS)
        return G_SOURCE_CONTINUE;
    g_set_error(&error, VS_ERROR, VS_ERROR_FAILED,
                e->ended ? "qemu-nbd exited before it served %s (see the agent's log)"
                         : "qemu-nbd did not serve %s within 10 s",
                e->socket);
    export_stop(r->self, e);
    request_fail(r, error);
    return G_SOURCE_REMOVE;
}

static void
find_disk_done(GObject *source, GAsyncResult *result, gpointer data)
{
    Request *r = data;
    g_autoptr(GError) error = NULL;

    if (!g_task_propagate_boolean(G_TASK(result), &error)) {
        request_fail(r, error);
        return;
    }
    if (!start_server(r, &error)) {
        export_stop(r->self, r->export); /* the record, and a server if it started */
        request_fail(r, error);
        return;
    }
    g_timeout_add(SOCKET_POLL_MS, wait_socket, r);
}

/* The caller's uid, as the bus daemon knows it: the socket becomes theirs. */
static void
caller_uid_done(GObject *source, GAsyncResult *result, gpointer data)
{
    Request *r = data;
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) reply =
        g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), result, &error);
    g_autoptr(GTask) task = NULL;

    if (!reply) {
        request_fail(r, error);
        return;
    }
    g_variant_get(reply, "(u)", &r->uid);
    r->export = export_new(r->self, r);
    if (strlen(r->export->socket) >= sizeof(((struct sockaddr_un *)NULL)->sun_path)) {
        g_set_error(&error, VS_ERROR, VS_ERROR_FAILED,
                    "socket path %s is too long for a UNIX socket: set a shorter runtime_dir",
                    r->export->socket);
        request_fail(r, error);
        return;
    }
    task = g_task_new(r->self, NULL, find_disk_done, r);
    g_task_set_task_data(task, r, NULL);
    g_task_run_in_thread(task, find_disk_thread);
}

static void
ask_caller_uid(GDBusMethodInvocation *invocation, GAsyncReadyCallback done, gpointer data)
{
    g_dbus_connection_call(g_dbus_method_invocation_get_connection(invocation),
                           "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                           "GetConnectionUnixUser",
                           g_variant_new("(s)", g_dbus_method_invocation_get_sender(invocation)),
                           G_VARIANT_TYPE("(u)"), G_DBUS_CALL_FLAGS_NONE, -1, NULL, done, data);
}

void
vs_exports_handle_export(VsExports *self, GDBusMethodInvocation *invocation, const char *id,
                         GVariant *options)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *disk = NULL;
    Request *r;

    if (!vs_name_is_valid(id)) {
        g_dbus_method_invocation_return_error(invocation, VS_ERROR, VS_ERROR_INVALID_ARGUMENT,
                                              "'%s' is not a snapshot id", id);
        return;
    }
    if (!parse_options(options, &disk, &error)) {
        g_dbus_method_invocation_return_gerror(invocation, error);
        return;
    }
    r = g_new0(Request, 1);
    r->self = g_object_ref(self);
    r->invocation = g_object_ref(invocation);
    r->id = g_strdup(id);
    r->disk = g_steal_pointer(&disk);
    r->snapshot_dir = g_strdup(self->config->snapshot_dir);
    r->ceph_conf = g_strdup(self->config->rbd.ceph_conf);
    r->ceph_user = g_strdup(self->config->rbd.client_id);
    ask_caller_uid(invocation, caller_uid_done, r);
}

/* ---- Export1.Remove ------------------------------------------------------------------------ */

typedef struct {
    VsExports *self;
    GDBusMethodInvocation *invocation;
} RemoveCall;

static void
remove_uid_done(GObject *source, GAsyncResult *result, gpointer data)
{
    RemoveCall *rc = data;
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) reply =
        g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), result, &error);
    const char *path = g_dbus_method_invocation_get_object_path(rc->invocation);
    Export *e = g_hash_table_lookup(rc->self->exports, path);
    guint32 uid = G_MAXUINT32;

    if (reply)
        g_variant_get(reply, "(u)", &uid);
    if (!reply)
        g_dbus_method_invocation_return_gerror(rc->invocation, error);
    else if (!e)
        g_dbus_method_invocation_return_error(rc->invocation, G_DBUS_ERROR,
                                              G_DBUS_ERROR_UNKNOWN_OBJECT, "%s is gone", path);
    else if (uid != 0 && uid != geteuid() && uid != e->owner)
        g_dbus_method_invocation_return_error(
            rc->invocation, VS_ERROR, VS_ERROR_PERMISSION_DENIED,
            "export %u belongs to uid %u: only its owner or root may remove it", e->id, e->owner);
    else {
        export_remove(rc->self, e);
        g_dbus_method_invocation_return_value(rc->invocation, NULL);
    }
    g_object_unref(rc->self);
    g_object_unref(rc->invocation);
    g_free(rc);
}

static gboolean
handle_remove(VsDbusExport1 *iface, GDBusMethodInvocation *invocation, VsExports *self)
{
    RemoveCall *rc = g_new0(RemoveCall, 1);

    rc->self = g_object_ref(self);
    rc->invocation = g_object_ref(invocation);
    ask_caller_uid(invocation, remove_uid_done, rc);
    return G_DBUS_METHOD_INVOCATION_HANDLED;
}

/* ---- the rest ------------------------------------------------------------------------------ */

const char **
vs_exports_list_paths(VsExports *self)
{
    return (const char **)g_hash_table_get_keys_as_array(self->exports, NULL);
}

void
vs_exports_stop_all(VsExports *self)
{
    GHashTableIter iter;
    Export *e;

    while (g_hash_table_size(self->exports) > 0) {
        g_hash_table_iter_init(&iter, self->exports);
        g_hash_table_iter_next(&iter, NULL, (gpointer *)&e);
        export_remove(self, e);
    }
}

static void
vs_exports_dispose(GObject *object)
{
    VsExports *self = VS_EXPORTS(object);

    if (self->exports)
        vs_exports_stop_all(self);
    g_clear_pointer(&self->exports, g_hash_table_unref);
    g_clear_object(&self->object_manager);
    g_clear_object(&self->bouncer);
    G_OBJECT_CLASS(vs_exports_parent_class)->dispose(object);
}

static void
vs_exports_finalize(GObject *object)
{
    vs_config_free(VS_EXPORTS(object)->config);
    G_OBJECT_CLASS(vs_exports_parent_class)->finalize(object);
}

static void
vs_exports_init(VsExports *self)
{
    self->exports =
        g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)export_free);
    self->next_id = 1;
}

static void
vs_exports_class_init(VsExportsClass *klass)
{
    G_OBJECT_CLASS(klass)->dispose = vs_exports_dispose;
    G_OBJECT_CLASS(klass)->finalize = vs_exports_finalize;
}

VsExports *
vs_exports_new(const VsConfig *config, GDBusObjectManagerServer *object_manager, VsBouncer *bouncer)
{
    VsExports *self = g_object_new(VS_TYPE_EXPORTS, NULL);

    self->config = vs_config_copy(config);
    self->object_manager = g_object_ref(object_manager);
    self->bouncer = g_object_ref(bouncer);
    exports_recover(self);
    return self;
}
