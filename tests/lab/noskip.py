# SPDX-License-Identifier: LGPL-2.1-or-later
"""A pytest hook the lab's suites share: a skipped test hides a missing piece of the lab,
so a run with any skip fails; and the failed tests' ids, for run-tests. Import them into a
conftest.py."""

import os


def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin('terminalreporter')
    if reporter and reporter.stats.get('skipped'):
        reporter.write_line('skipped tests make this run fail (the lab must be complete)',
                            red=True)
        session.exitstatus = 1


# Each failed test's id, for run-tests to run once more (VIRTSNAP_FAILED_FILE): an absolute
# path with the test's name, which pytest takes as an argument from any directory.
_root = None


def pytest_sessionstart(session):
    global _root
    _root = str(session.config.rootpath)


def pytest_runtest_logreport(report):
    path = os.environ.get('VIRTSNAP_FAILED_FILE')
    if path and report.failed:
        with open(path, 'a', encoding='utf-8') as f:
            f.write(f'{_root}/{report.nodeid}\n')
