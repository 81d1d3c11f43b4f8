#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""What the virtsnap hook adds to `virsh start`: the median wall time of N
starts (each followed by a destroy) of one small guest, with no hook, with the
hook and the agent answering, and with the hook and no agent; and how long
each hook run took as libvirtd's log times it (less noisy on a busy machine).
libvirtd is restarted between the modes: it looks for hooks only when it
starts.

As a script (root): latency.py [N]  -- its own system lab and agent.
From the suite: measure(lab, agent, n) (test_latency.py)."""

import os
import statistics
import sys
import time

from hookenv import HOOK, Agent, hook_env, hook_runs, log_offset, system

MODES = ('no hook', 'hook, agent answering', 'hook, no agent')
START_OPERATIONS = ('prepare', 'start', 'started')


def _starts(lab, name, n):
    """Times of n starts, and where libvirtd's log was when they began."""
    lab.virsh('start', name)  # warm-up after the libvirtd restart, not counted
    lab.virsh('destroy', name)
    offset = log_offset(lab) if lab.log_commands else None
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        lab.virsh('start', name)
        times.append(time.monotonic() - t0)
        lab.virsh('destroy', name)
    return times, offset


def measure(lab, agent, n=20, rounds=2, name='latency'):
    """{mode: [seconds of each start]}, plus 'runs: MODE' (seconds of each hook
    run during those starts, as libvirtd timed it, when its log has them).  The
    modes take turns in *rounds* so that a change in the machine's load hits
    them alike.  Stops *agent* for the last mode of the last round and leaves
    the lab without a hook, as it found it."""
    guest = lab.make_guest(name)
    results = {mode: [] for mode in MODES}
    results.update({f'runs: {mode}': [] for mode in MODES[1:]})
    try:
        for r in range(rounds):
            for mode in MODES:
                if mode == 'no hook':
                    lab.remove_hook()
                else:
                    lab.install_hook(HOOK, hook_env(lab))
                # Each round stops the agent for this mode and starts it again after.
                if mode == 'hook, no agent':
                    agent.stop()
                lab.restart_libvirtd()
                times, offset = _starts(lab, name, n // rounds + (r < n % rounds))
                results[mode] += times
                if mode != 'no hook' and offset is not None:
                    results[f'runs: {mode}'] += [run['seconds'] for run in hook_runs(lab, offset)
                                                 if run['operation'] in START_OPERATIONS]
                if mode == 'hook, no agent' and r < rounds - 1:
                    agent.start()
    finally:
        lab.remove_hook()
        lab.restart_libvirtd()
        guest.destroy()
        guest.undefine()
    return results


def report(results):
    base = statistics.median(results['no hook'])
    lines = [f'virsh start, median of {len(results["no hook"])} starts (start + destroy each):']
    for mode in MODES:
        times = results[mode]
        med = statistics.median(times)
        added = '' if mode == 'no hook' else f'  ({(med - base) * 1000:+.0f} ms)'
        lines.append(f'  {mode:<24} {med * 1000:7.1f} ms{added}   '
                     f'[min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}]')
    lines.append(f'one hook run as libvirtd waited for it ({len(START_OPERATIONS)} per start):')
    for mode in MODES[1:]:
        runs = results[f'runs: {mode}']
        if runs:
            lines.append(f'  {mode:<24} {statistics.median(runs) * 1000:7.1f} ms   '
                         f'[max {max(runs) * 1000:.0f}, {len(runs)} runs]')
    return '\n'.join(lines)


def main(argv):
    n = int(argv[1]) if len(argv) > 1 else 20
    if os.getuid() != 0:
        print('latency.py: run as root (it starts a system libvirtd)', file=sys.stderr)
        return 2
    with system.SystemLab() as lab:
        agent = Agent(lab).start()
        try:
            print(report(measure(lab, agent, n)))
        finally:
            agent.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
