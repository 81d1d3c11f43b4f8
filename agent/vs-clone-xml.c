/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The clone's domain XML. libvirt's XML is read into a small tree with GMarkup (as
 * vs-domain-xml.c reads it), changed, and written out again: a disk's fate depends on its
 * <target>, which comes after its <source>, so a streaming filter would not do. */
#include "vs-clone-xml.h"
#include "vs-error.h"

#include <string.h>

/* Our policy's namespace (vs-policy.c): a clone does not inherit the original's schedule. */
#define POLICY_NS "https://virtsnap.org/xmlns/policy/1"

typedef struct _Node Node;
struct _Node {
    char *name; /* NULL: a text node */
    char *text;
    GPtrArray *attr_names, *attr_values;
    GPtrArray *children; /* Node* */
    Node *parent;
};

static void
node_free(gpointer p)
{
    Node *n = p;

    g_free(n->name);
    g_free(n->text);
    if (n->attr_names) {
        g_ptr_array_unref(n->attr_names);
        g_ptr_array_unref(n->attr_values);
        g_ptr_array_unref(n->children);
    }
    g_free(n);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Node, node_free)

static Node *
node_new(const char *name, Node *parent)
{
    Node *n = g_new0(Node, 1);

    n->name = g_strdup(name);
    n->attr_names = g_ptr_array_new_with_free_func(g_free);
    n->attr_values = g_ptr_array_new_with_free_func(g_free);
    n->children = g_ptr_array_new_with_free_func(node_free);
    n->parent = parent;
    if (parent)
        g_ptr_array_add(parent->children, n);
    return n;
}

static const char *
node_attr(Node *n, const char *name)
{
    for (guint i = 0; i < n->attr_names->len; i++) {
        if (strcmp(g_ptr_array_index(n->attr_names, i), name) == 0)
            return g_ptr_array_index(n->attr_values, i);
    }
    return NULL;
}

static void
node_unset_attr(Node *n, const char *name)
{
    for (guint i = 0; i < n->attr_names->len; i++) {
        if (strcmp(g_ptr_array_index(n->attr_names, i), name) == 0) {
            g_ptr_array_remove_index(n->attr_names, i);
            g_ptr_array_remove_index(n->attr_values, i);
            return;
        }
    }
}

static void
node_set_attr(Node *n, const char *name, const char *value)
{
    for (guint i = 0; i < n->attr_names->len; i++) {
        if (strcmp(g_ptr_array_index(n->attr_names, i), name) == 0) {
            g_free(n->attr_values->pdata[i]);
            n->attr_values->pdata[i] = g_strdup(value);
            return;
        }
    }
    g_ptr_array_add(n->attr_names, g_strdup(name));
    g_ptr_array_add(n->attr_values, g_strdup(value));
}

static Node *
node_child(Node *n, const char *name)
{
    for (guint i = 0; i < n->children->len; i++) {
        Node *c = g_ptr_array_index(n->children, i);

        if (c->name && strcmp(c->name, name) == 0)
            return c;
    }
    return NULL;
}

/* Removes every child element called @name; how many there were. */
static guint
node_drop_children(Node *n, const char *name)
{
    guint dropped = 0;

    for (guint i = n->children->len; i > 0; i--) {
        Node *c = g_ptr_array_index(n->children, i - 1);

        if (c->name && strcmp(c->name, name) == 0) {
            g_ptr_array_remove_index(n->children, i - 1);
            dropped++;
        }
    }
    return dropped;
}

/* Replaces @n's content with the text @text. */
static void
node_set_text(Node *n, const char *text)
{
    g_ptr_array_set_size(n->children, 0);
    node_new(NULL, n)->text = g_strdup(text);
}

/* ---- reading and writing ------------------------------------------------------------------ */

typedef struct {
    Node *root;
    Node *cur;
} Reader;

static void
on_start(GMarkupParseContext *ctx, const char *name, const char **names, const char **values,
         gpointer data, GError **error)
{
    Reader *r = data;
    Node *n;

    if (!r->cur && r->root) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT, "more than one root element");
        return;
    }
    n = node_new(name, r->cur);
    for (guint i = 0; names[i]; i++)
        node_set_attr(n, names[i], values[i]);
    if (!r->root)
        r->root = n;
    r->cur = n;
}

static void
on_end(GMarkupParseContext *ctx, const char *name, gpointer data, GError **error)
{
    Reader *r = data;

    r->cur = r->cur->parent;
}

static void
on_text(GMarkupParseContext *ctx, const char *text, gsize len, gpointer data, GError **error)
{
    Reader *r = data;

    if (r->cur)
        node_new(NULL, r->cur)->text = g_strndup(text, len);
}

static Node *
parse(const char *xml, GError **error)
{
    static const GMarkupParser parser = {on_start, on_end, on_text, NULL, NULL};
    Reader r = {NULL, NULL};
    g_autoptr(GMarkupParseContext) ctx = g_markup_parse_context_new(&parser, 0, &r, NULL);
    g_autoptr(GError) local = NULL;

    if (!g_markup_parse_context_parse(ctx, xml, -1, &local) ||
        !g_markup_parse_context_end_parse(ctx, &local)) {
        if (r.root)
            node_free(r.root);
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT,
                    "the snapshot's domain XML cannot be read: %s", local->message);
        return NULL;
    }
    return r.root;
}

static void
write_node(GString *out, Node *n)
{
    if (!n->name) {
        g_autofree char *text = g_markup_escape_text(n->text, -1);

        g_string_append(out, text);
        return;
    }
    g_string_append_printf(out, "<%s", n->name);
    for (guint i = 0; i < n->attr_names->len; i++) {
        g_autofree char *value = g_markup_escape_text(g_ptr_array_index(n->attr_values, i), -1);

        g_string_append_printf(out, " %s='%s'", (char *)g_ptr_array_index(n->attr_names, i), value);
    }
    if (!n->children->len) {
        g_string_append(out, "/>");
        return;
    }
    g_string_append_c(out, '>');
    for (guint i = 0; i < n->children->len; i++)
        write_node(out, g_ptr_array_index(n->children, i));
    g_string_append_printf(out, "</%s>", n->name);
}

/* ---- the changes ---------------------------------------------------------------------------- */

typedef struct {
    const VsCloneXmlSpec *spec;
    GPtrArray *notes;
    GHashTable *log_paths; /* the original's file path -> the clone's */
    GHashTable *seen;      /* targets of spec disks found */
} Rewrite;

static void note(Rewrite *rw, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
note(Rewrite *rw, const char *fmt, ...)
{
    va_list args;

    va_start(args, fmt);
    if (rw->notes)
        g_ptr_array_add(rw->notes, g_strdup_vprintf(fmt, args));
    va_end(args);
}

static const VsCloneXmlDisk *
spec_disk(const VsCloneXmlSpec *spec, const char *target)
{
    for (guint i = 0; target && i < spec->n_disks; i++) {
        if (strcmp(spec->disks[i].target, target) == 0)
            return &spec->disks[i];
    }
    return NULL;
}

/* The disk now reads and writes the clone's own image; whatever pointed at the
 * original's (its chain, a running block job's mirror) goes. */
static void
rewrite_disk(Node *disk, const VsCloneXmlDisk *cd)
{
    Node *source = node_child(disk, "source");
    Node *driver = node_child(disk, "driver");

    node_drop_children(disk, "backingStore");
    node_drop_children(disk, "mirror");
    if (!source)
        source = node_new("source", disk);
    if (cd->rbd_name) {
        /* The cluster's hosts, config file and auth stay: the clone lives beside the
         * snapshot, in the same cluster. */
        node_set_attr(source, "name", cd->rbd_name);
        node_drop_children(source, "snapshot");
        return;
    }
    node_set_attr(disk, "type", "file");
    g_ptr_array_set_size(source->attr_names, 0);
    g_ptr_array_set_size(source->attr_values, 0);
    g_ptr_array_set_size(source->children, 0);
    node_set_attr(source, "file", cd->file);
    node_drop_children(disk, "auth");
    if (!driver) {
        driver = node_new("driver", disk);
        node_set_attr(driver, "name", "qemu");
    }
    node_set_attr(driver, "type", "qcow2");
}

/* A disk the snapshot does not hold: kept when nothing can write it (CD-ROMs, read-only,
 * shareable disks are shared on purpose); a writable one is left out, as two domains
 * writing one image would corrupt it. FALSE: drop it. */
static gboolean
keep_other_disk(Rewrite *rw, Node *disk, const char *target)
{
    const char *device = node_attr(disk, "device");
    Node *source = node_child(disk, "source");
    const char *where = source ? node_attr(source, "file") : NULL;

    if (g_strcmp0(device, "cdrom") == 0 || g_strcmp0(device, "floppy") == 0 ||
        node_child(disk, "readonly") || node_child(disk, "shareable"))
        return TRUE;
    where = where ? where : source ? node_attr(source, "dev") : NULL;
    where = where ? where : source ? node_attr(source, "name") : NULL;
    note(rw, "disk %s (%s) left out: it is writable and not in the snapshot", target ? target : "?",
         where ? where : "no source");
    return FALSE;
}

/* The clone's console log: its own file in its folder, one per file the original names. */
static void
map_log_path(Rewrite *rw, Node *n, const char *attr)
{
    const char *old = node_attr(n, attr);
    const char *mapped;

    if (!old)
        return;
    mapped = g_hash_table_lookup(rw->log_paths, old);
    if (!mapped) {
        char *path =
            g_strdup_printf("%s/console%u.log", rw->spec->folder, g_hash_table_size(rw->log_paths));

        g_hash_table_insert(rw->log_paths, g_strdup(old), path);
        mapped = path;
    }
    node_set_attr(n, attr, mapped);
}

/* Serial ports, consoles and channels that name a host path. FALSE: drop the device. */
static gboolean
rewrite_chardev(Rewrite *rw, Node *dev)
{
    const char *type = node_attr(dev, "type");
    Node *source = node_child(dev, "source");
    Node *target = node_child(dev, "target");
    Node *log = node_child(dev, "log");

    if (log)
        map_log_path(rw, log, "file");
    if (!source)
        return TRUE;
    if (g_strcmp0(type, "file") == 0) {
        map_log_path(rw, source, "path");
    } else if (g_strcmp0(type, "unix") == 0 && node_attr(source, "path") &&
               g_strcmp0(node_attr(source, "mode"), "connect") != 0) {
        /* A virtio channel without a path gets one of libvirt's own, per domain (the
         * guest agent's does); another listening socket at a fixed path would be the
         * original's, and QEMU could not create one in our folder on a system host. */
        if (dev->name && strcmp(dev->name, "channel") == 0 && target &&
            g_strcmp0(node_attr(target, "type"), "virtio") == 0) {
            node_unset_attr(source, "path");
            return TRUE;
        }
        note(rw, "%s at %s left out: a listening socket at a fixed path is the original's",
             dev->name, node_attr(source, "path"));
        return FALSE;
    }
    return TRUE;
}

static void
rewrite_graphics(Node *g)
{
    /* Fixed ports or sockets would be the original's: libvirt picks free ones. */
    if (node_attr(g, "port") || node_attr(g, "autoport")) {
        node_unset_attr(g, "port");
        node_unset_attr(g, "tlsPort");
        node_unset_attr(g, "websocket");
        node_set_attr(g, "autoport", "yes");
    }
    node_unset_attr(g, "socket");
    for (guint i = g->children->len; i > 0; i--) {
        Node *c = g_ptr_array_index(g->children, i - 1);

        if (c->name && strcmp(c->name, "listen") == 0 &&
            g_strcmp0(node_attr(c, "type"), "socket") == 0)
            node_unset_attr(c, "socket");
    }
}

/* One device of <devices>. FALSE: it is left out. */
static gboolean
rewrite_device(Rewrite *rw, Node *dev)
{
    const char *name = dev->name;

    if (strcmp(name, "disk") == 0) {
        Node *target = node_child(dev, "target");
        const char *dev_name = target ? node_attr(target, "dev") : NULL;
        const VsCloneXmlDisk *cd = spec_disk(rw->spec, dev_name);

        if (!cd)
            return keep_other_disk(rw, dev, dev_name);
        rewrite_disk(dev, cd);
        g_hash_table_add(rw->seen, (gpointer)cd->target);
        return TRUE;
    }
    if (strcmp(name, "interface") == 0) {
        /* libvirt gives every interface without a <mac> a new one; a fixed tap name
         * would be the original's. */
        node_drop_children(dev, "mac");
        node_drop_children(dev, "target");
        return TRUE;
    }
    if (strcmp(name, "tpm") == 0) {
        note(rw, "TPM left out: its state belongs to the original");
        return FALSE;
    }
    if (strcmp(name, "hostdev") == 0) {
        note(rw, "host device left out: it can belong to one domain only");
        return FALSE;
    }
    if (strcmp(name, "serial") == 0 || strcmp(name, "console") == 0 ||
        strcmp(name, "channel") == 0 || strcmp(name, "parallel") == 0)
        return rewrite_chardev(rw, dev);
    if (strcmp(name, "graphics") == 0)
        rewrite_graphics(dev);
    return TRUE;
}

static void
rewrite_devices(Rewrite *rw, Node *devices)
{
    for (guint i = 0; i < devices->children->len;) {
        Node *dev = g_ptr_array_index(devices->children, i);

        if (dev->name && !rewrite_device(rw, dev)) {
            g_ptr_array_remove_index(devices->children, i);
            continue;
        }
        i++;
    }
}

static gboolean
has_policy_ns(Node *n)
{
    for (guint i = 0; i < n->attr_names->len; i++) {
        if (g_str_has_prefix(g_ptr_array_index(n->attr_names, i), "xmlns") &&
            g_strcmp0(g_ptr_array_index(n->attr_values, i), POLICY_NS) == 0)
            return TRUE;
    }
    return FALSE;
}

static void
rewrite_identity(Rewrite *rw, Node *root)
{
    Node *name = node_child(root, "name");
    Node *uuid = node_child(root, "uuid");
    Node *os = node_child(root, "os");
    Node *metadata = node_child(root, "metadata");

    node_unset_attr(root, "id"); /* a running domain's number, in a live XML */
    if (!name)
        name = node_new("name", root);
    node_set_text(name, rw->spec->name);
    if (!uuid)
        uuid = node_new("uuid", root);
    node_set_text(uuid, rw->spec->uuid);
    /* A fresh NVRAM from the firmware's template; the original's holds its boot entries. */
    if (os && node_drop_children(os, "nvram"))
        note(rw, "NVRAM not copied: the clone starts with a fresh one");
    for (guint i = 0; metadata && i < metadata->children->len;) {
        Node *m = g_ptr_array_index(metadata->children, i);

        if (m->name && has_policy_ns(m)) {
            note(rw, "virtsnap policy not copied: the clone has none of its own yet");
            g_ptr_array_remove_index(metadata->children, i);
            continue;
        }
        i++;
    }
}

char *
vs_clone_xml_rewrite(const char *xml, const VsCloneXmlSpec *spec, GPtrArray *notes, GError **error)
{
    g_autoptr(Node) root = parse(xml, error);
    g_autoptr(GHashTable) log_paths =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
    Rewrite rw = {spec, notes, log_paths, seen};
    Node *devices;
    GString *out;

    if (!root)
        return NULL;
    if (strcmp(root->name, "domain") != 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT,
                    "the snapshot's domain XML has <%s>, not <domain>", root->name);
        return NULL;
    }
    rewrite_identity(&rw, root);
    devices = node_child(root, "devices");
    if (devices)
        rewrite_devices(&rw, devices);
    for (guint i = 0; i < spec->n_disks; i++) {
        if (!g_hash_table_contains(seen, spec->disks[i].target)) {
            g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT,
                        "disk %s of the snapshot is not in its domain XML", spec->disks[i].target);
            return NULL;
        }
    }
    out = g_string_new(NULL);
    write_node(out, root);
    g_string_append_c(out, '\n');
    return g_string_free(out, FALSE);
}
