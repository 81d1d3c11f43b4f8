/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* virtsnapctl mount, umount and exports: a snapshot's file system, read-only, in a
 * directory of the caller's. The agent only serves the disk (ExportSnapshot: qemu-nbd on a
 * socket that is the caller's alone); the mount is made here, as the caller, because the
 * agent's unit has its own mount namespace and no CAP_SYS_ADMIN.
 *
 * How, measured on the lab's machine (2 cores, 64 MiB whole-disk ext4 qcow2 snapshot,
 * one run each, wall time from the export's socket to the file readable):
 *   (a) FUSE, no privileges: qemu-storage-daemon as NBD client with a FUSE export (a
 *       regular file as the raw disk) + fuse2fs -o ro,norecovery on that file:
 *       qsd 18 ms + fuse2fs 5 ms; qemu-nbd itself is listening 14 ms after it starts.
 *   (b) root only: losetup -r on the same FUSE file + mount -o ro,noload: 20 ms; any file
 *       system the kernel knows and partitions (-P), but root only, and the kernel parses
 *       guest-controlled metadata.
 *   (c) guestmount --ro (libguestfs appliance, TCG here: KVM does not work on these hosts):
 *       20.3 s (28.1 s the first time, building the appliance), and a whole VM per mount.
 *   The kernel's nbd module is not available on these hosts (no /dev/nbd*).
 * So (a), for root and members of group libvirt alike: one path, nothing privileged, the
 * guest's file system parsed in user space by the caller's own processes. ext2/3/4 on the
 * whole disk (the layout virtsnap's guests and cloud images' data disks use); others fail
 * with fuse2fs's message. A live snapshot's ext4 is clean when the guest was frozen; an
 * unfrozen one needs journal recovery, which fuse2fs refuses read-only ("e2fsck -E
 * journal_only is required"): norecovery shows the files as the last checkpoint left them,
 * like mount's noload.
 *
 * Each mount has a record folder (mount.json, the FUSE disk file, qemu-storage-daemon's
 * pid file and log) under $XDG_RUNTIME_DIR/virtsnap/mounts (root: /run/virtsnap-ctl/mounts),
 * named by a hash of the mount point, so that umount finds what to stop. The helpers run on
 * after virtsnapctl exits. */
#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl.h"
#include "vs-error.h"
#include "vs-names.h"

#define QSD        "qemu-storage-daemon"
#define FUSE2FS    "fuse2fs"
#define FUSERMOUNT "fusermount3"

/* Where this user's mount records live; created 0700 and checked to be ours. */
static char *
mounts_base(GError **error)
{
    g_autofree char *base = NULL;
    g_autofree char *mounts = NULL;
    const char *xdg = g_getenv("XDG_RUNTIME_DIR");
    struct stat st;

    if (geteuid() == 0)
        base = g_strdup("/run/virtsnap-ctl");
    else if (xdg && g_path_is_absolute(xdg))
        base = g_build_filename(xdg, "virtsnap", NULL);
    else
        base = g_strdup_printf("/tmp/virtsnap-ctl-%u", (unsigned)geteuid());
    if (g_mkdir(base, 0700) < 0 && errno != EEXIST) {
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "cannot create %s: %s", base,
                    g_strerror(errno));
        return NULL;
    }
    /* /tmp is everyone's: a folder someone else made there is not ours to use. */
    if (lstat(base, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
        (st.st_mode & 077)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                    "%s is not a private directory of uid %u", base, (unsigned)geteuid());
        return NULL;
    }
    mounts = g_build_filename(base, "mounts", NULL);
    if (g_mkdir(mounts, 0700) < 0 && errno != EEXIST) {
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "cannot create %s: %s", mounts,
                    g_strerror(errno));
        return NULL;
    }
    return g_steal_pointer(&mounts);
}

/* The record folder of mount point @dir (absolute, resolved). */
static char *
record_dir(const char *base, const char *dir)
{
    g_autofree char *sum = g_compute_checksum_for_string(G_CHECKSUM_SHA256, dir, -1);

    sum[16] = '\0';
    return g_build_filename(base, sum, NULL);
}

/* The mount point must be an existing, empty directory (not a link to one). */
static gboolean
check_mount_point(const char *dir, char **resolved, GError **error)
{
    g_autoptr(GDir) d = NULL;
    struct stat st;

    if (lstat(dir, &st) < 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT, "mount point %s: %s", dir,
                    g_strerror(errno));
        return FALSE;
    }
    if (!S_ISDIR(st.st_mode)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT, "mount point %s is not a directory",
                    dir);
        return FALSE;
    }
    d = g_dir_open(dir, 0, NULL);
    if (!d || g_dir_read_name(d)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT,
                    "mount point %s is not an empty directory", dir);
        return FALSE;
    }
    *resolved = realpath(dir, NULL);
    if (!*resolved) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT, "mount point %s: %s", dir,
                    g_strerror(errno));
        return FALSE;
    }
    return TRUE;
}

/* Runs @argv to its end (the FUSE helpers daemonize once they serve), its stderr into
 * @log; a failure carries the log's text. */
static gboolean
run_helper(const char *const *argv, const char *log, GError **error)
{
    g_autoptr(GSubprocessLauncher) launcher =
        g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDOUT_SILENCE);
    g_autoptr(GSubprocess) proc = NULL;
    g_autofree char *text = NULL;

    g_subprocess_launcher_set_stderr_file_path(launcher, log);
    proc = g_subprocess_launcher_spawnv(launcher, argv, error);
    if (!proc || !g_subprocess_wait(proc, NULL, error))
        return FALSE;
    if (g_subprocess_get_if_exited(proc) && g_subprocess_get_exit_status(proc) == 0)
        return TRUE;
    g_file_get_contents(log, &text, NULL, NULL);
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s failed: %s", argv[0],
                text ? g_strstrip(text) : "");
    return FALSE;
}

/* qemu-storage-daemon's pid from its pid file, if /proc shows it still is ours. */
static pid_t
qsd_pid(const char *folder)
{
    g_autofree char *pidfile = g_build_filename(folder, "qsd.pid", NULL);
    g_autofree char *disk = g_build_filename(folder, "disk.raw", NULL);
    g_autofree char *text = NULL;
    g_autofree char *cmdline_path = NULL;
    g_autofree char *cmdline = NULL;
    gsize len = 0;
    guint64 pid = 0;

    if (!g_file_get_contents(pidfile, &text, NULL, NULL) ||
        !g_ascii_string_to_unsigned(g_strstrip(text), 10, 2, G_MAXINT, &pid, NULL))
        return 0;
    cmdline_path = g_strdup_printf("/proc/%" G_GUINT64_FORMAT "/cmdline", pid);
    if (!g_file_get_contents(cmdline_path, &cmdline, &len, NULL))
        return 0;
    /* A reused pid would not name our disk file. */
    for (gsize i = 0; i + 1 < len; i++) {
        if (cmdline[i] == '\0')
            cmdline[i] = ' ';
    }
    return strstr(cmdline, QSD) && strstr(cmdline, disk) ? (pid_t)pid : 0;
}

static void
stop_qsd(const char *folder)
{
    pid_t pid = qsd_pid(folder);

    if (!pid)
        return;
    kill(pid, SIGTERM); /* it unmounts its FUSE export on the way out */
    for (int i = 0; i < 250 && kill(pid, 0) == 0; i++)
        g_usleep(20 * 1000);
    if (kill(pid, 0) == 0)
        kill(pid, SIGKILL);
}

/* Unmounts @dir if something is mounted there; FALSE (busy ...) leaves it mounted. */
static gboolean
fuse_unmount(const char *dir, const char *log, GError **error)
{
    const char *argv[] = {FUSERMOUNT, "-u", "-q", dir, NULL};
    g_autoptr(GError) local = NULL;

    if (run_helper(argv, log, &local))
        return TRUE;
    if (local->message && strstr(local->message, "not found in"))
        return TRUE; /* not mounted (any more) */
    g_propagate_error(error, g_steal_pointer(&local));
    return FALSE;
}

static void
remove_record(const char *folder)
{
    static const char *const files[] = {"mount.json", "disk.raw", "qsd.pid", "qsd.log",
                                        "helper.log"};

    for (guint i = 0; i < G_N_ELEMENTS(files); i++) {
        g_autofree char *path = g_build_filename(folder, files[i], NULL);

        g_unlink(path);
    }
    g_rmdir(folder);
}

static void
remove_export(Ctl *ctl, const char *path)
{
    g_autoptr(VsDbusExport1) export = NULL;
    g_autoptr(GError) error = NULL;

    export = vs_dbus_export1_proxy_new_sync(ctl->bus,
                                            G_DBUS_PROXY_FLAGS_DO_NOT_LOAD_PROPERTIES |
                                                G_DBUS_PROXY_FLAGS_DO_NOT_CONNECT_SIGNALS,
                                            VS_BUS_NAME, path, NULL, &error);
    /* An agent restarted since has removed the export already. */
    if (export && !vs_dbus_export1_call_remove_sync(export, NULL, &error) &&
        !g_error_matches(error, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_OBJECT) &&
        !g_error_matches(error, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_METHOD))
        g_printerr("virtsnapctl: removing export %s: %s\n", path, error->message);
}

static gboolean
write_mount_record(const char *folder, const char *dir, const char *id, VsDbusExport1 *export,
                   GError **error)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonNode) root = NULL;
    g_autofree char *text = NULL;
    g_autofree char *path = g_build_filename(folder, "mount.json", NULL);

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "dir");
    json_builder_add_string_value(b, dir);
    json_builder_set_member_name(b, "snapshot-id");
    json_builder_add_string_value(b, id);
    json_builder_set_member_name(b, "disk");
    json_builder_add_string_value(b, vs_dbus_export1_get_disk(export));
    json_builder_set_member_name(b, "export");
    json_builder_add_string_value(b, g_dbus_proxy_get_object_path(G_DBUS_PROXY(export)));
    json_builder_set_member_name(b, "socket");
    json_builder_add_string_value(b, vs_dbus_export1_get_socket(export));
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    text = json_to_string(root, TRUE);
    return g_file_set_contents_full(path, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600, error);
}

/* The qemu-storage-daemon arguments: JSON, so that no path needs QEMU's comma escaping. */
static char *
qsd_json(const char *what, const char *socket_or_disk)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonNode) root = NULL;

    json_builder_begin_object(b);
    if (g_str_equal(what, "blockdev")) {
        json_builder_set_member_name(b, "driver");
        json_builder_add_string_value(b, "nbd");
        json_builder_set_member_name(b, "node-name");
        json_builder_add_string_value(b, "snapshot");
        json_builder_set_member_name(b, "read-only");
        json_builder_add_boolean_value(b, TRUE);
        json_builder_set_member_name(b, "server");
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "type");
        json_builder_add_string_value(b, "unix");
        json_builder_set_member_name(b, "path");
        json_builder_add_string_value(b, socket_or_disk);
        json_builder_end_object(b);
    } else {
        json_builder_set_member_name(b, "type");
        json_builder_add_string_value(b, "fuse");
        json_builder_set_member_name(b, "id");
        json_builder_add_string_value(b, "disk");
        json_builder_set_member_name(b, "node-name");
        json_builder_add_string_value(b, "snapshot");
        json_builder_set_member_name(b, "mountpoint");
        json_builder_add_string_value(b, socket_or_disk);
        json_builder_set_member_name(b, "writable");
        json_builder_add_boolean_value(b, FALSE);
    }
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    return json_to_string(root, FALSE);
}

/* The FUSE side: the served disk as a file (qemu-storage-daemon), its file system on @dir
 * (fuse2fs). Undone by the caller on failure. */
static gboolean
mount_from_socket(const char *folder, const char *socket, const char *dir, GError **error)
{
    g_autofree char *disk = g_build_filename(folder, "disk.raw", NULL);
    g_autofree char *pidfile = g_build_filename(folder, "qsd.pid", NULL);
    g_autofree char *log = g_build_filename(folder, "qsd.log", NULL);
    g_autofree char *helper_log = g_build_filename(folder, "helper.log", NULL);
    g_autofree char *blockdev = qsd_json("blockdev", socket);
    g_autofree char *export = qsd_json("export", disk);
    const char *qsd[] = {QSD,           "--blockdev", blockdev, "--export", export,
                         "--daemonize", "--pidfile",  pidfile,  NULL};
    const char *fuse2fs[] = {FUSE2FS, "-o", "ro,norecovery", disk, dir, NULL};

    if (!g_file_set_contents_full(disk, "", 0, G_FILE_SET_CONTENTS_NONE, 0600, error) ||
        !run_helper(qsd, log, error))
        return FALSE;
    return run_helper(fuse2fs, helper_log, error);
}

static gboolean
find_helpers(GError **error)
{
    static const char *const helpers[] = {QSD, FUSE2FS, FUSERMOUNT};

    for (guint i = 0; i < G_N_ELEMENTS(helpers); i++) {
        g_autofree char *path = g_find_program_in_path(helpers[i]);

        if (!path) {
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "%s is not installed: mount needs qemu-storage-daemon "
                        "(qemu-system-common), fuse2fs and fusermount3 (fuse3)",
                        helpers[i]);
            return FALSE;
        }
    }
    return TRUE;
}

int
ctl_mount(Ctl *ctl, const Invocation *inv)
{
    const char *id = inv_arg(inv, 0);
    g_autoptr(GError) error = NULL;
    g_autofree char *dir = NULL;
    g_autofree char *base = NULL;
    g_autofree char *folder = NULL;
    g_autofree char *path = NULL;
    g_autoptr(VsDbusExport1) export = NULL;
    GVariantBuilder options;
    int code;

    if (!check_mount_point(inv_arg(inv, 1), &dir, &error))
        return ctl_usage_error(ctl->command, "%s", error->message);
    if (!find_helpers(&error) || !(base = mounts_base(&error)))
        return ctl_fail(error);
    folder = record_dir(base, dir);
    if (g_mkdir(folder, 0700) < 0) {
        g_printerr("virtsnapctl: %s is mounted already (record %s); 'virtsnapctl umount %s' "
                   "first\n",
                   dir, folder, dir);
        return EXIT_BUSY;
    }

    g_variant_builder_init(&options, G_VARIANT_TYPE_VARDICT);
    if (inv_value(inv, "disk"))
        g_variant_builder_add(&options, "{sv}", VS_OPT_DISK,
                              g_variant_new_string(inv_value(inv, "disk")));
    if (!vs_dbus_agent1_call_export_snapshot_sync(ctl->agent, id, g_variant_builder_end(&options),
                                                  &path, NULL, &error)) {
        g_rmdir(folder);
        return ctl_fail(error);
    }
    export = vs_dbus_export1_proxy_new_sync(ctl->bus,
                                            G_DBUS_PROXY_FLAGS_DO_NOT_LOAD_PROPERTIES |
                                                G_DBUS_PROXY_FLAGS_DO_NOT_CONNECT_SIGNALS,
                                            VS_BUS_NAME, path, NULL, &error);
    if (export && ctl_proxy_load(G_DBUS_PROXY(export), &error) &&
        write_mount_record(folder, dir, id, export, &error) &&
        mount_from_socket(folder, vs_dbus_export1_get_socket(export), dir, &error)) {
        ctl_print_mounted(id, vs_dbus_export1_get_disk(export), dir, path, ctl->json);
        return EXIT_OK;
    }
    /* Nothing half-made stays: the mount, the helper, the export, the record. */
    code = ctl_fail(error);
    fuse_unmount(dir, "/dev/null", NULL);
    stop_qsd(folder);
    remove_export(ctl, path);
    remove_record(folder);
    return code;
}

int
ctl_umount(Ctl *ctl, const Invocation *inv)
{
    const char *given = inv_arg(inv, 0);
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autofree char *dir = realpath(given, NULL);
    g_autofree char *base = mounts_base(&error);
    g_autofree char *folder = NULL;
    g_autofree char *record = NULL;
    g_autofree char *log = NULL;
    JsonObject *o;

    if (!base)
        return ctl_fail(error);
    if (!dir)
        dir = g_canonicalize_filename(given, NULL);
    folder = record_dir(base, dir);
    record = g_build_filename(folder, "mount.json", NULL);
    log = g_build_filename(folder, "helper.log", NULL);
    if (!json_parser_load_from_file(parser, record, NULL) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
        g_printerr("virtsnapctl: %s is not a snapshot mounted by virtsnapctl mount\n", given);
        return EXIT_NOT_FOUND;
    }
    o = json_node_get_object(json_parser_get_root(parser));
    if (!fuse_unmount(dir, log, &error)) {
        g_printerr("virtsnapctl: cannot unmount %s (still in use?): %s\n", dir, error->message);
        return EXIT_BUSY;
    }
    stop_qsd(folder);
    remove_export(ctl, json_object_get_string_member_with_default(o, "export", ""));
    remove_record(folder);
    if (!ctl->json)
        g_print("unmounted %s\n", dir);
    return EXIT_OK;
}

int
ctl_exports(Ctl *ctl, const Invocation *inv)
{
    g_auto(GStrv) paths = NULL;
    g_autoptr(GError) error = NULL;
    GVariantBuilder list;

    if (!vs_dbus_agent1_call_list_exports_sync(ctl->agent, &paths, NULL, &error))
        return ctl_fail(error);
    g_variant_builder_init(&list, G_VARIANT_TYPE("aa{sv}"));
    for (guint i = 0; paths[i]; i++) {
        g_autoptr(VsDbusExport1) export = vs_dbus_export1_proxy_new_sync(
            ctl->bus,
            G_DBUS_PROXY_FLAGS_DO_NOT_LOAD_PROPERTIES | G_DBUS_PROXY_FLAGS_DO_NOT_CONNECT_SIGNALS,
            VS_BUS_NAME, paths[i], NULL, &error);
        GVariantBuilder e;

        if (!export || !ctl_proxy_load(G_DBUS_PROXY(export), &error)) {
            g_clear_error(&error); /* removed meanwhile */
            continue;
        }
        g_variant_builder_init(&e, G_VARIANT_TYPE_VARDICT);
        g_variant_builder_add(&e, "{sv}", "path", g_variant_new_string(paths[i]));
        g_variant_builder_add(&e, "{sv}", "id",
                              g_variant_new_uint32(vs_dbus_export1_get_id(export)));
        g_variant_builder_add(&e, "{sv}", "snapshot-id",
                              g_variant_new_string(vs_dbus_export1_get_snapshot_id(export)));
        g_variant_builder_add(&e, "{sv}", "disk",
                              g_variant_new_string(vs_dbus_export1_get_disk(export)));
        g_variant_builder_add(&e, "{sv}", "socket",
                              g_variant_new_string(vs_dbus_export1_get_socket(export)));
        g_variant_builder_add(&e, "{sv}", "uri",
                              g_variant_new_string(vs_dbus_export1_get_uri(export)));
        g_variant_builder_add(&e, "{sv}", "owner",
                              g_variant_new_uint32(vs_dbus_export1_get_owner(export)));
        g_variant_builder_add(&e, "{sv}", "created",
                              g_variant_new_int64(vs_dbus_export1_get_created(export)));
        g_variant_builder_add_value(&list, g_variant_builder_end(&e));
    }
    ctl_print_exports(g_variant_builder_end(&list), ctl->json);
    return EXIT_OK;
}
