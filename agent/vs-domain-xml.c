/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Parses the parts of a domain XML that snapshots depend on, with GMarkup:
 * libvirt writes well-formed XML, and we read only a few elements of it. */
#include "vs-domain-xml.h"
#include "vs-error.h"

#include <string.h>

typedef struct {
    VsDomainXml *dx;
    VsDisk *disk;       /* the <disk> being read */
    VsBacking *backing; /* the <backingStore> being read */
    int backing_depth;  /* nesting of <backingStore> inside the current disk */
    int mirror_depth;   /* >0 while inside <mirror> (its <source> is not the disk's) */
    GString *text;      /* text of <name>/<uuid> */
    gboolean in_channel;
    char *channel_type;
} ParseState;

static void
backing_free(gpointer data)
{
    VsBacking *b = data;

    g_free(b->type);
    g_free(b->format);
    g_free(b->path);
    g_free(b);
}

static void
disk_free(gpointer data)
{
    VsDisk *d = data;

    g_free(d->target);
    g_free(d->bus);
    g_free(d->device);
    g_free(d->type);
    g_free(d->format);
    g_free(d->source);
    g_free(d->protocol);
    g_free(d->mirror_source);
    g_ptr_array_unref(d->backing);
    g_ptr_array_unref(d->hosts);
    g_free(d->auth_user);
    g_free(d->secret_uuid);
    g_free(d->config_file);
    g_free(d->encryption_format);
    g_free(d->encryption_secret);
    g_free(d->encryption_usage);
    g_free(d);
}

void
vs_domain_xml_free(VsDomainXml *dx)
{
    if (!dx)
        return;
    g_free(dx->name);
    g_free(dx->uuid);
    g_ptr_array_unref(dx->disks);
    g_free(dx);
}

static const char *
attr(const char **names, const char **values, const char *wanted)
{
    for (int i = 0; names[i]; i++) {
        if (strcmp(names[i], wanted) == 0)
            return values[i];
    }
    return NULL;
}

/* The element enclosing the one being opened. */
static const char *
parent_element(GMarkupParseContext *ctx)
{
    const GSList *stack = g_markup_parse_context_get_element_stack(ctx);

    return stack && stack->next ? stack->next->data : NULL;
}

static gboolean
parent_is(GMarkupParseContext *ctx, const char *name)
{
    const char *parent = parent_element(ctx);

    return parent && strcmp(parent, name) == 0;
}

static void
on_start(GMarkupParseContext *ctx, const char *element, const char **names, const char **values,
         gpointer user_data, GError **error)
{
    ParseState *st = user_data;
    VsDisk *disk = st->disk;
    int depth = g_slist_length((GSList *)g_markup_parse_context_get_element_stack(ctx));

    if (depth == 2 && (strcmp(element, "name") == 0 || strcmp(element, "uuid") == 0)) {
        g_string_truncate(st->text, 0);
        return;
    }
    if (strcmp(element, "disk") == 0 && parent_is(ctx, "devices")) {
        disk = g_new0(VsDisk, 1);
        disk->type = g_strdup(attr(names, values, "type") ?: "file");
        disk->device = g_strdup(attr(names, values, "device") ?: "disk");
        disk->format = g_strdup("");
        disk->backing = g_ptr_array_new_with_free_func(backing_free);
        disk->hosts = g_ptr_array_new_with_free_func(g_free);
        g_ptr_array_add(st->dx->disks, disk);
        st->disk = disk;
        st->backing_depth = 0;
        st->mirror_depth = 0;
        return;
    }
    if (strcmp(element, "channel") == 0 && parent_is(ctx, "devices")) {
        st->in_channel = TRUE;
        return;
    }
    if (st->in_channel && strcmp(element, "target") == 0) {
        const char *name = attr(names, values, "name");

        if (name && strcmp(name, "org.qemu.guest_agent.0") == 0) {
            const char *state = attr(names, values, "state");

            st->dx->agent_channel = TRUE;
            st->dx->agent_connected = state && strcmp(state, "connected") == 0;
        }
        return;
    }
    if (!disk)
        return;

    if (strcmp(element, "mirror") == 0) {
        const char *ready = attr(names, values, "ready");

        disk->mirror = TRUE;
        disk->mirror_ready = ready && strcmp(ready, "yes") == 0;
        g_free(disk->mirror_source);
        disk->mirror_source = g_strdup(attr(names, values, "file"));
        st->mirror_depth++;
        return;
    }
    if (st->mirror_depth > 0) {
        if (strcmp(element, "source") == 0 && parent_is(ctx, "mirror") && !disk->mirror_source)
            disk->mirror_source =
                g_strdup(attr(names, values, "file") ?: attr(names, values, "dev"));
        return;
    }

    if (strcmp(element, "backingStore") == 0) {
        const char *type = attr(names, values, "type");

        st->backing_depth++;
        st->backing = NULL;
        if (type) { /* an empty <backingStore/> ends the chain */
            st->backing = g_new0(VsBacking, 1);
            st->backing->type = g_strdup(type);
            st->backing->format = g_strdup("");
            g_ptr_array_add(disk->backing, st->backing);
        }
        return;
    }

    if (strcmp(element, "format") == 0 && st->backing && parent_is(ctx, "backingStore")) {
        g_free(st->backing->format);
        st->backing->format = g_strdup(attr(names, values, "type") ?: "");
    } else if (strcmp(element, "source") == 0 && st->backing && parent_is(ctx, "backingStore")) {
        const char *path = attr(names, values, "file") ?: attr(names, values, "dev");

        g_free(st->backing->path);
        st->backing->path = g_strdup(path ?: attr(names, values, "name"));
    } else if (st->backing_depth > 0) {
        return; /* nothing else of a backing element matters */
    } else if (strcmp(element, "driver") == 0 && parent_is(ctx, "disk")) {
        g_free(disk->format);
        disk->format = g_strdup(attr(names, values, "type") ?: "");
    } else if (strcmp(element, "source") == 0 && parent_is(ctx, "disk")) {
        const char *src = attr(names, values, "file");

        if (!src)
            src = attr(names, values, "dev");
        if (!src)
            src = attr(names, values, "name");
        if (!src && attr(names, values, "volume"))
            src = attr(names, values, "volume");
        g_free(disk->source);
        disk->source = g_strdup(src);
        disk->protocol = g_strdup(attr(names, values, "protocol"));
    } else if (strcmp(element, "host") == 0 && parent_is(ctx, "source")) {
        const char *host = attr(names, values, "name");
        const char *port = attr(names, values, "port");

        if (host)
            g_ptr_array_add(disk->hosts,
                            port ? g_strdup_printf("%s:%s", host, port) : g_strdup(host));
    } else if (strcmp(element, "auth") == 0) {
        g_free(disk->auth_user);
        disk->auth_user = g_strdup(attr(names, values, "username"));
    } else if (strcmp(element, "secret") == 0 && parent_is(ctx, "auth")) {
        g_free(disk->secret_uuid);
        disk->secret_uuid = g_strdup(attr(names, values, "uuid"));
    } else if (strcmp(element, "config") == 0 && parent_is(ctx, "source")) {
        g_free(disk->config_file);
        disk->config_file = g_strdup(attr(names, values, "file"));
    } else if (strcmp(element, "encryption") == 0) {
        disk->encrypted = TRUE;
        g_free(disk->encryption_format);
        disk->encryption_format = g_strdup(attr(names, values, "format") ?: "");
    } else if (strcmp(element, "secret") == 0 && parent_is(ctx, "encryption")) {
        g_free(disk->encryption_secret);
        disk->encryption_secret = g_strdup(attr(names, values, "uuid"));
        g_free(disk->encryption_usage);
        disk->encryption_usage = g_strdup(attr(names, values, "usage"));
    } else if (strcmp(element, "target") == 0 && parent_is(ctx, "disk")) {
        g_free(disk->target);
        disk->target = g_strdup(attr(names, values, "dev"));
        disk->bus = g_strdup(attr(names, values, "bus"));
    } else if (strcmp(element, "readonly") == 0 && parent_is(ctx, "disk")) {
        disk->readonly = TRUE;
    } else if (strcmp(element, "shareable") == 0 && parent_is(ctx, "disk")) {
        disk->shareable = TRUE;
    }
}

static void
on_end(GMarkupParseContext *ctx, const char *element, gpointer user_data, GError **error)
{
    ParseState *st = user_data;
    int depth = g_slist_length((GSList *)g_markup_parse_context_get_element_stack(ctx));

    if (depth == 2 && strcmp(element, "name") == 0) {
        g_free(st->dx->name);
        st->dx->name = g_strstrip(g_strdup(st->text->str));
    } else if (depth == 2 && strcmp(element, "uuid") == 0) {
        g_free(st->dx->uuid);
        st->dx->uuid = g_strstrip(g_strdup(st->text->str));
    } else if (strcmp(element, "channel") == 0) {
        st->in_channel = FALSE;
    } else if (st->disk && strcmp(element, "mirror") == 0) {
        st->mirror_depth--;
    } else if (st->disk && st->mirror_depth == 0 && strcmp(element, "backingStore") == 0) {
        st->backing_depth--;
        /* The enclosing backingStore, if any, has already taken its format and source. */
        st->backing = NULL;
    } else if (strcmp(element, "disk") == 0 && st->disk) {
        st->disk = NULL;
    }
}

static void
on_text(GMarkupParseContext *ctx, const char *text, gsize len, gpointer user_data, GError **error)
{
    ParseState *st = user_data;

    g_string_append_len(st->text, text, len);
}

VsDomainXml *
vs_domain_xml_parse(const char *xml, GError **error)
{
    static const GMarkupParser parser = {on_start, on_end, on_text, NULL, NULL};
    g_autoptr(VsDomainXml) dx = g_new0(VsDomainXml, 1);
    g_autoptr(GString) text = g_string_new(NULL);
    g_autoptr(GError) local = NULL;
    GMarkupParseContext *ctx;
    ParseState st = {0};
    gboolean ok;

    dx->disks = g_ptr_array_new_with_free_func(disk_free);
    st.dx = dx;
    st.text = text;

    ctx = g_markup_parse_context_new(&parser, G_MARKUP_IGNORE_QUALIFIED, &st, NULL);
    ok = g_markup_parse_context_parse(ctx, xml, -1, &local) &&
         g_markup_parse_context_end_parse(ctx, &local);
    g_markup_parse_context_free(ctx);

    if (!ok) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT, "cannot parse domain XML: %s",
                    local->message);
        return NULL;
    }
    if (!dx->name) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT,
                    "cannot parse domain XML: no <name>");
        return NULL;
    }
    for (guint i = 0; i < dx->disks->len; i++) {
        VsDisk *disk = g_ptr_array_index(dx->disks, i);

        if (!disk->target) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT,
                        "cannot parse domain XML: disk %u has no <target dev=...>", i);
            return NULL;
        }
    }
    return g_steal_pointer(&dx);
}

VsDisk *
vs_domain_xml_find_disk(VsDomainXml *dx, const char *target)
{
    for (guint i = 0; i < dx->disks->len; i++) {
        VsDisk *disk = g_ptr_array_index(dx->disks, i);

        if (g_strcmp0(disk->target, target) == 0)
            return disk;
    }
    return NULL;
}

gboolean
vs_disk_is_local_image(const VsDisk *disk)
{
    return strcmp(disk->device, "disk") == 0 && strcmp(disk->type, "file") == 0 &&
           !disk->readonly && !disk->shareable && disk->source &&
           (strcmp(disk->format, "qcow2") == 0 || strcmp(disk->format, "raw") == 0);
}

GVariant *
vs_disk_to_variant(const VsDisk *disk)
{
    GVariantBuilder b;
    g_autoptr(GPtrArray) chain = g_ptr_array_new();
    g_autoptr(GPtrArray) formats = g_ptr_array_new();

    for (guint i = 0; i < disk->backing->len; i++) {
        VsBacking *bk = g_ptr_array_index(disk->backing, i);

        g_ptr_array_add(chain, bk->path ? bk->path : (char *)"");
        g_ptr_array_add(formats, bk->format);
    }

    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&b, "{sv}", "target", g_variant_new_string(disk->target));
    g_variant_builder_add(&b, "{sv}", "device", g_variant_new_string(disk->device));
    g_variant_builder_add(&b, "{sv}", "bus", g_variant_new_string(disk->bus ?: ""));
    g_variant_builder_add(&b, "{sv}", "type", g_variant_new_string(disk->type));
    g_variant_builder_add(&b, "{sv}", "format", g_variant_new_string(disk->format));
    g_variant_builder_add(&b, "{sv}", "source", g_variant_new_string(disk->source ?: ""));
    g_variant_builder_add(&b, "{sv}", "protocol", g_variant_new_string(disk->protocol ?: ""));
    g_variant_builder_add(&b, "{sv}", "readonly", g_variant_new_boolean(disk->readonly));
    g_variant_builder_add(&b, "{sv}", "shareable", g_variant_new_boolean(disk->shareable));
    g_variant_builder_add(&b, "{sv}", "encrypted", g_variant_new_boolean(disk->encrypted));
    g_variant_builder_add(&b, "{sv}", "backing-chain",
                          g_variant_new_strv((const char *const *)chain->pdata, chain->len));
    g_variant_builder_add(&b, "{sv}", "backing-formats",
                          g_variant_new_strv((const char *const *)formats->pdata, formats->len));
    return g_variant_builder_end(&b);
}
