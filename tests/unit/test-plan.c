/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vs-plan.c's choice of disks and method from a domain's XML and state: offline, cold,
 * rbd or live, and the refusals, each with the reason the caller sees. */
#include "vs-error.h"
#include "vs-plan.h"

#include <string.h>

#define FILE_DISK(dev, path)                                                                       \
    "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"                           \
    "<source file='" path "'/><target dev='" dev "' bus='virtio'/></disk>"
#define BLOCK_DISK(dev, path)                                                                      \
    "<disk type='block' device='disk'><driver name='qemu' type='raw'/>"                            \
    "<source dev='" path "'/><target dev='" dev "' bus='virtio'/></disk>"
#define RBD_DISK(dev, name)                                                                        \
    "<disk type='network' device='disk'><driver name='qemu' type='raw'/>"                          \
    "<source protocol='rbd' name='" name "'><host name='mon1' port='6789'/></source>"              \
    "<target dev='" dev "' bus='virtio'/></disk>"
#define CDROM(dev)                                                                                 \
    "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>"                            \
    "<source file='/iso/install.iso'/><target dev='" dev "' bus='sata'/><readonly/></disk>"
#define DOMAIN(disks)                                                                              \
    "<domain type='qemu'><name>vm1</name><uuid>0e0f2b52-8c7a-4b8e-9d55-8f3c4a1b2c3d</uuid>"        \
    "<devices>" disks "</devices></domain>"

typedef struct {
    gboolean block_jobs; /* what the probe answers */
    guint probes;        /* how often it was asked */
} Probe;

static gboolean
probe_block_jobs(gpointer data, const char *target)
{
    Probe *p = data;

    g_assert_cmpstr(target, !=, NULL);
    p->probes++;
    return p->block_jobs;
}

typedef struct {
    const char *xml;
    int state; /* virDomainState */
    VsMethod asked;
    gboolean block_jobs;
} Case;

/* Runs the choice; returns the plan (NULL on refusal, with @error set). */
static VsPlan *
choose(const Case *c, Probe *probe, GError **error)
{
    g_autoptr(VsPlan) plan = g_new0(VsPlan, 1);
    g_autoptr(VsDomainXml) dx = vs_domain_xml_parse(c->xml, NULL);
    g_autoptr(GPtrArray) chosen = g_ptr_array_new();
    g_auto(VsSnapshotOptions) opts;

    g_assert_nonnull(dx);
    plan->disks = g_ptr_array_new();
    plan->name = g_strdup("vm1");
    plan->state = c->state;
    vs_snapshot_options_init(&opts);
    opts.method = c->asked;
    probe->block_jobs = c->block_jobs;
    if (!vs_plan_choose(plan, dx, &opts, probe_block_jobs, probe, chosen, error))
        return NULL;
    g_assert_cmpuint(chosen->len, >, 0);
    return g_steal_pointer(&plan);
}

static void
expect_method(const Case *c, VsMethod method, const char *reason_part, guint probes)
{
    g_autoptr(GError) error = NULL;
    Probe probe = {0};
    g_autoptr(VsPlan) plan = choose(c, &probe, &error);

    g_assert_no_error(error);
    g_assert_nonnull(plan);
    g_assert_cmpstr(vs_method_name(plan->method), ==, vs_method_name(method));
    if (!strstr(plan->method_reason, reason_part))
        g_error("reason '%s' lacks '%s'", plan->method_reason, reason_part);
    g_assert_cmpuint(probe.probes, ==, probes);
}

static void
expect_refused(const Case *c, int code, const char *message_part)
{
    g_autoptr(GError) error = NULL;
    Probe probe = {0};
    g_autoptr(VsPlan) plan = choose(c, &probe, &error);

    g_assert_null(plan);
    g_assert_error(error, VS_ERROR, code);
    if (!strstr(error->message, message_part))
        g_error("message '%s' lacks '%s'", error->message, message_part);
}

static const char files_xml[] =
    DOMAIN(FILE_DISK("vda", "/img/a.qcow2") FILE_DISK("vdb", "/img/b.qcow2"));
static const char block_xml[] =
    DOMAIN(FILE_DISK("vda", "/img/a.qcow2") BLOCK_DISK("vdb", "/dev/vg0/data"));
static const char rbd_xml[] =
    DOMAIN(RBD_DISK("vda", "pool/vm1-root") RBD_DISK("vdb", "pool/vm1-data"));
static const char mixed_xml[] =
    DOMAIN(RBD_DISK("vda", "pool/vm1-root") FILE_DISK("vdb", "/img/b.qcow2"));

/* One case and what it must give: a method with words of its reason, or a refusal. */
typedef struct {
    Case c;
    int method; /* VsMethod, or REFUSED */
    int code;   /* VsError, when refused */
    const char *text;
    guint probes; /* block-job probes expected, when chosen */
} Row;

#define REFUSED (-1)

static void
run_rows(const Row *rows, gsize n)
{
    for (gsize i = 0; i < n; i++) {
        if (rows[i].method == REFUSED)
            expect_refused(&rows[i].c, rows[i].code, rows[i].text);
        else
            expect_method(&rows[i].c, rows[i].method, rows[i].text, rows[i].probes);
    }
}

/* method=auto: what the domain's state and disks allow. Shut off is offline (disks read
 * as they are, no save, no probe); a block device or LVM volume has no place for the
 * mirror's delta. */
/* clang-format off */
static const Row auto_rows[] = {
    {{files_xml, VIR_DOMAIN_SHUTOFF, VS_METHOD_AUTO, TRUE},
     VS_METHOD_COLD, 0, "domain is shutoff: disks read directly, no save", 0},
    {{files_xml, VIR_DOMAIN_RUNNING, VS_METHOD_AUTO, TRUE},
     VS_METHOD_LIVE, 0, "every disk is a local file: live copy", 1},
    {{files_xml, VIR_DOMAIN_PAUSED, VS_METHOD_AUTO, TRUE},
     VS_METHOD_LIVE, 0, "live copy", 1},
    {{files_xml, VIR_DOMAIN_RUNNING, VS_METHOD_AUTO, FALSE},
     VS_METHOD_COLD, 0, "CONFIG_UNSUPPORTED", 1},
    {{block_xml, VIR_DOMAIN_RUNNING, VS_METHOD_AUTO, TRUE},
     VS_METHOD_COLD, 0,
     "disk vdb is a block device (/dev/vg0/data), which a live copy cannot handle", 0},
    {{rbd_xml, VIR_DOMAIN_RUNNING, VS_METHOD_AUTO, TRUE},
     VS_METHOD_RBD, 0, "every disk lives in Ceph RBD", 0},
    {{rbd_xml, VIR_DOMAIN_SHUTOFF, VS_METHOD_AUTO, TRUE},
     VS_METHOD_RBD, 0, "every disk lives in Ceph RBD", 0},
};

/* An explicit method is taken when it can work, refused with the reason when not. */
static const Row asked_rows[] = {
    {{files_xml, VIR_DOMAIN_RUNNING, VS_METHOD_LIVE, TRUE},
     VS_METHOD_LIVE, 0, "asked for: live copy", 1},
    {{block_xml, VIR_DOMAIN_RUNNING, VS_METHOD_LIVE, TRUE},
     REFUSED, VS_ERROR_UNSUPPORTED,
     "disk vdb is a block device (/dev/vg0/data): a live copy is impossible "
     "(method=cold would work)", 0},
    {{files_xml, VIR_DOMAIN_SHUTOFF, VS_METHOD_LIVE, TRUE},
     REFUSED, VS_ERROR_NOT_RUNNING, "domain 'vm1' is shutoff", 0},
    {{files_xml, VIR_DOMAIN_RUNNING, VS_METHOD_LIVE, FALSE},
     REFUSED, VS_ERROR_UNSUPPORTED, "does no block copy for 'vm1'", 0},
    {{files_xml, VIR_DOMAIN_RUNNING, VS_METHOD_COLD, TRUE},
     VS_METHOD_COLD, 0, "asked for: managed save", 0},
    {{files_xml, VIR_DOMAIN_SHUTOFF, VS_METHOD_COLD, TRUE},
     VS_METHOD_COLD, 0, "domain is not running: disks read directly", 0},
    {{files_xml, VIR_DOMAIN_RUNNING, VS_METHOD_RBD, TRUE},
     REFUSED, VS_ERROR_UNSUPPORTED, "method=rbd needs disks in Ceph RBD", 0},
    {{rbd_xml, VIR_DOMAIN_RUNNING, VS_METHOD_RBD, TRUE},
     VS_METHOD_RBD, 0, "snapshot and clone in the cluster", 0},
    {{rbd_xml, VIR_DOMAIN_RUNNING, VS_METHOD_LIVE, TRUE},
     REFUSED, VS_ERROR_UNSUPPORTED, "disks vda, vdb live in Ceph RBD", 0},
    {{rbd_xml, VIR_DOMAIN_SHUTOFF, VS_METHOD_COLD, TRUE},
     REFUSED, VS_ERROR_UNSUPPORTED, "use method=rbd (or auto)", 0},
};
/* clang-format on */

static void
test_auto(void)
{
    run_rows(auto_rows, G_N_ELEMENTS(auto_rows));
}

static void
test_asked(void)
{
    run_rows(asked_rows, G_N_ELEMENTS(asked_rows));
}

/* RBD and local disks together: one method that cuts both in one window, or a refusal,
 * never two points in time. */
static const char mixed_block_xml[] =
    DOMAIN(RBD_DISK("vda", "pool/vm1-root") BLOCK_DISK("vdb", "/dev/vg0/data"));

/* clang-format off */
static const Row mixed_rows[] = {
    {{mixed_xml, VIR_DOMAIN_RUNNING, VS_METHOD_AUTO, TRUE},
     VS_METHOD_MIXED, 0, "RBD disks (vda) snapshotted in the cluster and local disks (vdb) "
     "copied live, cut in one freeze window", 1},
    {{mixed_xml, VIR_DOMAIN_PAUSED, VS_METHOD_MIXED, TRUE},
     VS_METHOD_MIXED, 0, "cut in one freeze window", 1},
    {{mixed_xml, VIR_DOMAIN_SHUTOFF, VS_METHOD_AUTO, TRUE},
     REFUSED, VS_ERROR_NOT_RUNNING, "domain 'vm1' is shutoff: a snapshot of RBD disks (vda) "
     "and local disks (vdb) together copies the local ones live", 0},
    {{mixed_xml, VIR_DOMAIN_RUNNING, VS_METHOD_AUTO, FALSE},
     REFUSED, VS_ERROR_UNSUPPORTED, "does no block copy for 'vm1'", 0},
    {{mixed_block_xml, VIR_DOMAIN_RUNNING, VS_METHOD_AUTO, TRUE},
     REFUSED, VS_ERROR_UNSUPPORTED, "disk vdb is a block device (/dev/vg0/data): beside RBD "
     "disks (vda) the local disks are copied live", 0},
    {{files_xml, VIR_DOMAIN_RUNNING, VS_METHOD_MIXED, TRUE},
     REFUSED, VS_ERROR_UNSUPPORTED, "method=mixed needs RBD and local disks together", 0},
    {{rbd_xml, VIR_DOMAIN_RUNNING, VS_METHOD_MIXED, TRUE},
     REFUSED, VS_ERROR_UNSUPPORTED, "use method=rbd (or auto)", 0},
};
/* clang-format on */

static void
test_mixed(void)
{
    run_rows(mixed_rows, G_N_ELEMENTS(mixed_rows));
    /* A method for one kind of disk cannot take both at one instant. */
    for (VsMethod m = VS_METHOD_LIVE; m <= VS_METHOD_RBD; m++) {
        const Case mixed = {mixed_xml, VIR_DOMAIN_RUNNING, m, TRUE};
        g_autofree char *text = g_strdup_printf(
            "mixes RBD disks (vda) and local disks (vdb): method=%s cannot snapshot both",
            vs_method_name(m));

        expect_refused(&mixed, VS_ERROR_UNSUPPORTED, text);
    }
}

/* disks= naming one kind only picks that kind's plain method. */
static void
test_mixed_one_kind(void)
{
    static const struct {
        const char *disk;
        VsMethod method;
    } kinds[] = {{"vda", VS_METHOD_RBD}, {"vdb", VS_METHOD_LIVE}};

    for (gsize i = 0; i < G_N_ELEMENTS(kinds); i++) {
        g_autoptr(VsPlan) plan = g_new0(VsPlan, 1);
        g_autoptr(VsDomainXml) dx = vs_domain_xml_parse(mixed_xml, NULL);
        g_autoptr(GPtrArray) chosen = g_ptr_array_new();
        g_auto(VsSnapshotOptions) opts;
        g_autoptr(GError) error = NULL;
        Probe probe = {0};
        const char *only[] = {kinds[i].disk, NULL};

        plan->disks = g_ptr_array_new();
        plan->name = g_strdup("vm1");
        plan->state = VIR_DOMAIN_RUNNING;
        vs_snapshot_options_init(&opts);
        opts.disks = g_strdupv((char **)only);
        probe.block_jobs = TRUE;
        g_assert_true(vs_plan_choose(plan, dx, &opts, probe_block_jobs, &probe, chosen, &error));
        g_assert_no_error(error);
        g_assert_cmpuint(chosen->len, ==, 1);
        g_assert_cmpstr(vs_method_name(plan->method), ==, vs_method_name(kinds[i].method));
    }
}

/* The disks: a CD-ROM is left out by default (and said so), an unknown one refused. */
static void
test_disks(void)
{
    const Case with_cdrom = {DOMAIN(FILE_DISK("vda", "/img/a.qcow2") CDROM("sda")),
                             VIR_DOMAIN_RUNNING, VS_METHOD_AUTO, TRUE};
    const Case only_cdrom = {DOMAIN(CDROM("sda")), VIR_DOMAIN_RUNNING, VS_METHOD_AUTO, TRUE};
    g_autoptr(GError) error = NULL;
    Probe probe = {0};
    g_autoptr(VsPlan) plan = choose(&with_cdrom, &probe, &error);

    g_assert_no_error(error);
    g_assert_cmpstr(plan->skipped, ==, "sda");
    g_assert_cmpstr(plan->file_targets->str, ==, "vda");
    g_assert_null(plan->rbd_targets);
    expect_refused(&only_cdrom, VS_ERROR_UNSUPPORTED, "has no writable disk to snapshot");
}

#define LUKS_DISK(dev, enc, extra)                                                                 \
    "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"                           \
    "<source file='/img/secret.qcow2'>" enc "</source>" extra "<target dev='" dev                  \
    "' bus='virtio'/></disk>"
#define LUKS(attr) "<encryption format='luks'><secret type='passphrase' " attr "/></encryption>"

/* Encrypted disks: a LUKS qcow2 whose secret is named by UUID, without backing file, is
 * chosen (live, like any file); anything else, or options that would write it in the
 * clear, is refused with the reason. */
static void
expect_encrypted(const char *xml, VsFormat format, gboolean compress, const char *refusal)
{
    g_autoptr(VsPlan) plan = g_new0(VsPlan, 1);
    g_autoptr(VsDomainXml) dx = vs_domain_xml_parse(xml, NULL);
    g_autoptr(GPtrArray) chosen = g_ptr_array_new();
    g_autoptr(GError) error = NULL;
    g_auto(VsSnapshotOptions) opts;
    Probe probe = {0};

    g_assert_nonnull(dx);
    plan->disks = g_ptr_array_new();
    plan->name = g_strdup("vm1");
    plan->state = VIR_DOMAIN_RUNNING;
    vs_snapshot_options_init(&opts);
    opts.format = format;
    opts.compress = compress;
    probe.block_jobs = TRUE;
    if (!refusal) {
        g_assert_true(vs_plan_choose(plan, dx, &opts, probe_block_jobs, &probe, chosen, &error));
        g_assert_no_error(error);
        g_assert_cmpstr(vs_method_name(plan->method), ==, "live");
        return;
    }
    g_assert_false(vs_plan_choose(plan, dx, &opts, probe_block_jobs, &probe, chosen, &error));
    g_assert_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED);
    if (!strstr(error->message, refusal))
        g_error("message '%s' lacks '%s'", error->message, refusal);
}

static void
test_encrypted(void)
{
    const char *luks =
        DOMAIN(LUKS_DISK("vdb", LUKS("uuid='0b0e6f2a-95b2-4b8e-9d6e-3f1c2a4d5e6f'"), ""));

    expect_encrypted(luks, VS_FORMAT_QCOW2, FALSE, NULL);
    expect_encrypted(luks, VS_FORMAT_RAW, FALSE, "format=raw would write it out in the clear");
    expect_encrypted(luks, VS_FORMAT_QCOW2, TRUE, "cannot be compressed and encrypted");
    expect_encrypted(DOMAIN(LUKS_DISK("vdb", LUKS("usage='vol1'"), "")), VS_FORMAT_QCOW2, FALSE,
                     "names no secret by UUID");
    expect_encrypted(DOMAIN(LUKS_DISK("vdb",
                                      "<encryption format='qcow'><secret type='passphrase' "
                                      "uuid='x'/></encryption>",
                                      "")),
                     VS_FORMAT_QCOW2, FALSE, "LUKS encryption only");
    expect_encrypted(DOMAIN(LUKS_DISK("vdb", LUKS("uuid='x'"),
                                      "<backingStore type='file'><format type='qcow2'/>"
                                      "<source file='/img/base.qcow2'/></backingStore>")),
                     VS_FORMAT_QCOW2, FALSE, "has a backing file");
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/plan/auto", test_auto);
    g_test_add_func("/plan/asked", test_asked);
    g_test_add_func("/plan/mixed", test_mixed);
    g_test_add_func("/plan/mixed-one-kind", test_mixed_one_kind);
    g_test_add_func("/plan/disks", test_disks);
    g_test_add_func("/plan/encrypted", test_encrypted);
    return g_test_run();
}
