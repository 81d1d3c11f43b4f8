# SPDX-License-Identifier: LGPL-2.1-or-later
"""Access control in the deployed topology (system lab only): an outsider (not root, not
in group libvirt) can read but gets PermissionDenied (virtsnapctl exit 10) for every
mutating call; a member of group libvirt can snapshot; HookEvent is root's; the agent's
signals reach root and group libvirt, not the outsider."""

import pwd
import subprocess
import time

import pytest
from gi.repository import GLib

from conftest import AGENT_IFACE, AGENT_PATH, BUS_NAME, JOB_IFACE

pytestmark = pytest.mark.system_only

DENIED = 'org.virtsnap.Error.PermissionDenied'
NO_SUCH_ID = '20000101T000000Z-000000'


def denied(res, action):
    """virtsnapctl was refused by the agent's authorization, naming the action."""
    out = res.stdout + res.stderr
    assert res.returncode == 10, f'exit {res.returncode}: {out}'
    assert DENIED in out, out
    assert action in out, out


def uid_of(user):
    return pwd.getpwnam(user).pw_uid


def policy_of(agent, domain):
    settings, problem = agent.call('GetPolicy', GLib.Variant('(s)', (domain,)))
    return settings


def gdbus_as(lab, user, *args, timeout=30):
    """gdbus ARGS on the lab bus as @user (root: as is)."""
    argv = ['gdbus', *args]
    if user != 'root':
        argv = ['runuser', '-u', user, '--'] + argv
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd='/')


def hook_event_as(lab, user, operation='prepare'):
    return gdbus_as(lab, user, 'call', '--address', lab.bus_address, '--dest', BUS_NAME,
                    '--object-path', AGENT_PATH, '--method', f'{AGENT_IFACE}.HookEvent',
                    'writer', operation, 'begin', '-')


def test_outsider_cannot_change_anything(lab, agent, writer):
    outsider = lab.users['outsider']
    snapshots_before = agent.call('ListSnapshots', GLib.Variant('(s)', ('',)))[0]

    denied(agent.ctl_as(outsider, 'snapshot', 'writer'), 'org.virtsnap.snapshot.create')
    denied(agent.ctl_as(outsider, 'snapshot', 'writer', '--wait'), 'org.virtsnap.snapshot.create')
    # Refused before the handler runs: an id that does not exist is not NoSuchSnapshot (4).
    denied(agent.ctl_as(outsider, 'delete', NO_SUCH_ID), 'org.virtsnap.snapshot.delete')
    denied(agent.ctl_as(outsider, 'policy', 'set', 'writer', 'keep=3'), 'org.virtsnap.policy.set')
    denied(agent.ctl_as(outsider, 'policy', 'clear', 'writer'), 'org.virtsnap.policy.set')

    # Nothing changed.
    assert agent.call('ListJobs')[0] == []
    assert agent.call('ListSnapshots', GLib.Variant('(s)', ('',)))[0] == snapshots_before
    assert policy_of(agent, 'writer') == {}

    # Each refusal is logged with the caller's uid and the action.
    log = agent.log_text()
    for method, action in (('CreateSnapshot', 'org.virtsnap.snapshot.create'),
                           ('DeleteSnapshot', 'org.virtsnap.snapshot.delete'),
                           ('SetPolicy', 'org.virtsnap.policy.set'),
                           ('ClearPolicy', 'org.virtsnap.policy.set')):
        assert f'authorization: {method} denied to uid {uid_of(outsider)}' in log, log[-3000:]
        assert action in log
    # Who decided: polkitd when it runs, else the agent's own rule.
    if lab.polkit_running:
        assert 'polkit: not authorized' in log, log[-3000:]
    else:
        assert 'polkitd not running' in log, log[-3000:]


def test_outsider_cannot_cancel_a_job(lab, agent, writer):
    outsider = lab.users['outsider']
    # A slow copy keeps the job running while the outsider tries.
    path = agent.create('writer', bandwidth=8 * 1024 * 1024)
    job_id = path.rsplit('/', 1)[1]

    denied(agent.ctl_as(outsider, 'cancel', job_id), 'org.virtsnap.job.cancel')
    props = agent.wait_job(path, timeout=300)
    assert props['State'] == 'succeeded', props
    assert f'authorization: Cancel denied to uid {uid_of(outsider)}' in agent.log_text()


def test_outsider_can_read(lab, agent, writer):
    outsider = lab.users['outsider']

    res = agent.ctl_as(outsider, 'status')
    assert res.returncode == 0, res.stderr
    res = agent.ctl_as(outsider, 'domains')
    assert res.returncode == 0, res.stderr
    assert 'writer' in res.stdout
    res = agent.ctl_as(outsider, 'snapshots')
    assert res.returncode == 0, res.stderr
    res = agent.ctl_as(outsider, 'jobs')
    assert res.returncode == 0, res.stderr
    res = agent.ctl_as(outsider, 'policy', 'show', 'writer')
    assert res.returncode == 0, res.stderr
    assert DENIED not in agent.log_text()
    assert 'authorization:' not in agent.log_text()


def test_member_can_snapshot(lab, agent, writer):
    member = lab.users['member']

    res = agent.ctl_as(member, '--json', 'snapshot', 'writer', '--wait', timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert '"succeeded"' in res.stdout, res.stdout
    snaps = agent.call('ListSnapshots', GLib.Variant('(s)', ('writer',)))[0]
    assert len(snaps) == 1, snaps
    res = agent.ctl_as(member, 'policy', 'set', 'writer', 'keep=3')
    assert res.returncode == 0, res.stderr
    assert policy_of(agent, 'writer') == {'keep': '3'}
    res = agent.ctl_as(member, 'policy', 'clear', 'writer')
    assert res.returncode == 0, res.stderr
    res = agent.ctl_as(member, 'delete', snaps[0]['id'])
    assert res.returncode == 0, res.stderr
    assert agent.call('ListSnapshots', GLib.Variant('(s)', ('writer',)))[0] == []
    assert 'authorization:' not in agent.log_text()


def test_hook_event_is_roots(lab, agent, writer):
    before = agent.prop('HookCounts')

    for role in ('outsider', 'member'):
        res = hook_event_as(lab, lab.users[role])
        assert res.returncode != 0, res.stdout
        assert DENIED in res.stderr, res.stderr
    # Refused calls are not counted.
    assert agent.prop('HookCounts') == before

    res = hook_event_as(lab, 'root')
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "(true, '')"
    assert agent.prop('HookCounts').get('prepare', 0) == before.get('prepare', 0) + 1


def _monitor(lab, user, path):
    """gdbus monitor of the agent's signals as @user, into @path (opened by us: the
    user needs no access to it), once it listens."""
    argv = ['timeout', '30', 'gdbus', 'monitor', '--address', lab.bus_address, '--dest', BUS_NAME]
    if user != 'root':
        argv = ['runuser', '-u', user, '--'] + argv
    proc = subprocess.Popen(argv, stdout=open(path, 'w'), stderr=subprocess.STDOUT, cwd='/')
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(path) as f:
            if 'is owned by' in f.read():
                return proc
        assert proc.poll() is None, open(path).read()
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f'gdbus monitor as {user} did not start: {open(path).read()}')


def test_signals_reach_root_and_libvirt_only(lab, agent, writer, tmp_path):
    users = {'root': 'root', 'member': lab.users['member'], 'outsider': lab.users['outsider']}
    logs = {role: str(tmp_path / f'{role}.log') for role in users}
    procs = {role: _monitor(lab, user, logs[role]) for role, user in users.items()}
    try:
        lab.virsh('suspend', 'writer')
        lab.virsh('resume', 'writer')
        # A job: InterfacesAdded and the job's PropertiesChanged.
        agent.snapshot('writer')
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(logs['root']) as f:
                if "'resumed'" in f.read():
                    break
            time.sleep(0.1)
        time.sleep(1)  # the others had as long to receive them
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(10)
    text = {role: open(path).read() for role, path in logs.items()}

    for role in ('root', 'member'):
        assert f'{AGENT_IFACE}.DomainEvent' in text[role], text[role]
        assert "'writer'" in text[role] and "'suspended'" in text[role], text[role]
        assert 'InterfacesAdded' in text[role], text[role]
        assert JOB_IFACE in text[role], text[role]
    for name in ('DomainEvent', 'PropertiesChanged', 'InterfacesAdded', "'writer'"):
        assert name not in text['outsider'], text['outsider']
    # The outsider was listening all along (the same monitor as the others).
    assert 'is owned by' in text['outsider']
