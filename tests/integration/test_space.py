# SPDX-License-Identifier: LGPL-2.1-or-later
"""A full, a read-only and a vanished snapshot directory: every snapshot method ends with
NoSpace or IO, the domain is as it was, nothing partial is left, and the next snapshot
works once the directory is back. The directory is on a small tmpfs that run-tests mounts
for each lab mode (VIRTSNAP_LAB_SMALLFS), owned by the user the suite runs as."""

import os
import subprocess

import pytest
from gi.repository import GLib

from conftest import Agent, domain_intact, remove_guest, start_guest
from test_cold import managed_save
from test_live import check_image, image_of

NO_SPACE = 'org.virtsnap.Error.NoSpace'
IO = 'org.virtsnap.Error.IO'
MIB = 1024 * 1024
# What the full directory still has: room for the job's folder and a delta's qcow2 header,
# not for the guest's 8 MiB top layer (the mirror, or qemu-img convert, runs out).
NEARLY_FULL = 2 * MIB


@pytest.fixture(scope='module')
def smallfs():
    path = os.environ.get('VIRTSNAP_LAB_SMALLFS')
    assert path and os.path.ismount(path), \
        'VIRTSNAP_LAB_SMALLFS: the small tmpfs run-tests mounts for this suite'
    for name in os.listdir(path):  # an earlier run's
        subprocess.run(['rm', '-rf', os.path.join(path, name)], check=True)
    return path


@pytest.fixture(scope='module')
def spaceguest(lab):
    # 8 MiB in the top layer: what a shallow copy copies, more than the full dir holds.
    guest = start_guest(lab, 'spaceguest', disks=1, agent=True, backing=True, top_data_mib=8)
    yield guest
    remove_guest(guest)


@pytest.fixture(scope='module')
def sagent(lab, smallfs):
    a = Agent(lab, name='agent-space')
    a.snapshot_dir = os.path.join(smallfs, 'snapshots')
    a.start()
    yield a
    if a.proc is not None:
        a.stop()


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(smallfs, leave):
    """Leave about *leave* bytes free on the small file system."""
    filler = os.path.join(smallfs, 'filler')
    size = (os.path.getsize(filler) if os.path.exists(filler) else 0) + free_bytes(smallfs) - leave
    with open(filler, 'ab') as f:
        f.truncate(size)
        os.posix_fallocate(f.fileno(), 0, size)
    assert abs(free_bytes(smallfs) - leave) <= 64 * 1024, free_bytes(smallfs)


def unfill(smallfs):
    os.unlink(os.path.join(smallfs, 'filler'))


def nothing_left(agent):
    """No folder, partial or not, and no journal record: the directory is as it was."""
    assert os.listdir(agent.snapshot_dir) == []
    assert agent.leftovers() == []


def thawed(guest):
    guest.wait_agent()
    assert not guest.frozen()


def next_one_works(agent, guest, **options):
    props = agent.snapshot(guest.name, **options)
    assert props['State'] == 'succeeded', props['Error']
    agent.call('DeleteSnapshot', GLib.Variant('(s)', (props['Result']['snapshot-id'],)))
    return props


@pytest.mark.parametrize('options, leave', [
    ({'copy': 'shallow'}, NEARLY_FULL),
    ({'copy': 'direct'}, NEARLY_FULL),
    ({'legacy_undefine': True}, NEARLY_FULL),
    ({'copy': 'shallow'}, 0),  # not even the delta can be made (qemu-img create)
], ids=['shallow', 'direct', 'legacy-undefine', 'shallow-full'])
def test_live_into_full_directory(sagent, smallfs, spaceguest, options, leave):
    before = spaceguest.inactive_xml()
    fill(smallfs, leave)
    try:
        props = sagent.snapshot('spaceguest', method='live', **options)
        assert props['State'] == 'failed'
        assert props['ErrorName'] == NO_SPACE, props
        if leave:  # the mirror ran out; libvirt does not say why, the agent finds out
            assert props['Error'].startswith('the copy of disk vda ran out of space'), props
        else:
            assert 'No space left on device' in props['Error'], props['Error']
        assert smallfs not in props['Error']
        domain_intact(spaceguest, before)
        thawed(spaceguest)
        nothing_left(sagent)
    finally:
        unfill(smallfs)
    done = next_one_works(sagent, spaceguest, method='live', **options)
    assert done['Result']['copy'] == options.get('copy', done['Result']['copy'])
    domain_intact(spaceguest, before)


def test_cold_into_full_directory(lab, sagent, smallfs, spaceguest):
    before = spaceguest.inactive_xml()
    fill(smallfs, NEARLY_FULL)
    try:
        props = sagent.snapshot('spaceguest', method='cold')
        assert props['State'] == 'failed'
        assert props['ErrorName'] == NO_SPACE, props
        assert 'No space left on device' in props['Error'], props['Error']
        assert smallfs not in props['Error']
        domain_intact(spaceguest, before)
        assert not managed_save(lab, 'spaceguest')
        thawed(spaceguest)
        nothing_left(sagent)
    finally:
        unfill(smallfs)
    next_one_works(sagent, spaceguest, method='cold')
    domain_intact(spaceguest, before)
    assert not managed_save(lab, 'spaceguest')


def read_only(smallfs, agent, on):
    """The snapshot directory read-only for the agent: a read-only mount for the root agent
    of the system lab (root ignores modes), its mode for the session lab's agent."""
    if os.getuid() == 0:
        subprocess.run(['mount', '-o', 'remount,' + ('ro' if on else 'rw'), smallfs], check=True)
    else:
        os.chmod(agent.snapshot_dir, 0o555 if on else 0o711)


def test_read_only_directory(sagent, smallfs, spaceguest):
    before = spaceguest.inactive_xml()
    read_only(smallfs, sagent, True)
    try:
        props = sagent.snapshot('spaceguest', method='live')
        assert props['State'] == 'failed'
        assert props['ErrorName'] == IO, props
        why = 'Read-only file system' if os.getuid() == 0 else 'Permission denied'
        assert props['Error'] == f'cannot write in the snapshot directory: {why}', props['Error']
        domain_intact(spaceguest, before)
        thawed(spaceguest)
        nothing_left(sagent)
    finally:
        read_only(smallfs, sagent, False)
    next_one_works(sagent, spaceguest, method='live')


def test_vanished_directory_is_not_made_again(sagent, smallfs, spaceguest):
    """A snapshot directory gone while the agent runs (most often an unmounted file system)
    is refused with IO, not made again on the file system below."""
    before = spaceguest.inactive_xml()
    moved = os.path.join(smallfs, 'moved')
    os.rename(sagent.snapshot_dir, moved)
    try:
        props = sagent.snapshot('spaceguest', method='live')
        assert props['State'] == 'failed'
        assert props['ErrorName'] == IO, props
        assert props['Error'].startswith('the snapshot directory is gone'), props['Error']
        assert smallfs not in props['Error']
        assert not os.path.exists(sagent.snapshot_dir)
        domain_intact(spaceguest, before)
        thawed(spaceguest)
        assert sagent.leftovers() == []
    finally:
        os.rename(moved, sagent.snapshot_dir)
    props = next_one_works(sagent, spaceguest, method='live')
    nothing_left(sagent)
    assert props['Result']['disks'][0]['target'] == 'vda'


def test_offline_into_full_directory(sagent, smallfs, spaceguest):
    """Last: it leaves the guest shut off."""
    spaceguest.destroy()
    before = spaceguest.inactive_xml()
    fill(smallfs, NEARLY_FULL)
    try:
        props = sagent.snapshot('spaceguest', method='cold')
        assert props['State'] == 'failed'
        assert props['ErrorName'] == NO_SPACE, props
        assert smallfs not in props['Error']
        assert spaceguest.state() == 'shut off'
        assert spaceguest.is_persistent() and spaceguest.inactive_xml() == before
        nothing_left(sagent)
    finally:
        unfill(smallfs)
    props = sagent.snapshot('spaceguest', method='cold')
    assert props['State'] == 'succeeded', props['Error']
    assert props['Result']['offline'] is True
    check_image(image_of(props))
    assert spaceguest.state() == 'shut off'
