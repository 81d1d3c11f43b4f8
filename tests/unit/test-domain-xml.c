/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Domain XML parsing: disks, backing chains, mirrors, RBD sources, the agent channel. */
#include "vs-domain-xml.h"
#include "vs-error.h"

/* Shaped like libvirt 9's live XML of a guest in the middle of a block copy. */
static const char live_xml[] =
    "<domain type='qemu' id='3' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n"
    "  <name>guest1</name>\n"
    "  <uuid>0e0f2b52-8c7a-4b8e-9d55-8f3c4a1b2c3d</uuid>\n"
    "  <metadata><vs:policy xmlns:vs='https://virtsnap.org/xmlns/policy/1'><name>x</name>"
    "</vs:policy></metadata>\n"
    "  <devices>\n"
    "    <disk type='file' device='disk'>\n"
    "      <driver name='qemu' type='qcow2'/>\n"
    "      <source file='/images/top.qcow2' index='3'/>\n"
    "      <backingStore type='file' index='2'>\n"
    "        <format type='qcow2'/>\n"
    "        <source file='/images/mid.qcow2'/>\n"
    "        <backingStore type='file' index='1'>\n"
    "          <format type='raw'/>\n"
    "          <source file='/images/base.raw'/>\n"
    "          <backingStore/>\n"
    "        </backingStore>\n"
    "      </backingStore>\n"
    "      <mirror type='file' job='copy' ready='yes'>\n"
    "        <format type='qcow2'/>\n"
    "        <source file='/snap/delta.qcow2'/>\n"
    "      </mirror>\n"
    "      <target dev='vda' bus='virtio'/>\n"
    "      <alias name='virtio-disk0'/>\n"
    "    </disk>\n"
    "    <disk type='block' device='disk'>\n"
    "      <driver name='qemu' type='raw'/>\n"
    "      <source dev='/dev/loop7'/>\n"
    "      <backingStore/>\n"
    "      <target dev='vdb' bus='virtio'/>\n"
    "    </disk>\n"
    "    <disk type='network' device='disk'>\n"
    "      <driver name='qemu' type='raw'/>\n"
    "      <auth username='admin'><secret type='ceph' uuid='5b5c0a1e-1111-2222-3333-444455556666'/>"
    "</auth>\n"
    "      <source protocol='rbd' name='rbdpool/vol1'>\n"
    "        <host name='127.0.0.1' port='6789'/>\n"
    "        <host name='mon2'/>\n"
    "        <config file='/etc/ceph/lab.conf'/>\n"
    "      </source>\n"
    "      <target dev='vdc' bus='virtio'/>\n"
    "    </disk>\n"
    "    <disk type='file' device='cdrom'>\n"
    "      <driver name='qemu' type='raw'/>\n"
    "      <source file='/iso/install.iso'/>\n"
    "      <target dev='sda' bus='sata'/>\n"
    "      <readonly/>\n"
    "    </disk>\n"
    "    <disk type='file' device='disk'>\n"
    "      <driver name='qemu' type='qcow2'/>\n"
    "      <source file='/images/secret.qcow2'>\n"
    "        <encryption format='luks'><secret type='passphrase' uuid='x'/></encryption>\n"
    "      </source>\n"
    "      <target dev='vdd' bus='virtio'/>\n"
    "    </disk>\n"
    "    <channel type='unix'>\n"
    "      <source mode='bind' path='/run/agent.sock'/>\n"
    "      <target type='virtio' name='org.qemu.guest_agent.0' state='connected'/>\n"
    "    </channel>\n"
    "  </devices>\n"
    "</domain>\n";

static void
test_disks(void)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VsDomainXml) dx = vs_domain_xml_parse(live_xml, &error);
    VsDisk *vda, *vdb, *vdc, *sda, *vdd;
    VsBacking *b;

    g_assert_no_error(error);
    g_assert_cmpstr(dx->name, ==, "guest1");
    g_assert_cmpstr(dx->uuid, ==, "0e0f2b52-8c7a-4b8e-9d55-8f3c4a1b2c3d");
    g_assert_cmpuint(dx->disks->len, ==, 5);
    g_assert_true(dx->agent_channel);
    g_assert_true(dx->agent_connected);

    vda = vs_domain_xml_find_disk(dx, "vda");
    g_assert_cmpstr(vda->source, ==, "/images/top.qcow2"); /* not the mirror's source */
    g_assert_cmpstr(vda->format, ==, "qcow2");
    g_assert_true(vda->mirror);
    g_assert_true(vda->mirror_ready);
    g_assert_cmpstr(vda->mirror_source, ==, "/snap/delta.qcow2");
    g_assert_cmpuint(vda->backing->len, ==, 2);
    b = g_ptr_array_index(vda->backing, 0);
    g_assert_cmpstr(b->path, ==, "/images/mid.qcow2");
    g_assert_cmpstr(b->format, ==, "qcow2");
    b = g_ptr_array_index(vda->backing, 1);
    g_assert_cmpstr(b->path, ==, "/images/base.raw");
    g_assert_cmpstr(b->format, ==, "raw");
    g_assert_true(vs_disk_is_local_image(vda));

    vdb = vs_domain_xml_find_disk(dx, "vdb");
    g_assert_cmpstr(vdb->type, ==, "block");
    g_assert_cmpstr(vdb->source, ==, "/dev/loop7");
    g_assert_cmpuint(vdb->backing->len, ==, 0);
    g_assert_false(vs_disk_is_local_image(vdb));

    vdc = vs_domain_xml_find_disk(dx, "vdc");
    g_assert_cmpstr(vdc->protocol, ==, "rbd");
    g_assert_cmpstr(vdc->source, ==, "rbdpool/vol1");
    g_assert_cmpuint(vdc->hosts->len, ==, 2);
    g_assert_cmpstr(g_ptr_array_index(vdc->hosts, 0), ==, "127.0.0.1:6789");
    g_assert_cmpstr(g_ptr_array_index(vdc->hosts, 1), ==, "mon2");
    g_assert_cmpstr(vdc->auth_user, ==, "admin");
    g_assert_cmpstr(vdc->secret_uuid, ==, "5b5c0a1e-1111-2222-3333-444455556666");
    g_assert_cmpstr(vdc->config_file, ==, "/etc/ceph/lab.conf");
    g_assert_false(vs_disk_is_local_image(vdc));

    sda = vs_domain_xml_find_disk(dx, "sda");
    g_assert_cmpstr(sda->device, ==, "cdrom");
    g_assert_true(sda->readonly);
    g_assert_false(vs_disk_is_local_image(sda));

    vdd = vs_domain_xml_find_disk(dx, "vdd");
    g_assert_true(vdd->encrypted);
    g_assert_cmpstr(vdd->encryption_format, ==, "luks");
    g_assert_cmpstr(vdd->encryption_secret, ==, "x");
    g_assert_null(vdd->encryption_usage);
    g_assert_null(vs_domain_xml_find_disk(dx, "vdz"));
}

static void
test_variant(void)
{
    g_autoptr(VsDomainXml) dx = vs_domain_xml_parse(live_xml, NULL);
    g_autoptr(GVariant) v = g_variant_ref_sink(vs_disk_to_variant(g_ptr_array_index(dx->disks, 0)));
    g_autofree const char **chain = NULL;

    g_assert_true(g_variant_lookup(v, "backing-chain", "^a&s", &chain));
    g_assert_cmpuint(g_strv_length((char **)chain), ==, 2);
    g_assert_cmpstr(chain[1], ==, "/images/base.raw");
}

static void
test_inactive_agent(void)
{
    const char *xml = "<domain><name>a</name><devices><channel type='unix'>"
                      "<target type='virtio' name='org.qemu.guest_agent.0'/></channel>"
                      "<disk type='file'><source file='/x'/><target dev='hda'/></disk>"
                      "</devices></domain>";
    g_autoptr(VsDomainXml) dx = vs_domain_xml_parse(xml, NULL);
    VsDisk *hda = g_ptr_array_index(dx->disks, 0);

    g_assert_true(dx->agent_channel);
    g_assert_false(dx->agent_connected);
    g_assert_cmpstr(hda->device, ==, "disk");
    g_assert_cmpstr(hda->format, ==, ""); /* no <driver>: unknown, so not copyable */
    g_assert_false(vs_disk_is_local_image(hda));
}

static void
test_malformed(void)
{
    static const char *const bad[] = {
        "",
        "<domain><name>x</name>",
        "<domain><devices/></domain>",
        ("<domain><name>x</name><devices><disk type='file'><source file='/a'/></disk>"
         "</devices></domain>"),
        "not xml at all",
    };

    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autoptr(GError) error = NULL;
        g_autoptr(VsDomainXml) dx = vs_domain_xml_parse(bad[i], &error);

        g_assert_null(dx);
        g_assert_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT);
    }
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/domain-xml/disks", test_disks);
    g_test_add_func("/domain-xml/variant", test_variant);
    g_test_add_func("/domain-xml/inactive-agent", test_inactive_agent);
    g_test_add_func("/domain-xml/malformed", test_malformed);
    return g_test_run();
}
