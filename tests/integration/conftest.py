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
import signal
import subprocess
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, 'tests', 'lab'))

import lab as labmod  # noqa: E402
import system as systemmod  # noqa: E402
from noskip import pytest_sessionfinish  # noqa: E402,F401  (fails runs with skips)

import gi  # noqa: E402

gi.require_version('Gio', '2.0')
from gi.repository import Gio, GLib  # noqa: E402

MODE = os.environ.get('VIRTSNAP_LAB_MODE', 'session')
assert MODE in ('session', 'system'), f'VIRTSNAP_LAB_MODE={MODE!r}: session or system'
SYSTEM = MODE == 'system'
if SYSTEM:
    INSTALL_ROOT = os.path.abspath(os.environ.get('VIRTSNAP_INSTALL_ROOT', '/'))
    VIRTSNAPD = os.path.join(INSTALL_ROOT, 'usr', 'sbin', 'virtsnapd')
    VIRTSNAPCTL = os.path.join(INSTALL_ROOT, 'usr', 'bin', 'virtsnapctl')
else:
    BUILD = os.environ.get('VIRTSNAP_BUILD_DIR', os.path.join(REPO, 'build'))
    VIRTSNAPD = os.path.join(BUILD, 'agent', 'virtsnapd')
    VIRTSNAPCTL = os.path.join(BUILD, 'tools', 'virtsnapctl')
AGENT_WRAPPER = shlex.split(os.environ.get('VIRTSNAP_AGENT_WRAPPER', ''))
BUS_NAME = 'org.virtsnap.Agent1'
AGENT_PATH = '/org/virtsnap/Agent1'
AGENT_IFACE = 'org.virtsnap.Agent1'
JOB_IFACE = 'org.virtsnap.Job1'
FINAL_STATES = ('succeeded', 'failed', 'cancelled', 'interrupted')


def dbus_error_name(exc):
    """'org.virtsnap.Error.NoSuchDomain' for a GLib.Error from a D-Bus call."""
    return Gio.DBusError.get_remote_error(exc)


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


class Agent:
    """A real virtsnapd on the lab's bus, with its own snapshot and state dirs."""

    def __init__(self, lab, name='agent', config='', wrapper=(), installed_defaults=False):
        """installed_defaults: run as the unit does, with no options at all -- the installed
        configuration and the default directories under /var/lib/virtsnap."""
        self.lab = lab
        self.wrapper = list(wrapper)
        self.installed_defaults = installed_defaults
        self.dir = lab.path(name)
        if installed_defaults:
            self.snapshot_dir = '/var/lib/virtsnap/snapshots'
            self.state_dir = '/var/lib/virtsnap/state'
        else:
            self.snapshot_dir = os.path.join(self.dir, 'snapshots')
            self.state_dir = os.path.join(self.dir, 'state')
        self.config = os.path.join(self.dir, 'virtsnapd.conf')
        self.log = os.path.join(self.dir, 'virtsnapd.log')
        os.makedirs(self.dir, exist_ok=True)
        with open(self.config, 'w') as f:
            f.write('[agent]\n' + config)
        self.proc = None
        self.bus = Gio.DBusConnection.new_for_address_sync(
            lab.bus_address, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT |
            Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)

    def start(self, wait_connected=True):
        env = dict(os.environ, G_DEBUG='fatal-criticals')
        argv = AGENT_WRAPPER + self.wrapper + [VIRTSNAPD, '--verbose']
        if not self.installed_defaults:
            argv += ['--config', self.config, '--snapshot-dir', self.snapshot_dir,
                     '--state-dir', self.state_dir]
        if SYSTEM:
            # As installed: the system bus (found as a system-bus client finds it) and the
            # configuration's default URI, qemu:///system.
            env.update(self.lab.bus_env)
        else:
            argv += ['--bus-address', self.lab.bus_address, '--uri', self.lab.libvirt_uri]
        self.proc = subprocess.Popen(argv, stdout=open(self.log, 'a'), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f'virtsnapd exited: {self.log_text()[-2000:]}'
            try:
                if not wait_connected or self.prop('Connected'):
                    return self
            except GLib.Error:
                pass
            time.sleep(0.05)
        raise AssertionError(f'virtsnapd not ready: {self.log_text()[-2000:]}')

    def stop(self, expect_code=0):
        if not self.proc or self.proc.poll() is not None and expect_code is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(90)
        self.proc = None
        if expect_code is not None:
            assert code == expect_code, f'virtsnapd exit code {code}: {self.log_text()[-3000:]}'
        assert 'CRITICAL' not in self.log_text(), self.log_text()[-3000:]

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def log_text(self):
        with open(self.log, errors='replace') as f:
            return f.read()

    @property
    def pid(self):
        return self.proc.pid

    # D-Bus
    def call(self, method, params=None, iface=AGENT_IFACE, path=AGENT_PATH, timeout=120):
        reply = self.bus.call_sync(BUS_NAME, path, iface, method, params, None,
                                   Gio.DBusCallFlags.NONE, timeout * 1000, None)
        return reply.unpack() if reply is not None else None

    def call_error(self, method, params=None, **kw):
        """The D-Bus error name (and message) a call fails with; fails if it succeeds."""
        try:
            self.call(method, params, **kw)
        except GLib.Error as e:
            return dbus_error_name(e), e.message
        raise AssertionError(f'{method} succeeded, an error was expected')

    def prop(self, name, path=AGENT_PATH, iface=AGENT_IFACE):
        return self.call('Get', GLib.Variant('(ss)', (iface, name)),
                         iface='org.freedesktop.DBus.Properties', path=path)[0]

    def job_props(self, path):
        return self.call('GetAll', GLib.Variant('(s)', (JOB_IFACE,)),
                         iface='org.freedesktop.DBus.Properties', path=path)[0]

    def create(self, domain, **options):
        """CreateSnapshot; options as python values typed by snapshot_options()."""
        return self.call('CreateSnapshot', GLib.Variant('(sa{sv})',
                                                        (domain, snapshot_options(**options))))[0]

    def wait_job(self, path, timeout=120, until=FINAL_STATES):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            props = self.job_props(path)
            if props['State'] in until or props['Phase'] in until:
                return props
            time.sleep(0.05)
        raise AssertionError(f'job {path} still {self.job_props(path)} after {timeout} s')

    def snapshot(self, domain, timeout=120, **options):
        """Create a snapshot job and wait for it: its final properties."""
        return self.wait_job(self.create(domain, **options), timeout)

    def ctl(self, *args, timeout=120, input=None):
        """virtsnapctl ARGS as this test process's user (the lab user, or root)."""
        if SYSTEM:
            return subprocess.run([VIRTSNAPCTL] + list(args), capture_output=True, text=True,
                                  timeout=timeout, input=input,
                                  env=dict(os.environ, **self.lab.bus_env))
        return subprocess.run([VIRTSNAPCTL, '--address', self.lab.bus_address] + list(args),
                              capture_output=True, text=True, timeout=timeout, input=input)

    def ctl_as(self, user, *args, timeout=120, input=None):
        """virtsnapctl ARGS as another local user (system mode: lab.users)."""
        assert SYSTEM, 'ctl_as needs the system lab'
        env = [f'{k}={v}' for k, v in sorted(self.lab.bus_env.items())]
        env += [f'{k}={os.environ[k]}' for k in ('ASAN_OPTIONS', 'UBSAN_OPTIONS')
                if k in os.environ]
        return subprocess.run(['runuser', '-u', user, '--', 'env', '-i', 'PATH=/usr/bin:/bin',
                               *env, VIRTSNAPCTL, *args], capture_output=True, text=True,
                              timeout=timeout, input=input, cwd='/')

    def leftovers(self):
        """Files a finished job must not leave: partial folders, journal records."""
        left = []
        if os.path.isdir(self.snapshot_dir):
            left += [n for n in os.listdir(self.snapshot_dir) if n.startswith('.')]
        if os.path.isdir(self.state_dir):
            left += os.listdir(self.state_dir)
        return left


_TYPES = {'disks': 'as', 'compress': 'b', 'force': 'b', 'legacy_undefine': 'b', 'flatten': 'b',
          'bandwidth': 't'}


def snapshot_options(**options):
    out = {}
    for key, value in options.items():
        out[key.replace('_', '-')] = GLib.Variant(_TYPES.get(key, 's'), value)
    return out


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
