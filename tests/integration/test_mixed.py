# SPDX-License-Identifier: LGPL-2.1-or-later
"""The mixed method against the real lab: a running guest with an RBD disk (vda, in the
single-node Ceph of test_rbd) and a qcow2 file disk (vdb), both written by the guest's
record writer. One snapshot of both, cut in one freeze window; verify, clone, revert and
delete of such a snapshot; each kind alone with disks=; a cancel in the middle."""

import os
import statistics
import time

import pytest
from gi.repository import GLib

import ceph as cephmod
import lab as labmod
from conftest import domain_intact, remove_guest
from test_rbd import ceph, rbd_agent  # noqa: F401  (fixtures)

SLOW = 64 * 1024  # bytes/s: keeps the mirror running long enough to cancel it
UNSUPPORTED = 'org.virtsnap.Error.Unsupported'


@pytest.fixture(scope='module')
def mixguest(lab, ceph):  # noqa: F811
    ceph.import_ext4_image('vs', 'mix', size_mib=64, label='mix-vda')
    guest = cephmod.make_rbd_guest(lab, ceph, 'mixguest', 'vs', 'mix', agent=True,
                                   file_disks=1)
    guest.start()
    guest.wait_ready(180)
    time.sleep(2)  # the first records reach both disks
    yield guest
    remove_guest(guest)  # vs/mix goes with the module's cluster (memstore)


@pytest.fixture(scope='module')
def magent(lab, ceph):  # noqa: F811
    a = rbd_agent(lab, 'agent-mixed')
    yield a
    if a.proc is not None:
        a.stop()


def disks_of(props):
    return {d['target']: d for d in props['Result']['disks']}


def rbd_clone(disk):
    """'pool/image' of the clone an RBD disk's entry names (rbd://fsid/pool/image/snap)."""
    _, pool, name, snap = disk['image'][len('rbd://'):].split('/')
    assert snap == 'snap'
    return f'{pool}/{name}'


def rbd_records(lab, ceph, spec, replay_journal):  # noqa: F811
    out = lab.path(f'mixed-{spec.replace("/", "_").replace("@", "_")}.raw')
    ceph.export(None, spec, out)
    try:
        clean, text = labmod.fsck_clean(out, replay_journal=replay_journal)
        assert clean, text
        return labmod.read_records(out, replay_journal=replay_journal)
    finally:
        os.unlink(out)


def file_records(path, replay_journal):
    clean, text = labmod.fsck_clean(path, replay_journal=replay_journal)
    assert clean, text
    return labmod.read_records(path, replay_journal=replay_journal)


def our_rbd_objects(ceph):  # noqa: F811
    """What a mixed job of this guest may leave in the cluster: snapshots of vs/mix,
    clones named after it."""
    snaps = [s for s in ceph.snap_names('vs/mix') if s.startswith('virtsnap-')]
    clones = [i for i in ceph.images('vsdest') if i.startswith('mix-')]
    return snaps + clones


def delete(agent, sid):
    agent.call('DeleteSnapshot', GLib.Variant('(s)', (sid,)))


def test_mixed_snapshot_one_instant(lab, ceph, magent, mixguest):  # noqa: F811
    before = mixguest.inactive_xml()
    for quiesce in ('require', 'off'):
        props = magent.snapshot('mixguest', quiesce=quiesce)
        assert props['State'] == 'succeeded', props['Error']
        assert props['Method'] == 'mixed', props['MethodReason']
        assert 'cut in one freeze window' in props['MethodReason']
        result = props['Result']
        disks = disks_of(props)
        assert sorted(disks) == ['vda', 'vdb']
        assert result['copy'] == 'direct' and result['flattened'] is False
        # Each kind as its own method writes it: an RBD clone, an image file.
        assert disks['vda']['format'] == 'rbd' and disks['vda']['image'].startswith('rbd://')
        sid = result['snapshot-id']
        assert disks['vdb']['image'] == os.path.join(magent.snapshot_dir, sid, 'vdb.qcow2')
        clone = rbd_clone(disks['vda'])
        assert clone == f'vsdest/mix-{sid}'
        assert f'virtsnap-{sid}' in ceph.snap_names('vs/mix')
        if quiesce == 'require':
            assert result['quiesced'] is True and props['FreezeMs'] > 0
        else:
            # No freeze: the vCPUs are paused around both cuts, as for two file disks.
            assert result['quiesced'] is False and result['pause-ms'] > 0
        # One instant across the two kinds: the writer appends the same number to vda
        # then vdb in each iteration, so vdb ends on vda's last record or one before.
        replay = quiesce == 'off'
        per_disk = [rbd_records(lab, ceph, f'{clone}@snap', replay),
                    file_records(disks['vdb']['image'], replay)]
        assert labmod.records_consistent(per_disk), [n[-3:] for n in per_disk]
        domain_intact(mixguest, before)
        assert mixguest.agent_ping()

        # The catalog lists both kinds; delete takes the folder and the cluster's objects.
        (listed,) = magent.call('ListSnapshots', GLib.Variant('(s)', ('mixguest',)))
        meta = next(s for s in listed if s['id'] == sid)
        kinds = {d['target']: 'rbd' in d for d in meta['disks']}
        assert kinds == {'vda': True, 'vdb': False}, meta['disks']
    assert magent.leftovers() == []


def test_mixed_verify_clone_revert_delete(lab, ceph, magent, mixguest):  # noqa: F811
    sids = [s['id'] for s in magent.call('ListSnapshots', GLib.Variant('(s)', ('mixguest',)))[0]]
    assert sids, 'test_mixed_snapshot_one_instant made none'
    sid = sids[0]
    # verify reads both kinds: the clone's snap through QEMU, the file in the folder.
    path = magent.call('VerifySnapshot', GLib.Variant('(sa{sv})', (
        sid, {'deep': GLib.Variant('b', True)})))[0]
    props = magent.wait_job(path)
    assert props['State'] == 'succeeded', props['Error']
    assert props['Result']['ok'] is True
    assert sorted(props['Result']['file-systems']) == ['vda: ext4 clean', 'vdb: ext4 clean']

    # clone and revert take one kind of disk: refused before anything is made.
    name, message = magent.call_error('CloneSnapshot', GLib.Variant('(sa{sv})', (
        sid, {'name': GLib.Variant('s', 'mixclone')})))
    assert name == UNSUPPORTED and 'RBD and file disks' in message, message
    assert 'mixclone' not in lab.virsh('list', '--all', '--name')
    assert [i for i in ceph.images('vs') + ceph.images('vsdest') if 'mixclone' in i] == []
    name, message = magent.call_error('RevertSnapshot', GLib.Variant('(sa{sv})', (sid, {})))
    assert name == UNSUPPORTED and 'mixes RBD and file disks' in message, message
    assert mixguest.state() == 'running'

    for s in sids:
        delete(magent, s)
    assert our_rbd_objects(ceph) == []
    assert not any(os.path.exists(os.path.join(magent.snapshot_dir, s)) for s in sids)
    assert magent.leftovers() == []


def test_mixed_each_kind_alone(lab, ceph, magent, mixguest):  # noqa: F811
    """disks= naming one kind picks that kind's own method. The freeze windows of the
    three, for the report (VIRTSNAP_FREEZE_SAMPLES snapshots of each, default 1)."""
    before = mixguest.inactive_xml()
    samples = int(os.environ.get('VIRTSNAP_FREEZE_SAMPLES', '1'))
    freeze = {'mixed': [], 'rbd': [], 'live': []}
    for _ in range(samples):
        for disks, method in ((['vda', 'vdb'], 'mixed'), (['vda'], 'rbd'), (['vdb'], 'live')):
            props = magent.snapshot('mixguest', disks=disks, quiesce='require')
            assert props['State'] == 'succeeded', props['Error']
            assert props['Method'] == method, props['MethodReason']
            assert [d['target'] for d in props['Result']['disks']] == disks
            assert props['Result']['quiesced'] is True
            freeze[method].append(props['FreezeMs'])
            delete(magent, props['Result']['snapshot-id'])
    domain_intact(mixguest, before)
    assert our_rbd_objects(ceph) == []
    assert magent.leftovers() == []
    print('\nfreeze-ms of mixguest (median of %d): %s' % (samples, ', '.join(
        f'{m} {statistics.median(v):.0f} (min {min(v)}, max {max(v)})'
        for m, v in freeze.items())))


def test_mixed_cancel_during_copy(lab, ceph, magent, mixguest):  # noqa: F811
    before = mixguest.inactive_xml()
    path = magent.create('mixguest', bandwidth=SLOW)
    magent.wait_job(path, until=('wait-ready',), timeout=60)
    assert mixguest.block_jobs() != []
    magent.call('Cancel', iface='org.virtsnap.Job1', path=path)
    props = magent.wait_job(path, timeout=60)
    assert props['State'] == 'cancelled', props
    assert props['ErrorName'] == 'org.virtsnap.Error.Cancelled'
    # Nothing in either place: no mirror, folder or journal; no snapshot or clone in Ceph.
    domain_intact(mixguest, before)
    assert our_rbd_objects(ceph) == []
    assert magent.leftovers() == []


def test_mixed_name_taken_after_the_cut(lab, ceph, magent, mixguest):  # noqa: F811
    """A failure after both cuts: the clone's name is taken while the mirror runs, so the
    RBD snapshot exists and the file image is written when the clone step fails. Undo
    takes back both, and leaves the other image alone."""
    before = mixguest.inactive_xml()
    path = magent.create('mixguest', name='late', bandwidth=12 * 1024 * 1024)
    magent.wait_job(path, until=('wait-ready',), timeout=60)
    ceph.create_image('vsdest', 'mix-late', 4)
    assert magent.job_props(path)['Phase'] == 'wait-ready', 'the mirror was too quick'
    props = magent.wait_job(path, timeout=120)
    try:
        assert props['State'] == 'failed', props
        assert props['ErrorName'] == 'org.virtsnap.Error.Exists', props['Error']
        assert 'mix-late already exists' in props['Error']
        assert props['FreezeMs'] > 0  # failed after the window
        # Not ours: neither removed nor given a "snap".
        assert ceph.image_info('vsdest/mix-late')['size'] == 4 * 1024 * 1024
        assert ceph.snap_names('vsdest/mix-late') == []
    finally:
        ceph.remove_image('vsdest/mix-late')
    domain_intact(mixguest, before)
    assert our_rbd_objects(ceph) == []
    assert magent.leftovers() == []


def test_mixed_killed_agent_is_repaired_at_start(lab, ceph, magent, mixguest):  # noqa: F811
    """SIGKILL while the mirror runs: the next agent stops it and removes the folder from
    the journal record, whose RBD records say nothing was made in the cluster yet."""
    before = mixguest.inactive_xml()
    magent.stop()  # one agent owns the bus name
    first = rbd_agent(lab, 'agent-mixed-crash')
    path = first.create('mixguest', bandwidth=SLOW)
    first.wait_job(path, until=('wait-ready',), timeout=60)
    assert mixguest.block_jobs() != []
    first.kill()

    second = rbd_agent(lab, 'agent-mixed-crash')
    try:
        deadline = time.monotonic() + 30
        jobs = []
        while time.monotonic() < deadline:
            (jobs,) = second.call('ListJobs')
            if jobs and second.job_props(jobs[0])['State'] == 'interrupted':
                break
            time.sleep(0.1)
        props = second.job_props(jobs[0])
        assert props['State'] == 'interrupted', props
        assert 'interrupted by an agent restart in phase copy' in props['Error'], props['Error']
        domain_intact(mixguest, before)
        assert our_rbd_objects(ceph) == []
        assert second.leftovers() == []
    finally:
        second.stop()
