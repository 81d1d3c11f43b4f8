/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Reads virtsnapd.conf ([agent] group) into a VsConfig, checking every value. */
#include "vs-config.h"
#include "vs-error.h"
#include "vs-build-config.h"

#include <string.h>

#define GROUP "agent"

static const char *const known_keys[] = {
    "uri",         "snapshot_dir", "state_dir", "max_jobs", "freeze_limit_ms", "agent_timeout_s",
    "runtime_dir", NULL,
};
static const char *const known_rbd_keys[] = {
    "ceph_conf", "client_id", "keyring", "connect_timeout_s", "dest_pool", "flatten", NULL,
};

VsConfig *
vs_config_new_default(void)
{
    VsConfig *config = g_new0(VsConfig, 1);

    config->uri = g_strdup("qemu:///system");
    config->snapshot_dir = g_strdup(VS_DEFAULT_SNAPSHOT_DIR);
    config->state_dir = g_strdup(VS_DEFAULT_STATE_DIR);
    config->runtime_dir = g_strdup(VS_DEFAULT_RUNTIME_DIR);
    config->max_jobs = 2;
    config->freeze_limit_ms = 10000;
    config->agent_timeout_s = 5;
    config->rbd.ceph_conf = g_strdup("/etc/ceph/ceph.conf");
    config->rbd.client_id = g_strdup("admin");
    config->rbd.connect_timeout_s = 10;
    return config;
}

VsConfig *
vs_config_copy(const VsConfig *config)
{
    VsConfig *copy = g_memdup2(config, sizeof(*config));

    copy->uri = g_strdup(config->uri);
    copy->snapshot_dir = g_strdup(config->snapshot_dir);
    copy->state_dir = g_strdup(config->state_dir);
    copy->runtime_dir = g_strdup(config->runtime_dir);
    copy->rbd.ceph_conf = g_strdup(config->rbd.ceph_conf);
    copy->rbd.client_id = g_strdup(config->rbd.client_id);
    copy->rbd.keyring = g_strdup(config->rbd.keyring);
    copy->rbd.dest_pool = g_strdup(config->rbd.dest_pool);
    return copy;
}

void
vs_config_free(VsConfig *config)
{
    if (!config)
        return;
    g_free(config->uri);
    g_free(config->snapshot_dir);
    g_free(config->state_dir);
    g_free(config->runtime_dir);
    g_free(config->rbd.ceph_conf);
    g_free(config->rbd.client_id);
    g_free(config->rbd.keyring);
    g_free(config->rbd.dest_pool);
    g_free(config);
}

static gboolean
take_string(GKeyFile *kf, const char *group, const char *key, char **out, gboolean is_path,
            GError **error)
{
    g_autoptr(GError) local = NULL;
    g_autofree char *value = g_key_file_get_string(kf, group, key, &local);

    if (!value)
        return TRUE; /* absent: keep the default */
    g_strstrip(value);
    if (!*value) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT, "[%s] %s: empty value", group, key);
        return FALSE;
    }
    if (is_path && !g_path_is_absolute(value)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT,
                    "[%s] %s: '%s' is not an absolute path", group, key, value);
        return FALSE;
    }
    g_free(*out);
    *out = g_steal_pointer(&value);
    return TRUE;
}

static gboolean
take_uint(GKeyFile *kf, const char *group, const char *key, guint min, guint max, guint *out,
          GError **error)
{
    g_autofree char *text = g_key_file_get_string(kf, group, key, NULL);
    guint64 value;

    if (!text)
        return TRUE;
    g_strstrip(text);
    if (!g_ascii_string_to_unsigned(text, 10, min, max, &value, NULL)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT,
                    "[%s] %s: '%s' is not a whole number from %u to %u", group, key, text, min,
                    max);
        return FALSE;
    }
    *out = (guint)value;
    return TRUE;
}

static gboolean
take_bool(GKeyFile *kf, const char *group, const char *key, gboolean *out, GError **error)
{
    g_autoptr(GError) local = NULL;
    gboolean value;

    if (!g_key_file_has_key(kf, group, key, NULL))
        return TRUE;
    value = g_key_file_get_boolean(kf, group, key, &local);
    if (local) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT, "[%s] %s: not true or false", group,
                    key);
        return FALSE;
    }
    *out = value;
    return TRUE;
}

static VsConfig *
config_from_keyfile(GKeyFile *kf, GPtrArray *warnings, GError **error)
{
    g_autoptr(VsConfig) config = vs_config_new_default();
    g_auto(GStrv) groups = g_key_file_get_groups(kf, NULL);

    for (guint i = 0; groups[i]; i++) {
        g_auto(GStrv) keys = NULL;

        const char *const *known = strcmp(groups[i], GROUP) == 0   ? known_keys
                                   : strcmp(groups[i], "rbd") == 0 ? known_rbd_keys
                                                                   : NULL;

        if (!known) {
            if (warnings)
                g_ptr_array_add(warnings, g_strdup_printf("unknown section [%s]", groups[i]));
            continue;
        }
        keys = g_key_file_get_keys(kf, groups[i], NULL, NULL);
        for (guint k = 0; keys && keys[k]; k++) {
            if (!g_strv_contains(known, keys[k]) && warnings)
                g_ptr_array_add(warnings,
                                g_strdup_printf("unknown key '%s' in [%s]", keys[k], groups[i]));
        }
    }

    if (!take_string(kf, GROUP, "uri", &config->uri, FALSE, error) ||
        !take_string(kf, GROUP, "snapshot_dir", &config->snapshot_dir, TRUE, error) ||
        !take_string(kf, GROUP, "state_dir", &config->state_dir, TRUE, error) ||
        !take_string(kf, GROUP, "runtime_dir", &config->runtime_dir, TRUE, error) ||
        !take_uint(kf, GROUP, "max_jobs", 1, 64, &config->max_jobs, error) ||
        !take_uint(kf, GROUP, "freeze_limit_ms", 100, 600000, &config->freeze_limit_ms, error) ||
        !take_uint(kf, GROUP, "agent_timeout_s", 1, 600, &config->agent_timeout_s, error) ||
        !take_string(kf, "rbd", "ceph_conf", &config->rbd.ceph_conf, TRUE, error) ||
        !take_string(kf, "rbd", "client_id", &config->rbd.client_id, FALSE, error) ||
        !take_string(kf, "rbd", "keyring", &config->rbd.keyring, TRUE, error) ||
        !take_uint(kf, "rbd", "connect_timeout_s", 1, 300, &config->rbd.connect_timeout_s, error) ||
        !take_string(kf, "rbd", "dest_pool", &config->rbd.dest_pool, FALSE, error) ||
        !take_bool(kf, "rbd", "flatten", &config->rbd.flatten, error))
        return NULL;

    return g_steal_pointer(&config);
}

VsConfig *
vs_config_load_data(const char *data, GPtrArray *warnings, GError **error)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_autoptr(GError) local = NULL;

    if (!g_key_file_load_from_data(kf, data, -1, G_KEY_FILE_NONE, &local)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT, "%s", local->message);
        return NULL;
    }
    return config_from_keyfile(kf, warnings, error);
}

VsConfig *
vs_config_load(const char *path, gboolean must_exist, GPtrArray *warnings, GError **error)
{
    g_autofree char *data = NULL;
    g_autoptr(GError) local = NULL;
    VsConfig *config;

    if (!g_file_get_contents(path, &data, NULL, &local)) {
        if (!must_exist && g_error_matches(local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
            return vs_config_new_default();
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT, "%s", local->message);
        return NULL;
    }
    config = vs_config_load_data(data, warnings, &local);
    if (!config)
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT, "%s: %s", path, local->message);
    return config;
}
