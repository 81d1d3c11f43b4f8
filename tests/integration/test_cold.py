# SPDX-License-Identifier: LGPL-2.1-or-later
"""Cold and offline snapshots, and method=auto choosing between live and cold,
against the real lab."""

import glob
import os
import time

import pytest
from gi.repository import GLib

from conftest import Agent, remove_guest, snapshot_options, start_guest
from test_live import check_image, check_private, image_of


@pytest.fixture(scope='module')
def coldguest(lab):
    guest = start_guest(lab, 'coldguest', disks=1, agent=True, backing=True, memory_mib=256)
    yield guest
    remove_guest(guest)


def managed_save(lab, name):
    return 'Managed save:   yes' in lab.virsh('dominfo', name)


def clock_offset(guest):
    """Host time minus guest time, in seconds (the guest's clock stops while it is saved)."""
    t0 = time.time()
    out = guest.agent_command('{"execute": "guest-get-time"}')
    t1 = time.time()
    return (t0 + t1) / 2 - out / 1e9


def test_cold_snapshot_of_running_guest(lab, agent, coldguest):
    before = coldguest.inactive_xml()
    offset_before = clock_offset(coldguest)
    props = agent.snapshot('coldguest', method='cold')
    assert props['State'] == 'succeeded', props['Error']
    assert props['Method'] == 'cold'
    assert 'managed save' in props['MethodReason']
    downtime = props['DowntimeMs']
    assert downtime > 0 and props['Result']['downtime-ms'] == downtime
    assert coldguest.state() == 'running'
    assert coldguest.is_persistent() and coldguest.inactive_xml() == before
    assert not managed_save(lab, 'coldguest')
    coldguest.wait_agent()
    # The guest lost exactly the reported downtime: its clock lags by that much more.
    lag = clock_offset(coldguest) - offset_before
    assert abs(lag - downtime / 1000) < 1.0, (lag, downtime)
    nums = check_image(image_of(props))
    check_private(agent, props)
    # ... and its records go on from where they were.
    later = agent.snapshot('coldguest', method='live')
    assert later['State'] == 'succeeded', later['Error']
    assert check_image(image_of(later), replay_journal=False)[-1] > nums[-1]
    assert agent.leftovers() == []


def test_cold_snapshot_of_paused_guest_stays_paused(lab, agent, coldguest):
    lab.virsh('suspend', 'coldguest')
    try:
        props = agent.snapshot('coldguest', method='cold')
        assert props['State'] == 'succeeded', props['Error']
        assert coldguest.state() == 'paused'
        assert not managed_save(lab, 'coldguest')
        check_image(image_of(props))
    finally:
        lab.virsh('resume', 'coldguest')
    coldguest.wait_agent()


def test_shut_off_domain_is_extracted_directly(lab, agent):
    guest = start_guest(lab, 'offline', disks=1, agent=True)
    try:
        time.sleep(1)
        guest.shutdown()
        assert guest.state() == 'shut off'
        props = agent.snapshot('offline')  # auto
        assert props['State'] == 'succeeded', props['Error']
        assert props['Method'] == 'cold' and 'shutoff' in props['MethodReason']
        assert props['Result']['offline'] is True and props['DowntimeMs'] == 0
        assert guest.state() == 'shut off'
        assert not managed_save(lab, 'offline')
        check_image(image_of(props))
        name, message = agent.call_error('CreateSnapshot', GLib.Variant(
            '(sa{sv})', ('offline', snapshot_options(method='live'))))
        assert name == 'org.virtsnap.Error.NotRunning', message
    finally:
        remove_guest(guest)


def test_foreign_managed_save_is_kept(lab, agent):
    guest = start_guest(lab, 'saved-by-user', disks=1, agent=True)
    try:
        time.sleep(2)  # records on disk, not only in the page cache
        lab.virsh('managedsave', 'saved-by-user')
        assert managed_save(lab, 'saved-by-user')
        props = agent.snapshot('saved-by-user')
        assert props['State'] == 'succeeded', props['Error']
        assert props['Result']['offline'] is True
        assert managed_save(lab, 'saved-by-user')  # not ours: untouched
        check_image(image_of(props))
        guest.start()  # restores the user's saved state
        guest.wait_agent()
    finally:
        remove_guest(guest)


def test_auto_goes_cold_for_a_block_device(lab, agent):
    loop = os.environ.get('VIRTSNAP_LAB_LOOPDEV')
    assert loop, 'run-tests prepares a loop device with ext4 on it (VIRTSNAP_LAB_LOOPDEV)'
    guest = lab.make_guest('blockdev', disks=1, agent=True, fmt='raw', define=False)
    with open(guest.xml_path) as f:
        xml = f.read()
    disk = guest.disks[0]
    xml = xml.replace("<disk type='file' device='disk'>", "<disk type='block' device='disk'>", 1)
    xml = xml.replace(f"<source file='{disk['path']}'/>", f"<source dev='{loop}'/>", 1)
    with open(guest.xml_path, 'w') as f:
        f.write(xml)
    lab.virsh('define', guest.xml_path)
    try:
        guest.start()
        guest.wait_ready(120)
        # A managed save keeps unsynced data in the saved RAM, not on the disk: let the
        # guest's first records reach the disk.
        time.sleep(2)
        name, message = agent.call_error('CreateSnapshot', GLib.Variant(
            '(sa{sv})', ('blockdev', snapshot_options(method='live'))))
        assert name == 'org.virtsnap.Error.Unsupported' and 'block device' in message, message
        props = agent.snapshot('blockdev')  # auto
        assert props['State'] == 'succeeded', props['Error']
        assert props['Method'] == 'cold'
        assert 'block device' in props['MethodReason'], props['MethodReason']
        assert guest.state() == 'running'
        check_image(image_of(props))
    finally:
        remove_guest(guest)


@pytest.fixture
def unprivileged_writer_agent(lab, request):
    """An agent that mode bits stop: in the system lab, root without CAP_DAC_OVERRIDE (it
    still reads everything, with CAP_DAC_READ_SEARCH), so that a folder made read-only
    makes its writes fail there too."""
    wrapper = ['setpriv', '--bounding-set=-dac_override'] if lab.mode == 'system' else []
    a = Agent(lab, name=f'agent-{request.node.name}'[:60], wrapper=wrapper).start()
    yield a
    if a.proc is not None:
        a.stop()


def test_extraction_failure_still_restarts_the_guest(lab, unprivileged_writer_agent, coldguest):
    agent = unprivileged_writer_agent
    before = coldguest.inactive_xml()
    for attempt in range(5):
        path = agent.create('coldguest', method='cold')
        agent.wait_job(path, until=('save',) + ('succeeded', 'failed'), timeout=30)
        for folder in glob.glob(os.path.join(agent.snapshot_dir, '.*.partial')):
            os.chmod(folder, 0o500)  # the image cannot be written
        props = agent.wait_job(path, timeout=120)
        if props['State'] == 'failed':
            break
    assert props['State'] == 'failed', 'the failure was never injected in time'
    assert props['ErrorName'] == 'org.virtsnap.Error.IO', props
    assert 'Permission denied' in props['Error']
    assert coldguest.state() == 'running'
    assert not managed_save(lab, 'coldguest')
    assert coldguest.is_persistent() and coldguest.inactive_xml() == before
    coldguest.wait_agent()
    assert agent.leftovers() == []
