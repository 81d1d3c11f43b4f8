# SPDX-License-Identifier: LGPL-2.1-or-later
"""LUKS-encrypted qcow2 disks against the real lab: a running guest whose data disk is
a qcow2 with LUKS encryption (its passphrase in a libvirt secret) is snapshotted live
(shallow and direct) and cold, and every snapshot image is still encrypted with the same
secret: unreadable without it, a clean ext4 with the guest's records with it. Metadata
names the secret's UUID; the passphrase is in no file of the agent's, in no process's
argv while the jobs run. Verify checks the encrypted images; what would write the disk
out in the clear (format=raw, deep verify) or is not done yet (clone, export, compress,
the legacy copy, a private secret) is refused with Unsupported. RevertSnapshot writes a
snapshot back into the encrypted disk through the secret."""

import json
import os
import secrets
import subprocess
import threading
import time

import pytest
from gi.repository import GLib

import lab as labmod
from conftest import Agent, domain_intact, remove_guest, snapshot_options, start_guest

UNSUPPORTED = 'org.virtsnap.Error.Unsupported'
# One per run: grepping for it finds only what leaked from this run.
PASSPHRASE = 'vs-luks-' + secrets.token_hex(16)
# Snapshots one test takes and a later one reuses (each costs seconds of TCG guest time).
TAKEN = {}


@pytest.fixture(scope='module')
def secret(lab):
    uuid = labmod.define_secret(lab, PASSPHRASE)
    yield uuid
    labmod.undefine_secret(lab, uuid)


@pytest.fixture(scope='module')
def luksguest(lab, secret):
    """A running guest writing records to one LUKS-encrypted qcow2 disk."""
    guest = start_guest(lab, 'luksg', disks=1, agent=True, disk_size_mib=32,
                        luks={'uuid': secret, 'passphrase': PASSPHRASE})
    yield guest
    remove_guest(guest)


@pytest.fixture(scope='module')
def lagent(lab):
    a = Agent(lab, name='agent-luks').start()
    yield a
    if a.proc is not None:
        a.stop()


class ArgvWatch:
    """Scans every process's command line while it runs: the passphrase must be in none
    (qemu-img gets it through a pipe, QEMU from libvirt)."""

    def __init__(self):
        self.hits = []
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        needle = PASSPHRASE.encode()
        while not self._stop.is_set():
            for pid in os.listdir('/proc'):
                if not pid.isdigit():
                    continue
                try:
                    with open(f'/proc/{pid}/cmdline', 'rb') as f:
                        cmdline = f.read()
                except OSError:
                    continue
                if needle in cmdline:
                    self.hits.append(cmdline.replace(b'\0', b' ').decode(errors='replace'))
            self.scans += 1
            self._stop.wait(0.05)  # a qemu-img runs for seconds; the CPU is the guests'

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        return False


def image_of(props):
    (disk,) = props['Result']['disks']
    return disk['image']


def metadata(props):
    with open(os.path.join(props['Result']['directory'], 'metadata.json')) as f:
        return json.load(f)


def no_passphrase_under(*dirs):
    """The files under dirs that hold the passphrase (none may)."""
    needle = PASSPHRASE.encode()
    found = []
    for top in dirs:
        for root, _, files in os.walk(top):
            for name in files:
                path = os.path.join(root, name)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                with open(path, 'rb') as f:
                    if needle in f.read():
                        found.append(path)
    return found


def check_encrypted(agent, props, secret, tmp_path, replay_journal):
    """The snapshot's image is a LUKS qcow2 standing alone, unreadable without the secret,
    a clean ext4 with contiguous records with it; metadata names the secret's UUID.
    Returns the records."""
    image = image_of(props)
    info = labmod.image_info(image)
    assert info['format'] == 'qcow2' and info.get('encrypted') is True, info
    assert info['format-specific']['data']['encrypt']['format'] == 'luks', info
    assert 'backing-filename' not in info, info
    clear = tmp_path / f'clear-{props["Result"]["snapshot-id"]}.raw'
    res = subprocess.run(['qemu-img', 'convert', '-U', '-O', 'raw', image, str(clear)],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert res.returncode != 0 and 'key-secret' in res.stderr, res.stderr
    raw = labmod.luks_to_raw(image, str(tmp_path / 'vda.raw'), PASSPHRASE)
    try:
        clean, out = labmod.fsck_clean(raw, replay_journal=replay_journal, tmpdir=str(tmp_path))
        assert clean, out
        nums = labmod.read_records(raw, tmpdir=str(tmp_path))
    finally:
        os.unlink(raw)
    assert len(nums) > 5 and labmod.records_contiguous(nums), nums[:5] + nums[-5:]
    (disk,) = metadata(props)['disks']
    assert disk['encryption'] == {'format': 'luks', 'secret-uuid': secret}, disk
    return nums


def test_luks_live_shallow_and_direct(lagent, luksguest, secret, tmp_path):
    before = luksguest.inactive_xml()
    with ArgvWatch() as watch:
        shallow = lagent.snapshot('luksg', copy='shallow')
        direct = lagent.snapshot('luksg', copy='direct')
    assert shallow['State'] == 'succeeded', shallow['Error']
    assert direct['State'] == 'succeeded', direct['Error']
    assert shallow['Method'] == direct['Method'] == 'live'
    assert shallow['Result']['quiesced'] is True
    assert watch.scans > 0 and watch.hits == [], watch.hits
    for p in (shallow, direct):
        r = p['Result']
        print(f"luks live {r['copy']}: freeze-ms={r['freeze-ms']} copy-ms={r['copy-ms']} "
              f"flatten-ms={r['flatten-ms']} total-ms={r['total-ms']}")
    domain_intact(luksguest, before)
    # Frozen: clean without replaying the journal; the guest went on writing.
    first = check_encrypted(lagent, shallow, secret, tmp_path, replay_journal=False)
    second = check_encrypted(lagent, direct, secret, tmp_path, replay_journal=False)
    assert second[-1] > first[-1]
    assert lagent.leftovers() == []
    assert no_passphrase_under(lagent.dir) == []

    # Verify opens the encrypted images with the secret; a deep check would write them
    # out in the clear: refused.
    sid = shallow['Result']['snapshot-id']
    path = lagent.call('VerifySnapshot', GLib.Variant('(sa{sv})', (sid, {})))[0]
    props = lagent.wait_job(path)
    assert props['State'] == 'succeeded', props['Error']
    assert props['Result']['ok'] is True and list(props['Result']['problems']) == []
    name, message = lagent.call_error('VerifySnapshot', GLib.Variant(
        '(sa{sv})', (sid, {'deep': GLib.Variant('b', True)})))
    assert name == UNSUPPORTED and 'in the clear' in message, message

    # A clone would need the encryption in its overlay and XML: refused for now.
    try:
        cpath = lagent.call('CloneSnapshot', GLib.Variant(
            '(sa{sv})', (sid, {'name': GLib.Variant('s', 'luksclone')})))[0]
    except GLib.Error as e:
        assert 'Unsupported' in str(e) and 'encrypted' in str(e), str(e)
    else:
        cprops = lagent.wait_job(cpath)
        assert cprops['State'] == 'failed' and cprops['ErrorName'] == UNSUPPORTED, cprops
        assert 'encrypted' in cprops['Error']
    assert 'luksclone' not in lagent.lab.domains()
    # An export would serve it decrypted (and qemu-nbd would need the secret): refused.
    name, message = lagent.call_error('ExportSnapshot', GLib.Variant('(sa{sv})', (sid, {})))
    assert name == UNSUPPORTED and 'encrypted' in message, message
    assert no_passphrase_under(lagent.dir) == []


def test_luks_cold(lagent, luksguest, secret, tmp_path):
    before = luksguest.inactive_xml()
    with ArgvWatch() as watch:
        props = lagent.snapshot('luksg', method='cold')
    assert props['State'] == 'succeeded', props['Error']
    assert props['Method'] == 'cold'
    r = props['Result']
    print(f"luks cold: downtime-ms={r['downtime-ms']} extract-ms={r['extract-ms']} "
          f"total-ms={r['total-ms']}")
    assert watch.scans > 0 and watch.hits == [], watch.hits
    domain_intact(luksguest, before)
    TAKEN['cold'] = (props, check_encrypted(lagent, props, secret, tmp_path,
                                            replay_journal=True))
    assert lagent.leftovers() == []
    assert no_passphrase_under(lagent.dir) == []


def test_luks_refusals(lab, lagent, luksguest):
    """What would write the disk out in the clear, or cannot be encrypted, is refused at
    the call, and nothing changes."""
    before = luksguest.inactive_xml()
    for options, words in (({'format': 'raw'}, 'in the clear'),
                           ({'compress': True}, 'compressed and encrypted')):
        name, message = lagent.call_error('CreateSnapshot', GLib.Variant(
            '(sa{sv})', ('luksg', snapshot_options(**options))))
        assert name == UNSUPPORTED and words in message, message
    name, message = lagent.call_error('CreateSnapshot', GLib.Variant(
        '(sa{sv})', ('luksg', snapshot_options(method='live', legacy_undefine=True))))
    assert name == UNSUPPORTED and 'encrypted' in message, message
    domain_intact(luksguest, before)
    assert lagent.leftovers() == []


def guest_records(guest, tmp_path):
    """The records on the guest's (shut off) encrypted disk as it is now."""
    raw = labmod.luks_to_raw(guest.disk('vda')['path'], str(tmp_path / 'now.raw'), PASSPHRASE)
    try:
        return labmod.read_records(raw, tmpdir=str(tmp_path))
    finally:
        os.unlink(raw)


def test_luks_revert(lagent, luksguest, secret, tmp_path):
    """The encrypted disk takes back a snapshot's content, written through the secret: it
    stays encrypted, and so does the safety snapshot of what it held. Then, shut off, an
    offline snapshot of it."""
    if 'cold' not in TAKEN:  # run on its own
        props = lagent.snapshot('luksg', method='cold')
        assert props['State'] == 'succeeded', props['Error']
        TAKEN['cold'] = (props, check_encrypted(lagent, props, secret, tmp_path, True))
    snap, nums = TAKEN['cold']
    disk = luksguest.disk('vda')['path']
    ino = os.stat(disk).st_ino
    before = luksguest.inactive_xml()
    with ArgvWatch() as watch:
        path = lagent.call('RevertSnapshot', GLib.Variant('(sa{sv})', (
            snap['Result']['snapshot-id'], {'stop': GLib.Variant('b', True)})))[0]
        props = lagent.wait_job(path, timeout=180)
    assert props['State'] == 'succeeded', props['Error']
    r = props['Result']
    print(f"luks revert: safety-ms={r['safety-ms']} write-ms={r['write-ms']} "
          f"total-ms={r['total-ms']}")
    assert watch.scans > 0 and watch.hits == [], watch.hits
    assert luksguest.state() == 'shut off' and luksguest.inactive_xml() == before
    info = labmod.image_info(disk)
    assert info.get('encrypted') is True and os.stat(disk).st_ino == ino, info
    assert guest_records(luksguest, tmp_path) == nums
    # The safety snapshot: the disk as it was (more records), encrypted, its secret named.
    safety = props['Result']['safety-directory']
    with open(os.path.join(safety, 'metadata.json')) as f:
        (sdisk,) = json.load(f)['disks']
    assert sdisk['encryption'] == {'format': 'luks', 'secret-uuid': secret}, sdisk
    assert labmod.image_info(sdisk['image']).get('encrypted') is True
    raw = labmod.luks_to_raw(sdisk['image'], str(tmp_path / 'safety.raw'), PASSPHRASE)
    newer = labmod.read_records(raw, tmpdir=str(tmp_path))
    assert labmod.records_contiguous(newer) and newer[-1] > nums[-1], (nums[-1], newer[-3:])
    os.unlink(raw)

    # Shut off now: an offline snapshot reads the encrypted disk directly, still encrypted.
    off = lagent.snapshot('luksg')
    assert off['State'] == 'succeeded', off['Error']
    assert off['Method'] == 'cold' and off['Result']['offline'] is True
    assert check_encrypted(lagent, off, secret, tmp_path, replay_journal=True) == nums
    assert luksguest.state() == 'shut off'
    assert lagent.leftovers() == []
    assert no_passphrase_under(lagent.dir) == []


def test_luks_private_secret(lab, lagent):
    """libvirt gives a private secret's value to no client: such a disk is refused, naming
    the reason (the domain is only defined: validation reads the secret before anything)."""
    uuid = labmod.define_secret(lab, PASSPHRASE, private=True)
    guest = None
    try:
        guest = lab.make_guest('lukspriv', disks=1, agent=False,
                               luks={'uuid': uuid, 'passphrase': PASSPHRASE})
        name, message = lagent.call_error('CreateSnapshot', GLib.Variant(
            '(sa{sv})', ('lukspriv', snapshot_options())))
        assert name == UNSUPPORTED and 'private' in message and uuid in message, message
        assert lagent.leftovers() == []
    finally:
        if guest is not None:
            remove_guest(guest)
        labmod.undefine_secret(lab, uuid)
