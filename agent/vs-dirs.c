/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The agent's two directories at start-up: created or repaired to the modes the snapshot
 * path needs, checked reachable by QEMU and writable by us, or refused with the fix. */
#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vs-dirs.h"
#include "vs-error.h"
#include "vs-util.h"

/* A block-copy target is opened by QEMU, which on a system libvirtd runs as another user
 * (libvirt-qemu on Debian); libvirt even checks the target's existence as that user before
 * it chowns it ("unable to verify existence of block copy target: Permission denied"). So
 * the snapshot tree must be searchable by others, but not listable: 0711, the mode libvirt
 * keeps its own /var/lib/libvirt/images at. Each snapshot folder is 0711 too (vs-job.c);
 * the images in it are root's, 0600, once libvirt has given them back after the copy. */
#define SNAPSHOT_DIR_MODE 0711
#define STATE_DIR_MODE    0700

/* Creates @path with @mode, and its missing parents 0711: explicitly, since the agent's
 * umask (077) would make them 0700 and cut QEMU off from everything below. */
static gboolean
create_missing(const char *path, mode_t mode, GError **error)
{
    g_autofree char *parent = NULL;

    if (g_file_test(path, G_FILE_TEST_EXISTS))
        return TRUE;
    parent = g_path_get_dirname(path);
    if (!g_str_equal(parent, path) && !create_missing(parent, SNAPSHOT_DIR_MODE, error))
        return FALSE;
    if ((g_mkdir(path, mode) < 0 && errno != EEXIST) || g_chmod(path, mode) < 0)
        return vs_set_errno_error(error, errno, "cannot create %s", path);
    return TRUE;
}

/* Creates @path (and its parents) if missing and gives it at least @mode: search bits that
 * are missing are added (a directory an older version or a unit with UMask= made 0750 is
 * repaired), read and write bits that are there are kept. */
static gboolean
ensure_dir(const char *path, mode_t mode, gboolean widen_only, GError **error)
{
    struct stat st;
    mode_t want;

    if (!create_missing(path, mode, error))
        return FALSE;
    if (lstat(path, &st) < 0)
        return vs_set_errno_error(error, errno, "cannot read %s", path);
    if (!S_ISDIR(st.st_mode)) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "%s is not a directory", path);
        return FALSE;
    }
    want = widen_only ? ((st.st_mode & 07777) | mode) : mode;
    if ((st.st_mode & 07777) == want)
        return TRUE;
    if (chmod(path, want) < 0)
        return vs_set_errno_error(error, errno, "cannot change the mode of %s", path);
    g_info("%s: mode %04o -> %04o", path, st.st_mode & 07777, want);
    return TRUE;
}

/* Every directory above @path must be searchable by others, or QEMU cannot reach a
 * snapshot. We do not change directories we do not own: we say which one and how. */
static gboolean
check_reachable(const char *path, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(path);

    while (TRUE) {
        struct stat st;
        g_autofree char *parent = NULL;

        if (stat(dir, &st) < 0)
            return vs_set_errno_error(error, errno, "cannot read %s", dir);
        if (!(st.st_mode & S_IXOTH)) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO,
                        "QEMU runs as another user on a system libvirtd and must reach the "
                        "snapshot directory %s, but %s has mode %04o: run 'chmod o+x %s', or "
                        "set snapshot_dir to a directory whose parents others may search",
                        path, dir, (unsigned)(st.st_mode & 07777), dir);
            return FALSE;
        }
        parent = g_path_get_dirname(dir);
        if (g_str_equal(parent, dir))
            return TRUE;
        g_free(dir);
        dir = g_steal_pointer(&parent);
    }
}

/* ProtectSystem=strict makes every path but ReadWritePaths= read-only for the agent: a
 * snapshot_dir elsewhere only shows up when the first snapshot fails, so try now. */
static gboolean
check_writable(const char *path, const char *key, GError **error)
{
    g_autofree char *probe = g_build_filename(path, ".virtsnapd-probe-XXXXXX", NULL);
    int fd = g_mkstemp_full(probe, O_RDWR | O_CLOEXEC, 0600);

    if (fd >= 0) {
        close(fd);
        g_unlink(probe);
        return TRUE;
    }
    if (errno == EROFS) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO,
                    "%s %s is read-only for virtsnapd: the shipped unit lets it write only "
                    "under /var/lib/virtsnap (ProtectSystem=strict); add the directory with "
                    "'systemctl edit virtsnapd' -> [Service] ReadWritePaths=%s (see "
                    "virtsnapd(8), \"Hardening\")",
                    key, path, path);
        return FALSE;
    }
    return vs_set_errno_error(error, errno, "cannot write in %s", path);
}

gboolean
vs_dirs_prepare(const char *snapshot_dir, const char *state_dir, gboolean qemu_is_other_user,
                GError **error)
{
    if (!ensure_dir(snapshot_dir, SNAPSHOT_DIR_MODE, TRUE, error) ||
        !ensure_dir(state_dir, STATE_DIR_MODE, FALSE, error))
        return FALSE;
    if (qemu_is_other_user && !check_reachable(snapshot_dir, error))
        return FALSE;
    return check_writable(snapshot_dir, "snapshot_dir", error) &&
           check_writable(state_dir, "state_dir", error);
}
