# SPDX-License-Identifier: LGPL-2.1-or-later
"""Fixtures for the hook suite (run as root): one system lab (a system-mode
libvirtd of our own, tests/lab/system.py), the built hook installed in
/etc/libvirt/hooks/qemu.d for a module's lifetime, and a real virtsnapd per
test.  A skipped test is a failed run (see pytest_sessionfinish)."""

import os

import pytest

from hookenv import HOOK, VIRTSNAPCTL, VIRTSNAPD, Agent, hook_env, system
from noskip import (pytest_runtest_logreport, pytest_sessionfinish,  # noqa: E402,F401
                    pytest_sessionstart)  # (fails runs with skips; lists failed tests)


@pytest.fixture(scope='session')
def syslab():
    assert os.getuid() == 0, 'the hook suite runs as root (hooks run only in a system libvirtd)'
    for program in (VIRTSNAPD, VIRTSNAPCTL, HOOK):
        assert os.access(program, os.X_OK), f'build it first: {program}'
    with system.SystemLab() as lab:
        yield lab


@pytest.fixture(scope='module')
def hooked(syslab):
    """The system lab with the built hook installed; libvirtd restarted both
    ways, since it looks for hooks only when it starts."""
    syslab.install_hook(HOOK, hook_env(syslab))
    try:
        syslab.restart_libvirtd()
        yield syslab
    finally:
        syslab.remove_hook()
        if syslab.libvirtd_running():
            syslab.restart_libvirtd()


@pytest.fixture
def agent(syslab, request):
    a = Agent(syslab, name=request.node.name[:40])
    a.start()
    yield a
    a.stop()
