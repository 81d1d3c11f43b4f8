# SPDX-License-Identifier: LGPL-2.1-or-later
"""The agent under test for every suite (integration, hook, bench): a real virtsnapd on a
lab's bus with its own directories, a D-Bus client for it, and virtsnapctl against it.
Needs python3-gi (Gio)."""

import os
import signal
import subprocess
import time

import gi

gi.require_version('Gio', '2.0')
from gi.repository import Gio, GLib  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUS_NAME = 'org.virtsnap.Agent1'
AGENT_PATH = '/org/virtsnap/Agent1'
AGENT_IFACE = 'org.virtsnap.Agent1'
JOB_IFACE = 'org.virtsnap.Job1'
PROPS_IFACE = 'org.freedesktop.DBus.Properties'
FINAL_STATES = ('succeeded', 'failed', 'cancelled', 'interrupted')

# CreateSnapshot option types other than 's'.
_TYPES = {'disks': 'as', 'compress': 'b', 'force': 'b', 'legacy_undefine': 'b', 'flatten': 'b',
          'bandwidth': 't'}


def build_dir():
    """VIRTSNAP_BUILD_DIR, default <repo>/build."""
    return os.environ.get('VIRTSNAP_BUILD_DIR', os.path.join(REPO, 'build'))


def built_programs(build=None):
    """(virtsnapd, virtsnapctl) of a build directory."""
    build = build or build_dir()
    return os.path.join(build, 'agent', 'virtsnapd'), os.path.join(build, 'tools', 'virtsnapctl')


def installed_programs(root):
    """(virtsnapd, virtsnapctl) of an installed tree (a DESTDIR, or /)."""
    return (os.path.join(root, 'usr', 'sbin', 'virtsnapd'),
            os.path.join(root, 'usr', 'bin', 'virtsnapctl'))


def dbus_error_name(exc):
    """'org.virtsnap.Error.NoSuchDomain' for a GLib.Error from a D-Bus call."""
    return Gio.DBusError.get_remote_error(exc)


def snapshot_options(**options):
    """CreateSnapshot's a{sv} from python values (compress=True, disks=['vda'], ...)."""
    return {key.replace('_', '-'): GLib.Variant(_TYPES.get(key, 's'), value)
            for key, value in options.items()}


def sanitizer_env():
    """The sanitizer options of a CI build (run-tests sets them), if any."""
    return {k: os.environ[k] for k in ('ASAN_OPTIONS', 'UBSAN_OPTIONS') if k in os.environ}


class Agent:
    """A real virtsnapd on the lab's bus, with its own snapshot and state dirs.

    Agent(lab, name='agent', config='', ...):
      dir            its directory (config, log, snapshots, state); default lab.path(name)
      config         text appended to the [agent] group of its configuration file
      programs       (virtsnapd, virtsnapctl); default those of VIRTSNAP_BUILD_DIR
      wrapper        an argv prefix the agent runs under (e.g. a seccomp wrapper)
      system_bus     find the bus as a system-bus client does (lab.bus_env) and libvirt at
                     the configuration's default URI, as installed; else --bus-address and
                     --uri of the lab (virtsnapctl follows: lab.bus_env or --address)
      installed_defaults  no options at all, as the unit runs it: the installed
                     configuration and the default directories under /var/lib/virtsnap
      env            the agent's environment (default os.environ); fatal_criticals adds
                     G_DEBUG=fatal-criticals
      ready_timeout  seconds start() waits for the agent on the bus
    Failures raise self.error (AssertionError unless a suite says otherwise).
    """

    error = AssertionError

    def __init__(self, lab, name='agent', config='', programs=None, wrapper=(),
                 system_bus=False, installed_defaults=False, dir=None, env=None,
                 fatal_criticals=True, ready_timeout=15):
        self.lab = lab
        self.virtsnapd, self.virtsnapctl = programs or built_programs()
        self.wrapper = list(wrapper)
        self.system_bus = system_bus
        self.installed_defaults = installed_defaults
        self.base_env = env
        self.fatal_criticals = fatal_criticals
        self.ready_timeout = ready_timeout
        self.dir = dir or lab.path(name)
        if installed_defaults:
            self.snapshot_dir = '/var/lib/virtsnap/snapshots'
            self.state_dir = '/var/lib/virtsnap/state'
        else:
            self.snapshot_dir = os.path.join(self.dir, 'snapshots')
            self.state_dir = os.path.join(self.dir, 'state')
        self.config = os.path.join(self.dir, 'virtsnapd.conf')
        self.log = os.path.join(self.dir, 'virtsnapd.log')
        os.makedirs(self.dir, exist_ok=True)
        # Exports' NBD sockets: a runtime dir of its own, short enough for a socket path.
        self.runtime_dir = os.path.join(self.dir, 'run')
        with open(self.config, 'w') as f:
            f.write(f'[agent]\nruntime_dir = {self.runtime_dir}\n' + config)
        self.proc = None
        self.bus = Gio.DBusConnection.new_for_address_sync(
            lab.bus_address, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT |
            Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)

    # -- the process -----------------------------------------------------------------
    def argv(self):
        argv = self.wrapper + [self.virtsnapd, '--verbose']
        if not self.installed_defaults:
            argv += ['--config', self.config, '--snapshot-dir', self.snapshot_dir,
                     '--state-dir', self.state_dir]
        if not self.system_bus:
            argv += ['--bus-address', self.lab.bus_address, '--uri', self.lab.libvirt_uri]
        return argv

    def start(self, wait_connected=True):
        """Start it; return (self) when it is on the bus and, with wait_connected, its
        Connected property is true."""
        env = dict(os.environ if self.base_env is None else self.base_env)
        if self.fatal_criticals:
            env['G_DEBUG'] = 'fatal-criticals'
        if self.system_bus:
            env.update(self.lab.bus_env)
        log = open(self.log, 'ab')
        try:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env)
        finally:
            log.close()
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise self.error(f'virtsnapd exited: {self.log_text()[-2000:]}')
            try:
                if not wait_connected or self.prop('Connected'):
                    return self
            except GLib.Error:
                pass
            time.sleep(0.05)
        raise self.error(f'virtsnapd not ready after {self.ready_timeout} s: '
                         f'{self.log_text()[-2000:]}')

    def stop(self, expect_code=0, timeout=90, check=True):
        """SIGTERM it (after a SIGCONT: a test may have stopped it) and wait.  With check:
        its exit code is expect_code (None: any; and if it has exited already, nothing
        is checked) and its log holds no CRITICAL.  Without: SIGKILL after *timeout*."""
        if not self.proc or self.proc.poll() is not None and expect_code is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None
            if check:
                raise self.error(f'virtsnapd still running {timeout} s after SIGTERM: '
                                 f'{self.log_text()[-3000:]}')
            return
        self.proc = None
        if not check:
            return
        if expect_code is not None and code != expect_code:
            raise self.error(f'virtsnapd exit code {code}: {self.log_text()[-3000:]}')
        if 'CRITICAL' in self.log_text():
            raise self.error(self.log_text()[-3000:])

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

    # -- D-Bus -----------------------------------------------------------------------
    def call(self, method, params=None, iface=AGENT_IFACE, path=AGENT_PATH, timeout=120,
             reply_type=None):
        """A method call to the agent; its reply unpacked (None if it has none)."""
        reply = self.bus.call_sync(BUS_NAME, path, iface, method, params,
                                   GLib.VariantType(reply_type) if reply_type else None,
                                   Gio.DBusCallFlags.NONE, int(timeout * 1000), None)
        return reply.unpack() if reply is not None else None

    def call_error(self, method, params=None, **kw):
        """The D-Bus error name (and message) a call fails with; fails if it succeeds."""
        try:
            self.call(method, params, **kw)
        except GLib.Error as e:
            return dbus_error_name(e), e.message
        raise AssertionError(f'{method} succeeded, an error was expected')

    def prop(self, name, path=AGENT_PATH, iface=AGENT_IFACE, timeout=120):
        return self.call('Get', GLib.Variant('(ss)', (iface, name)), iface=PROPS_IFACE,
                         path=path, timeout=timeout)[0]

    def job_props(self, path):
        return self.call('GetAll', GLib.Variant('(s)', (JOB_IFACE,)), iface=PROPS_IFACE,
                         path=path)[0]

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

    def leftovers(self):
        """Files a finished job must not leave: partial folders, journal records."""
        left = []
        if os.path.isdir(self.snapshot_dir):
            left += [n for n in os.listdir(self.snapshot_dir) if n.startswith('.')]
        if os.path.isdir(self.state_dir):
            left += os.listdir(self.state_dir)
        return left

    # -- virtsnapctl -----------------------------------------------------------------
    def ctl(self, *args, timeout=120, input=None):
        """virtsnapctl ARGS as this process's user, on the agent's bus."""
        if self.system_bus:
            argv, env = [self.virtsnapctl], dict(os.environ, **self.lab.bus_env)
        else:
            argv, env = [self.virtsnapctl, '--address', self.lab.bus_address], None
        return subprocess.run(argv + list(args), capture_output=True, text=True,
                              timeout=timeout, input=input, env=env,
                              stdin=subprocess.DEVNULL if input is None else None)

    def ctl_as(self, user, *args, timeout=120, input=None):
        """virtsnapctl ARGS as another local user (the system lab's lab.users)."""
        assert self.system_bus, 'ctl_as needs the system lab'
        env = [f'{k}={v}' for k, v in sorted(self.lab.bus_env.items())]
        env += [f'{k}={v}' for k, v in sanitizer_env().items()]
        return subprocess.run(['runuser', '-u', user, '--', 'env', '-i', 'PATH=/usr/bin:/bin',
                               *env, self.virtsnapctl, *args], capture_output=True, text=True,
                              timeout=timeout, input=input, cwd='/')
