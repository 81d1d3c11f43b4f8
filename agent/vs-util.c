/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers used by the job engine, the journal and the catalog. */
#include "vs-util.h"
#include "vs-error.h"
#include "vs-names.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

gboolean
vs_name_is_valid(const char *name)
{
    gsize len;

    if (!name || !*name || name[0] == '.' || name[0] == '-')
        return FALSE;
    len = strlen(name);
    if (len > VS_NAME_MAX)
        return FALSE;
    for (gsize i = 0; i < len; i++) {
        char c = name[i];

        if (!g_ascii_isalnum(c) && c != '.' && c != '_' && c != '-')
            return FALSE;
    }
    return TRUE;
}

char *
vs_make_snapshot_id(void)
{
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autofree char *stamp = g_date_time_format(now, "%Y%m%dT%H%M%SZ");

    return g_strdup_printf("%s-%06x", stamp, g_random_int() & 0xffffff);
}

gboolean
vs_set_errno_error(GError **error, int errsv, const char *fmt, ...)
{
    g_autofree char *what = NULL;
    va_list args;

    va_start(args, fmt);
    what = g_strdup_vprintf(fmt, args);
    va_end(args);
    g_set_error(error, VS_ERROR,
                errsv == ENOSPC || errsv == EDQUOT ? VS_ERROR_NO_SPACE : VS_ERROR_IO, "%s: %s",
                what, g_strerror(errsv));
    return FALSE;
}

static gboolean
write_all(int fd, const char *data, gsize len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}

gboolean
vs_write_file_atomic(const char *path, const char *data, gssize len, int mode, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(path);
    g_autofree char *tmp = g_strdup_printf("%s.tmp-XXXXXX", path);
    int fd, dfd, errsv;

    if (len < 0)
        len = strlen(data);
    fd = g_mkstemp_full(tmp, O_WRONLY | O_CLOEXEC, mode);
    if (fd < 0)
        return vs_set_errno_error(error, errno, "cannot create %s", tmp);
    if (!write_all(fd, data, len) || fsync(fd) < 0) {
        errsv = errno;
        close(fd);
        g_unlink(tmp);
        return vs_set_errno_error(error, errsv, "cannot write %s", tmp);
    }
    if (close(fd) < 0 || rename(tmp, path) < 0) {
        errsv = errno;
        g_unlink(tmp);
        return vs_set_errno_error(error, errsv, "cannot write %s", path);
    }
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return TRUE;
}

gboolean
vs_remove_flat_dir(const char *dir, GError **error)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d;
    struct dirent *ent;
    gboolean ok = TRUE;

    if (dfd < 0) {
        if (errno == ENOENT)
            return TRUE;
        return vs_set_errno_error(error, errno, "cannot open %s", dir);
    }
    d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return vs_set_errno_error(error, errno, "cannot read %s", dir);
    }
    while ((ent = readdir(d))) {
        if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0)
            continue;
        /* unlinkat without AT_REMOVEDIR never follows links and fails on folders:
         * we only ever put plain files in a snapshot folder. */
        if (unlinkat(dirfd(d), ent->d_name, 0) < 0 && errno != ENOENT) {
            ok = vs_set_errno_error(error, errno, "cannot remove %s/%s", dir, ent->d_name);
            break;
        }
    }
    closedir(d);
    if (ok && rmdir(dir) < 0 && errno != ENOENT)
        ok = vs_set_errno_error(error, errno, "cannot remove %s", dir);
    return ok;
}

gint64
vs_now_ms(void)
{
    return g_get_monotonic_time() / 1000;
}

void
vs_json_add_string(JsonBuilder *b, const char *key, const char *value)
{
    json_builder_set_member_name(b, key);
    json_builder_add_string_value(b, value ? value : "");
}

void
vs_json_add_int(JsonBuilder *b, const char *key, gint64 value)
{
    json_builder_set_member_name(b, key);
    json_builder_add_int_value(b, value);
}

void
vs_json_add_bool(JsonBuilder *b, const char *key, gboolean value)
{
    json_builder_set_member_name(b, key);
    json_builder_add_boolean_value(b, value);
}
