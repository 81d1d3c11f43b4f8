# SPDX-License-Identifier: LGPL-2.1-or-later
"""The libvirt hook for real: a system libvirtd runs the installed
virtsnap-hook, which asks a real virtsnapd on the lab's bus."""

import os
import signal
import socket
import subprocess
import tempfile
import time

import pytest
from gi.repository import GLib

from hookenv import FINAL_STATES, HOOK, hook_env, hook_runs, log_offset, sanitizer_env, system

# The hook's default timeout; libvirt calls it three times for a start
# (prepare, start, started).
TIMEOUT_S = 2.0


def test_hook_is_wired(hooked, agent, tmp_path):
    guest = hooked.make_guest('wired')
    offset = log_offset(hooked)
    try:
        guest.start()
        guest.wait_ready(90)
        assert agent.hook_counts() == {'prepare': 1, 'start': 1, 'started': 1}
        # A restarted libvirtd calls the hook for the guests it finds running.
        hooked.restart_libvirtd()
        agent.wait_counts({'reconnect': 1})
        # restore: the hook answers with nothing on stdout, so the XML stays as it is.
        save = str(tmp_path / 'wired.save')
        hooked.virsh('save', 'wired', save)
        hooked.virsh('restore', save)
        assert guest.state() == 'running'
        guest.destroy()
        assert agent.hook_counts() == {'prepare': 2, 'start': 2, 'started': 2, 'reconnect': 1,
                                       'restore': 1, 'stopped': 2, 'release': 2}
        runs = hook_runs(hooked, offset)
        assert sorted(r['operation'] for r in runs) == sorted(
            ['prepare', 'start', 'started', 'reconnect', 'stopped', 'release', 'restore',
             'prepare', 'start', 'started', 'stopped', 'release']), runs
        # The agent answered every call: nothing on stderr, nothing on stdout.
        assert all((r['status'], r['stdout'], r['stderr']) == (0, '', '') for r in runs), runs
    finally:
        guest.destroy()
        guest.undefine()


@pytest.fixture(scope='module')
def guarded(hooked):
    """A guest whose disk takes seconds to read: 768 MiB of data in its top layer."""
    guest = hooked.make_guest('guarded', top_data_mib=768)
    yield guest
    if guest.state() != 'shut off':
        guest.destroy()
    guest.undefine()


def wait_reading(agent, job_id, timeout=60):
    """Wait until job *job_id* reads the domain's disks offline (phase extract)."""
    deadline = time.monotonic() + timeout
    while (job := agent.job(job_id))['phase'] != 'extract':
        assert job['state'] not in FINAL_STATES, job
        assert time.monotonic() < deadline, job
        time.sleep(0.02)


def test_start_waits_for_on_stop_read(hooked, agent, guarded):
    """virsh destroy, then virsh start while the on-stop snapshot reads the disks: the
    hook holds the start until the read is done, and the start succeeds."""
    assert agent.ctl('policy', 'set', 'guarded', 'on-stop=snapshot').returncode == 0
    try:
        guarded.start()
        hooked.virsh('destroy', 'guarded')
        deadline = time.monotonic() + 30
        while not (jobs := agent.call('ListJobs')[0]):
            assert time.monotonic() < deadline, 'no on-stop job'
            time.sleep(0.02)
        job_id = jobs[0].rsplit('/', 1)[1]
        wait_reading(agent, job_id)

        t0 = time.time()
        res = hooked.virsh_result('start', 'guarded')
        t1 = time.time()
        assert res.returncode == 0, res.stderr
        job = agent.job_props(jobs[0])
        assert job['State'] == 'succeeded', job
        # The read ended while virsh start waited, and before the guest started.
        assert t0 < job['Finished'] / 1e6 < t1, (t0, job['Finished'], t1)
        assert guarded.state() == 'running'
        snap_id = job['Result']['snapshot-id']
        (snaps,) = agent.call('ListSnapshots', GLib.Variant('(s)', ('guarded',)))
        assert [(s['id'], s['offline'], s['method']) for s in snaps] == [(snap_id, True, 'cold')]
        assert agent.ctl('verify', snap_id, '--wait').returncode == 0
        # The hook asked again while it waited; the agent logged the refusal once.
        assert agent.hook_counts()['prepare'] >= 2
        assert agent.log_text().count('hook: refused prepare of guarded') == 1
    finally:
        agent.ctl('policy', 'clear', 'guarded')
        if guarded.state() != 'shut off':
            guarded.destroy()


def test_start_refused_past_the_wait(hooked, agent, guarded):
    """A read longer than the hook's wait bound: the start is refused with the agent's
    message once the bound has passed, and works after the read."""
    wait_ms = 1500
    hooked.install_hook(HOOK, dict(hook_env(hooked), VIRTSNAP_HOOK_WAIT_MS=str(wait_ms)))
    try:
        job_path = agent.ctl_json('snapshot', 'guarded')['job']
        job_id = job_path.rsplit('/', 1)[1]
        wait_reading(agent, job_id)

        t0 = time.monotonic()
        res = hooked.virsh_result('start', 'guarded')
        took = time.monotonic() - t0
        during = agent.job(job_id)
        assert res.returncode != 0
        assert (f"virtsnap: snapshot job {job_id} is reading this domain's disks; "
                'try again when it ends (waited 1.5 s)') in res.stderr, res.stderr
        assert 'Hook script execution failed' in res.stderr, res.stderr
        assert wait_ms / 1000 <= took < wait_ms / 1000 + TIMEOUT_S, took
        assert during['state'] == 'running', during
        assert guarded.state() == 'shut off'

        deadline = time.monotonic() + 120
        while (job := agent.job(job_id))['state'] not in FINAL_STATES:
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        assert job['state'] == 'succeeded', job
        guarded.start()
        assert guarded.state() == 'running'
        assert agent.hook_counts()['start'] == 1
        assert 'refused prepare of guarded' in agent.log_text()
    finally:
        hooked.install_hook(HOOK, hook_env(hooked))
        if guarded.state() != 'shut off':
            guarded.destroy()


def test_agent_not_running(hooked):
    guest = hooked.make_guest('unguarded')
    try:
        offset = log_offset(hooked)
        res = hooked.virsh_result('start', 'unguarded')
        assert res.returncode == 0, res.stderr
        guest.wait_ready(90)
        # libvirtd shows a successful hook's stderr only in its debug log.
        runs = hook_runs(hooked, offset)
        assert [r['operation'] for r in runs] == ['prepare', 'start', 'started'], runs
        for r in runs:
            assert r['status'] == 0 and r['stdout'] == '', r
            assert r['stderr'].startswith(f'virtsnap-hook: allowing {r["operation"]} of '
                                          'unguarded: could not ask the agent'), r
            # The bus says at once that nobody owns the name: no timeout waited out.
            assert 'NameHasNoOwner' in r['stderr'], r
            assert r['seconds'] < TIMEOUT_S / 2, r
    finally:
        guest.destroy()
        guest.undefine()


def test_agent_not_answering(hooked, agent):
    guest = hooked.make_guest('stalled')
    try:
        offset = log_offset(hooked)
        agent.proc.send_signal(signal.SIGSTOP)
        try:
            res = hooked.virsh_result('start', 'stalled')
        finally:
            agent.proc.send_signal(signal.SIGCONT)
        assert res.returncode == 0, res.stderr
        runs = hook_runs(hooked, offset)
        assert [r['operation'] for r in runs] == ['prepare', 'start', 'started'], runs
        for r in runs:
            assert r['status'] == 0 and r['stdout'] == '', r
            assert 'could not ask the agent' in r['stderr'], r
            # Each call waits the timeout out, and not much more.
            assert TIMEOUT_S <= r['seconds'] < TIMEOUT_S + 1, r
        guest.wait_ready(90)
        # Resumed, the agent finds the three calls the hook gave up on. Their senders have
        # left the bus, so nobody can say who sent them: HookEvent is root's only, and they
        # are refused (and logged), not counted. The next calls are answered as usual.
        deadline = time.monotonic() + 15
        while agent.log_text().count('authorization: HookEvent denied') < 3:
            assert time.monotonic() < deadline, agent.log_text()[-3000:]
            time.sleep(0.1)
        assert agent.hook_counts() == {}
        guest.destroy()
        agent.wait_counts({'stopped': 1, 'release': 1})
        assert agent.proc.poll() is None
    finally:
        if guest.state() != 'shut off':
            guest.destroy()
        guest.undefine()


def run_hook(args, stdin=b'', closed_stdin=False, env=None):
    """The installed hook, as libvirtd runs it: (returncode, stdout, stderr, seconds)."""
    argv = [system.HOOK_PATH, *args]
    if closed_stdin:
        argv = ['/bin/sh', '-c', 'exec "$0" "$@" <&-', *argv]
    t0 = time.monotonic()
    res = subprocess.run(argv, input=stdin if not isinstance(stdin, int) else None,
                         stdin=stdin if isinstance(stdin, int) else None,
                         capture_output=True, timeout=30,
                         env=env or {'PATH': '/usr/bin:/bin', 'LC_ALL': 'C'})
    return res.returncode, res.stdout, res.stderr, time.monotonic() - t0


GARBAGE_ARGS = [
    [],
    ['only-a-domain'],
    ['vm', 'start'],
    ['vm', 'start', 'begin', '-', 'one', 'too', 'many'],
    [b'\xff\xfe\x80bad-utf8', b'st\xe9rt', b'\xc3', b'\xed\xa0\x80'],
    ['x' * 100000, 'y' * 60000, 'begin', '-'],  # Linux: at most 128 KiB per argument
    ['vm\nwith\nnewlines', 'op\t"quoted"', '$(rm -rf /)', '%s%n%s'],
    ['', '', '', ''],
] + [['vm', f'op-{i}', 'begin', '-'] for i in range(40)]  # more keys than the agent counts

GARBAGE_STDIN = [
    b'',
    b'<domain><name>vm</na',
    b'\x00' * 1000 + b'\xff' * 1000,
    os.urandom(64 << 20),
]


@pytest.mark.parametrize('agent_up', [True, False], ids=['agent', 'no-agent'])
def test_garbage_in(hooked, request, agent_up):
    agent = request.getfixturevalue('agent') if agent_up else None
    cases = [(a, s) for a in GARBAGE_ARGS for s in GARBAGE_STDIN[:2]]
    cases += [(['vm', 'start', 'begin', '-'], s) for s in GARBAGE_STDIN[2:]]
    cases += [(['vm', op, 'begin', '-'], b'<domain/>') for op in ('migrate', 'restore')]
    for args, stdin in cases:
        code, out, err, seconds = run_hook(args, stdin)
        shown = [a[:20] for a in args], stdin[:20]
        assert code == 0, (shown, err[-500:])
        assert out == b'', shown
        assert seconds < TIMEOUT_S, (shown, seconds)
        assert b'AddressSanitizer' not in err and b'runtime error' not in err, err[-2000:]
        if not agent_up:
            assert b'allowing' in err, (shown, err)
    code, out, err, seconds = run_hook(['vm', 'start', 'begin', '-'], closed_stdin=True)
    assert (code, out) == (0, b'') and seconds < TIMEOUT_S, err
    # An endless stdin is read until the timeout, then the hook allows and goes.
    with open('/dev/zero', 'rb') as zero:
        code, out, err, seconds = run_hook(['vm', 'start', 'begin', '-'], stdin=zero.fileno())
    assert (code, out) == (0, b''), err
    assert TIMEOUT_S <= seconds < TIMEOUT_S + 1.5, seconds
    if agent:
        assert agent.proc.poll() is None
        counts = agent.hook_counts()
        assert 0 < len(counts) <= 64 and counts.get('start', 0) >= 3, counts


def test_hook_binary_bounds_its_own_time():
    """Without libvirt and without any bus: a dead socket fails fast, a bus
    that never answers is bounded by VIRTSNAP_HOOK_TIMEOUT_MS."""
    env = dict(sanitizer_env(), PATH='/usr/bin:/bin',
               VIRTSNAP_HOOK_BUS_ADDRESS='unix:path=/nonexistent/bus')
    t0 = time.monotonic()
    res = subprocess.run([HOOK, 'vm', 'prepare', 'begin', '-'], input=b'<domain/>',
                         capture_output=True, env=env, timeout=30)
    assert res.returncode == 0 and res.stdout == b'' and time.monotonic() - t0 < 1
    assert b'could not ask the agent' in res.stderr
    # A socket that accepts and then never speaks (a hung bus).
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, 'mute')
        mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        mute.bind(path)
        mute.listen(8)
        try:
            env = dict(env, VIRTSNAP_HOOK_BUS_ADDRESS=f'unix:path={path}',
                       VIRTSNAP_HOOK_TIMEOUT_MS='500')
            t0 = time.monotonic()
            res = subprocess.run([HOOK, 'vm', 'start', 'begin', '-'], input=b'',
                                 capture_output=True, env=env, timeout=30)
            seconds = time.monotonic() - t0
        finally:
            mute.close()
    assert res.returncode == 0 and res.stdout == b'', res.stderr
    assert 0.5 <= seconds < 1.5, seconds
    assert b'no answer within 500 ms' in res.stderr, res.stderr
