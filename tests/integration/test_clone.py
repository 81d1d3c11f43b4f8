# SPDX-License-Identifier: LGPL-2.1-or-later
"""CloneSnapshot and virtsnapctl clone against the real lab: instant clones (qcow2
overlays on the snapshot's images) and full ones boot, write their own records from the
snapshot's on, share no writable file with the original, which runs on untouched; RBD
clones boot through QEMU's rbd driver; bad input and a cancelled copy leave nothing."""

import json
import os
import re
import time

import pytest
from gi.repository import GLib

import lab as labmod
from conftest import Agent, remove_guest, start_guest
from test_rbd import ceph, clone_of, rbd_agent, rbdguest  # noqa: F401  (fixtures)

ERR = 'org.virtsnap.Error.'


def clone_options(**options):
    types = {'name': 's', 'start': 'b', 'full': 'b'}
    return {k: GLib.Variant(types.get(k, 's'), v) for k, v in options.items()}


def clone_call(agent, snap_id, options):
    return agent.call('CloneSnapshot', GLib.Variant('(sa{sv})', (snap_id, options)))[0]


def clone(agent, snap_id, timeout=180, **options):
    """CloneSnapshot and wait for its job: the job's final properties."""
    return agent.wait_job(clone_call(agent, snap_id, clone_options(**options)), timeout)


def snapshot_id(agent, domain, **options):
    props = agent.snapshot(domain, **options)
    assert props['State'] == 'succeeded', props['Error']
    return props['Result']['snapshot-id'], props


def clone_dir(agent, name):
    return os.path.join(agent.snapshot_dir, 'clones', name)


def expect_clone(lab, agent, name, disks=('vda',)):
    """A Guest for the clone *name* before it exists: registered so that the lab removes
    it whatever happens, its console the file the agent gives it."""
    folder = clone_dir(agent, name)
    paths = [{'target': t, 'path': os.path.join(folder, f'{t}.qcow2'), 'format': 'qcow2'}
             for t in disks]
    guest = lab.add_guest(name, paths, '<domain/>\n', agent=True, define=False)
    guest.console_log = os.path.join(folder, 'console0.log')
    guest._started_at = time.monotonic()
    return guest


def domain_exists(lab, name):
    return lab.virsh_result('dominfo', name).returncode == 0


def writable_sources(xml):
    """Top-level sources of the writable disks in a live domain XML."""
    out = set()
    for disk in re.findall(r'<disk\b.*?</disk>', xml, re.S):
        if '<readonly/>' in disk or '<shareable/>' in disk:
            continue
        top = disk.split('<backingStore', 1)[0]
        m = re.search(r"<source (?:file|dev|name)='([^']*)'", top)
        if m:
            out.add(m.group(1))
    return out


def backing_of(path):
    return labmod.image_info(path).get('full-backing-filename')


def records_after(guest, path, snap_nums, seconds=4):
    """Let the clone write a while, stop it, and read its own disk: records 1..n, the
    snapshot's first, then its own."""
    time.sleep(seconds)
    guest.destroy()
    nums = labmod.read_records(path)
    assert labmod.records_contiguous(nums), nums[:3] + nums[-3:]
    assert nums[:len(snap_nums)] == snap_nums
    assert nums[-1] > snap_nums[-1], (nums[-1], snap_nums[-1])
    return nums


def test_instant_clone_boots_beside_the_original(lab, agent, writer):
    before = writer.inactive_xml()
    sid, snap = snapshot_id(agent, 'writer')
    snap_image = snap['Result']['disks'][0]['image']
    snap_nums = labmod.read_records(snap_image)
    assert snap_nums

    guest = expect_clone(lab, agent, 'writer-c1')
    props = clone(agent, sid, name='writer-c1', start=True)
    assert props['State'] == 'succeeded', props['Error']
    assert props['Method'] == 'clone' and props['Domain'] == 'writer-c1'
    assert 'instant' in props['MethodReason']
    result = props['Result']
    overlay = os.path.join(clone_dir(agent, 'writer-c1'), 'vda.qcow2')
    assert result['snapshot-id'] == sid and result['name'] == 'writer-c1'
    assert result['full'] is False and result['started'] is True
    assert result['source-domain'] == 'writer'
    assert result['disks'][0]['image'] == overlay
    assert result['uuid'] == lab.virsh('domuuid', 'writer-c1').strip()
    assert result['uuid'] != lab.virsh('domuuid', 'writer').strip()
    assert result['total-ms'] > 0

    # It boots: the READY marker on its own console, and its own guest agent answers.
    guest.wait_ready(120)
    clone_xml = lab.virsh('dumpxml', 'writer-c1')
    writer_xml = writer.xml()
    # The clone's disk is an overlay on the snapshot's image, which nobody may write.
    assert backing_of(overlay) == snap_image
    assert os.stat(snap_image).st_mode & 0o222 == 0
    # The two never share a writable file.
    clone_w, writer_w = writable_sources(clone_xml), writable_sources(writer_xml)
    assert clone_w == {overlay}
    assert clone_w.isdisjoint(writer_w) and snap_image not in writer_w
    assert writer.console_log not in clone_xml
    # clone.json records what holds the snapshot.
    with open(os.path.join(clone_dir(agent, 'writer-c1'), 'clone.json')) as f:
        meta = json.load(f)
    assert (meta['name'], meta['uuid'], meta['snapshot-id'], meta['full']) == \
        ('writer-c1', result['uuid'], sid, False)
    assert meta['disks'] == [{'target': 'vda', 'image': overlay}]

    # Its records start from the snapshot's and go on; the snapshot stays as it was.
    records_after(guest, overlay, snap_nums)
    assert labmod.read_records(snap_image) == snap_nums
    # The original was never touched and kept writing.
    assert writer.state() == 'running' and writer.inactive_xml() == before
    later, _ = snapshot_id(agent, 'writer')
    later_image = os.path.join(agent.snapshot_dir, later, 'vda.qcow2')
    assert labmod.read_records(later_image)[-1] > snap_nums[-1]
    assert agent.leftovers() == []
    assert os.listdir(os.path.join(agent.snapshot_dir, 'clones')) == ['writer-c1']
    remove_guest(guest)


def test_full_clone_stands_alone(lab, agent, writer):
    sid, snap = snapshot_id(agent, 'writer')
    snap_image = snap['Result']['disks'][0]['image']
    snap_nums = labmod.read_records(snap_image)

    guest = expect_clone(lab, agent, 'writer-full')
    # Through the CLI: it waits and prints the job's outcome.
    res = agent.ctl('clone', sid, 'writer-full', '--full', '--wait', '--json', timeout=300)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out['state'] == 'succeeded' and out['result']['full'] is True
    image = os.path.join(clone_dir(agent, 'writer-full'), 'vda.qcow2')
    # A standalone image: no backing file, into the snapshot or anywhere.
    info = labmod.image_info(image)
    assert info['format'] == 'qcow2' and 'backing-filename' not in info, info
    # A full clone does not hold the snapshot: its images stay as they were, and once it
    # is deleted the clone still boots and holds the snapshot's records.
    assert os.stat(snap_image).st_mode & 0o777 == 0o600
    agent.call('DeleteSnapshot', GLib.Variant('(s)', (sid,)))
    assert not os.path.exists(snap_image)
    assert guest.state() == 'shut off' and guest.is_persistent()
    guest._started_at = time.monotonic()
    lab.virsh('start', 'writer-full')
    guest.wait_ready(120)
    records_after(guest, image, snap_nums)
    remove_guest(guest)


def test_instant_clone_holds_its_snapshot(lab, agent, writer):
    sid, snap = snapshot_id(agent, 'writer')
    guest = expect_clone(lab, agent, 'writer-hold')
    props = clone(agent, sid, name='writer-hold')
    assert props['State'] == 'succeeded', props['Error']
    assert guest.state() == 'shut off'  # not started without "start"
    name, message = agent.call_error('DeleteSnapshot', GLib.Variant('(s)', (sid,)))
    assert name == ERR + 'Busy' and 'writer-hold' in message, (name, message)
    res = agent.ctl('delete', sid)
    assert res.returncode == 5 and 'writer-hold' in res.stderr, res.stderr
    assert os.path.exists(snap['Result']['disks'][0]['image'])
    # Once the clone's domain is gone, the snapshot (and the clone's leftovers) may go.
    guest.undefine()
    agent.call('DeleteSnapshot', GLib.Variant('(s)', (sid,)))
    assert not os.path.exists(os.path.join(agent.snapshot_dir, sid))
    assert not os.path.exists(clone_dir(agent, 'writer-hold'))


def test_bad_input_changes_nothing(lab, agent, writer):
    before = writer.inactive_xml()
    domains = lab.virsh('list', '--all', '--name')
    sid, _ = snapshot_id(agent, 'writer')
    guest = expect_clone(lab, agent, 'taken')
    res = agent.ctl('clone', sid, 'taken', '--wait')  # the job's outcome, for people
    assert res.returncode == 0, res.stderr
    assert 'clone: taken (uuid ' in res.stdout and f'of snapshot {sid} of writer' in res.stdout
    assert 'instant (overlays on the snapshot), not started' in res.stdout, res.stdout

    cases = [
        ('20200101T000000Z-000000', clone_options(name='x1'), 'NoSuchSnapshot'),
        ('clones', clone_options(name='x1'), 'NoSuchSnapshot'),
        ('../' + sid, clone_options(name='x1'), 'InvalidArgument'),
        (sid, clone_options(name='writer'), 'Exists'),         # a domain's name
        (sid, clone_options(name='taken'), 'Exists'),          # a clone's
        (sid, clone_options(name='a/b'), 'InvalidArgument'),
        (sid, clone_options(name='..'), 'InvalidArgument'),
        (sid, clone_options(name='a..b'), 'InvalidArgument'),
        (sid, clone_options(name='-x'), 'InvalidArgument'),
        (sid, clone_options(name=''), 'InvalidArgument'),
        (sid, {}, 'InvalidArgument'),                            # name missing
        (sid, {'name': GLib.Variant('i', 3)}, 'InvalidArgument'),  # of the wrong type
        (sid, {'name': GLib.Variant('s', 'x1'), 'start': GLib.Variant('s', 'yes')},
         'InvalidArgument'),
        (sid, {'name': GLib.Variant('s', 'x1'), 'bogus': GLib.Variant('b', True)},
         'InvalidArgument'),
    ]
    for snap_id, options, error in cases:
        name, message = agent.call_error('CloneSnapshot',
                                         GLib.Variant('(sa{sv})', (snap_id, options)))
        assert name == ERR + error, (snap_id, options, name, message)
    # The CLI maps them to its exit codes.
    assert agent.ctl('clone', '20200101T000000Z-000000', 'x1').returncode == 4
    assert agent.ctl('clone', sid, 'writer').returncode == 5
    assert agent.ctl('clone', sid, 'a/b').returncode == 2
    assert agent.ctl('clone', sid).returncode == 2
    # Nothing was made or changed.
    assert set(lab.virsh('list', '--all', '--name').split()) == set(domains.split()) | {'taken'}
    assert not domain_exists(lab, 'x1')
    assert os.listdir(os.path.join(agent.snapshot_dir, 'clones')) == ['taken']
    assert writer.inactive_xml() == before and writer.state() == 'running'
    assert agent.leftovers() == []
    remove_guest(guest)


def test_crashed_agent_undoes_the_clone(lab, writer):
    """SIGKILL while the clone is defined and starting: the next agent stops and undefines
    it (found by the UUID the journal names), removes its folder and its record."""
    first = Agent(lab, name='agent-clone-crash').start()
    sid, _ = snapshot_id(first, 'writer')
    guest = expect_clone(lab, first, 'crash-c')
    path = clone_call(first, sid, clone_options(name='crash-c', start=True))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        props = first.job_props(path)
        if props['Phase'] == 'start' or props['State'] in ('succeeded', 'failed'):
            break
    assert props['Phase'] == 'start', props
    first.kill()
    assert domain_exists(lab, 'crash-c')  # defined before the kill

    second = Agent(lab, name='agent-clone-crash').start()
    try:
        deadline = time.monotonic() + 60
        jobs = []
        while time.monotonic() < deadline:
            (jobs,) = second.call('ListJobs')
            if jobs and second.job_props(jobs[0])['State'] == 'interrupted':
                break
            time.sleep(0.1)
        props = second.job_props(jobs[0])
        assert props['State'] == 'interrupted', props
        assert "clone domain 'crash-c' undefined" in props['Error'], props['Error']
        assert not domain_exists(lab, 'crash-c')
        assert os.listdir(os.path.join(second.snapshot_dir, 'clones')) == []
        assert second.leftovers() == []
        # The snapshot was not harmed: cloning it again works.
        assert clone(second, sid, name='crash-c')['State'] == 'succeeded'
        remove_guest(guest)
    finally:
        second.stop()


@pytest.mark.system_only
def test_clone_is_authorized(lab, agent, writer):
    """CloneSnapshot goes through polkit: an outsider is refused before anything is looked
    at (even an unknown id is PermissionDenied), a member of group libvirt may clone."""
    sid, _ = snapshot_id(agent, 'writer')
    outsider, member = lab.users['outsider'], lab.users['member']
    for args in ((sid, 'by-outsider'), ('20000101T000000Z-000000', 'by-outsider')):
        res = agent.ctl_as(outsider, 'clone', *args)
        out = res.stdout + res.stderr
        assert res.returncode == 10 and ERR + 'PermissionDenied' in out, out
        assert 'org.virtsnap.snapshot.clone' in out, out
    assert not domain_exists(lab, 'by-outsider')
    assert 'authorization: CloneSnapshot denied' in agent.log_text()
    guest = expect_clone(lab, agent, 'by-member')
    res = agent.ctl_as(member, 'clone', sid, 'by-member', '--wait', timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert guest.state() == 'shut off' and guest.is_persistent()
    remove_guest(guest)


@pytest.fixture(scope='module')
def bigguest(lab):
    """A guest whose disk holds 1 GiB of data: a full copy takes long enough to cancel."""
    guest = start_guest(lab, 'bigwriter', disks=1, agent=True, top_data_mib=1024)
    yield guest
    remove_guest(guest)


def test_cancel_full_clone_leaves_nothing(lab, agent, bigguest):
    sid, _ = snapshot_id(agent, 'bigwriter', timeout=600)
    path = clone_call(agent, sid, clone_options(name='big-c', full=True))
    props = agent.wait_job(path, until=('copy', 'succeeded', 'failed'))
    assert props['Phase'] == 'copy', props
    agent.call('Cancel', iface='org.virtsnap.Job1', path=path)
    props = agent.wait_job(path)
    assert props['State'] == 'cancelled', props
    assert not domain_exists(lab, 'big-c')
    assert os.listdir(os.path.join(agent.snapshot_dir, 'clones')) == []
    assert agent.leftovers() == []
    # The snapshot is whole: a clone of it still works.
    guest = expect_clone(lab, agent, 'big-c')
    assert clone(agent, sid, name='big-c')['State'] == 'succeeded'
    remove_guest(guest)


def test_rbd_clone_boots(lab, ceph, rbdguest):  # noqa: F811
    ragent = rbd_agent(lab, 'agent-rbd-clone')
    try:
        sid, snap = snapshot_id(ragent, 'rbdguest')
        _, pool, snap_image = clone_of(snap)
        exported = ceph.export(pool, f'{snap_image}@snap', lab.path('rbd-clone-snap.raw'))
        snap_nums = labmod.read_records(exported)
        os.unlink(exported)

        guest = expect_clone(lab, ragent, 'rbdc')
        props = clone(ragent, sid, name='rbdc', start=True)
        assert props['State'] == 'succeeded', props['Error']
        assert props['Result']['disks'][0]['image'] == f'{pool}/rbdc-vda'
        info = ceph.image_info(f'{pool}/rbdc-vda')
        assert info['parent']['image'] == snap_image and info['parent']['snapshot'] == 'snap'
        xml = lab.virsh('dumpxml', 'rbdc')
        assert f"name='{pool}/rbdc-vda'" in xml and "protocol='rbd'" in xml
        guest.wait_ready(180)
        time.sleep(4)
        guest.destroy()
        out = ceph.export(pool, 'rbdc-vda', lab.path('rbd-clone.raw'))
        nums = labmod.read_records(out)
        os.unlink(out)
        assert labmod.records_contiguous(nums) and nums[:len(snap_nums)] == snap_nums
        assert nums[-1] > snap_nums[-1]
        # The original keeps running on its own image.
        assert rbdguest.state() == 'running' and rbdguest.agent_ping()
        remove_guest(guest)

        # --full flattens: the clone no longer depends on the snapshot.
        guest = expect_clone(lab, ragent, 'rbdf')
        props = clone(ragent, sid, name='rbdf', full=True)
        assert props['State'] == 'succeeded', props['Error']
        assert 'parent' not in ceph.image_info(f'{pool}/rbdf-vda')
        remove_guest(guest)
        assert ragent.leftovers() == []
    finally:
        for name in ('rbdc-vda', 'rbdf-vda'):
            if ceph.image_exists(f'vsdest/{name}'):
                ceph.remove_image(f'vsdest/{name}')
        ragent.stop()
