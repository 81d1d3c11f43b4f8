# SPDX-License-Identifier: LGPL-2.1-or-later
"""The hook's added latency to `virsh start` (tests/hook/latency.py), shown in
the run's output; it must stay far below the hook's timeout."""

import statistics

from latency import measure, report


def test_hook_latency(syslab, agent, capsys):
    results = measure(syslab, agent, n=20)
    with capsys.disabled():
        print('\n' + report(results))
    base = statistics.median(results['no hook'])
    for mode in ('hook, agent answering', 'hook, no agent'):
        # Three hook runs per start: waiting out their 2 s timeouts would add 6 s. (Wall times
        # of TCG starts vary by a few hundred ms; this only catches that.)
        assert statistics.median(results[mode]) - base < 3.0, report(results)
        # The figure that this noise does not blur: each run, as libvirtd waited for it.
        runs = results[f'runs: {mode}']
        assert len(runs) == 3 * 20, report(results)
        assert statistics.median(runs) < 0.5, report(results)
    assert not syslab.hook_installed
