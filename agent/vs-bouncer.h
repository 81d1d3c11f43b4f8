/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Who may call what: one deny-by-default table from every D-Bus method to its rule,
 * checked in one place (the skeletons' g-authorize-method) before any handler runs. */
#pragma once

#include <gio/gio.h>
#include <sys/types.h>

G_BEGIN_DECLS

typedef enum {
    VS_AUTH_READ,   /* read-only: anyone the bus policy lets through */
    VS_AUTH_POLKIT, /* root; others by the polkit action (without polkitd: group libvirt) */
    VS_AUTH_ROOT,   /* uid 0 (the agent's own uid) only */
} VsAuthKind;

typedef struct {
    const char *interface;
    const char *method;
    VsAuthKind kind;
    const char *action; /* VS_AUTH_POLKIT only */
} VsAuthRule;

/* The table, for tests and documentation. */
const VsAuthRule *vs_bouncer_get_rules(gsize *n_rules);

/* The rule of @interface.@method, or NULL: not in the table, so denied. */
const VsAuthRule *vs_bouncer_lookup(const char *interface, const char *method);

/* The rule used where polkitd is not on the bus: @credentials (a{sv} as from
 * org.freedesktop.DBus.GetConnectionCredentials) name uid 0, @self_uid (the agent's own
 * user, 0 in production) or a member of @group (from UnixGroupIDs, else getgrouplist()).
 * May block on NSS: call it off the main loop. */
gboolean vs_bouncer_credentials_allow(GVariant *credentials, uid_t self_uid, const char *group);

#define VS_TYPE_BOUNCER (vs_bouncer_get_type())
G_DECLARE_FINAL_TYPE(VsBouncer, vs_bouncer, VS, BOUNCER, GObject)

/* A bouncer that answers on the calling thread's default main context. */
VsBouncer *vs_bouncer_new(void);

/* Puts @skeleton's method calls under the table: read-only ones go on at once, the
 * others after an asynchronous check, the rest are refused with PermissionDenied.
 * Call it before the skeleton is exported. */
void vs_bouncer_guard(VsBouncer *self, GDBusInterfaceSkeleton *skeleton);

G_END_DECLS
