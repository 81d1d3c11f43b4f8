# SPDX-License-Identifier: LGPL-2.1-or-later
"""`every` on the wall clock: it counts from the domain's last successful snapshot
in the catalog, not from an agent start or a libvirt reconnect, and a slot missed
while the agent was down is caught up once.  One guest and one agent for the
module (the guest takes most of the time); the tests go on from each other's
snapshots, and each waits for the one it needs first."""

import time

import pytest
from gi.repository import GLib

from conftest import Agent, remove_guest, start_guest

EVERY = 6            # seconds: the policy's every=
JITTER = EVERY / 20  # the scheduler moves a slot by at most ±every/20
# A request becomes a job within this (a worker thread checks the domain first; CI runs
# both lab modes side by side on two cores).
LATE = 1.5


@pytest.fixture(scope='module')
def schedguest(lab):
    guest = start_guest(lab, 'schedguest', disks=1, agent=True)
    yield guest
    remove_guest(guest)


@pytest.fixture(scope='module')
def sagent(lab, schedguest):
    a = Agent(lab, name='agent-schedule')
    a.start()
    res = a.ctl('policy', 'set', 'schedguest', f'every={EVERY}s')
    assert res.returncode == 0, res.stderr
    yield a
    if a.proc is None:
        a.start()
    assert a.ctl('policy', 'clear', 'schedguest').returncode == 0
    a.stop()


def snapshots(agent):
    (snaps,) = agent.call('ListSnapshots', GLib.Variant('(s)', ('schedguest',)))
    return sorted(snaps, key=lambda s: s['created-us'])


def timed_jobs(agent):
    """This agent's jobs on the guest, oldest first: (Created in s, properties)."""
    (paths,) = agent.call('ListJobs')
    jobs = [agent.job_props(p) for p in paths]
    return sorted(((j['Created'] / 1e6, j) for j in jobs if j['Domain'] == 'schedguest'),
                  key=lambda cj: cj[0])


def next_success(agent, seen, timeout):
    """Wait for a job of this agent beyond the first *seen* to succeed; (its
    creation time in s, the creation time of its snapshot in s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = timed_jobs(agent)
        if len(jobs) > seen:
            created, job = jobs[seen]
            assert job['State'] not in ('failed', 'cancelled', 'interrupted'), job
            if job['State'] == 'succeeded':
                snap_id = job['Result']['snapshot-id']
                (snap,) = [s for s in snapshots(agent) if s['id'] == snap_id]
                return created, snap['created-us'] / 1e6
        time.sleep(0.1)
    raise AssertionError(f'no timed snapshot within {timeout} s: {timed_jobs(agent)}')


def sleep_until(wall):
    time.sleep(max(0.0, wall - time.time()))


def last_snapshot(agent):
    """The creation time (s) of the newest snapshot, waiting for the first if need be."""
    if not snapshots(agent):
        next_success(agent, len(timed_jobs(agent)), EVERY + 60)
    return snapshots(agent)[-1]['created-us'] / 1e6


def test_every_counts_from_last_success_across_agent_restarts(lab, sagent):
    last = last_snapshot(sagent)

    # Restarted before the slot: no snapshot at start, the next at last + every
    # (the old timer counted from the start: restart + every).
    sleep_until(last + EVERY / 2)
    sagent.stop()
    sagent.start()
    restarted = time.time()
    created, last = next_success(sagent, 0, EVERY + 60)
    assert abs(created - (last_created := snapshots(sagent)[-2]['created-us'] / 1e6)
               - EVERY) <= JITTER + LATE, (created, last_created)
    assert created < restarted + EVERY - 1, (created, restarted)

    # Down for more than two slots: exactly one catch-up, at start...
    count = len(snapshots(sagent))
    sagent.stop()
    sleep_until(last + 2 * EVERY + 1)
    sagent.start()
    started = time.time()
    created, caught_up = next_success(sagent, 0, 60)
    assert started - 1 <= created <= started + LATE, (created, started)
    # ...then the next a full interval after the catch-up, with none in between.
    created, last = next_success(sagent, 1, EVERY + 60)
    assert abs(created - caught_up - EVERY) <= JITTER + LATE, (created, caught_up)
    assert len(snapshots(sagent)) == count + 2
    assert len(timed_jobs(sagent)) == 2
    assert 'policy every: next snapshot of schedguest due' in sagent.log_text()


def test_libvirtd_restart_keeps_the_count(lab, sagent):
    if sagent.proc is None:  # the test before failed with it stopped
        sagent.start()
    last = last_snapshot(sagent)
    seen = len(timed_jobs(sagent))
    sleep_until(last + EVERY / 3)
    lab.restart_libvirtd()
    deadline = time.monotonic() + 30
    while not sagent.prop('Connected'):
        assert time.monotonic() < deadline, 'agent not reconnected'
        time.sleep(0.1)
    reconnected = time.time()
    created, _ = next_success(sagent, seen, EVERY + 60)
    assert abs(created - last - EVERY) <= JITTER + LATE, (created, last, reconnected)
    # Counted from the reconnection, it would be at reconnected + every at the earliest.
    assert created < reconnected + EVERY - 0.5, (created, reconnected)
