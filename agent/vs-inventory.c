/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Builds ListDomains' answer straight from libvirt, so that it is never stale:
 * one list call, then state, flags and live XML per domain. */
#include "vs-inventory.h"
#include "vs-domain-xml.h"
#include "vs-error.h"
#include "vs-virt-util.h"

GVariant *
vs_inventory_describe(virDomainPtr dom, GError **error)
{
    char uuid[VIR_UUID_STRING_BUFLEN] = "";
    g_autofree char *xml = NULL;
    g_autoptr(VsDomainXml) dx = NULL;
    GVariantBuilder b, disks;
    int state = 0, reason = 0, autostart = 0, persistent, managed_save;
    unsigned int id;

    if (virDomainGetState(dom, &state, &reason, 0) < 0 || virDomainGetUUIDString(dom, uuid) < 0 ||
        (persistent = virDomainIsPersistent(dom)) < 0 ||
        (managed_save = virDomainHasManagedSaveImage(dom, 0)) < 0 ||
        !(xml = virDomainGetXMLDesc(dom, 0)))
        return vs_set_libvirt_error(error, "reading domain '%s'", virDomainGetName(dom)), NULL;
    if (persistent)
        virDomainGetAutostart(dom, &autostart);
    if (!(dx = vs_domain_xml_parse(xml, error)))
        return NULL;

    id = virDomainGetID(dom);
    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&b, "{sv}", "name", g_variant_new_string(virDomainGetName(dom)));
    g_variant_builder_add(&b, "{sv}", "uuid", g_variant_new_string(uuid));
    g_variant_builder_add(&b, "{sv}", "id",
                          g_variant_new_int32(id == (unsigned int)-1 ? -1 : (gint32)id));
    g_variant_builder_add(&b, "{sv}", "state", g_variant_new_string(vs_domain_state_name(state)));
    g_variant_builder_add(&b, "{sv}", "persistent", g_variant_new_boolean(persistent));
    g_variant_builder_add(&b, "{sv}", "autostart", g_variant_new_boolean(autostart));
    g_variant_builder_add(&b, "{sv}", "has-managed-save", g_variant_new_boolean(managed_save));
    g_variant_builder_add(&b, "{sv}", "agent-channel", g_variant_new_boolean(dx->agent_channel));
    g_variant_builder_add(&b, "{sv}", "agent-connected",
                          g_variant_new_boolean(dx->agent_connected));
    g_variant_builder_init(&disks, G_VARIANT_TYPE("aa{sv}"));
    for (guint i = 0; i < dx->disks->len; i++)
        g_variant_builder_add_value(&disks, vs_disk_to_variant(g_ptr_array_index(dx->disks, i)));
    g_variant_builder_add(&b, "{sv}", "disks", g_variant_builder_end(&disks));
    return g_variant_builder_end(&b);
}

GVariant *
vs_inventory_list(virConnectPtr conn, GError **error)
{
    virDomainPtr *doms = NULL;
    GVariantBuilder b;
    gboolean failed = FALSE;
    int n = virConnectListAllDomains(conn, &doms, 0);

    if (n < 0)
        return vs_set_libvirt_error(error, "listing domains"), NULL;

    g_variant_builder_init(&b, G_VARIANT_TYPE("aa{sv}"));
    for (int i = 0; i < n; i++) {
        g_autoptr(GError) local = NULL;
        GVariant *entry = NULL;

        if (!failed)
            entry = vs_inventory_describe(doms[i], &local);
        if (entry) {
            g_variant_builder_add_value(&b, entry);
        } else if (local && g_error_matches(local, VS_ERROR, VS_ERROR_NOT_CONNECTED)) {
            g_propagate_error(error, g_steal_pointer(&local));
            failed = TRUE;
        } else if (local && !g_error_matches(local, VS_ERROR, VS_ERROR_NO_SUCH_DOMAIN)) {
            g_warning("%s", local->message); /* listed, then gone: not an error */
        }
        virDomainFree(doms[i]);
    }
    g_free(doms);
    if (failed) {
        g_variant_builder_clear(&b);
        return NULL;
    }
    return g_variant_builder_end(&b);
}
