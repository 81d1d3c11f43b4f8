# SPDX-License-Identifier: LGPL-2.1-or-later
"""Per-domain snapshot policy in the domain's own metadata: set/show/clear, a policy
the agent cannot read, on-stop, every and keep, against the real lab."""

import json
import time

import pytest
from gi.repository import GLib

from conftest import FINAL_STATES, remove_guest, start_guest

NS = 'https://virtsnap.org/xmlns/policy/1'


@pytest.fixture
def policyguest(lab):
    guest = start_guest(lab, 'policyguest', disks=1, agent=True)
    yield guest
    remove_guest(guest)


def snapshots_of(agent, domain):
    (snaps,) = agent.call('ListSnapshots', GLib.Variant('(s)', (domain,)))
    return snaps


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f'{what}: not within {timeout} s')


def test_policy_set_show_clear(lab, agent, policyguest):
    res = agent.ctl('policy', 'set', 'policyguest', 'every=6h', 'keep=3', 'quiesce=require')
    assert res.returncode == 0, res.stderr
    shown = json.loads(agent.ctl('--json', 'policy', 'show', 'policyguest').stdout)
    assert shown == {'settings': {'every': '6h', 'keep': '3', 'quiesce': 'require'},
                     'problem': ''}
    # It lives in the domain's own definition, under our namespace.
    meta = lab.virsh('metadata', 'policyguest', NS, '--config')
    assert '<every>6h</every>' in meta and '<keep>3</keep>' in meta
    assert agent.ctl('policy', 'show', 'policyguest').stdout.splitlines() == [
        'every=6h', 'keep=3', 'quiesce=require']

    res = agent.ctl('policy', 'set', 'policyguest', 'colour=blue')
    assert res.returncode == 2 and "unknown policy key 'colour'" in res.stderr
    res = agent.ctl('policy', 'set', 'policyguest', 'every=soon')
    assert res.returncode == 2 and 'not a duration' in res.stderr
    assert agent.ctl('policy', 'set', 'no-such', 'keep=1').returncode == 4

    assert agent.ctl('policy', 'set', 'policyguest', 'every=none').returncode == 0
    assert 'every' not in json.loads(
        agent.ctl('--json', 'policy', 'show', 'policyguest').stdout)['settings']
    assert agent.ctl('policy', 'clear', 'policyguest').returncode == 0
    assert agent.ctl('policy', 'show', 'policyguest').stdout.strip() == 'no policy'


def test_unreadable_policy_is_reported_not_fatal(lab, agent, policyguest):
    lab.virsh('metadata', 'policyguest', NS, '--key', 'virtsnap', '--config', '--set',
              '<policy><every>soon</every></policy>')
    settings, problem = agent.call('GetPolicy', GLib.Variant('(s)', ('policyguest',)))
    assert settings == {} and "every: 'soon'" in problem
    out = agent.ctl('policy', 'show', 'policyguest').stdout
    assert out.startswith('problem: ') and 'ignored' in out
    # The agent goes on, and the policy can be replaced.
    assert agent.prop('Connected') is True
    assert agent.ctl('policy', 'set', 'policyguest', 'keep=1').returncode == 0
    assert agent.call('GetPolicy', GLib.Variant('(s)', ('policyguest',))) == ({'keep': '1'}, '')


def test_every_and_keep(lab, agent, policyguest):
    assert agent.ctl('policy', 'set', 'policyguest', 'every=2s', 'keep=2').returncode == 0
    made = set()

    def jobs_of_guest():
        (jobs,) = agent.call('ListJobs')
        return [props for props in map(agent.job_props, jobs)
                if props['Domain'] == 'policyguest']

    def three_made():
        for props in jobs_of_guest():
            if props['State'] == 'succeeded':
                made.add(props['Result']['snapshot-id'])
        return len(made) >= 3

    wait_until(three_made, 40, 'three timed snapshots')
    # The timer stops, keep stays: a job the timer started just before this (a loaded
    # machine polls slowly) still prunes when it ends.
    assert agent.ctl('policy', 'set', 'policyguest', 'keep=2').returncode == 0
    wait_until(lambda: all(p['State'] in FINAL_STATES for p in jobs_of_guest()), 30,
               'the last timed job ended')
    three_made()  # and counted
    # Pruning follows the last success.
    wait_until(lambda: len(snapshots_of(agent, 'policyguest')) == 2, 10, 'pruned to two')
    kept = [s['id'] for s in snapshots_of(agent, 'policyguest')]
    assert kept == sorted(made)[-2:]  # ids sort by time: the two newest stay
    assert agent.ctl('policy', 'clear', 'policyguest').returncode == 0
    # With the policy gone, no more timed snapshots.
    count = len(snapshots_of(agent, 'policyguest'))
    time.sleep(5)
    assert len(snapshots_of(agent, 'policyguest')) == count


def test_on_stop_takes_an_offline_snapshot(lab, agent, policyguest):
    assert agent.ctl('policy', 'set', 'policyguest', 'on-stop=snapshot').returncode == 0
    time.sleep(1)
    policyguest.shutdown()
    snaps = wait_until(lambda: snapshots_of(agent, 'policyguest'), 20, 'on-stop snapshot')
    assert len(snaps) == 1
    assert snaps[0]['method'] == 'cold' and snaps[0]['offline'] is True
    assert policyguest.state() == 'shut off'
    # A cold snapshot of our own (managed save: "stopped/saved") does not trigger it.
    policyguest.start()
    policyguest.wait_ready(120)
    props = agent.snapshot('policyguest', method='cold')
    assert props['State'] == 'succeeded', props['Error']
    time.sleep(2)
    assert len(snapshots_of(agent, 'policyguest')) == 2
