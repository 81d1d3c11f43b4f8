# SPDX-License-Identifier: LGPL-2.1-or-later
"""Fixtures for the integration suite: the real lab, a real virtsnapd per test,
and guests shared by a module. The same tests run in two lab modes:

- session (VIRTSNAP_LAB_MODE unset or 'session'; tests/lab/lab.py): an
  unprivileged user's session libvirtd and a permissive private bus; virtsnapd
  and virtsnapctl from VIRTSNAP_BUILD_DIR (default <repo>/build).
- system ('system'; tests/lab/system.py, as root): what users install -- a
  system libvirtd whose QEMU runs as libvirt-qemu, a bus configured as a system
  bus (Debian's system.conf) governed by virtsnap's installed policy, the real
  polkitd with virtsnap's installed actions and rules, virtsnapd as root and
  virtsnapctl (as root or as lab.users' outsider/member) from the installed tree
  VIRTSNAP_INSTALL_ROOT (a `meson install` DESTDIR, or / for the .deb), finding
  the bus as DBUS_SYSTEM_BUS_ADDRESS like any system-bus client.

VIRTSNAP_LAB_ASSETS holds the guest kernel and initramfs; VIRTSNAP_AGENT_WRAPPER
(optional) is an argv prefix the agent is started under (e.g. a seccomp
wrapper). Tests marked system_only are deselected in session mode. A skipped
test is a failed run (see pytest_sessionfinish)."""

import os
import queue
import shlex
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, 'tests', 'lab'))

import agent as agentmod  # noqa: E402
import lab as labmod  # noqa: E402
import system as systemmod  # noqa: E402
from noskip import (pytest_runtest_logreport, pytest_sessionfinish,  # noqa: E402,F401
                    pytest_sessionstart)  # (fails runs with skips; lists failed tests)

import gi  # noqa: E402

gi.require_version('Gio', '2.0')
from gi.repository import Gio, GLib  # noqa: E402

MODE = os.environ.get('VIRTSNAP_LAB_MODE', 'session')
assert MODE in ('session', 'system'), f'VIRTSNAP_LAB_MODE={MODE!r}: session or system'
SYSTEM = MODE == 'system'
if SYSTEM:
    INSTALL_ROOT = os.path.abspath(os.environ.get('VIRTSNAP_INSTALL_ROOT', '/'))
    VIRTSNAPD, VIRTSNAPCTL = agentmod.installed_programs(INSTALL_ROOT)
else:
    VIRTSNAPD, VIRTSNAPCTL = agentmod.built_programs()
AGENT_WRAPPER = shlex.split(os.environ.get('VIRTSNAP_AGENT_WRAPPER', ''))
# What the tests import from here; the shared wrapper defines them.
from agent import (AGENT_IFACE, AGENT_PATH, BUS_NAME, FINAL_STATES,  # noqa: E402,F401
                   JOB_IFACE, dbus_error_name, snapshot_options)


class EventCollector:
    """DomainEvent signals and Agent1 property changes, collected by a GLib main
    loop in its own thread, with the time each arrived."""

    def __init__(self, address):
        self.events = queue.Queue()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(address,), daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError('event collector did not start')

    def _run(self, address):
        self._ctx = GLib.MainContext()
        self._ctx.push_thread_default()
        self._loop = GLib.MainLoop(self._ctx)
        self._bus = Gio.DBusConnection.new_for_address_sync(
            address, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT |
            Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)
        self._bus.signal_subscribe(BUS_NAME, AGENT_IFACE, 'DomainEvent', AGENT_PATH, None,
                                   Gio.DBusSignalFlags.NONE, self._on_event)
        self._bus.signal_subscribe(BUS_NAME, 'org.freedesktop.DBus.Properties',
                                   'PropertiesChanged', AGENT_PATH, AGENT_IFACE,
                                   Gio.DBusSignalFlags.NONE, self._on_props)
        # A round trip to the bus makes sure the match rules are in place.
        self._bus.call_sync('org.freedesktop.DBus', '/org/freedesktop/DBus',
                            'org.freedesktop.DBus', 'GetId', None, None,
                            Gio.DBusCallFlags.NONE, 5000, None)
        self._ready.set()
        self._loop.run()
        self._bus.close_sync(None)

    def _on_event(self, bus, sender, path, iface, signal, params):
        domain, uuid, event, detail = params.unpack()
        self.events.put(('event', time.monotonic(), domain, event, detail))

    def _on_props(self, bus, sender, path, iface, signal, params):
        _, changed, _ = params.unpack()
        if 'Connected' in changed:
            self.events.put(('connected', time.monotonic(), changed['Connected']))

    def wait_for(self, predicate, timeout):
        """The first collected item for which predicate(item) is true."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f'not seen within {timeout} s; saw {seen}')
            try:
                item = self.events.get(timeout=left)
            except queue.Empty:
                continue
            seen.append(item)
            if predicate(item):
                return item

    def wait_event(self, domain, event, detail=None, timeout=5):
        return self.wait_for(lambda e: e[0] == 'event' and e[2] == domain and e[3] == event and
                             (detail is None or e[4] == detail), timeout)

    def drain(self):
        while not self.events.empty():
            self.events.get_nowait()

    def close(self):
        self._ctx.invoke_full(GLib.PRIORITY_DEFAULT, self._loop.quit)
        self._thread.join(5)


class Agent(agentmod.Agent):
    """The shared agent wrapper (tests/lab/agent.py) as this suite runs it: the programs
    of the mode, under VIRTSNAP_AGENT_WRAPPER, on the bus as installed in system mode.
    Agent(lab, name, config, wrapper=(), installed_defaults=False, env=None)."""

    def __init__(self, lab, name='agent', config='', wrapper=(), installed_defaults=False,
                 env=None):
        super().__init__(lab, name, config, programs=(VIRTSNAPD, VIRTSNAPCTL),
                         wrapper=AGENT_WRAPPER + list(wrapper), system_bus=SYSTEM,
                         installed_defaults=installed_defaults, env=env)


def pytest_configure(config):
    config.addinivalue_line('markers', 'system_only: runs only in the system lab mode')
    config.addinivalue_line('markers', 'installed_only: runs only against the installed .deb '
                            '(system mode, VIRTSNAP_INSTALL_ROOT=/)')


def pytest_collection_modifyitems(config, items):
    """Deselect (not skip: a skip fails the run) what one mode cannot run."""
    off = set()
    if not SYSTEM:
        off.add('system_only')
    if not (SYSTEM and INSTALL_ROOT == '/'):
        off.add('installed_only')
    keep = [i for i in items if not any(i.get_closest_marker(m) for m in off)]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


# ---- the fault matrix (test_faults.py): its lines, and its totals in CI's output ----------
FAULT_MATRIX = []  # one line per point: 'ok   live:copy:kill:0  ...' / 'FAIL ...'


def fault_matrix_summary(terminalreporter):
    if FAULT_MATRIX:
        ok = sum(1 for line in FAULT_MATRIX if line.startswith('ok'))
        terminalreporter.write_sep('-', f'fault matrix ({MODE} lab)')
        for line in FAULT_MATRIX:
            if not line.startswith('ok'):
                terminalreporter.write_line(line)
        terminalreporter.write_line(f'fault matrix: {ok} of {len(FAULT_MATRIX)} points '
                                    f'recovered ({MODE} lab)')


@pytest.fixture(scope='session')
def lab():
    assert os.path.exists(VIRTSNAPD), f'build (or install) virtsnapd first ({VIRTSNAPD})'
    the_lab = systemmod.SystemLab(install_root=INSTALL_ROOT) if SYSTEM else labmod.Lab()
    with the_lab:
        yield the_lab


@pytest.fixture
def agent(lab, request):
    a = Agent(lab, name=f'agent-{request.node.name}'[:60].replace('[', '-').replace(']', ''))
    a.start()
    yield a
    if a.proc is not None:
        a.stop()


@pytest.fixture
def events(lab):
    collector = EventCollector(lab.bus_address)
    yield collector
    collector.close()


def start_guest(lab, name, **kw):
    guest = lab.make_guest(name, **kw)
    guest.start()
    guest.wait_ready(120)
    # The guest writes and syncs records from boot on: give the first ones time to reach
    # the disk, so that even an unfrozen or cold first snapshot holds some.
    time.sleep(2)
    return guest


def remove_guest(guest):
    if guest.state() != 'shut off':
        guest.destroy()
    guest.undefine()


@pytest.fixture(scope='module')
def writer(lab):
    """A running guest writing records to a qcow2 disk with a backing file."""
    guest = start_guest(lab, 'writer', disks=1, agent=True, backing=True)
    yield guest
    remove_guest(guest)


def domain_intact(guest, inactive_xml_before):
    """The checks every snapshot ends with: the domain is as it was."""
    assert guest.state() == 'running'
    assert guest.is_persistent()
    assert guest.inactive_xml() == inactive_xml_before
    assert guest.block_jobs() == []


# ---- the fuzz suite's totals (test_fuzz.py fills them) ----------------------------------------
FUZZ_TOTALS = {}


def fuzz_summary(terminalreporter):
    if FUZZ_TOTALS.get('inputs'):
        total = FUZZ_TOTALS['inputs']
        ok = FUZZ_TOTALS.get('rejected', 0) + FUZZ_TOTALS.get('accepted', 0)
        verdict = 'all rejected with specific errors' if ok == total and FUZZ_TOTALS.get(
            'done') else f'{total - ok} NOT answered as they must (or the suite did not finish)'
        terminalreporter.write_line(f'hostile inputs: {total}, {verdict} '
                                    f'({FUZZ_TOTALS.get("accepted", 0)} of them queries answered '
                                    f'with nothing, or the job and deletes they asked for)')
        if FUZZ_TOTALS.get('errors'):
            terminalreporter.write_line(f'hostile inputs by error: {FUZZ_TOTALS["errors"]}')


def pytest_terminal_summary(terminalreporter):
    """The totals CI's output shows: the fault matrix's points and the hostile inputs."""
    fault_matrix_summary(terminalreporter)
    fuzz_summary(terminalreporter)
