/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The clone's domain XML: new identity, disks on the clone's images, nothing shared with
 * the original (MACs, NVRAM, TPM, console logs, fixed sockets and ports, writable disks
 * outside the snapshot), checked by parsing the result back. */
#include "vs-clone-xml.h"
#include "vs-domain-xml.h"
#include "vs-error.h"

#include <string.h>

/* Shaped like libvirt 9's inactive XML of a lab guest (tests/lab/lab.py), with the devices
 * a desktop or server guest adds. */
static const char saved_xml[] =
    "<domain type='qemu'>\n"
    "  <name>web</name>\n"
    "  <uuid>0e0f2b52-8c7a-4b8e-9d55-8f3c4a1b2c3d</uuid>\n"
    "  <metadata>\n"
    "    <virtsnap:policy xmlns:virtsnap=\"https://virtsnap.org/xmlns/policy/1\">\n"
    "      <virtsnap:every>6h</virtsnap:every>\n"
    "    </virtsnap:policy>\n"
    "    <app:info xmlns:app='https://example.org/app'>kept &amp; sound</app:info>\n"
    "  </metadata>\n"
    "  <memory unit='KiB'>262144</memory>\n"
    "  <os>\n"
    "    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>\n"
    "    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>\n"
    "    <nvram>/var/lib/libvirt/qemu/nvram/web_VARS.fd</nvram>\n"
    "    <kernel>/assets/vmlinuz</kernel>\n"
    "    <cmdline>console=ttyS0 quiet</cmdline>\n"
    "  </os>\n"
    "  <devices>\n"
    "    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n"
    "    <disk type='file' device='disk'>\n"
    "      <driver name='qemu' type='qcow2' cache='none'/>\n"
    "      <source file='/images/web.qcow2'/>\n"
    "      <backingStore type='file'>\n"
    "        <format type='qcow2'/>\n"
    "        <source file='/images/web-base.qcow2'/>\n"
    "      </backingStore>\n"
    "      <target dev='vda' bus='virtio'/>\n"
    "      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>\n"
    "    </disk>\n"
    "    <disk type='block' device='disk'>\n"
    "      <driver name='qemu' type='raw'/>\n"
    "      <source dev='/dev/vg0/web-data'/>\n"
    "      <target dev='vdb' bus='virtio'/>\n"
    "    </disk>\n"
    "    <disk type='file' device='disk'>\n"
    "      <driver name='qemu' type='raw'/>\n"
    "      <source file='/images/scratch.raw'/>\n"
    "      <target dev='vdc' bus='virtio'/>\n"
    "    </disk>\n"
    "    <disk type='file' device='cdrom'>\n"
    "      <driver name='qemu' type='raw'/>\n"
    "      <source file='/iso/install.iso'/>\n"
    "      <target dev='sda' bus='sata'/>\n"
    "      <readonly/>\n"
    "    </disk>\n"
    "    <interface type='network'>\n"
    "      <mac address='52:54:00:12:34:56'/>\n"
    "      <source network='default'/>\n"
    "      <target dev='web-tap0'/>\n"
    "      <model type='virtio'/>\n"
    "    </interface>\n"
    "    <serial type='file'>\n"
    "      <source path='/var/log/web-console.log' append='on'/>\n"
    "      <target type='isa-serial' port='0'/>\n"
    "    </serial>\n"
    "    <console type='file'>\n"
    "      <source path='/var/log/web-console.log' append='on'/>\n"
    "      <target type='serial' port='0'/>\n"
    "    </console>\n"
    "    <serial type='unix'>\n"
    "      <source mode='bind' path='/run/web-serial1.sock'/>\n"
    "      <target port='1'/>\n"
    "    </serial>\n"
    "    <channel type='unix'>\n"
    "      <source mode='bind' path='/var/lib/libvirt/qemu/channel/target/web.agent'/>\n"
    "      <target type='virtio' name='org.qemu.guest_agent.0'/>\n"
    "    </channel>\n"
    "    <graphics type='vnc' port='5901' autoport='no' listen='127.0.0.1'>\n"
    "      <listen type='address' address='127.0.0.1'/>\n"
    "    </graphics>\n"
    "    <tpm model='tpm-crb'>\n"
    "      <backend type='emulator' version='2.0'/>\n"
    "    </tpm>\n"
    "    <memballoon model='none'/>\n"
    "  </devices>\n"
    "</domain>\n";

static const char rbd_xml[] =
    "<domain type='qemu' id='7'>\n"
    "  <name>db</name>\n"
    "  <uuid>11111111-2222-3333-4444-555555555555</uuid>\n"
    "  <devices>\n"
    "    <disk type='network' device='disk'>\n"
    "      <driver name='qemu' type='raw' cache='none'/>\n"
    "      <auth username='admin'>\n"
    "        <secret type='ceph' uuid='aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee'/>\n"
    "      </auth>\n"
    "      <source protocol='rbd' name='vs/img'>\n"
    "        <host name='127.0.0.1' port='6789'/>\n"
    "        <config file='/etc/ceph/lab.conf'/>\n"
    "      </source>\n"
    "      <target dev='vda' bus='virtio'/>\n"
    "    </disk>\n"
    "  </devices>\n"
    "</domain>\n";

#define CLONE_UUID "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"

static gboolean
notes_have(GPtrArray *notes, const char *part)
{
    for (guint i = 0; i < notes->len; i++) {
        if (strstr(g_ptr_array_index(notes, i), part))
            return TRUE;
    }
    return FALSE;
}

static void
test_file_clone(void)
{
    const VsCloneXmlDisk disks[] = {
        {"vda", "/snap/clones/web2/vda.qcow2", NULL},
        {"vdb", "/snap/clones/web2/vdb.qcow2", NULL},
    };
    VsCloneXmlSpec spec = {"web2", CLONE_UUID, "/snap/clones/web2", disks, G_N_ELEMENTS(disks)};
    g_autoptr(GPtrArray) notes = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) error = NULL;
    g_autofree char *xml = vs_clone_xml_rewrite(saved_xml, &spec, notes, &error);
    g_autoptr(VsDomainXml) dx = NULL;
    VsDisk *d;

    g_assert_no_error(error);
    g_assert_nonnull(xml);
    /* It reads back as a domain, with the clone's identity. */
    dx = vs_domain_xml_parse(xml, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(dx->name, ==, "web2");
    g_assert_cmpstr(dx->uuid, ==, CLONE_UUID);
    g_assert_true(dx->agent_channel);

    /* The snapshotted disks are the clone's qcow2 images, with no chain of the original. */
    g_assert_cmpuint(dx->disks->len, ==, 3);
    d = vs_domain_xml_find_disk(dx, "vda");
    g_assert_cmpstr(d->type, ==, "file");
    g_assert_cmpstr(d->format, ==, "qcow2");
    g_assert_cmpstr(d->source, ==, "/snap/clones/web2/vda.qcow2");
    g_assert_cmpuint(d->backing->len, ==, 0);
    g_assert_nonnull(strstr(xml, "cache='none'")); /* the rest of the driver stays */
    g_assert_nonnull(strstr(xml, "slot='0x04'"));
    /* A block device that was snapshotted becomes a file disk on the clone's image. */
    d = vs_domain_xml_find_disk(dx, "vdb");
    g_assert_cmpstr(d->type, ==, "file");
    g_assert_cmpstr(d->source, ==, "/snap/clones/web2/vdb.qcow2");
    g_assert_null(strstr(xml, "/dev/vg0/web-data"));
    /* A writable disk outside the snapshot would be shared: left out, and said so. */
    g_assert_null(vs_domain_xml_find_disk(dx, "vdc"));
    g_assert_null(strstr(xml, "scratch.raw"));
    g_assert_true(notes_have(notes, "disk vdc (/images/scratch.raw) left out"));
    /* A read-only CD-ROM is harmless to share. */
    g_assert_cmpstr(vs_domain_xml_find_disk(dx, "sda")->source, ==, "/iso/install.iso");

    /* Nothing of the original's identity or state. */
    g_assert_null(strstr(xml, "0e0f2b52"));
    g_assert_null(strstr(xml, "52:54:00:12:34:56"));
    g_assert_null(strstr(xml, "<mac"));
    g_assert_null(strstr(xml, "web-tap0"));
    g_assert_nonnull(strstr(xml, "<source network='default'/>"));
    g_assert_null(strstr(xml, "nvram"));
    g_assert_true(notes_have(notes, "NVRAM"));
    g_assert_nonnull(strstr(xml, "OVMF_CODE.fd")); /* the firmware itself is read-only */
    g_assert_null(strstr(xml, "<tpm"));
    g_assert_true(notes_have(notes, "TPM"));
    g_assert_null(strstr(xml, "virtsnap:policy"));
    g_assert_nonnull(strstr(xml, "kept &amp; sound"));

    /* Console logs: the clone's own file, the same one for serial and console. */
    g_assert_null(strstr(xml, "/var/log/web-console.log"));
    g_assert_nonnull(strstr(xml, "<source path='/snap/clones/web2/console0.log' append='on'/>"));
    g_assert_nonnull(strstr(strstr(xml, "<console"), "/snap/clones/web2/console0.log"));
    /* A fixed listening socket goes; the agent channel gets libvirt's own path. */
    g_assert_null(strstr(xml, "web-serial1.sock"));
    g_assert_true(notes_have(notes, "web-serial1.sock"));
    g_assert_null(strstr(xml, "web.agent"));
    g_assert_nonnull(strstr(xml, "name='org.qemu.guest_agent.0'"));
    /* A fixed VNC port would be the original's. */
    g_assert_null(strstr(xml, "5901"));
    g_assert_nonnull(strstr(xml, "autoport='yes'"));
    g_assert_nonnull(strstr(xml, "<cmdline>console=ttyS0 quiet</cmdline>"));
}

static void
test_rbd_clone(void)
{
    const VsCloneXmlDisk disks[] = {{"vda", NULL, "vsdest/db2-vda"}};
    VsCloneXmlSpec spec = {"db2", CLONE_UUID, "/snap/clones/db2", disks, 1};
    g_autoptr(GError) error = NULL;
    g_autofree char *xml = vs_clone_xml_rewrite(rbd_xml, &spec, NULL, &error);
    g_autoptr(VsDomainXml) dx = NULL;
    VsDisk *d;

    g_assert_no_error(error);
    dx = vs_domain_xml_parse(xml, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(dx->name, ==, "db2");
    d = vs_domain_xml_find_disk(dx, "vda");
    g_assert_cmpstr(d->type, ==, "network");
    g_assert_cmpstr(d->protocol, ==, "rbd");
    g_assert_cmpstr(d->source, ==, "vsdest/db2-vda");
    /* The way to the cluster stays. */
    g_assert_cmpstr(d->auth_user, ==, "admin");
    g_assert_cmpstr(d->secret_uuid, ==, "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee");
    g_assert_cmpstr(d->config_file, ==, "/etc/ceph/lab.conf");
    g_assert_cmpuint(d->hosts->len, ==, 1);
    /* A live XML's running id does not travel. */
    g_assert_null(strstr(xml, "id='7'"));
}

static void
test_bad_input(void)
{
    const VsCloneXmlDisk missing[] = {{"vdz", "/snap/clones/x/vdz.qcow2", NULL}};
    VsCloneXmlSpec spec = {"x", CLONE_UUID, "/snap/clones/x", missing, 1};
    g_autoptr(GError) error = NULL;
    char *xml;

    /* Every disk of the snapshot must be in its XML: a clone never silently lacks one. */
    xml = vs_clone_xml_rewrite(saved_xml, &spec, NULL, &error);
    g_assert_null(xml);
    g_assert_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT);
    g_assert_nonnull(strstr(error->message, "vdz"));
    g_clear_error(&error);

    spec.n_disks = 0;
    g_assert_null(vs_clone_xml_rewrite("<domain><name>x</name>", &spec, NULL, &error));
    g_assert_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT);
    g_clear_error(&error);
    g_assert_null(vs_clone_xml_rewrite("<network><name>x</name></network>", &spec, NULL, &error));
    g_assert_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/clone-xml/file", test_file_clone);
    g_test_add_func("/clone-xml/rbd", test_rbd_clone);
    g_test_add_func("/clone-xml/bad-input", test_bad_input);
    return g_test_run();
}
