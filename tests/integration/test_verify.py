# SPDX-License-Identifier: LGPL-2.1-or-later
"""VerifySnapshot and holds against the real lab: verify (and verify --deep) of a live
snapshot of the writing guest, a damaged image, metadata that does not match its image,
an RBD snapshot; DeleteSnapshot and keep=N with a snapshot that a clone or an export
uses. Until the clone and browse helpers' code is in, the holders are planted records
(clone.json of a real, defined lab domain; an export record), as those components write
them."""

import contextlib
import hashlib
import json
import os
import random
import shutil
import subprocess
import time

import pytest
from gi.repository import GLib

from conftest import Agent, remove_guest
from test_rbd import ceph, rbd_agent, rbdguest  # noqa: F401  (fixtures)

BUSY = 'org.virtsnap.Error.Busy'
CORRUPT = 'org.virtsnap.Error.Corrupt'


@pytest.fixture(scope='module')
def vagent(lab):
    a = Agent(lab, name='agent-verify').start()
    yield a
    if a.proc is not None:
        a.stop()


@pytest.fixture(scope='module')
def snap(vagent, writer):
    """A live snapshot of the writing guest: its final job properties."""
    props = vagent.snapshot('writer')
    assert props['State'] == 'succeeded', props['Error']
    return props['Result']


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def new_id():
    return time.strftime('%Y%m%dT%H%M%SZ', time.gmtime()) + '-%06x' % random.getrandbits(24)


def folder(agent, sid):
    return os.path.join(agent.snapshot_dir, sid)


def metadata(agent, sid):
    with open(os.path.join(folder(agent, sid), 'metadata.json')) as f:
        return json.load(f)


def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(value, f)


def plant(src_agent, sid, dst_agent=None, change=None):
    """A copy of snapshot sid under a new id (in dst_agent's snapshot directory), its
    metadata rewritten to match, then passed through change(meta). Returns the new id."""
    dst_agent = dst_agent or src_agent
    new = new_id()
    shutil.copytree(folder(src_agent, sid), folder(dst_agent, new))
    meta = metadata(dst_agent, new)
    meta['id'] = meta['name'] = new
    meta.pop('verified', None)
    for d in meta['disks']:
        d['image'] = os.path.join(folder(dst_agent, new), os.path.basename(d['image']))
    if change:
        change(meta)
    write_json(os.path.join(folder(dst_agent, new), 'metadata.json'), meta)
    return new


def verify(agent, sid, **options):
    opts = {k: GLib.Variant('b', v) for k, v in options.items()}
    return agent.call('VerifySnapshot', GLib.Variant('(sa{sv})', (sid, opts)))[0]


def listed(agent, sid, domain=''):
    (snaps,) = agent.call('ListSnapshots', GLib.Variant('(s)', (domain,)))
    found = [s for s in snaps if s['id'] == sid]
    assert len(found) == 1, [s['id'] for s in snaps]
    return found[0]


def listing_line(agent, sid):
    lines = [line for line in agent.ctl('snapshots').stdout.splitlines() if line.startswith(sid)]
    assert len(lines) == 1, lines
    return lines[0]


def plant_clone(agent, name, sid, uuid, full=False):
    path = os.path.join(agent.snapshot_dir, 'clones', name)
    write_json(os.path.join(path, 'clone.json'), {
        'name': name, 'uuid': uuid, 'snapshot-id': sid, 'full': full, 'created': 1,
        'disks': [{'target': 'vda', 'image': os.path.join(path, 'vda.qcow2')}]})
    with open(os.path.join(path, 'vda.qcow2'), 'wb') as f:
        f.write(b'planted overlay')
    return path


def domain_uuid(lab, name):
    return lab.virsh('domuuid', name).strip()


@contextlib.contextmanager
def instead_of(vagent, make):
    """Another agent, while the module's agent is stopped (one owns the bus name)."""
    vagent.stop()
    try:
        other = make()
        try:
            yield other
        finally:
            other.stop()
    finally:
        vagent.start()


# ---- verify --------------------------------------------------------------------------------

def test_verify_live_snapshot_quick_and_deep(vagent, writer, snap):
    sid = snap['snapshot-id']
    image = snap['disks'][0]['image']
    before = sha256(image)

    props = vagent.wait_job(verify(vagent, sid))
    assert props['State'] == 'succeeded', props['Error']
    assert props['Method'] == 'verify' and props['Domain'] == 'writer'
    assert props['Progress'] == 1.0
    result = props['Result']
    assert result['snapshot-id'] == sid
    assert result['ok'] is True and result['deep'] is False and result['problems'] == []
    recorded = metadata(vagent, sid)['verified']
    assert recorded['ok'] is True and recorded['deep'] is False
    assert recorded['time'] == result['verified']
    entry = listed(vagent, sid, 'writer')
    assert entry['verified'] == result['verified'] and entry['verified-ok'] is True
    assert entry['used-by'] == []

    # --deep through the CLI: a private raw copy, the ext4 journal replayed into it
    # only, e2fsck -fn clean.
    res = vagent.ctl('--json', 'verify', sid, '--deep', '--wait')
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out['state'] == 'succeeded' and out['method'] == 'verify'
    assert out['result']['ok'] is True and out['result']['deep'] is True
    assert 'vda: ext4 clean' in out['result']['file-systems']
    recorded = metadata(vagent, sid)['verified']
    assert recorded['deep'] is True and recorded['ok'] is True
    assert recorded['file-systems'] == ['vda: ext4 clean']
    print(f"\nverify of {sid} ({os.path.getsize(image)} bytes on disk, "
          f"{snap['disks'][0]['virtual-size']} virtual): {result['total-ms']} ms; "
          f"--deep: {out['result']['total-ms']} ms")
    # The image was only read, and nothing is left: no scratch folder, no record.
    assert sha256(image) == before
    assert vagent.leftovers() == []
    line = listing_line(vagent, sid)
    assert recorded['time'][:19] in line and 'FAILED' not in line
    # The snapshot's domain was left alone: a verify is not a job on it.
    assert writer.state() == 'running' and writer.block_jobs() == []


def test_verify_damaged_image_is_corrupt(vagent, snap):
    sid = plant(vagent, snap['snapshot-id'])
    image = os.path.join(folder(vagent, sid), os.path.basename(snap['disks'][0]['image']))
    os.truncate(image, os.path.getsize(image) // 3)
    damaged = sha256(image)

    props = vagent.wait_job(verify(vagent, sid))
    assert props['State'] == 'failed'
    assert props['ErrorName'] == CORRUPT, props['Error']
    assert f'snapshot {sid} failed verification: vda: ' in props['Error']
    recorded = metadata(vagent, sid)['verified']
    assert recorded['ok'] is False and recorded['problems']
    assert all(p.startswith('vda: ') for p in recorded['problems'])
    entry = listed(vagent, sid)
    assert entry['verified-ok'] is False and entry['verified-problems'] == recorded['problems']
    assert 'FAILED' in listing_line(vagent, sid)

    # The CLI's exit code for it, with --deep too (the deep part skips the bad image).
    res = vagent.ctl('verify', '--deep', sid, '--wait')
    assert res.returncode == 11, (res.returncode, res.stderr)
    assert 'failed verification' in res.stderr
    assert sha256(image) == damaged
    assert vagent.leftovers() == []


@pytest.mark.parametrize('what', ['virtual-size', 'format'])
def test_verify_metadata_mismatch_is_corrupt(vagent, snap, what):
    def change(meta):
        if what == 'virtual-size':
            meta['disks'][0]['virtual-size'] += 1 << 20
        else:
            meta['disks'][0]['format'] = 'raw'

    sid = plant(vagent, snap['snapshot-id'], change=change)
    props = vagent.wait_job(verify(vagent, sid))
    assert props['State'] == 'failed' and props['ErrorName'] == CORRUPT, props['Error']
    expected = {'virtual-size': 'vda: the recorded virtual size is',
                'format': 'vda: the recorded format is raw, the image is qcow2'}[what]
    assert expected in props['Error']
    recorded = metadata(vagent, sid)['verified']
    assert recorded['ok'] is False
    assert any(p.startswith(expected) for p in recorded['problems']), recorded


MIB = 1 << 20


def make_partitioned_disk(path, workdir):
    """A raw 48 MiB disk with a DOS partition table: 1 a clean ext4, 2 an ext4 with a
    wrong link count (e2fsck -n finds it), 3 nothing."""
    def run(*argv, **kw):
        subprocess.run(argv, check=True, capture_output=True, **kw)

    with open(path, 'wb') as f:
        f.truncate(48 * MIB)
    run('/usr/sbin/sfdisk', '-q', path, input=b'label: dos\nstart=2048, size=32768\n'
        b'start=34816, size=32768\nstart=67584\n')
    for n, damage in ((1, False), (2, True)):
        fs = os.path.join(workdir, f'p{n}.img')
        with open(fs, 'wb') as f:
            f.truncate(16 * MIB)
        run('/usr/sbin/mkfs.ext4', '-q', '-F', '-L', f'part{n}', fs)
        if damage:
            run('/usr/sbin/debugfs', '-w', '-R', 'set_inode_field <2> links_count 9', fs)
        with open(fs, 'rb') as src, open(path, 'r+b') as dst:
            dst.seek((2048 + (n - 1) * 32768) * 512)
            dst.write(src.read())
        os.unlink(fs)


def test_verify_deep_partitions(lab, vagent, snap):
    def change(meta):
        meta['disks'] = [{'target': 'vda', 'image': 'vda.raw', 'format': 'raw',
                          'virtual-size': 48 * MIB, 'source': ''}]

    sid = plant(vagent, snap['snapshot-id'], change=change)
    os.unlink(os.path.join(folder(vagent, sid), os.path.basename(snap['disks'][0]['image'])))
    image = os.path.join(folder(vagent, sid), 'vda.raw')
    make_partitioned_disk(image, lab.path())
    before = sha256(image)

    # The image itself is fine: the quick check passes.
    props = vagent.wait_job(verify(vagent, sid))
    assert props['State'] == 'succeeded', props['Error']
    # --deep looks into each partition.
    props = vagent.wait_job(verify(vagent, sid, deep=True))
    assert props['State'] == 'failed' and props['ErrorName'] == CORRUPT, props['Error']
    assert ('vda: partition 2: e2fsck -fn found errors in the ext4 file system (exit 4): '
            'Inode 2 ref count is 9, should be 3.') in props['Error']
    recorded = metadata(vagent, sid)['verified']
    assert recorded['ok'] is False and recorded['deep'] is True
    assert recorded['file-systems'] == ['vda partition 1: ext4 clean',
                                        'vda partition 2: ext4 damaged']
    assert 'vda partition 3: no file system found' in recorded['notes']
    assert sha256(image) == before
    assert vagent.leftovers() == []


def test_verify_bad_input(vagent, snap):
    os.makedirs(os.path.join(vagent.snapshot_dir, 'clones'), exist_ok=True)
    (jobs_before,) = vagent.call('ListJobs')
    cases = [
        ('20990101T000000Z-000000', {}, 'org.virtsnap.Error.NoSuchSnapshot'),
        ('clones', {}, 'org.virtsnap.Error.NoSuchSnapshot'),  # not a snapshot
        ('../' + snap['snapshot-id'], {}, 'org.virtsnap.Error.InvalidArgument'),
        ('.hidden', {}, 'org.virtsnap.Error.InvalidArgument'),
        (snap['snapshot-id'], {'deep': GLib.Variant('s', 'yes')},
         'org.virtsnap.Error.InvalidArgument'),
        (snap['snapshot-id'], {'colour': GLib.Variant('b', True)},
         'org.virtsnap.Error.InvalidArgument'),
    ]
    for sid, opts, error in cases:
        name, message = vagent.call_error('VerifySnapshot',
                                          GLib.Variant('(sa{sv})', (sid, opts)))
        assert name == error, (sid, opts, name, message)
    (jobs_after,) = vagent.call('ListJobs')
    assert jobs_after == jobs_before  # nothing was started
    assert vagent.ctl('verify', '20990101T000000Z-000000').returncode == 4
    assert vagent.ctl('verify').returncode == 2
    assert vagent.ctl('verify', snap['snapshot-id'], '--colour').returncode == 2


def plant_full_disk(vagent, snap, mib=384):
    """A planted snapshot whose one disk is raw and full of data (not sparse), so that a
    deep verification's copy takes a while."""
    def change(meta):
        meta['disks'] = [{'target': 'vda', 'image': 'vda.raw', 'format': 'raw',
                          'virtual-size': mib * MIB, 'source': ''}]

    sid = plant(vagent, snap['snapshot-id'], change=change)
    os.unlink(os.path.join(folder(vagent, sid), os.path.basename(snap['disks'][0]['image'])))
    with open(os.path.join(folder(vagent, sid), 'vda.raw'), 'wb') as f:
        for _ in range(mib):
            f.write(b'\x5a' * MIB)
    return sid


def test_verify_cancel_leaves_nothing(vagent, snap):
    sid = plant_full_disk(vagent, snap)
    path = verify(vagent, sid, deep=True)
    props = vagent.wait_job(path, until=('deep-check', 'succeeded', 'failed', 'cancelled'))
    assert props['Phase'] == 'deep-check', props
    vagent.call('Cancel', iface='org.virtsnap.Job1', path=path)
    props = vagent.wait_job(path)
    assert props['State'] == 'cancelled', props
    assert props['ErrorName'] == 'org.virtsnap.Error.Cancelled'
    assert 'verified' not in metadata(vagent, sid)
    assert vagent.leftovers() == []  # the partial copy went with its folder
    shutil.rmtree(folder(vagent, sid))


def test_delete_during_verify_is_safe(vagent, snap):
    """A verification holds nothing: the snapshot may be deleted meanwhile, and the
    verification's record never brings back a folder."""
    sid = plant_full_disk(vagent, snap)
    path = verify(vagent, sid, deep=True)
    props = vagent.wait_job(path, until=('deep-check', 'succeeded', 'failed', 'cancelled'))
    assert props['Phase'] == 'deep-check', props
    vagent.call('DeleteSnapshot', GLib.Variant('(s)', (sid,)))
    props = vagent.wait_job(path)
    assert props['State'] == 'failed', props
    assert props['ErrorName'] == 'org.virtsnap.Error.NoSuchSnapshot', props['Error']
    assert 'was deleted while it was verified' in props['Error']
    assert not os.path.exists(folder(vagent, sid))
    assert vagent.leftovers() == []


def test_scratch_left_by_a_crash_goes_at_start(vagent, snap):
    scratch = os.path.join(vagent.snapshot_dir, f".{snap['snapshot-id']}.99.verify")
    os.makedirs(scratch)
    with open(os.path.join(scratch, 'vda.raw'), 'wb') as f:
        f.write(b'\0' * 4096)
    vagent.stop()
    vagent.start()
    assert not os.path.exists(scratch)
    assert 'left by an interrupted verification' in vagent.log_text()
    assert os.path.isdir(folder(vagent, snap['snapshot-id']))


def test_verify_rbd_snapshot(lab, vagent, ceph, rbdguest):  # noqa: F811
    with instead_of(vagent, lambda: rbd_agent(lab, 'agent-verify-rbd')) as ragent:
        props = ragent.snapshot('rbdguest', method='rbd')
        assert props['State'] == 'succeeded', props['Error']
        sid = props['Result']['snapshot-id']
        assert os.path.isdir(folder(ragent, sid))
        props = ragent.wait_job(verify(ragent, sid, deep=True))
        assert props['State'] == 'succeeded', props['Error']
        assert props['Result']['ok'] is True
        assert props['Result']['file-systems'] == ['vda: ext4 clean']
        assert metadata(ragent, sid)['verified']['ok'] is True

        # Metadata naming a snap the clone does not have.
        def change(meta):
            meta['disks'][0]['rbd']['snap'] = 'nosuchsnap'

        bad = plant(ragent, sid, change=change)
        props = ragent.wait_job(verify(ragent, bad))
        assert props['State'] == 'failed' and props['ErrorName'] == CORRUPT, props['Error']
        assert '@nosuchsnap is missing' in props['Error']
        shutil.rmtree(folder(ragent, bad))  # its rbd objects are the real snapshot's
        ragent.call('DeleteSnapshot', GLib.Variant('(s)', (sid,)))


# ---- holds ---------------------------------------------------------------------------------

def test_delete_refused_while_held(lab, vagent, snap):
    sid = plant(vagent, snap['snapshot-id'])
    # A defined lab domain stands for the clone's domain (a planted clone.json).
    holder = lab.make_guest('holdclone', disks=1, agent=False)
    try:
        clone = plant_clone(vagent, 'holdclone', sid, domain_uuid(lab, 'holdclone'))
        full = plant_clone(vagent, 'fullcopy', sid, domain_uuid(lab, 'holdclone'), full=True)
        name, message = vagent.call_error('DeleteSnapshot', GLib.Variant('(s)', (sid,)))
        assert name == BUSY and "used by clone 'holdclone'" in message, message
        assert 'fullcopy' not in message  # a full clone needs nothing of the snapshot
        assert listed(vagent, sid)['used-by'] == ['clone holdclone']
        res = vagent.ctl('delete', sid)
        assert res.returncode == 5 and "used by clone 'holdclone'" in res.stderr
        assert 'clone holdclone' in listing_line(vagent, sid)
        entry = [s for s in json.loads(vagent.ctl('--json', 'snapshots').stdout)
                 if s['id'] == sid][0]
        assert entry['used-by'] == ['clone holdclone']

        # An export holds it too, as long as its record is there.
        export = os.path.join(vagent.state_dir, 'exports', '7.json')
        write_json(export, {'id': 7, 'path': '/org/virtsnap/Agent1/export/7', 'snapshot-id': sid,
                            'disk': 'vda', 'socket': '/nonexistent', 'pid': 1, 'owner': 0,
                            'created': 1})
        name, message = vagent.call_error('DeleteSnapshot', GLib.Variant('(s)', (sid,)))
        assert name == BUSY and 'exported as /org/virtsnap/Agent1/export/7' in message
        assert sorted(listed(vagent, sid)['used-by']) == [
            'clone holdclone', 'export /org/virtsnap/Agent1/export/7']
        os.unlink(export)
        assert os.path.isdir(folder(vagent, sid))  # refusals lost nothing

        # The clone's domain goes: the snapshot may go, and the clone's leftovers with it.
        holder.undefine()
        holder = None
        vagent.call('DeleteSnapshot', GLib.Variant('(s)', (sid,)))
        assert not os.path.exists(folder(vagent, sid))
        assert not os.path.exists(clone)
        assert os.path.isdir(full)  # not a holder: not ours to remove
    finally:
        if holder is not None:
            remove_guest(holder)
        shutil.rmtree(os.path.join(vagent.snapshot_dir, 'clones', 'fullcopy'),
                      ignore_errors=True)


def test_keep_skips_held_snapshot(lab, vagent, writer, snap):
    with instead_of(vagent, lambda: Agent(lab, name='agent-verify-keep').start()) as agent:
        # Two older snapshots of writer, planted in this agent's directory; the oldest is
        # held by a planted clone.json naming writer itself (a domain that is defined).
        def created(us):
            return lambda meta: meta.update({'created-us': us})

        oldest = plant(vagent, snap['snapshot-id'], agent, created(1))
        older = plant(vagent, snap['snapshot-id'], agent, created(2))
        plant_clone(agent, 'keeper', oldest, domain_uuid(lab, 'writer'))
        assert agent.ctl('policy', 'set', 'writer', 'keep=1').returncode == 0
        try:
            props = agent.snapshot('writer')
            assert props['State'] == 'succeeded', props['Error']
            new = props['Result']['snapshot-id']
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                (snaps,) = agent.call('ListSnapshots', GLib.Variant('(s)', ('writer',)))
                if older not in [s['id'] for s in snaps]:
                    break
                time.sleep(0.2)
            # keep=1 counts the newest unheld snapshot; the held one stays besides it.
            assert [s['id'] for s in snaps] == [oldest, new]
            assert [s['used-by'] for s in snaps] == [['clone keeper'], []]
            log = agent.log_text()
            assert f"kept {oldest}: snapshot {oldest} is used by clone 'keeper'" in log
            assert f'removed snapshot {older}' in log
        finally:
            assert agent.ctl('policy', 'clear', 'writer').returncode == 0


# ---- access ------------------------------------------------------------------------------

@pytest.mark.system_only
def test_outsider_cannot_verify_member_can(lab, vagent, snap):
    """Verify writes the snapshot's metadata and reads its images as root: a mutating
    call, authorized through polkit action org.virtsnap.snapshot.verify."""
    sid = snap['snapshot-id']
    before = metadata(vagent, sid)
    res = vagent.ctl_as(lab.users['outsider'], 'verify', sid, '--wait')
    out = res.stdout + res.stderr
    assert res.returncode == 10, out
    assert 'org.virtsnap.Error.PermissionDenied' in out and 'org.virtsnap.snapshot.verify' in out
    assert metadata(vagent, sid) == before
    assert 'authorization: VerifySnapshot denied' in vagent.log_text()

    res = vagent.ctl_as(lab.users['member'], 'verify', sid, '--wait')
    assert res.returncode == 0, res.stdout + res.stderr
    assert metadata(vagent, sid)['verified']['time'] != before.get('verified', {}).get('time')
