# SPDX-License-Identifier: LGPL-2.1-or-later
"""Browse (issue 11): ExportSnapshot serves a snapshot disk read-only over NBD on a UNIX
socket that is the caller's alone; virtsnapctl mount shows its file system (FUSE, as the
caller: the lab user in session mode, group libvirt's member in system mode), umount ends
it; a snapshot in use cannot be deleted; a killed agent's leftovers are cleaned at its next
start; bad input is refused with a specific error and leaves nothing behind."""

import filecmp
import json
import os
import pwd
import signal
import stat
import subprocess
import time

import pytest
from gi.repository import GLib

from conftest import SYSTEM
import lab as labmod
from test_rbd import ceph, clone_of, ragent, rbdguest  # noqa: F401  (fixtures)

EXPORT_IFACE = 'org.virtsnap.Export1'
NO_SUCH_ID = '20000101T000000Z-000000'


# ---- helpers -------------------------------------------------------------------------------

def take_snapshot(agent, name):
    props = agent.snapshot('writer', name=name)
    assert props['State'] == 'succeeded', props['Error']
    return props['Result']['snapshot-id'], props['Result']['disks'][0]['image']


def run(argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)


def export(agent, snap_id, **options):
    opts = {k: GLib.Variant('s', v) for k, v in options.items()}
    return agent.call('ExportSnapshot', GLib.Variant('(sa{sv})', (snap_id, opts)))[0]


def export_error(agent, snap_id, options):
    return agent.call_error('ExportSnapshot', GLib.Variant('(sa{sv})', (snap_id, options)))


def export_props(agent, path):
    return agent.call('GetAll', GLib.Variant('(s)', (EXPORT_IFACE,)),
                      iface='org.freedesktop.DBus.Properties', path=path)[0]


def list_exports(agent):
    return agent.call('ListExports')[0]


def records_dir(agent):
    return os.path.join(agent.state_dir, 'exports')


def alive(pid):
    """Running (a zombie waiting for its reaper is not)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


def wait_gone(pid, timeout=10):
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def nothing_exported(agent):
    """No object, no record, no socket."""
    assert list_exports(agent) == []
    assert not os.path.exists(records_dir(agent)), os.listdir(records_dir(agent))
    if os.path.isdir(agent.runtime_dir):
        assert os.listdir(agent.runtime_dir) == []


class Caller:
    """The unprivileged caller of the mode: runs virtsnapctl and reads files as that user
    (group libvirt's member in the system lab, the lab user in session mode)."""

    def __init__(self, lab, agent):
        self.agent = agent
        self.name = lab.users['member'] if SYSTEM else None
        self.uid = pwd.getpwnam(self.name).pw_uid if SYSTEM else os.getuid()
        self.dirs = []

    def ctl(self, *args):
        return self.agent.ctl_as(self.name, *args) if SYSTEM else self.agent.ctl(*args)

    def run(self, *argv):
        if SYSTEM:
            argv = ('runuser', '-u', self.name, '--') + argv
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd='/')

    def mkdir(self, path):
        self.dirs.append(path)
        os.mkdir(path)
        if SYSTEM:
            os.chown(path, self.uid, -1)
        return path


@pytest.fixture
def caller(lab, agent):
    c = Caller(lab, agent)
    yield c
    # A failed test leaves no mount (and no helper of the caller's) behind.
    for d in c.dirs:
        if is_mount_point(d):
            c.ctl('umount', d)


def ok(res):
    assert res.returncode == 0, f'exit {res.returncode}: {res.stdout}{res.stderr}'
    return res.stdout


def is_mount_point(path):
    with open('/proc/self/mountinfo') as f:
        return any(line.split()[4] == path for line in f)


# ---- ExportSnapshot over D-Bus ---------------------------------------------------------------

def test_export_serves_the_snapshot_read_only(lab, agent, writer):
    snap_id, image = take_snapshot(agent, 'export-me')
    path = export(agent, snap_id)
    assert path.startswith('/org/virtsnap/Agent1/export/')
    props = export_props(agent, path)
    sock = props['Socket']
    assert props['SnapshotId'] == snap_id and props['Disk'] == 'vda'
    assert props['Owner'] == os.getuid() and props['Created'] > 0
    assert props['Uri'] == f'nbd+unix:///?socket={sock}'
    assert os.path.dirname(sock) == agent.runtime_dir
    assert list_exports(agent) == [path]
    # The caller's alone; the directory lets callers reach it but lists nothing.
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.getuid()
    assert stat.S_IMODE(os.stat(agent.runtime_dir).st_mode) == 0o711
    # The record of the contract, naming a server that really is ours.
    with open(os.path.join(records_dir(agent), f'{props["Id"]}.json')) as f:
        record = json.load(f)
    assert {k: record[k] for k in ('id', 'path', 'snapshot-id', 'disk', 'socket', 'owner')} == \
        {'id': props['Id'], 'path': path, 'snapshot-id': snap_id, 'disk': 'vda', 'socket': sock,
         'owner': os.getuid()}
    with open(f'/proc/{record["pid"]}/cmdline', 'rb') as f:
        cmdline = f.read().split(b'\0')
    assert os.path.basename(cmdline[0]) == b'qemu-nbd' and b'--read-only' in cmdline

    # The served disk is the snapshot's image, byte for byte.
    served, ref = lab.path('served.raw'), lab.path('ref.raw')
    run(['qemu-img', 'convert', '-f', 'raw', '-O', 'raw', props['Uri'], served])
    run(['qemu-img', 'convert', '-O', 'raw', image, ref])
    assert filecmp.cmp(served, ref, shallow=False)
    # Writes are refused, and nothing changed.
    res = subprocess.run(['qemu-io', '-f', 'raw', '-c', 'write -P 0x55 0 64k', props['Uri']],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 or 'failed' in res.stdout + res.stderr, res.stdout + res.stderr
    os.unlink(served)
    run(['qemu-img', 'convert', '-f', 'raw', '-O', 'raw', props['Uri'], served])
    assert filecmp.cmp(served, ref, shallow=False)

    # virtsnapctl exports shows it.
    out = ok(agent.ctl('exports'))
    assert snap_id in out and props['Uri'] in out
    listed = json.loads(ok(agent.ctl('exports', '--json')))
    assert [(e['path'], e['snapshot-id'], e['disk'], e['socket']) for e in listed] == \
        [(path, snap_id, 'vda', sock)]

    # Remove(): the server, the socket, the record and the object go.
    agent.call('Remove', iface=EXPORT_IFACE, path=path)
    assert wait_gone(record['pid'])
    nothing_exported(agent)
    for f in (served, ref):
        os.unlink(f)


def test_export_bad_input(lab, agent, writer):
    snap_id, _ = take_snapshot(agent, 'bad-input')
    s = GLib.Variant
    cases = [
        (NO_SUCH_ID, {}, 'NoSuchSnapshot'),
        ('clones', {}, 'NoSuchSnapshot'),
        ('../' + snap_id, {}, 'InvalidArgument'),
        (f'x/{snap_id}', {}, 'InvalidArgument'),
        ('..', {}, 'InvalidArgument'),
        ('.' + snap_id, {}, 'InvalidArgument'),
        ('-' + snap_id, {}, 'InvalidArgument'),
        (snap_id, {'disk': s('s', 'vdz')}, 'NoSuchDisk'),
        (snap_id, {'disk': s('s', '../vda')}, 'InvalidArgument'),
        (snap_id, {'disk': s('s', 'a/b')}, 'InvalidArgument'),
        (snap_id, {'disk': s('i', 1)}, 'InvalidArgument'),
        (snap_id, {'socket': s('s', '/tmp/x.sock')}, 'InvalidArgument'),
    ]
    for sid, options, name in cases:
        err, msg = export_error(agent, sid, options)
        assert err == f'org.virtsnap.Error.{name}', (sid, options, err, msg)
    nothing_exported(agent)
    # The snapshot is untouched and can go.
    agent.call('DeleteSnapshot', GLib.Variant('(s)', (snap_id,)))


# ---- virtsnapctl mount / umount ----------------------------------------------------------------

def test_mount_read_umount(lab, agent, writer, caller):
    snap_id, image = take_snapshot(agent, 'mount-me')
    expected = labmod.read_records(image, replay_journal=False)
    assert len(expected) > 0
    mnt = caller.mkdir(lab.path('mnt-read'))

    t = time.monotonic()
    out = ok(caller.ctl('mount', snap_id, mnt))
    took = time.monotonic() - t
    assert f'mounted snapshot {snap_id} disk vda read-only at {mnt}' in out
    print(f'virtsnapctl mount took {took * 1000:.0f} ms')
    assert is_mount_point(mnt)
    # The file the guest wrote, as the snapshot holds it.
    text = ok(caller.run('cat', os.path.join(mnt, 'records')))
    lines = text.split('\n')
    lines.pop()  # after the last newline
    assert [int(x) for x in lines] == expected
    # Read-only.
    res = caller.run('touch', os.path.join(mnt, 'new-file'))
    assert res.returncode != 0, res
    # Listed, and the snapshot in use cannot be deleted.
    listed = json.loads(ok(caller.ctl('exports', '--json')))
    assert [(e['snapshot-id'], e['owner']) for e in listed] == [(snap_id, caller.uid)]
    res = caller.ctl('delete', snap_id)
    assert res.returncode == 5, res
    assert 'org.virtsnap.Error.Busy' in res.stderr and 'exported as' in res.stderr, res.stderr
    assert snap_id in [x['id'] for x in agent.call('ListSnapshots', GLib.Variant('(s)', ('',)))[0]]
    # Mounting there again is refused: it is not an empty directory any more.
    assert caller.ctl('mount', snap_id, mnt).returncode == 2

    ok(caller.ctl('umount', mnt))
    assert not is_mount_point(mnt)
    assert os.listdir(mnt) == []
    nothing_exported(agent)
    # Not mounted any more: umount says so.
    assert caller.ctl('umount', mnt).returncode == 4
    ok(caller.ctl('delete', snap_id))
    os.rmdir(mnt)


def test_mount_bad_input(lab, agent, writer, caller):
    snap_id, _ = take_snapshot(agent, 'mount-bad')
    a_file = lab.path('mnt-file')
    with open(a_file, 'w') as f:
        f.write('x\n')
    full = caller.mkdir(lab.path('mnt-full'))
    with open(os.path.join(full, 'keep'), 'w') as f:
        f.write('keep\n')
    empty = caller.mkdir(lab.path('mnt-empty'))

    for where, why in ((a_file, 'is not a directory'), (full, 'is not an empty directory'),
                       (lab.path('mnt-missing'), 'No such file or directory')):
        res = caller.ctl('mount', snap_id, where)
        assert res.returncode == 2, res
        assert why in res.stderr, res.stderr
    for sid, disk, code, error in ((NO_SUCH_ID, [], 4, 'NoSuchSnapshot'),
                                   (snap_id, ['--disk', 'vdz'], 4, 'NoSuchDisk'),
                                   ('../' + snap_id, [], 2, 'InvalidArgument'),
                                   (snap_id, ['--disk', '../vda'], 2, 'InvalidArgument')):
        res = caller.ctl('mount', sid, empty, *disk)
        assert res.returncode == code, res
        assert f'org.virtsnap.Error.{error}' in res.stderr, res.stderr
    # Nothing changed: the file, the full directory, the empty one; nothing exported.
    with open(a_file) as f:
        assert f.read() == 'x\n'
    assert os.listdir(full) == ['keep'] and os.listdir(empty) == []
    assert not is_mount_point(empty)
    nothing_exported(agent)
    res = caller.ctl('umount', empty)
    assert res.returncode == 4 and 'not a snapshot mounted' in res.stderr, res


def test_export_of_an_rbd_snapshot(lab, ceph, ragent, rbdguest):  # noqa: F811
    props = ragent.snapshot('rbdguest')
    assert props['State'] == 'succeeded', props['Error']
    snap_id = props['Result']['snapshot-id']
    _, pool, name = clone_of(props)
    path = export(ragent, snap_id)
    uri = export_props(ragent, path)['Uri']
    served, ref = lab.path('rbd-served.raw'), lab.path('rbd-ref.raw')
    try:
        run(['qemu-img', 'convert', '-f', 'raw', '-O', 'raw', uri, served])
        ceph.export(pool, f'{name}@snap', ref)
        assert filecmp.cmp(served, ref, shallow=False)
        assert labmod.records_contiguous(labmod.read_records(served))
        # In use: the snapshot (and its clone in the cluster) cannot go.
        err, msg = ragent.call_error('DeleteSnapshot', GLib.Variant('(s)', (snap_id,)))
        assert err == 'org.virtsnap.Error.Busy' and path in msg, (err, msg)
    finally:
        for f in (served, ref):
            if os.path.exists(f):
                os.unlink(f)
    ragent.call('Remove', iface=EXPORT_IFACE, path=path)
    nothing_exported(ragent)
    ragent.call('DeleteSnapshot', GLib.Variant('(s)', (snap_id,)))
    assert not ceph.image_exists(f'{pool}/{name}')


@pytest.mark.system_only
def test_export_is_the_callers_alone(lab, agent, writer, caller):
    outsider = lab.users['outsider']
    snap_id, _ = take_snapshot(agent, 'private')
    mnt = caller.mkdir(lab.path('mnt-private'))
    ok(caller.ctl('mount', snap_id, mnt))
    [path] = list_exports(agent)
    props = export_props(agent, path)
    assert os.stat(props['Socket']).st_uid == caller.uid

    # The owner reads the disk through the socket; the outsider cannot connect.
    ok(caller.run('qemu-img', 'info', props['Uri']))
    res = subprocess.run(['runuser', '-u', outsider, '--', 'qemu-img', 'info', props['Uri']],
                         capture_output=True, text=True, timeout=60, cwd='/')
    assert res.returncode != 0 and 'Permission denied' in res.stderr, res
    # Nor can the outsider export, or end the member's export.
    res = agent.ctl_as(outsider, 'mount', snap_id, caller.mkdir(lab.path('mnt-outsider')))
    assert res.returncode == 10 and 'org.virtsnap.snapshot.export' in res.stderr, res
    res = subprocess.run(['runuser', '-u', outsider, '--', 'gdbus', 'call', '--address',
                          lab.bus_address, '--dest', 'org.virtsnap.Agent1', '--object-path', path,
                          '--method', f'{EXPORT_IFACE}.Remove'], capture_output=True, text=True,
                         timeout=30, cwd='/')
    assert res.returncode != 0 and 'PermissionDenied' in res.stderr, res
    assert list_exports(agent) == [path]
    assert ok(caller.run('cat', os.path.join(mnt, 'records')))

    ok(caller.ctl('umount', mnt))
    nothing_exported(agent)


# ---- the agent's own start-up -------------------------------------------------------------------

def test_killed_agent_leftovers_are_cleaned_at_start(lab, agent, writer):
    snap_id, image = take_snapshot(agent, 'left-behind')
    path = export(agent, snap_id)
    props = export_props(agent, path)
    record_path = os.path.join(records_dir(agent), f'{props["Id"]}.json')
    with open(record_path) as f:
        record = json.load(f)
    assert alive(record['pid'])

    agent.kill()
    # The server dies with the agent; its socket and record stay for the next start.
    assert wait_gone(record['pid'])
    assert os.path.exists(props['Socket']) and os.path.exists(record_path)

    # A server that outlived its agent (as if PR_SET_PDEATHSIG had not been there), and a
    # record whose pid now belongs to someone else: the first is stopped, the second not.
    os.unlink(props['Socket'])
    server = subprocess.Popen(['qemu-nbd', '--read-only', '--persistent', '--shared=0',
                               '--format=qcow2', f'--socket={props["Socket"]}', image],
                              stdin=subprocess.DEVNULL)
    bystander = subprocess.Popen(['sleep', '300'])
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(props['Socket']) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.exists(props['Socket'])
        record['pid'] = server.pid
        with open(record_path, 'w') as f:
            json.dump(record, f)
        other = dict(record, id=99, pid=bystander.pid,
                     socket=os.path.join(agent.runtime_dir, 'nbd-99.sock'))
        with open(os.path.join(records_dir(agent), '99.json'), 'w') as f:
            json.dump(other, f)

        agent.start()
        assert server.wait(10) == -signal.SIGKILL
        assert bystander.poll() is None
        nothing_exported(agent)
        assert f'export record {record_path}: stopping its leftover server' in agent.log_text()
        # The snapshot is free again.
        agent.call('DeleteSnapshot', GLib.Variant('(s)', (snap_id,)))
    finally:
        for p in (server, bystander):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_agent_stop_ends_its_exports(lab, agent, writer):
    snap_id, _ = take_snapshot(agent, 'stop-ends')
    path = export(agent, snap_id)
    with open(os.path.join(records_dir(agent), path.rsplit('/', 1)[1] + '.json')) as f:
        pid = json.load(f)['pid']
    agent.stop()
    assert wait_gone(pid)
    assert not os.path.exists(records_dir(agent))
    assert os.listdir(agent.runtime_dir) == []
    agent.start()
    assert list_exports(agent) == []
