# SPDX-License-Identifier: LGPL-2.1-or-later
"""libvirtd going away in the middle of a live job, and a guest agent that hangs.

libvirtd is SIGKILLed and started again in each phase of a live snapshot of a writing
guest: the job carries on on the new connection and ends with a good snapshot (QEMU keeps
mirroring while libvirtd is away; libvirt reads the block jobs back when it starts). A
phase is held open where it would be too short to hit: qemu-img (prepare's create,
flatten's convert) runs behind a gate the test opens; the freeze window waits on a guest
agent the guest has stopped itself.

The hung agent: qemu-ga stopped (SIGSTOP, by the guest itself through guest-exec) before
the freeze: the freeze fails after libvirt's guest-sync wait, so quiesce=require fails
QuiesceFailed and quiesce=try goes on unquiesced, within a bound; the guest is never left
frozen, and once qemu-ga runs again the next job is quiesced."""

import os
import shutil
import signal
import time

import pytest

import lab as labmod
from conftest import Agent, domain_intact

SLOW = 64 * 1024  # bytes/s: the mirror stays in wait-ready until the test lifts the limit
QEMU_IMG = shutil.which('qemu-img')
# libvirt's guest-sync wait (QEMU_AGENT_WAIT_TIME, 5 s in 9.0) is what a stopped qemu-ga
# costs each agent call; the job's bound is that plus the job's own work.
AGENT_WAIT_S = 5


def image_of(props, target='vda'):
    return {d['target']: d for d in props['Result']['disks']}[target]['image']


def good_snapshot(props, quiesced=True):
    """Succeeded, and its image stands alone, a clean ext4 with records 1..n."""
    assert props['State'] == 'succeeded', (props['ErrorName'], props['Error'])
    assert props['Result']['quiesced'] is quiesced, props['Result']
    path = image_of(props)
    assert 'backing-filename' not in labmod.image_info(path)
    clean, out = labmod.fsck_clean(path, replay_journal=not quiesced)
    assert clean, out
    nums = labmod.read_records(path)
    assert len(nums) > 10 and labmod.records_contiguous(nums), nums[:5] + nums[-5:]
    return nums


def all_well(agent, guest, before):
    """The domain as it was, its agent answering, its file systems thawed, nothing left."""
    guest.wait_agent()
    domain_intact(guest, before)
    assert not guest.frozen()
    assert agent.leftovers() == []


class Gate:
    """qemu-img behind a gate: while the gate of a subcommand (create, convert) is shut,
    the agent's qemu-img of that kind waits, and says so by a file."""

    def __init__(self, lab):
        self.dir = lab.path('resume-gate')
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        wrapper = os.path.join(self.dir, 'qemu-img')
        with open(wrapper, 'w') as f:
            f.write('#!/bin/sh\n'
                    f'gate="{self.dir}/shut-$1"\n'
                    f'if [ -e "$gate" ]; then touch "{self.dir}/at-$1"; '
                    'while [ -e "$gate" ]; do sleep 0.05; done; fi\n'
                    f'exec {QEMU_IMG} "$@"\n')
        os.chmod(wrapper, 0o755)
        self.env = dict(os.environ, PATH=f'{self.dir}:{os.environ["PATH"]}')

    def shut(self, sub):
        for name in (f'shut-{sub}', f'at-{sub}'):
            if os.path.exists(os.path.join(self.dir, name)):
                os.unlink(os.path.join(self.dir, name))
        open(os.path.join(self.dir, f'shut-{sub}'), 'w').close()

    def wait_at(self, sub, agent, path, timeout=30):
        deadline = time.monotonic() + timeout
        while not os.path.exists(os.path.join(self.dir, f'at-{sub}')):
            assert time.monotonic() < deadline, (f'no qemu-img {sub} at the gate',
                                                 agent.job_props(path), agent.log_text()[-3000:])
            time.sleep(0.02)

    def open(self, sub):
        os.unlink(os.path.join(self.dir, f'shut-{sub}'))


@pytest.fixture
def gated(lab, request):
    """An agent whose qemu-img runs behind a Gate."""
    gate = Gate(lab)
    a = Agent(lab, name=f'agent-{request.node.name}'[:60])
    a.base_env = gate.env
    a.start()
    yield a, gate
    for sub in ('create', 'convert'):
        if os.path.exists(os.path.join(gate.dir, f'shut-{sub}')):
            gate.open(sub)
    if not lab.libvirtd_running():
        lab.start_libvirtd()
    a.stop()


def kill_libvirtd(lab):
    lab.kill_libvirtd(signal.SIGKILL)
    assert not lab.libvirtd_running()


def test_libvirtd_dies_in_prepare(lab, gated, writer):
    agent, gate = gated
    before = writer.inactive_xml()
    gate.shut('create')
    path = agent.create('writer')
    gate.wait_at('create', agent, path)
    assert agent.job_props(path)['Phase'] == 'prepare'
    kill_libvirtd(lab)
    lab.start_libvirtd()
    gate.open('create')
    good_snapshot(agent.wait_job(path, timeout=60))
    all_well(agent, writer, before)


def test_libvirtd_dies_in_copy(lab, gated, writer):
    """libvirtd is gone when the copy calls are made: they fail on the dead connection,
    and are made again on the next one."""
    agent, gate = gated
    before = writer.inactive_xml()
    gate.shut('create')
    path = agent.create('writer')
    gate.wait_at('create', agent, path)
    kill_libvirtd(lab)
    gate.open('create')
    agent.wait_job(path, until=('copy',), timeout=30)
    deadline = time.monotonic() + 30
    while 'went away in phase copy' not in agent.log_text():
        assert time.monotonic() < deadline, agent.log_text()[-2000:]
        time.sleep(0.05)
    assert agent.job_props(path)['State'] == 'running'
    lab.start_libvirtd()
    props = agent.wait_job(path, timeout=60)
    good_snapshot(props)
    assert 'libvirt is back: phase copy goes on' in agent.log_text()
    all_well(agent, writer, before)


def test_libvirtd_dies_in_wait_ready(lab, agent, writer):
    """The mirror runs on in QEMU while libvirtd is away; its READY, if it came meanwhile,
    shows in the live XML of the restarted libvirtd."""
    before = writer.inactive_xml()
    path = agent.create('writer', bandwidth=SLOW)
    agent.wait_job(path, until=('wait-ready',), timeout=30)
    kill_libvirtd(lab)
    time.sleep(0.5)
    assert agent.job_props(path)['State'] == 'running'
    lab.start_libvirtd()
    # Lift the limit: the mirror (ours, still there) reaches READY.
    deadline = time.monotonic() + 30
    while lab.virsh_result('blockjob', 'writer', 'vda', '--bandwidth', '0').returncode != 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    good_snapshot(agent.wait_job(path, timeout=60))
    assert 'libvirt is back: phase wait-ready goes on' in agent.log_text()
    all_well(agent, writer, before)


def test_libvirtd_dies_in_flatten_and_catalog(lab, gated, writer):
    """Flatten and catalog need no libvirt: the job ends while libvirtd is still away."""
    agent, gate = gated
    before = writer.inactive_xml()
    gate.shut('convert')
    path = agent.create('writer', copy='shallow', format='raw')  # so that it converts
    gate.wait_at('convert', agent, path)
    assert agent.job_props(path)['Phase'] == 'flatten'
    kill_libvirtd(lab)
    gate.open('convert')
    props = agent.wait_job(path, timeout=60)
    lab.start_libvirtd()
    good_snapshot(props)
    all_well(agent, writer, before)


def guest_sh(guest, script):
    """Run *script* with the guest's sh in the background, through guest-exec."""
    guest.agent_command({'execute': 'guest-exec',
                         'arguments': {'path': '/bin/sh', 'arg': ['-c', script]}})


def stop_guest_agent(guest, seconds):
    """qemu-ga stops itself (after answering the guest-exec) for *seconds*."""
    guest_sh(guest, 'sleep 0.3; p=$(pidof qemu-ga); kill -STOP $p; '
             f'sleep {seconds}; kill -CONT $p')
    time.sleep(0.5)
    assert not guest.agent_ping(timeout=1), 'qemu-ga still answers'


def test_libvirtd_dies_in_freeze_window(lab, agent, writer):
    """The freeze call waits on a stopped qemu-ga when libvirtd dies: whether the guest
    froze is unknown. On the new connection the guest is thawed, the mirrors are found in
    sync, and the window is taken again, quiesced (qemu-ga runs again by then)."""
    before = writer.inactive_xml()
    stop_guest_agent(writer, 5)
    t0 = time.monotonic()
    path = agent.create('writer', quiesce='require')
    agent.wait_job(path, until=('freeze-window',), timeout=30)
    kill_libvirtd(lab)
    lab.start_libvirtd()
    props = agent.wait_job(path, timeout=60)
    good_snapshot(props)
    log = agent.log_text()
    assert 'went away in phase freeze-window' in log
    assert 'libvirt is back: phase freeze-window goes on' in log
    assert time.monotonic() - t0 > 4  # it waited for qemu-ga, it did not skip the freeze
    all_well(agent, writer, before)


def normal_job_seconds(agent):
    """How long a quiesced snapshot of the writer takes now, with qemu-ga answering: the
    base of the hung-agent tests' bounds, as the copy's time varies with the machine's load
    (CI runs two labs side by side)."""
    t0 = time.monotonic()
    good_snapshot(agent.snapshot('writer', quiesce='require', timeout=60))
    return time.monotonic() - t0


def test_hung_guest_agent(agent, writer):
    """qemu-ga stopped: quiesce=try succeeds unquiesced with a note, quiesce=require fails
    QuiesceFailed, each within a bound (libvirt's agent wait for the freeze, and for
    require one more for the thaw that undo sends after a freeze of unknown outcome); the
    guest is never left frozen; with qemu-ga back the next job is quiesced again."""
    before = writer.inactive_xml()
    base = normal_job_seconds(agent)
    # Stopped long enough for both jobs below at their bounds.
    hang = 3 * AGENT_WAIT_S + 3 + 2 * base
    stop_guest_agent(writer, hang)
    t_stop = time.monotonic()

    t0 = time.monotonic()
    props = agent.snapshot('writer', quiesce='try', timeout=60)
    took = time.monotonic() - t0
    good_snapshot(props, quiesced=False)
    assert 'not responding' in props['Result']['quiesce-note'], props['Result']
    assert took < base + AGENT_WAIT_S + 3, (took, base)

    t0 = time.monotonic()
    props = agent.snapshot('writer', quiesce='require', timeout=60)
    took = time.monotonic() - t0
    assert props['State'] == 'failed', props
    assert props['ErrorName'] == 'org.virtsnap.Error.QuiesceFailed', props
    assert took < base + 2 * AGENT_WAIT_S + 3, (took, base)
    assert writer.block_jobs() == []
    assert time.monotonic() - t_stop < hang, 'qemu-ga ran again too early'

    # qemu-ga runs again: the guest was never frozen, and the next job is quiesced.
    all_well(agent, writer, before)
    good_snapshot(agent.snapshot('writer', quiesce='require'))
    all_well(agent, writer, before)


def test_guest_agent_hangs_while_frozen(lab, writer):
    """qemu-ga stops the moment the guest freezes and runs again 16 s (or more) later: libvirt's
    thaw cannot reach the guest meanwhile (each try dies at the guest-sync wait). The job
    fails Timeout within a bound (the guest was frozen past freeze_limit_ms), the thaw is
    tried on in the background and gets through once qemu-ga runs: the guest is not left
    frozen, and the next job works."""
    before = writer.inactive_xml()
    agent = Agent(lab, name='agent-hang-frozen', config='freeze_limit_ms = 1000\n').start()
    try:
        base = normal_job_seconds(agent)
        hang = max(16, 2 * AGENT_WAIT_S + 6 + base)  # past the job's bound below
        # The guest's poller spins (no sleep: a fork per poll is too slow under TCG to
        # catch a window of ~100 ms); a window it missed is taken again, up to 3 times.
        for attempt in range(3):
            guest_sh(writer, ': vs-poller; i=0; while [ ! -e /var/run/qga.state.isfrozen ] && '
                     '[ $i -lt 400000 ]; do i=$((i + 1)); done; '
                     '[ -e /var/run/qga.state.isfrozen ] || exit 0; p=$(pidof qemu-ga); '
                     f'kill -STOP $p; sleep {hang}; kill -CONT $p')
            t0 = time.monotonic()
            props = agent.snapshot('writer', quiesce='require', timeout=90)
            took = time.monotonic() - t0
            if props['State'] != 'succeeded':
                break
            writer.wait_agent(timeout=hang + 15)  # missed (or caught too late): again
            guest_sh(writer, 'pkill -f "vs-pol[l]er"')
        assert props['State'] == 'failed', props
        # qemu-ga stopped after answering the freeze: the thaws die at libvirt's guest-sync,
        # the guest was frozen past the limit (Timeout). Stopped before answering it: the
        # freeze call itself ends at agent_timeout_s (5 s), unconfirmed (QuiesceFailed). In
        # both the guest is frozen meanwhile and the thaw goes on in the background.
        assert props['ErrorName'] in ('org.virtsnap.Error.Timeout',
                                      'org.virtsnap.Error.QuiesceFailed'), props
        # Two waits of libvirt's (the freeze's agent timeout or a thaw's guest-sync, then
        # undo's thaw), never the whole hang.
        assert took < base + 2 * AGENT_WAIT_S + 4, (took, base)
        writer.wait_agent(timeout=hang + 15)
        assert time.monotonic() - t0 > hang - 1, 'qemu-ga ran again too early'
        all_well(agent, writer, before)
        log = agent.log_text()
        assert 'thawed at last' in log, log[-3000:]
        good_snapshot(agent.snapshot('writer', quiesce='require'))
        all_well(agent, writer, before)
    finally:
        agent.stop()
