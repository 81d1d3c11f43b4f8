/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A domain's snapshot policy, kept in the domain's own XML <metadata> (namespace
 * VS_POLICY_NS) so that it travels with the domain: parsing, formatting, and reading
 * and writing it there. */
#pragma once

#include <glib.h>
#include <libvirt/libvirt.h>

G_BEGIN_DECLS

#define VS_POLICY_NS     "https://virtsnap.org/xmlns/policy/1"
#define VS_POLICY_PREFIX "virtsnap"

typedef struct {
    gboolean on_stop; /* take an offline snapshot after the domain stops */
    guint64 every_s;  /* timed live snapshots while running; 0: none */
    guint keep;       /* keep the newest N snapshots of the domain; 0: all */
    char *quiesce;    /* NULL: the default */
    char *method;
    char *format;
} VsPolicy;

VsPolicy *vs_policy_new(void);
void vs_policy_free(VsPolicy *policy);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsPolicy, vs_policy_free)

/* From the <policy> element libvirt hands back (any namespace prefix). Unknown or bad
 * keys are VS_ERROR_INVALID_ARGUMENT naming them. */
VsPolicy *vs_policy_parse(const char *xml, GError **error);

/* The <policy> element to hand to virDomainSetMetadata (no namespace: libvirt adds it). */
char *vs_policy_to_xml(const VsPolicy *policy);

/* Sets one key from the user's words ("every", "6h"); "" or "none" clears it. */
gboolean vs_policy_set(VsPolicy *policy, const char *key, const char *value, GError **error);

/* The settings as words (a{ss}), only those that are set. Floating. */
GVariant *vs_policy_to_variant(const VsPolicy *policy);

gboolean vs_policy_is_empty(const VsPolicy *policy);

/* "90", "30s", "15m", "6h", "2d" -> seconds; FALSE for anything else or 0. */
gboolean vs_parse_duration(const char *text, guint64 *seconds);

/* Reads a domain's policy from its metadata (blocking: a worker thread). An absent
 * policy is an empty one; an unreadable one is NULL with the reason in @error. */
VsPolicy *vs_policy_read(virDomainPtr dom, GError **error);

/* Writes (or, for an empty policy, removes) it (blocking). */
gboolean vs_policy_write(virDomainPtr dom, const VsPolicy *policy, GError **error);

/* GetPolicy's reply, (a{ss}s): the settings, and why they are not used (or ""). */
GVariant *vs_policy_get_reply(virDomainPtr dom);

/* SetPolicy (@settings a{ss} onto the stored policy) and ClearPolicy (@clear: from empty,
 * then @settings if any). An unreadable stored policy is replaced. Blocking. */
gboolean vs_policy_update(virDomainPtr dom, GVariant *settings, gboolean clear, GError **error);

G_END_DECLS
