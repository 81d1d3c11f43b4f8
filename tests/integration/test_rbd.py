# SPDX-License-Identifier: LGPL-2.1-or-later
"""RBD-native snapshots against a real single-node Ceph (tests/lab/ceph.py) and a
guest whose data disk is an RBD image booted through QEMU's rbd driver."""

import os
import time

import pytest
from gi.repository import GLib

import ceph as cephmod
import lab as labmod
from conftest import Agent, domain_intact, remove_guest


@pytest.fixture(scope='module')
def ceph(lab):
    # In the system lab, everything runs as root; Ceph is reached over TCP either way.
    cluster = cephmod.Ceph(lab.path('ceph'), allow_root=lab.mode == 'system')
    cluster.start()
    cluster.create_pool('vs')
    cluster.create_pool('vsdest')
    cluster.import_ext4_image('vs', 'img', size_mib=64, label='rbd-img')
    yield cluster
    cluster.stop()


@pytest.fixture(scope='module')
def rbdguest(lab, ceph):
    guest = cephmod.make_rbd_guest(lab, ceph, 'rbdguest', 'vs', 'img', agent=True)
    guest.start()
    guest.wait_ready(180)
    yield guest
    remove_guest(guest)


def rbd_agent(lab, name, extra=''):
    return Agent(lab, name=name,
                 config=f'\n[rbd]\ndest_pool = vsdest\nconnect_timeout_s = 3\n{extra}').start()


@pytest.fixture
def ragent(lab, ceph, request):
    a = rbd_agent(lab, f'agent-{request.node.name}'[:60])
    yield a
    if a.proc is not None:
        a.stop()


def clone_of(props):
    image = props['Result']['disks'][0]['image']
    assert image.startswith('rbd://') and image.endswith('/snap'), image
    fsid, pool, name, _ = image[len('rbd://'):].split('/')
    return fsid, pool, name


def check_export(lab, ceph, spec, replay_journal):
    out = lab.path(f'export-{spec.replace("/", "_").replace("@", "_")}.raw')
    ceph.export(*spec.split('/', 1), out)
    try:
        clean, text = labmod.fsck_clean(out, replay_journal=replay_journal)
        assert clean, text
        nums = labmod.read_records(out)
        assert labmod.records_contiguous(nums), nums[:3] + nums[-3:]
        return nums
    finally:
        os.unlink(out)


def no_virtsnap_snaps(ceph):
    return [s for s in ceph.snap_names('vs/img') if s.startswith('virtsnap-')] == []


def test_rbd_snapshot_of_writing_guest(lab, ceph, ragent, rbdguest):
    before = rbdguest.inactive_xml()
    time.sleep(2)
    props = ragent.snapshot('rbdguest')  # auto
    assert props['State'] == 'succeeded', props['Error']
    assert props['Method'] == 'rbd' and 'Ceph RBD' in props['MethodReason']
    result = props['Result']
    assert result['quiesced'] is True and props['FreezeMs'] > 0
    assert result['flattened'] is False
    fsid, pool, name = clone_of(props)
    assert fsid == ceph.fsid and pool == 'vsdest'
    assert name == f"img-{result['snapshot-id']}"
    info = ceph.image_info(f'vsdest/{name}')
    assert info['parent']['pool'] == 'vs' and info['parent']['image'] == 'img'
    snaps = {s['name']: s for s in ceph.snaps(f'vsdest/{name}')}
    assert snaps['snap']['protected'] == 'true'
    # The source keeps its (protected) snapshot: the clone depends on it.
    assert f"virtsnap-{result['snapshot-id']}" in ceph.snap_names('vs/img')
    # Frozen at the point in time: clean without a journal replay.
    first = check_export(lab, ceph, f'vsdest/{name}@snap', replay_journal=False)
    domain_intact(rbdguest, before)
    assert rbdguest.agent_ping()

    # The metadata says where it is; DeleteSnapshot removes clone, then parent snapshot.
    (snaps_listed,) = ragent.call('ListSnapshots', GLib.Variant('(s)', ('rbdguest',)))
    meta = next(s for s in snaps_listed if s['id'] == result['snapshot-id'])
    assert meta['disks'][0]['rbd']['parent'].startswith('vs/img@virtsnap-')
    ragent.call('DeleteSnapshot', GLib.Variant('(s)', (result['snapshot-id'],)))
    assert not ceph.image_exists(f'vsdest/{name}')
    assert no_virtsnap_snaps(ceph)
    assert ragent.leftovers() == []
    assert len(first) > 0


def test_rbd_flatten(lab, ceph, ragent, rbdguest):
    props = ragent.snapshot('rbdguest', flatten=True, name='flat')
    assert props['State'] == 'succeeded', props['Error']
    assert props['Result']['flattened'] is True
    _, pool, name = clone_of(props)
    assert name == 'img-flat'
    assert 'parent' not in ceph.image_info(f'{pool}/{name}')
    assert no_virtsnap_snaps(ceph)  # flattened: the source snapshot is gone
    check_export(lab, ceph, f'{pool}/{name}@snap', replay_journal=False)

    # An image with clones of its own is not destroyed.
    ceph.rbd('clone', f'{pool}/{name}@snap', f'{pool}/child')
    name_, message = ragent.call_error('DeleteSnapshot',
                                       GLib.Variant('(s)', (props['Result']['snapshot-id'],)))
    assert name_ == 'org.virtsnap.Error.Busy' and 'clone' in message
    assert ceph.image_exists(f'{pool}/{name}')
    ceph.remove_image(f'{pool}/child')
    ragent.call('DeleteSnapshot', GLib.Variant('(s)', (props['Result']['snapshot-id'],)))
    assert not ceph.image_exists(f'{pool}/{name}')


def test_rbd_keep_prunes_the_cluster_objects(lab, ceph, ragent, rbdguest):
    """A policy's keep removes a pruned RBD snapshot from the cluster too (its clone and
    the source snapshot it hangs off), as DeleteSnapshot does, not just its folder."""
    assert ragent.ctl('policy', 'set', 'rbdguest', 'keep=1').returncode == 0
    try:
        old = ragent.snapshot('rbdguest')
        assert old['State'] == 'succeeded', old['Error']
        new = ragent.snapshot('rbdguest')
        assert new['State'] == 'succeeded', new['Error']
        old_id, new_id = old['Result']['snapshot-id'], new['Result']['snapshot-id']
        _, pool, old_clone = clone_of(old)
        _, _, new_clone = clone_of(new)
        deadline = time.monotonic() + 30  # pruning runs in a worker after the job
        while ceph.image_exists(f'{pool}/{old_clone}') and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        assert ragent.ctl('policy', 'clear', 'rbdguest').returncode == 0
    assert not ceph.image_exists(f'{pool}/{old_clone}')
    assert f'virtsnap-{old_id}' not in ceph.snap_names('vs/img')
    (listed,) = ragent.call('ListSnapshots', GLib.Variant('(s)', ('rbdguest',)))
    assert [s['id'] for s in listed] == [new_id]
    # The one kept is whole.
    assert ceph.image_exists(f'{pool}/{new_clone}')
    assert f'virtsnap-{new_id}' in ceph.snap_names('vs/img')
    ragent.call('DeleteSnapshot', GLib.Variant('(s)', (new_id,)))
    assert no_virtsnap_snaps(ceph) and not ceph.image_exists(f'{pool}/{new_clone}')
    assert ragent.leftovers() == []


def test_rbd_name_collision(lab, ceph, ragent, rbdguest):
    ceph.create_image('vsdest', 'img-taken', 4)
    # The collision is found by the job before any snapshot is made.
    props = ragent.wait_job(ragent.create('rbdguest', name='taken'))
    assert props['State'] == 'failed' and props['ErrorName'] == 'org.virtsnap.Error.Exists'
    assert 'img-taken' in props['Error']
    assert ceph.image_info('vsdest/img-taken')['size'] == 4 * 1024 * 1024  # untouched
    assert no_virtsnap_snaps(ceph)
    assert ragent.leftovers() == []
    ceph.remove_image('vsdest/img-taken')


def test_rbd_missing_pool(lab, ceph, rbdguest):
    a = Agent(lab, name='agent-nopool',
              config='\n[rbd]\ndest_pool = no-such-pool\nconnect_timeout_s = 3\n').start()
    try:
        props = a.wait_job(a.create('rbdguest'))
        assert props['State'] == 'failed'
        assert "pool 'no-such-pool' does not exist" in props['Error'], props['Error']
        assert no_virtsnap_snaps(ceph)
        assert a.leftovers() == []
    finally:
        a.stop()


def test_rbd_unreachable_monitor(lab, ceph, ragent):
    # A shut-off domain whose RBD disk points at a port where no monitor listens.
    dead = cephmod._free_port() if hasattr(cephmod, '_free_port') else 1
    guest = cephmod.make_rbd_guest(lab, ceph, 'deadmon', 'vs', 'img', agent=False, define=False)
    with open(guest.xml_path) as f:
        xml = f.read()
    xml = xml.replace(ceph.mon_host.split(':')[1], str(dead))
    xml = xml.replace(f"<config file='{ceph.conf}'/>", '')
    with open(guest.xml_path, 'w') as f:
        f.write(xml)
    lab.virsh('define', guest.xml_path)
    try:
        t0 = time.monotonic()
        props = ragent.wait_job(ragent.create('deadmon'), timeout=60)
        took = time.monotonic() - t0
        assert props['State'] == 'failed'
        # No monitor answers: the connect times out (not some I/O error).
        assert props['ErrorName'] == 'org.virtsnap.Error.Timeout', props
        assert 'no Ceph monitor' in props['Error'], props['Error']
        assert took < 3 + 10, took  # the connect timeout, plus a margin
        assert ragent.leftovers() == []
    finally:
        lab.virsh('undefine', 'deadmon')


def test_rbd_cancel_during_flatten(lab, ceph, ragent):
    ceph.create_image('vs', 'big', 1024)
    ceph.rbd('bench', '--io-type', 'write', '--io-size', '4M', '--io-total', '1G',
             '--io-pattern', 'seq', 'vs/big', timeout=600)
    guest = cephmod.make_rbd_guest(lab, ceph, 'bigrbd', 'vs', 'big', agent=False)
    try:
        path = ragent.create('bigrbd', flatten=True)
        ragent.wait_job(path, until=('clone',), timeout=60)
        deadline = time.monotonic() + 60
        while ragent.job_props(path)['BytesDone'] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        ragent.call('Cancel', iface='org.virtsnap.Job1', path=path)
        props = ragent.wait_job(path, timeout=120)
        assert props['State'] == 'cancelled', props
        assert [i for i in ceph.images('vsdest') if i.startswith('big-')] == []
        assert [s for s in ceph.snap_names('vs/big') if s.startswith('virtsnap-')] == []
        assert ragent.leftovers() == []
    finally:
        guest.undefine()
        ceph.remove_image('vs/big')


def test_mixed_domain_is_refused(lab, ceph, ragent):
    # Shut off: the mixed method (test_mixed) copies the file disks live.
    guest = cephmod.make_rbd_guest(lab, ceph, 'mixed', 'vs', 'img', agent=False, file_disks=1)
    try:
        name, message = ragent.call_error('CreateSnapshot',
                                          GLib.Variant('(sa{sv})', ('mixed', {})))
        assert name == 'org.virtsnap.Error.NotRunning', (name, message)
        assert 'RBD disks (vda) and local disks (vdb) together' in message
        name, message = ragent.call_error('CreateSnapshot', GLib.Variant(
            '(sa{sv})', ('mixed', {'method': GLib.Variant('s', 'rbd')})))
        assert name == 'org.virtsnap.Error.Unsupported' and 'mixes RBD disks' in message
        # One request per kind works.
        props = ragent.snapshot('mixed', disks=['vdb'])
        assert props['State'] == 'succeeded' and props['Method'] == 'cold', props['Error']
    finally:
        guest.undefine()
