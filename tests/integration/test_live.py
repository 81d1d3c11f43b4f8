# SPDX-License-Identifier: LGPL-2.1-or-later
"""Live snapshots against the real lab: a guest writing records while it is
snapshotted, the transient-job and the undefine/redefine paths, two disks,
quiesce without an agent, cancel, bad input, a crashed agent, libvirtd dying."""

import json
import os
import signal
import subprocess
import time

import pytest
from gi.repository import GLib

import lab as labmod
from conftest import Agent, domain_intact, remove_guest, start_guest

SLOW = 64 * 1024  # bytes/s: keeps a copy running long enough to act on it


@pytest.fixture(scope='module')
def twodisk(lab):
    guest = start_guest(lab, 'twodisk', disks=2, agent=True, fmt='raw')
    yield guest
    remove_guest(guest)


@pytest.fixture(scope='module')
def noagent(lab):
    guest = start_guest(lab, 'noagent', disks=1, agent=False)
    yield guest
    remove_guest(guest)


def image_of(props, target='vda'):
    disks = {d['target']: d for d in props['Result']['disks']}
    return disks[target]['image']


def check_image(path, fmt='qcow2', replay_journal=True):
    """A finished image stands alone, is a clean ext4 and holds records 1..n."""
    info = labmod.image_info(path)
    assert info['format'] == fmt
    assert 'backing-filename' not in info, info
    clean, out = labmod.fsck_clean(path, replay_journal=replay_journal)
    assert clean, out
    nums = labmod.read_records(path)
    assert labmod.records_contiguous(nums), nums[:5] + nums[-5:]
    return nums


def check_private(agent, props):
    """Who may reach what (README, "Snapshots on disk"): the snapshot tree is searchable
    by QEMU's user (0711) but not listable; the images and metadata are the agent's alone
    (0600), owned by the agent's user -- root in the system lab, once libvirt has taken back
    the copy target it lent QEMU."""
    image = image_of(props)
    folder = os.path.dirname(image)
    for path in (agent.snapshot_dir, folder):
        assert oct(os.stat(path).st_mode & 0o7777) == oct(0o711), path
    for path in (image, os.path.join(folder, 'metadata.json')):
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid()), path
        assert oct(st.st_mode & 0o7777) == oct(0o600), path


def test_live_snapshot_of_writing_guest(agent, writer):
    before = writer.inactive_xml()
    props = agent.snapshot('writer')
    assert props['State'] == 'succeeded', props['Error']
    assert props['Method'] == 'live'
    result = props['Result']
    assert result['quiesced'] is True
    assert 0 < props['FreezeMs'] == result['freeze-ms']
    assert props['Progress'] == 1.0
    domain_intact(writer, before)
    # Frozen at the point in time: clean without replaying the journal.
    first = check_image(image_of(props), replay_journal=False)
    assert len(first) > 10
    check_private(agent, props)

    # The guest goes on: its agent answers and a later snapshot holds more records.
    assert writer.agent_ping()
    time.sleep(1.5)
    later = agent.snapshot('writer', name='later')
    assert later['State'] == 'succeeded', later['Error']
    assert later['Result']['name'] == 'later'
    second = check_image(image_of(later), replay_journal=False)
    assert second[-1] > first[-1]
    domain_intact(writer, before)

    (snaps,) = agent.call('ListSnapshots', GLib.Variant('(s)', ('writer',)))
    ids = [s['id'] for s in snaps]
    assert result['snapshot-id'] in ids and later['Result']['snapshot-id'] in ids
    meta = next(s for s in snaps if s['id'] == result['snapshot-id'])
    assert meta['domain'] == 'writer' and meta['method'] == 'live' and meta['quiesced']
    assert meta['disks'][0]['virtual-size'] == labmod.image_info(image_of(props))['virtual-size']
    assert agent.leftovers() == []


def test_legacy_undefine_path(agent, writer):
    before = writer.inactive_xml()
    props = agent.snapshot('writer', legacy_undefine=True)
    assert props['State'] == 'succeeded', props['Error']
    assert 'undefined for the copy (legacy path)' in agent.log_text()
    assert 'defined again' in agent.log_text()
    domain_intact(writer, before)
    check_image(image_of(props), replay_journal=False)
    assert agent.leftovers() == []


def test_direct_copy_and_formats(agent, writer):
    before = writer.inactive_xml()
    direct = agent.snapshot('writer', copy='direct')
    assert direct['State'] == 'succeeded', direct['Error']
    assert direct['Result']['copy'] == 'direct'
    check_image(image_of(direct), replay_journal=False)
    raw = agent.snapshot('writer', format='raw')
    assert raw['State'] == 'succeeded', raw['Error']
    assert image_of(raw).endswith('vda.raw')
    check_image(image_of(raw), fmt='raw', replay_journal=False)
    packed = agent.snapshot('writer', compress=True)
    assert packed['State'] == 'succeeded', packed['Error']
    check_image(image_of(packed), replay_journal=False)
    # Really compressed: compressed clusters, and the file well below the uncompressed
    # copy of (nearly) the same data.
    plain, small = labmod.image_check(image_of(direct)), labmod.image_check(image_of(packed))
    assert plain.get('compressed-clusters', 0) == 0, plain
    assert small.get('compressed-clusters', 0) > 0, small
    assert small['image-end-offset'] < plain['image-end-offset'] * 0.75, (small, plain)
    domain_intact(writer, before)
    assert agent.leftovers() == []


def test_two_disks_consistent(agent, twodisk):
    before = twodisk.inactive_xml()
    for quiesce in ('require', 'off'):
        props = agent.snapshot('twodisk', quiesce=quiesce)
        assert props['State'] == 'succeeded', props['Error']
        result = props['Result']
        assert sorted(d['target'] for d in result['disks']) == ['vda', 'vdb']
        if quiesce == 'off':
            # Without a freeze both copies stop while the vCPUs are paused:
            # crash-consistent across disks, so the journals replay.
            assert result['quiesced'] is False and result['pause-ms'] > 0
        else:
            assert result['quiesced'] is True, result.get('quiesce-note')
        per_disk = [check_image(image_of(props, t), replay_journal=quiesce == 'off')
                    for t in ('vda', 'vdb')]
        assert labmod.records_consistent(per_disk), [n[-3:] for n in per_disk]
        domain_intact(twodisk, before)
    assert agent.leftovers() == []


def test_quiesce_without_agent(agent, noagent):
    before = noagent.inactive_xml()
    name, message = agent.call_error(
        'CreateSnapshot', GLib.Variant('(sa{sv})', ('noagent', {'quiesce':
                                                               GLib.Variant('s', 'require')})))
    assert name == 'org.virtsnap.Error.QuiesceFailed', message
    assert 'guest agent' in message
    time.sleep(2)  # unfrozen, the image holds what the guest has synced: let it write first
    props = agent.snapshot('noagent', quiesce='try')
    assert props['State'] == 'succeeded', props['Error']
    assert props['Result']['quiesced'] is False
    assert 'no guest agent' in props['Result']['quiesce-note']
    assert props['FreezeMs'] == 0
    check_image(image_of(props))
    domain_intact(noagent, before)
    assert agent.leftovers() == []


def test_cancel_during_copy(agent, writer):
    before = writer.inactive_xml()
    for legacy in (False, True):
        path = agent.create('writer', bandwidth=SLOW, legacy_undefine=legacy)
        agent.wait_job(path, until=('wait-ready',), timeout=30)
        assert writer.block_jobs() != []
        agent.call('Cancel', iface='org.virtsnap.Job1', path=path)
        props = agent.wait_job(path, timeout=60)
        assert props['State'] == 'cancelled', props
        assert props['ErrorName'] == 'org.virtsnap.Error.Cancelled'
        domain_intact(writer, before)
        assert agent.leftovers() == []


def test_cancel_from_cli_while_waiting(agent, writer):
    before = writer.inactive_xml()
    proc = subprocess.Popen(agent_ctl_argv(agent, '--json', 'snapshot', 'writer', '--wait',
                                           '--bandwidth', '64K'),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not writer.block_jobs():
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)  # first Ctrl-C cancels the job it waits for
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 9, (out, err)
    assert json.loads(out)['state'] == 'cancelled'
    domain_intact(writer, before)
    assert agent.leftovers() == []


def agent_ctl_argv(agent, *args):
    from conftest import VIRTSNAPCTL
    return [VIRTSNAPCTL, '--address', agent.lab.bus_address] + list(args)


def test_bad_input(lab, agent, writer):
    def error_of(domain, **options):
        from conftest import snapshot_options
        return agent.call_error('CreateSnapshot',
                                GLib.Variant('(sa{sv})', (domain, snapshot_options(**options))))

    assert error_of('no-such')[0] == 'org.virtsnap.Error.NoSuchDomain'
    name, message = error_of('writer', disks=['vdz'])
    assert name == 'org.virtsnap.Error.NoSuchDisk' and 'vda' in message
    off = lab.make_guest('stopped', agent=False)
    try:
        name, message = error_of('stopped', method='live')
        assert name == 'org.virtsnap.Error.NotRunning' and 'shutoff' in message
    finally:
        off.undefine()
    assert error_of('writer', bandwidth_wrong='x')[0] == 'org.virtsnap.Error.InvalidArgument'

    # A name is unique per domain.
    assert agent.snapshot('writer', name='once')['State'] == 'succeeded'
    name, _ = error_of('writer', name='once')
    assert name == 'org.virtsnap.Error.Exists'

    # One job per domain at a time.
    path = agent.create('writer', bandwidth=SLOW)
    try:
        name, message = error_of('writer')
        assert name == 'org.virtsnap.Error.Busy' and path in message
    finally:
        agent.call('Cancel', iface='org.virtsnap.Job1', path=path)
        assert agent.wait_job(path)['State'] == 'cancelled'
    assert agent.leftovers() == []


def test_foreign_block_job_needs_force(lab, agent, writer):
    before = writer.inactive_xml()
    foreign = lab.path('foreign-copy.qcow2')
    lab.virsh('blockcopy', 'writer', 'vda', foreign, '--transient-job', '--bandwidth', '1')
    try:
        assert writer.block_jobs() != []
        name, message = agent.call_error(
            'CreateSnapshot', GLib.Variant('(sa{sv})', ('writer', {})))
        assert name == 'org.virtsnap.Error.Busy' and 'force' in message
        assert writer.block_jobs() != []  # not ours: left alone
        props = agent.snapshot('writer', force=True)
        assert props['State'] == 'succeeded', props['Error']
        domain_intact(writer, before)
    finally:
        lab.virsh_result('blockjob', 'writer', 'vda', '--abort')
        if os.path.exists(foreign):
            os.unlink(foreign)


def test_delete_snapshot(agent, writer):
    props = agent.snapshot('writer', name='doomed')
    snap_id = props['Result']['snapshot-id']
    folder = props['Result']['directory']
    assert os.path.isdir(folder)
    res = agent.ctl('delete', snap_id)
    assert res.returncode == 0, res.stderr
    assert not os.path.exists(folder)
    assert agent.ctl('delete', snap_id).returncode == 4


def test_cli_snapshot_wait_json(agent, writer):
    res = agent.ctl('--json', 'snapshot', 'writer', '--wait', '--name', 'from-cli')
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out['state'] == 'succeeded' and out['freeze_ms'] > 0
    check_image(out['result']['disks'][0]['image'], replay_journal=False)
    listing = agent.ctl('snapshots', 'writer').stdout
    assert 'from-cli' in listing
    jobs = json.loads(agent.ctl('--json', 'jobs').stdout)
    assert any(j['snapshot_id'] == out['snapshot_id'] for j in jobs)


def test_crashed_agent_is_repaired_at_start(lab, writer):
    """The undefine path, interrupted by SIGKILL: the next agent defines the domain
    again, stops the copy and removes the files, from its journal."""
    before = writer.inactive_xml()
    first = Agent(lab, name='agent-crash').start()
    path = first.create('writer', legacy_undefine=True, bandwidth=SLOW)
    first.wait_job(path, until=('wait-ready',), timeout=30)
    assert not writer.is_persistent()  # undefined for the copy
    first.kill()

    second = Agent(lab, name='agent-crash').start()
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
        assert 'defined again' in props['Error']
        domain_intact(writer, before)
        assert second.leftovers() == []
    finally:
        second.stop()


def test_libvirtd_dies_during_copy(lab, agent, writer):
    """libvirtd SIGKILLed while the mirror runs, on the undefine path: the job resumes on
    the next connection (the mirror ran on in QEMU) and defines the domain again."""
    before = writer.inactive_xml()
    path = agent.create('writer', legacy_undefine=True, bandwidth=SLOW)
    agent.wait_job(path, until=('wait-ready',), timeout=30)
    lab.kill_libvirtd(signal.SIGKILL)
    time.sleep(0.5)
    assert agent.job_props(path)['State'] == 'running'
    lab.start_libvirtd()
    # Lift the limit on our mirror: it reaches READY on the new connection.
    deadline = time.monotonic() + 30
    while lab.virsh_result('blockjob', 'writer', 'vda', '--bandwidth', '0').returncode != 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    props = agent.wait_job(path, timeout=60)
    assert props['State'] == 'succeeded', (props['ErrorName'], props['Error'])
    assert 'libvirt is back: phase wait-ready goes on' in agent.log_text()
    assert 'defined again' in agent.log_text()
    check_image(image_of(props), replay_journal=False)
    writer.wait_agent()
    domain_intact(writer, before)
    assert agent.leftovers() == []


def test_sigterm_undoes_a_running_job(lab, writer):
    before = writer.inactive_xml()
    a = Agent(lab, name='agent-term').start()
    path = a.create('writer', legacy_undefine=True, bandwidth=SLOW)
    a.wait_job(path, until=('wait-ready',), timeout=30)
    a.stop(expect_code=0)  # SIGTERM: cancel, undo, exit
    domain_intact(writer, before)
    assert a.leftovers() == []
