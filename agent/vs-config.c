/* Reads virtsnapd.conf ([agent] group) into a VsConfig, checking every value. */
#include "vs-config.h"
#include "vs-error.h"
#include "vs-build-config.h"

#include <string.h>

#define GROUP "agent"

static const char *const known_keys[] = {
    "uri", "snapshot_dir", "state_dir", "max_jobs", "freeze_limit_ms", "agent_timeout_s", NULL,
};

VsConfig *
vs_config_new_default(void)
{
    VsConfig *config = g_new0(VsConfig, 1);

    config->uri = g_strdup("qemu:///system");
    config->snapshot_dir = g_strdup(VS_DEFAULT_SNAPSHOT_DIR);
    config->state_dir = g_strdup(VS_DEFAULT_STATE_DIR);
    config->max_jobs = 2;
    config->freeze_limit_ms = 10000;
    config->agent_timeout_s = 5;
    return config;
}

void
vs_config_free(VsConfig *config)
{
    if (!config)
        return;
    g_free(config->uri);
    g_free(config->snapshot_dir);
    g_free(config->state_dir);
    g_free(config);
}

static gboolean
take_string(GKeyFile *kf, const char *key, char **out, gboolean is_path, GError **error)
{
    g_autoptr(GError) local = NULL;
    g_autofree char *value = g_key_file_get_string(kf, GROUP, key, &local);

    if (!value)
        return TRUE; /* absent: keep the default */
    g_strstrip(value);
    if (!*value) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT, "[%s] %s: empty value", GROUP, key);
        return FALSE;
    }
    if (is_path && !g_path_is_absolute(value)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT,
                    "[%s] %s: '%s' is not an absolute path", GROUP, key, value);
        return FALSE;
    }
    g_free(*out);
    *out = g_steal_pointer(&value);
    return TRUE;
}

static gboolean
take_uint(GKeyFile *kf, const char *key, guint min, guint max, guint *out, GError **error)
{
    g_autofree char *text = g_key_file_get_string(kf, GROUP, key, NULL);
    guint64 value;

    if (!text)
        return TRUE;
    g_strstrip(text);
    if (!g_ascii_string_to_unsigned(text, 10, min, max, &value, NULL)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT,
                    "[%s] %s: '%s' is not a whole number from %u to %u", GROUP, key, text, min,
                    max);
        return FALSE;
    }
    *out = (guint)value;
    return TRUE;
}

static VsConfig *
config_from_keyfile(GKeyFile *kf, GPtrArray *warnings, GError **error)
{
    g_autoptr(VsConfig) config = vs_config_new_default();
    g_auto(GStrv) groups = g_key_file_get_groups(kf, NULL);

    for (guint i = 0; groups[i]; i++) {
        g_auto(GStrv) keys = NULL;

        if (strcmp(groups[i], GROUP) != 0) {
            /* Sections of later features ([rbd], [policy]) are read by them. */
            if (strcmp(groups[i], "rbd") != 0 && warnings)
                g_ptr_array_add(warnings, g_strdup_printf("unknown section [%s]", groups[i]));
            continue;
        }
        keys = g_key_file_get_keys(kf, GROUP, NULL, NULL);
        for (guint k = 0; keys && keys[k]; k++) {
            if (!g_strv_contains(known_keys, keys[k]) && warnings)
                g_ptr_array_add(warnings,
                                g_strdup_printf("unknown key '%s' in [%s]", keys[k], GROUP));
        }
    }

    if (!take_string(kf, "uri", &config->uri, FALSE, error) ||
        !take_string(kf, "snapshot_dir", &config->snapshot_dir, TRUE, error) ||
        !take_string(kf, "state_dir", &config->state_dir, TRUE, error) ||
        !take_uint(kf, "max_jobs", 1, 64, &config->max_jobs, error) ||
        !take_uint(kf, "freeze_limit_ms", 100, 600000, &config->freeze_limit_ms, error) ||
        !take_uint(kf, "agent_timeout_s", 1, 600, &config->agent_timeout_s, error))
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
