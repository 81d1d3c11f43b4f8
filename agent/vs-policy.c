/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Policy <-> XML and words, and its storage in the domain's <metadata>. libvirt stores
 * the element under our namespace; it may come back with a prefix on every element,
 * which is why names are compared after the last ':'. */
#include "vs-policy.h"
#include "vs-error.h"
#include "vs-keys.h"
#include "vs-virt-util.h"

#include <string.h>

VsPolicy *
vs_policy_new(void)
{
    return g_new0(VsPolicy, 1);
}

void
vs_policy_free(VsPolicy *policy)
{
    if (!policy)
        return;
    g_free(policy->quiesce);
    g_free(policy->method);
    g_free(policy->format);
    g_free(policy);
}

gboolean
vs_parse_duration(const char *text, guint64 *seconds)
{
    guint64 value, unit = 1;
    char *end = NULL;

    if (!text || !g_ascii_isdigit(*text))
        return FALSE;
    value = g_ascii_strtoull(text, &end, 10);
    switch (*end) {
    case '\0':
    case 's':
        break;
    case 'm':
        unit = 60;
        break;
    case 'h':
        unit = 3600;
        break;
    case 'd':
        unit = 86400;
        break;
    default:
        return FALSE;
    }
    if (*end && end[1])
        return FALSE;
    if (value == 0 || value > G_MAXUINT32 / unit)
        return FALSE;
    *seconds = value * unit;
    return TRUE;
}

static char *
duration_text(guint64 s)
{
    if (s % 86400 == 0)
        return g_strdup_printf("%" G_GUINT64_FORMAT "d", s / 86400);
    if (s % 3600 == 0)
        return g_strdup_printf("%" G_GUINT64_FORMAT "h", s / 3600);
    if (s % 60 == 0)
        return g_strdup_printf("%" G_GUINT64_FORMAT "m", s / 60);
    return g_strdup_printf("%" G_GUINT64_FORMAT "s", s);
}

static gboolean
one_of(const char *key, const char *value, const char *const *words, char **slot, GError **error)
{
    g_autofree char *choices = NULL;

    if (g_strv_contains(words, value)) {
        g_free(*slot);
        *slot = g_strdup(value);
        return TRUE;
    }
    choices = g_strjoinv("|", (char **)words);
    g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT, "policy %s: '%s' is not one of %s", key,
                value, choices);
    return FALSE;
}

gboolean
vs_policy_set(VsPolicy *policy, const char *key, const char *value, GError **error)
{
    gboolean clear = !value || !*value || strcmp(value, VS_POLICY_WORD_NONE) == 0;

    if (!g_strv_contains(vs_policy_keys, key)) {
        g_autofree char *known = g_strjoinv(", ", (char **)vs_policy_keys);

        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT,
                    "unknown policy key '%s' (known: %s)", key, known);
        return FALSE;
    }
    if (strcmp(key, VS_POLICY_ON_STOP) == 0) {
        if (!clear && strcmp(value, VS_POLICY_WORD_SNAPSHOT) != 0) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT,
                        "policy on-stop: '%s' is not one of none|snapshot", value);
            return FALSE;
        }
        policy->on_stop = !clear;
    } else if (strcmp(key, VS_POLICY_EVERY) == 0) {
        if (clear) {
            policy->every_s = 0;
        } else if (!vs_parse_duration(value, &policy->every_s)) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT,
                        "policy every: '%s' is not a duration like 30s, 15m, 6h or 1d", value);
            return FALSE;
        }
    } else if (strcmp(key, VS_POLICY_KEEP) == 0) {
        guint64 n = 0;

        if (!clear && !g_ascii_string_to_unsigned(value, 10, 1, 10000, &n, NULL)) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT,
                        "policy keep: '%s' is not a whole number from 1 to 10000", value);
            return FALSE;
        }
        policy->keep = (guint)n;
    } else {
        char **slot = strcmp(key, VS_POLICY_QUIESCE) == 0  ? &policy->quiesce
                      : strcmp(key, VS_POLICY_METHOD) == 0 ? &policy->method
                                                           : &policy->format;
        const char *const *words = strcmp(key, VS_POLICY_QUIESCE) == 0  ? vs_quiesce_words
                                   : strcmp(key, VS_POLICY_METHOD) == 0 ? vs_method_words
                                                                        : vs_format_words;

        if (clear) {
            g_clear_pointer(slot, g_free);
            return TRUE;
        }
        return one_of(key, value, words, slot, error);
    }
    return TRUE;
}

gboolean
vs_policy_is_empty(const VsPolicy *p)
{
    return !p->on_stop && !p->every_s && !p->keep && !p->quiesce && !p->method && !p->format;
}

GVariant *
vs_policy_to_variant(const VsPolicy *p)
{
    GVariantBuilder b;

    g_variant_builder_init(&b, G_VARIANT_TYPE("a{ss}"));
    if (p->on_stop)
        g_variant_builder_add(&b, "{ss}", VS_POLICY_ON_STOP, VS_POLICY_WORD_SNAPSHOT);
    if (p->every_s) {
        g_autofree char *text = duration_text(p->every_s);

        g_variant_builder_add(&b, "{ss}", VS_POLICY_EVERY, text);
    }
    if (p->keep) {
        g_autofree char *text = g_strdup_printf("%u", p->keep);

        g_variant_builder_add(&b, "{ss}", VS_POLICY_KEEP, text);
    }
    if (p->quiesce)
        g_variant_builder_add(&b, "{ss}", VS_POLICY_QUIESCE, p->quiesce);
    if (p->method)
        g_variant_builder_add(&b, "{ss}", VS_POLICY_METHOD, p->method);
    if (p->format)
        g_variant_builder_add(&b, "{ss}", VS_POLICY_FORMAT, p->format);
    return g_variant_builder_end(&b);
}

char *
vs_policy_to_xml(const VsPolicy *p)
{
    g_autoptr(GVariant) v = g_variant_ref_sink(vs_policy_to_variant(p));
    GString *xml = g_string_new("<policy>");
    GVariantIter iter;
    const char *key, *value;

    g_variant_iter_init(&iter, v);
    while (g_variant_iter_next(&iter, "{&s&s}", &key, &value)) {
        g_autofree char *escaped = g_markup_escape_text(value, -1);

        g_string_append_printf(xml, "<%s>%s</%s>", key, escaped, key);
    }
    g_string_append(xml, "</policy>");
    return g_string_free(xml, FALSE);
}

typedef struct {
    VsPolicy *policy;
    GString *text;
    int depth;
    gboolean root_ok;
    GError *first_error;
} ParseState;

static const char *
local_name(const char *element)
{
    const char *colon = strrchr(element, ':');

    return colon ? colon + 1 : element;
}

static void
on_start(GMarkupParseContext *ctx, const char *element, const char **names, const char **values,
         gpointer data, GError **error)
{
    ParseState *st = data;

    st->depth++;
    if (st->depth == 1)
        st->root_ok = strcmp(local_name(element), "policy") == 0;
    g_string_truncate(st->text, 0);
}

static void
on_end(GMarkupParseContext *ctx, const char *element, gpointer data, GError **error)
{
    ParseState *st = data;

    if (st->depth == 2 && !st->first_error) {
        g_autofree char *value = g_strstrip(g_strdup(st->text->str));

        vs_policy_set(st->policy, local_name(element), value, &st->first_error);
    }
    st->depth--;
}

static void
on_text(GMarkupParseContext *ctx, const char *text, gsize len, gpointer data, GError **error)
{
    g_string_append_len(((ParseState *)data)->text, text, len);
}

VsPolicy *
vs_policy_parse(const char *xml, GError **error)
{
    static const GMarkupParser parser = {on_start, on_end, on_text, NULL, NULL};
    g_autoptr(VsPolicy) policy = vs_policy_new();
    g_autoptr(GString) text = g_string_new(NULL);
    g_autoptr(GError) local = NULL;
    ParseState st = {policy, text, 0, FALSE, NULL};
    GMarkupParseContext *ctx = g_markup_parse_context_new(&parser, 0, &st, NULL);
    gboolean ok = g_markup_parse_context_parse(ctx, xml, -1, &local) &&
                  g_markup_parse_context_end_parse(ctx, &local);

    g_markup_parse_context_free(ctx);
    if (!ok) {
        g_clear_error(&st.first_error);
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT, "policy is not valid XML: %s",
                    local->message);
        return NULL;
    }
    if (!st.root_ok) {
        g_clear_error(&st.first_error);
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT, "policy: no <policy> element");
        return NULL;
    }
    if (st.first_error) {
        g_propagate_error(error, st.first_error);
        return NULL;
    }
    return g_steal_pointer(&policy);
}

/* ---- storage in the domain's <metadata> ------------------------------------------------ */

VsPolicy *
vs_policy_read(virDomainPtr dom, GError **error)
{
    int persistent = virDomainIsPersistent(dom);
    g_autofree char *xml =
        virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, VS_POLICY_NS,
                             persistent == 1 ? VIR_DOMAIN_AFFECT_CONFIG : VIR_DOMAIN_AFFECT_LIVE);

    if (!xml) {
        virErrorPtr err = virGetLastError();

        if (err && err->code == VIR_ERR_NO_DOMAIN_METADATA)
            return vs_policy_new();
        vs_set_libvirt_error(error, "reading the policy of '%s'", virDomainGetName(dom));
        return NULL;
    }
    return vs_policy_parse(xml, error);
}

gboolean
vs_policy_write(virDomainPtr dom, const VsPolicy *policy, GError **error)
{
    int persistent = virDomainIsPersistent(dom);
    int active = virDomainIsActive(dom);
    unsigned int flags = (persistent == 1 ? VIR_DOMAIN_AFFECT_CONFIG : 0) |
                         (active == 1 ? VIR_DOMAIN_AFFECT_LIVE : 0);
    g_autofree char *xml = vs_policy_is_empty(policy) ? NULL : vs_policy_to_xml(policy);

    if (virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, xml, xml ? VS_POLICY_PREFIX : NULL,
                             VS_POLICY_NS, flags) < 0)
        return vs_set_libvirt_error(error, "writing the policy of '%s'", virDomainGetName(dom));
    return TRUE;
}

GVariant *
vs_policy_get_reply(virDomainPtr dom)
{
    g_autoptr(GError) problem = NULL;
    g_autoptr(VsPolicy) policy = vs_policy_read(dom, &problem);

    return g_variant_new("(@a{ss}s)",
                         policy ? vs_policy_to_variant(policy) : g_variant_new("a{ss}", NULL),
                         problem ? problem->message : "");
}

gboolean
vs_policy_update(virDomainPtr dom, GVariant *settings, gboolean clear, GError **error)
{
    g_autoptr(VsPolicy) policy = vs_policy_read(dom, NULL);
    GVariantIter iter;
    const char *key, *value;

    if (!policy || clear) { /* an unreadable policy is replaced */
        g_clear_pointer(&policy, vs_policy_free);
        policy = vs_policy_new();
    }
    if (settings)
        g_variant_iter_init(&iter, settings);
    while (settings && g_variant_iter_next(&iter, "{&s&s}", &key, &value)) {
        if (!vs_policy_set(policy, key, value, error))
            return FALSE;
    }
    return vs_policy_write(dom, policy, error);
}
