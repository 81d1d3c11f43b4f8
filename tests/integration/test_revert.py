# SPDX-License-Identifier: LGPL-2.1-or-later
"""RevertSnapshot and virtsnapctl revert against the real lab: a snapshot's content goes
back into the disks of a shut-off guest, after a safety snapshot of what they held; a
failure, a cancel or a crash of the agent leaves each disk with its old or new content.
RBD disks are rolled back to the snapshot's source snapshot in the cluster."""

import os
import subprocess
import time

import pytest
from gi.repository import GLib

import ceph as cephmod
import lab as labmod
from conftest import Agent, remove_guest, snapshot_options, start_guest
from test_live import image_of

# The write-back's limit where a test has to catch it under way (the guests' disks carry
# 32 MiB of data after their ext4, so that a write-back takes seconds).
SLOW = 4 * 1024 * 1024


def revert(agent, snapshot_id, **options):
    """RevertSnapshot; the job's path."""
    return agent.call('RevertSnapshot', GLib.Variant(
        '(sa{sv})', (snapshot_id, snapshot_options(**options))))[0]


def revert_error(agent, snapshot_id, options):
    return agent.call_error('RevertSnapshot', GLib.Variant('(sa{sv})', (snapshot_id, options)))


def disk_records(guest, target='vda'):
    """The records on the guest's disk as it is now (its whole chain)."""
    return labmod.read_records(guest.disk(target)['path'], force_share=True)


def chain_of(guest, target='vda'):
    return [(i['filename'], i['format']) for i in
            labmod.image_chain(guest.disk(target)['path'])]


def snapshots(agent, domain=''):
    return agent.call('ListSnapshots', GLib.Variant('(s)', (domain,)))[0]


def wait_interrupted(agent, timeout=90):
    """The recovery job a restarted agent runs: its properties once it ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (jobs,) = agent.call('ListJobs')
        if jobs:
            props = agent.job_props(jobs[0])
            if props['State'] not in ('queued', 'running'):
                return props
        time.sleep(0.2)
    raise AssertionError(f'no recovery job ended within {timeout} s')


@pytest.fixture(scope='module')
def revguest(lab):
    """A guest writing records to a qcow2 overlay over a base image, with 32 MiB of data
    after its ext4 (a write-back takes a while at SLOW)."""
    guest = start_guest(lab, 'revguest', disks=1, agent=True, backing=True, top_data_mib=32)
    yield guest
    remove_guest(guest)


def running(guest):
    if guest.state() != 'running':
        guest.start()
        guest.wait_ready(120)
        time.sleep(2)


def snapshot_then_more_records(agent, guest):
    """Snapshot A of the running guest, then more records, then a clean shutdown: (A's
    properties, A's records, the disk's records now)."""
    running(guest)
    props = agent.snapshot(guest.name)
    assert props['State'] == 'succeeded', props['Error']
    a_nums = labmod.read_records(image_of(props))
    assert labmod.records_contiguous(a_nums), a_nums[-3:]
    time.sleep(3)
    guest.shutdown()
    now = disk_records(guest)
    assert labmod.records_contiguous(now) and len(now) > len(a_nums) + 50, (len(a_nums), len(now))
    return props, a_nums, now


def test_revert_stopped_guest_to_older_snapshot(lab, agent, revguest):
    a, a_nums, newer = snapshot_then_more_records(agent, revguest)
    before_xml = revguest.inactive_xml()
    chain = chain_of(revguest)
    top = revguest.disk('vda')['path']
    st = os.stat(top)

    props = agent.wait_job(revert(agent, a['Result']['snapshot-id']), timeout=180)
    assert props['State'] == 'succeeded', props['Error']
    assert props['Method'] == 'revert'
    result = props['Result']
    assert result['reverted-to'] == a['Result']['snapshot-id']
    assert result['stopped'] is False
    assert [d['target'] for d in result['disks']] == ['vda']
    assert result['disks'][0]['image'] == top
    safety_id = result['safety-snapshot-id']
    assert safety_id and safety_id != a['Result']['snapshot-id']
    print(f"file revert of {result['disks'][0]['virtual-size'] >> 20} MiB: "
          f"safety-ms={result['safety-ms']} write-ms={result['write-ms']} "
          f"total-ms={result['total-ms']}")

    # The disk holds A's records; the domain, its files and their chain are as they were.
    assert disk_records(revguest) == a_nums
    assert revguest.state() == 'shut off'
    assert revguest.inactive_xml() == before_xml
    assert chain_of(revguest) == chain
    st_after = os.stat(top)
    assert (st_after.st_ino, st_after.st_uid, st_after.st_mode) == (st.st_ino, st.st_uid,
                                                                    st.st_mode)
    # The safety snapshot is an ordinary snapshot of the domain with the newer records.
    listed = {s['id']: s for s in snapshots(agent, 'revguest')}
    assert listed[safety_id]['safety-for'] == a['Result']['snapshot-id']
    assert listed[safety_id]['name'].startswith('before-revert-')
    safety_image = listed[safety_id]['disks'][0]['image']
    assert labmod.read_records(safety_image) == newer
    assert agent.leftovers() == []

    # Booted again, the guest goes on from A's last record.
    running(revguest)
    time.sleep(2)
    revguest.shutdown()
    later = disk_records(revguest)
    assert later[:len(a_nums)] == a_nums and labmod.records_contiguous(later)
    assert len(later) > len(a_nums)


def test_running_guest_is_refused_without_stop(lab, agent, revguest):
    running(revguest)
    a = agent.snapshot('revguest')
    assert a['State'] == 'succeeded', a['Error']
    a_id = a['Result']['snapshot-id']
    a_nums = labmod.read_records(image_of(a))
    count = len(snapshots(agent))
    name, message = revert_error(agent, a_id, {})
    assert name == 'org.virtsnap.Error.Running', message
    assert 'revguest' in message and 'stop' in message
    assert revguest.state() == 'running'
    assert len(snapshots(agent)) == count
    assert len(agent.call('ListJobs')[0]) == 1  # the snapshot's: no revert job was made
    res = agent.ctl('revert', a_id)
    assert res.returncode == 5, (res.returncode, res.stderr)
    assert 'is running' in res.stderr, res.stderr
    assert revguest.state() == 'running'

    # With --stop it shuts the guest down cleanly, then reverts; the guest stays off.
    time.sleep(1)
    res = agent.ctl('--json', 'revert', a_id, '--stop', '--wait', timeout=240)
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert revguest.state() == 'shut off'
    assert disk_records(revguest) == a_nums
    job = [agent.job_props(p) for p in agent.call('ListJobs')[0]][-1]
    assert job['Result']['stopped'] is True
    assert 'shut down cleanly' in job['Result']['stop-note'], job['Result']['stop-note']
    assert agent.leftovers() == []


def test_cancel_during_write_back_keeps_the_old_content(lab, agent, revguest):
    a, a_nums, newer = snapshot_then_more_records(agent, revguest)
    before_xml = revguest.inactive_xml()
    count = len(snapshots(agent, 'revguest'))
    path = revert(agent, a['Result']['snapshot-id'], bandwidth=SLOW)
    props = agent.wait_job(path, until=('write-back', 'succeeded', 'failed'), timeout=120)
    assert props['Phase'] == 'write-back', props
    # The snapshot being put back cannot be deleted under the revert.
    name, message = agent.call_error('DeleteSnapshot',
                                     GLib.Variant('(s)', (a['Result']['snapshot-id'],)))
    assert name == 'org.virtsnap.Error.Busy' and 'revert' in message, (name, message)
    time.sleep(1.5)  # a part of the disk is written
    agent.call('Cancel', iface='org.virtsnap.Job1', path=path)
    props = agent.wait_job(path, timeout=120)
    assert props['State'] == 'cancelled', props
    assert disk_records(revguest) == newer
    assert revguest.inactive_xml() == before_xml
    # Nothing is left of the revert: not even its safety snapshot, a copy of the disk.
    assert len(snapshots(agent, 'revguest')) == count
    assert agent.leftovers() == []


def test_agent_killed_mid_write_back(lab, revguest):
    first = Agent(lab, name='agent-revert-crash').start()
    try:
        a, a_nums, newer = snapshot_then_more_records(first, revguest)
        before_xml = revguest.inactive_xml()
        path = revert(first, a['Result']['snapshot-id'], bandwidth=SLOW)
        first.wait_job(path, until=('write-back', 'succeeded', 'failed'), timeout=120)
        # Killed once a part of the disk is written.
        deadline = time.monotonic() + 60
        while first.job_props(path)['Progress'] < 0.05 and time.monotonic() < deadline:
            time.sleep(0.1)
        props = first.job_props(path)
        assert props['Phase'] == 'write-back' and 0.05 <= props['Progress'] < 1, \
            (props, first.log_text()[-3000:])
    finally:
        first.kill()

    second = Agent(lab, name='agent-revert-crash').start()
    try:
        props = wait_interrupted(second)
        assert props['State'] == 'interrupted', props
        assert 'content from before the revert again' in props['Error'], props['Error']
        nums = disk_records(revguest)
        assert nums in (newer, a_nums), (len(nums), len(newer), len(a_nums))
        assert nums == newer  # the journal said "writing": the safety copy went back
        assert revguest.is_persistent() and revguest.state() == 'shut off'
        assert revguest.inactive_xml() == before_xml
        assert second.leftovers() == []
        # The guest boots from it and goes on writing.
        running(revguest)
    finally:
        second.stop()


def test_bad_input(lab, agent):
    # A guest that never ran is enough: its snapshot is an offline one.
    guest = lab.make_guest('revbad', disks=1, agent=True)
    try:
        snap = agent.snapshot('revbad')
        assert snap['State'] == 'succeeded', snap['Error']
        sid = snap['Result']['snapshot-id']
        for bad in ('../etc', '.hidden', '-x', 'a/b', ''):
            name, message = revert_error(agent, bad, {})
            assert name == 'org.virtsnap.Error.InvalidArgument', (bad, message)
        for unknown in ('20990101T000000Z-000000', 'clones', 'nothing'):
            name, message = revert_error(agent, unknown, {})
            assert name == 'org.virtsnap.Error.NoSuchSnapshot', (unknown, message)
        for options in ({'stop': GLib.Variant('s', 'yes')}, {'safety': GLib.Variant('i', 0)},
                        {'bandwidth': GLib.Variant('s', '5M')},
                        {'bogus': GLib.Variant('b', True)}):
            name, message = revert_error(agent, sid, options)
            assert name == 'org.virtsnap.Error.InvalidArgument', (options, message)
        res = agent.ctl('revert', '20990101T000000Z-000000')
        assert res.returncode == 4, (res.returncode, res.stderr)

        # A disk that is not the snapshot's any more: which one, and nothing touched.
        path = guest.disk('vda')['path']
        before = labmod.image_info(path)
        subprocess.run(['qemu-img', 'resize', '-q', '-f', 'qcow2', path, '128M'], check=True)
        name, message = revert_error(agent, sid, {})
        assert name == 'org.virtsnap.Error.Unsupported' and 'vda' in message, message
        assert labmod.image_info(path)['virtual-size'] == 128 * 1024 * 1024
        assert labmod.image_info(path)['virtual-size'] != before['virtual-size']
        assert len(agent.call('ListJobs')[0]) == 1  # the snapshot's: no revert job was made

        # The domain of the snapshot is gone.
        guest.undefine()
        name, message = revert_error(agent, sid, {})
        assert name == 'org.virtsnap.Error.NoSuchDomain', message
        assert agent.leftovers() == []
    finally:
        if 'revbad' in lab.domains():
            remove_guest(guest)



@pytest.mark.system_only
def test_revert_is_authorized_through_polkit(lab, agent):
    """An outsider is refused with the revert's own polkit action, before anything is
    looked up; a member of group libvirt gets as far as the unknown id."""
    unknown = '20000101T000000Z-000000'
    res = agent.ctl_as(lab.users['outsider'], 'revert', unknown)
    out = res.stdout + res.stderr
    assert res.returncode == 10, out
    assert 'org.virtsnap.Error.PermissionDenied' in out and 'org.virtsnap.snapshot.revert' in out
    assert 'authorization: RevertSnapshot denied' in agent.log_text()
    res = agent.ctl_as(lab.users['member'], 'revert', unknown)
    assert res.returncode == 4 and 'NoSuchSnapshot' in res.stderr, (res.returncode, res.stderr)


# ---- RBD ----------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def ceph(lab):
    cluster = cephmod.Ceph(lab.path('ceph-revert'), allow_root=lab.mode == 'system')
    cluster.start()
    cluster.create_pool('vs')
    cluster.create_pool('vsdest')
    cluster.import_ext4_image('vs', 'revimg', size_mib=64, label='rbd-revert')
    yield cluster
    cluster.stop()


def rbd_records(ceph, spec):
    return labmod.read_records(ceph.qemu_uri(spec), force_share=True)


def test_rbd_revert(lab, ceph):
    ragent = Agent(lab, name='agent-revert-rbd',
                   config='\n[rbd]\ndest_pool = vsdest\nconnect_timeout_s = 3\n').start()
    guest = cephmod.make_rbd_guest(lab, ceph, 'revrbd', 'vs', 'revimg', agent=True)
    try:
        guest.start()
        guest.wait_ready(180)
        time.sleep(2)
        a = ragent.snapshot('revrbd')
        assert a['State'] == 'succeeded', a['Error']
        a_id = a['Result']['snapshot-id']
        a_nums = rbd_records(ceph, f'vs/revimg@virtsnap-{a_id}')
        assert labmod.records_contiguous(a_nums)
        time.sleep(3)
        b = ragent.snapshot('revrbd', name='later')  # a newer snapshot the revert keeps
        assert b['State'] == 'succeeded', b['Error']
        b_id = b['Result']['snapshot-id']
        name, message = revert_error(ragent, a_id, {})
        assert name == 'org.virtsnap.Error.Running', message
        time.sleep(2)
        guest.shutdown()
        newer = disk_records(guest)
        assert len(newer) > len(a_nums) + 50, (len(a_nums), len(newer))
        before_xml = guest.inactive_xml()

        props = ragent.wait_job(revert(ragent, a_id), timeout=180)
        assert props['State'] == 'succeeded', props['Error']
        result = props['Result']
        assert result['reverted-to'] == a_id
        safety_id = result['safety-snapshot-id']
        print(f"rbd revert: safety-ms={result['safety-ms']} write-ms={result['write-ms']} "
              f"total-ms={result['total-ms']}")
        # The image holds A's records again; every snapshot of it is still there, the
        # safety snapshot's too, which holds the newer records.
        assert disk_records(guest) == a_nums
        snaps = ceph.snap_names('vs/revimg')
        for sid in (a_id, b_id, safety_id):
            assert f'virtsnap-{sid}' in snaps, (sid, snaps)
        assert rbd_records(ceph, f'vs/revimg@virtsnap-{safety_id}') == newer
        listed = {s['id']: s for s in snapshots(ragent, 'revrbd')}
        assert listed[safety_id]['safety-for'] == a_id
        assert listed[safety_id]['disks'][0]['rbd']['parent'] == \
            f'vs/revimg@virtsnap-{safety_id}'
        assert set(listed) == {a_id, b_id, safety_id}
        assert guest.inactive_xml() == before_xml
        assert ragent.leftovers() == []

        # The guest boots from it and goes on from A's last record.
        guest.start()
        guest.wait_ready(180)
        time.sleep(2)
        guest.shutdown()
        later = disk_records(guest)
        assert later[:len(a_nums)] == a_nums and labmod.records_contiguous(later)
        assert len(later) > len(a_nums)
    finally:
        ragent.stop()
        remove_guest(guest)
