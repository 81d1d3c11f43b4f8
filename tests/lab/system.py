#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""virtsnap root lab: a system-mode libvirtd (``qemu:///system``) for the tests
that need what only a privileged daemon does -- libvirt runs hooks only there,
from /etc/libvirt/hooks/qemu.d (a session libvirtd runs none).

Run as root.  ``SystemLab`` starts, as its own children, a private
``dbus-daemon`` (for the agent and the hook to meet on), ``virtlogd`` and a
monolithic ``libvirtd`` in the foreground; guests are built with lab.py's
pieces (disk images, domain XML, ``Guest``).  It refuses to start next to a
system libvirtd the machine already runs, or when the machine has system
domains that our daemon would load (and autostart).

Everything it adds to the machine -- the users libvirt-qemu/libvirt-qemu
(Debian's libvirt wants both and only libvirt-daemon-system makes them),
/run/libvirt, /var/{lib,cache,log}/libvirt, new entries in /etc/libvirt, the
hook -- is written down in an undo record before it is made, and
``SystemLab.stop()`` undoes exactly that.  stop() runs at exit too, and a
watchdog process runs the same undo if the test process dies without it.
"""

import grp
import json
import os
import pwd
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from xml.sax.saxutils import escape as _xml_escape

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lab as labmod  # noqa: E402
import procs  # noqa: E402
from lab import READY_MARKER, Guest, LabError  # noqa: E402,F401  (re-exported)

__all__ = ['SystemLab', 'LabError', 'READY_MARKER', 'system_daemons_running']

LIBVIRT_URI = 'qemu:///system'
LIBVIRT_SOCKET = '/run/libvirt/libvirt-sock'
VIRTLOGD_SOCKET = '/run/libvirt/virtlogd-sock'
QEMU_USER = 'libvirt-qemu'
QEMU_GROUP = 'libvirt-qemu'
HOOKS_DIR = '/etc/libvirt/hooks'
HOOK_PATH = os.path.join(HOOKS_DIR, 'qemu.d', 'virtsnap')
# Where a system libvirtd and virtlogd leave things; any of them that did not
# exist before the lab started is removed when it stops.
_DAEMON_PATHS = ['/run/libvirt', '/var/lib/libvirt', '/var/cache/libvirt', '/var/log/libvirt',
                 '/run/libvirtd.pid', '/run/virtlogd.pid']
_ETC = '/etc/libvirt'
# The deployed bus: Debian's own system bus configuration, on a socket of the lab's.
_SYSTEM_BUS_CONF = '/usr/share/dbus-1/system.conf'
_POLKITD = '/usr/lib/polkit-1/polkitd'
_POLKIT_DIRS = {'actions': '/usr/share/polkit-1/actions', 'rules.d': '/usr/share/polkit-1/rules.d'}
# Callers of the agent other than root: one outside group libvirt, one in it.
TEST_USERS = {'outsider': ('vslab-outsider', []), 'member': ('vslab-member', ['libvirt'])}
_CLEAN_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
_STOP_GRACE = 10.0


def system_daemons_running():
    """Descriptions of a system libvirt daemon this machine runs already (root
    libvirtd, virtqemud or virtlogd, or a live /run/libvirt/libvirt-sock)."""
    found = []
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        try:
            if os.stat(f'/proc/{name}').st_uid != 0:
                continue
            with open(f'/proc/{name}/comm') as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm in ('libvirtd', 'virtqemud', 'virtlogd') and procs.pid_alive(int(name)):
            found.append(f'{comm} (pid {name})')
    if _connectable(LIBVIRT_SOCKET):
        found.append(f'something listening on {LIBVIRT_SOCKET}')
    return found


def _connectable(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _undo_hook(hook):
    _remove(HOOK_PATH)
    if hook.get('backup'):
        shutil.copy2(hook['backup'], HOOK_PATH, follow_symlinks=False)
    for d in hook.get('made_dirs', []):
        try:
            os.rmdir(d)  # only if still empty: someone else's hook may be there now
        except OSError:
            pass


def undo(record):
    """Take back everything an undo *record* lists, in the one safe order:
    guests, daemons, stray QEMU/agents, the hook, files, users, the work dir.
    Used by SystemLab.stop() and by the watchdog alike; safe to run twice."""
    workdir = record['workdir']
    if _connectable(LIBVIRT_SOCKET) and record.get('pids', {}).get('libvirtd'):
        # The lab's libvirtd started with no domains (start() refuses otherwise): every
        # domain it has now is the lab's, whoever defined it (a test, a clone, ceph.py).
        listed = subprocess.run(['virsh', '-c', LIBVIRT_URI, 'list', '--all', '--name'],
                                capture_output=True, text=True, timeout=60,
                                stdin=subprocess.DEVNULL).stdout.split()
        for name in sorted(set(record.get('guests', []) + listed)):
            for args in (['destroy', name], ['undefine', '--managed-save', name]):
                subprocess.run(['virsh', '-c', LIBVIRT_URI, *args], capture_output=True,
                               timeout=60, stdin=subprocess.DEVNULL)
    for name in ('libvirtd', 'virtlogd', 'polkitd', 'dbus-daemon'):
        procs.stop_pid(record.get('pids', {}).get(name), _STOP_GRACE)
    # any user's: QEMU runs as libvirt-qemu
    for pid in procs.processes_naming(workdir.rstrip('/') + '/', environ=False):
        procs.stop_pid(pid, 2)
    if record.get('hook'):
        _undo_hook(record['hook'])
    for path in record.get('made_paths', []) + record.get('made_files', []):
        _remove(path)
    if 'etc_before' in record:  # e.g. /etc/libvirt/qemu, made at the first define
        for name in _listdir(_ETC):
            if name not in record['etc_before']:
                _remove(os.path.join(_ETC, name))
    for user in record.get('made_users', []):
        subprocess.run(['userdel', user], capture_output=True)
    for group in record.get('made_groups', []):
        if _group_exists(group):
            subprocess.run(['groupdel', group], capture_output=True)
    if not record.get('keep'):
        shutil.rmtree(workdir, ignore_errors=True)


def _group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def _user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _watchdog_main(record_path):
    """The watchdog child: unless the parent said 'done', run the undo record (the
    lab's process died without stopping it)."""
    def cleanup():
        with open(record_path) as f:
            undo(json.load(f))
    return procs.watchdog_main(cleanup)


class SystemLab:
    """A system-mode libvirtd, virtlogd and private dbus-daemon, plus guests.

    ``lab.bus_address`` (the private bus), ``lab.libvirt_uri``
    (``qemu:///system``), ``lab.env`` (for clients), ``lab.libvirtd_log``
    (libvirtd's log; with log_commands=True it holds every command libvirtd
    runs with its stdout and stderr -- the only place a hook's stderr shows
    when the hook succeeds).
    """

    # lab.py's disk and guest makers use no session state.
    make_disk = labmod.Lab.make_disk
    _direct_io_works = staticmethod(labmod.Lab._direct_io_works)
    running = labmod.Lab.running
    auto_cache = labmod.Lab.auto_cache
    console_log = labmod.Lab.console_log

    mode = 'system'

    def __init__(self, assets=None, log_commands=True, install_root=None, polkit=True):
        self.assets = os.path.abspath(assets or os.environ.get('VIRTSNAP_LAB_ASSETS', '') or '.')
        self.log_commands = log_commands
        # Where virtsnap is installed (a DESTDIR of `meson install`, or / for the .deb):
        # its bus policy governs the lab's system bus and its polkit files serve polkitd.
        root = install_root or os.environ.get('VIRTSNAP_INSTALL_ROOT')
        self.install_root = os.path.abspath(root) if root else None
        self.polkit = polkit and self.install_root is not None and os.path.exists(_POLKITD)
        self.users = {}
        self.keep = os.environ.get('VIRTSNAP_LAB_KEEP') == '1'
        self.workdir = None
        self.bus_address = None
        self.libvirt_uri = LIBVIRT_URI
        self.env = None
        self.guests = {}
        self.timings = {}
        self._procs = {}
        self._record = None
        self._watchdog = None
        self._started = False
        self._stopped = False

    # -- paths -----------------------------------------------------------------
    def path(self, *parts):
        return os.path.join(self.workdir, *parts)

    @property
    def images_dir(self):
        return self.path('images')

    @property
    def logs_dir(self):
        return self.path('logs')

    @property
    def kernel(self):
        return os.path.join(self.images_dir, 'vmlinuz')

    @property
    def initrd(self):
        return os.path.join(self.images_dir, 'initrd.img')

    @property
    def qemu_log_dir(self):
        return '/var/log/libvirt/qemu'

    @property
    def libvirtd_log(self):
        return self.path('logs', 'libvirtd.log')

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        if self._started:
            raise LabError('lab already started')
        if os.getuid() != 0:
            raise LabError('the system lab must run as root (it starts a system libvirtd)')
        running = system_daemons_running()
        if running:
            raise LabError('a system libvirt daemon is running on this machine already ('
                           + ', '.join(running) + '); the system lab will not start next to it')
        machine_domains = [n for n in _listdir(os.path.join(_ETC, 'qemu')) if n.endswith('.xml')]
        if machine_domains:
            raise LabError(f'this machine has system domains in {_ETC}/qemu ({machine_domains}); '
                           'a system libvirtd started by the lab would load and autostart them')
        for f in ('vmlinuz', 'initrd.img'):
            if not os.access(os.path.join(self.assets, f), os.R_OK):
                raise LabError(f'{self.assets}/{f} is missing: run tests/lab/build-guest.sh '
                               'and set VIRTSNAP_LAB_ASSETS')
        self._started = True
        t0 = time.monotonic()
        # Short (UNIX socket paths) and readable by libvirt-qemu.
        self.workdir = tempfile.mkdtemp(prefix='vss-', dir='/tmp')
        os.chmod(self.workdir, 0o755)
        self._record = {'workdir': self.workdir, 'keep': self.keep, 'pids': {}, 'guests': [],
                        'made_paths': [], 'made_files': [], 'made_users': [],
                        'made_groups': [], 'hook': None, 'etc_before': _listdir(_ETC)}
        self._record['made_paths'] = [p for p in _DAEMON_PATHS if not os.path.lexists(p)]
        self._save_record()
        self._start_watchdog()
        procs.track(self)
        try:
            for d in ('images', 'logs', 'bus', 'bus/services', 'agent'):
                os.makedirs(self.path(d), exist_ok=True)
                os.chmod(self.path(d), 0o755)
            # libvirt-qemu must read them: QEMU opens the kernel and initrd itself.
            for f in ('vmlinuz', 'initrd.img'):
                shutil.copyfile(os.path.join(self.assets, f), self.path('images', f))
                os.chmod(self.path('images', f), 0o644)
            self._ensure_qemu_user()
            self._ensure_test_users()
            for d in ('/var/log/libvirt', '/run/libvirt'):
                os.makedirs(d, exist_ok=True)
            self._start_dbus()
            if self.polkit:
                self._start_polkitd()
            self._write_configs()
            self.env = {'PATH': _CLEAN_PATH, 'HOME': os.environ.get('HOME', '/root'),
                        'LC_ALL': 'C', 'LIBVIRT_DEFAULT_URI': LIBVIRT_URI}
            self._start_virtlogd()
            self.start_libvirtd()
            self.timings['start'] = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise
        return self

    def _save_record(self):
        tmp = self.path('.undo.json.tmp')
        with open(tmp, 'w') as f:
            json.dump(self._record, f)
        os.replace(tmp, self.path('undo.json'))

    def _start_watchdog(self):
        self._watchdog = procs.start_watchdog(__file__, self.path('undo.json'))

    def _ensure_qemu_user(self):
        self._add_group(QEMU_GROUP)
        if not _user_exists(QEMU_USER):
            self._record['made_users'].append(QEMU_USER)
            self._save_record()
            extra = ['-G', 'kvm'] if _group_exists('kvm') else []
            procs.run(['useradd', '--system', '--no-create-home', '--home-dir',
                       '/var/lib/libvirt', '--shell', '/usr/sbin/nologin', '-g', QEMU_GROUP,
                       *extra, QEMU_USER])

    def _add_group(self, group):
        if not _group_exists(group):
            self._record['made_groups'].append(group)
            self._save_record()
            procs.run(['groupadd', '--system', group])

    def _ensure_test_users(self):
        """lab.users: role -> user name, for calls as someone other than root."""
        for role, (user, groups) in TEST_USERS.items():
            for g in groups:
                self._add_group(g)
            if not _user_exists(user):
                self._record['made_users'].append(user)
                self._save_record()
                extra = ['-G', ','.join(groups)] if groups else []
                procs.run(['useradd', '--system', '--no-create-home', '--home-dir',
                           '/nonexistent', '--shell', '/usr/sbin/nologin', *extra, user])
            self.users[role] = user

    def _spawn(self, name, argv, stdout=None, env=None, cwd=None):
        if env is None:
            env = {'PATH': _CLEAN_PATH, 'HOME': os.environ.get('HOME', '/root'), 'LC_ALL': 'C'}
        proc = procs.spawn(argv, self.path('logs', f'{name}.stderr'), env=env,
                           cwd=cwd or self.workdir, stdout=stdout)
        self._procs[name] = proc
        self._record['pids'][name] = proc.pid
        self._save_record()
        return proc

    def _wait_socket(self, name, path, timeout):
        deadline = time.monotonic() + timeout
        while not _connectable(path):
            proc = self._procs[name]
            if proc.poll() is not None:
                raise LabError(f'{name} exited ({proc.returncode}): '
                               + procs.tail(self.path('logs', f'{name}.stderr'))
                               + procs.tail(self.path('logs', f'{name}.log')))
            if time.monotonic() > deadline:
                raise LabError(f'{name}: {path} not ready after {timeout}s')
            time.sleep(0.02)

    def _bus_config(self):
        """Without an install root: lab.py's permissive bus (the hook suite's first form).
        With one: Debian's own system.conf -- deny by default, every local user may
        receive signals -- listening on the lab's socket, with the installed
        virtsnap policy and the machine's system.d policies (polkitd's) added."""
        socket_path = self.path('bus', 'socket')
        if self.install_root is None:
            return labmod.DBUS_CONF.format(socket=_xml_escape(socket_path),
                                            services=_xml_escape(self.path('bus', 'services')))
        with open(_SYSTEM_BUS_CONF) as f:
            conf = f.read()
        # Not ours to change in a lab: the user it drops to, forking, the pid file,
        # syslog, activation of the machine's services.
        for pattern in (r'<user>[^<]*</user>', r'<fork/>', r'<pidfile>[^<]*</pidfile>',
                        r'<syslog/>', r'<standard_system_servicedirs/>',
                        r'<servicehelper>[^<]*</servicehelper>'):
            conf, _ = re.subn(pattern, '', conf)
        conf, n = re.subn(r'<listen>[^<]*</listen>',
                          f'<listen>unix:path={_xml_escape(socket_path)}</listen>', conf)
        if n != 1:
            raise LabError(f'{_SYSTEM_BUS_CONF}: expected one <listen>, found {n}')
        dirs = ['/usr/share/dbus-1/system.d']
        installed = os.path.join(self.install_root, 'usr/share/dbus-1/system.d')
        if os.path.realpath(installed) != dirs[0]:
            dirs.append(installed)
        conf, n = re.subn(r'<includedir>system.d</includedir>',
                          ''.join(f'<includedir>{_xml_escape(d)}</includedir>' for d in dirs),
                          conf)
        if n != 1:
            raise LabError(f'{_SYSTEM_BUS_CONF}: expected <includedir>system.d</includedir>')
        return conf

    def _start_dbus(self):
        conf = self.path('bus', 'bus.conf')
        with open(conf, 'w') as f:
            f.write(self._bus_config())
        proc = self._spawn('dbus-daemon', ['dbus-daemon', f'--config-file={conf}', '--nofork',
                                           '--nopidfile', '--print-address'],
                           stdout=subprocess.PIPE)
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        line = proc.stdout.readline().decode().strip() if ready else ''
        proc.stdout.close()
        if not line:
            raise LabError('dbus-daemon did not start: '
                           + procs.tail(self.path('logs', 'dbus-daemon.stderr')))
        self.bus_address = line

    @property
    def bus_env(self):
        """What a client needs to find the lab's bus as *the* system bus."""
        return {'DBUS_SYSTEM_BUS_ADDRESS': self.bus_address}

    def _start_polkitd(self):
        """The real polkitd on the lab's bus, with virtsnap's installed actions and rules
        (polkitd reads them only from /usr/share/polkit-1 and /etc/polkit-1)."""
        for sub, target in _POLKIT_DIRS.items():
            src = os.path.join(self.install_root, 'usr/share/polkit-1', sub)
            for name in _listdir(src):
                dest = os.path.join(target, name)
                if os.path.realpath(os.path.join(src, name)) == os.path.realpath(dest):
                    continue  # installed for real (the .deb)
                if os.path.lexists(dest):
                    raise LabError(f'{dest} exists already; the lab will not replace it')
                self._record['made_files'].append(dest)
                self._save_record()
                os.makedirs(target, exist_ok=True)
                shutil.copyfile(os.path.join(src, name), dest)
        env = {'PATH': _CLEAN_PATH, 'LC_ALL': 'C', **self.bus_env}
        proc = self._spawn('polkitd', [_POLKITD, '--no-debug'], env=env, cwd='/')
        deadline = time.monotonic() + 20
        while not self.polkit_running:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise LabError('polkitd did not take its name on the lab bus: '
                               + procs.tail(self.path('logs', 'polkitd.stderr')))
            time.sleep(0.05)

    @property
    def polkit_running(self):
        res = subprocess.run(['dbus-send', f'--bus={self.bus_address}', '--print-reply',
                              '--dest=org.freedesktop.DBus', '/org/freedesktop/DBus',
                              'org.freedesktop.DBus.NameHasOwner',
                              'string:org.freedesktop.PolicyKit1'],
                             capture_output=True, text=True, timeout=10)
        return res.returncode == 0 and 'boolean true' in res.stdout

    def stop_polkitd(self):
        """polkitd gone: the agent decides from the caller's uid and groups."""
        procs.stop_pid(self._record['pids'].pop('polkitd', None), _STOP_GRACE)
        self._procs.pop('polkitd', None)
        self._save_record()

    def _write_configs(self):
        with open(self.path('virtlogd.conf'), 'w') as f:
            f.write(f'log_outputs="3:file:{self.path("logs", "virtlogd.log")}"\n')
        with open(self.path('libvirtd.conf'), 'w') as f:
            if self.log_commands:
                f.write('log_filters="1:util.command"\n')
                f.write(f'log_outputs="1:file:{self.libvirtd_log}"\n')
            else:
                f.write(f'log_outputs="3:file:{self.libvirtd_log}"\n')

    def _start_virtlogd(self):
        # A system libvirtd hands QEMU's output to virtlogd and does not start it itself.
        self._spawn('virtlogd', ['virtlogd', '-f', self.path('virtlogd.conf'), '-p',
                                 self.path('virtlogd.pid')])
        self._wait_socket('virtlogd', VIRTLOGD_SOCKET, 15)

    # -- libvirtd ----------------------------------------------------------------
    def libvirtd_running(self):
        p = self._procs.get('libvirtd')
        return p is not None and p.poll() is None

    def start_libvirtd(self, timeout=60):
        """Start the system libvirtd; return when its socket accepts.  It reads
        /etc/libvirt/hooks only now: a hook installed later needs a restart."""
        if self.libvirtd_running():
            raise LabError('libvirtd is already running')
        t0 = time.monotonic()
        self._spawn('libvirtd', ['libvirtd', '-f', self.path('libvirtd.conf'), '-p',
                                 self.path('libvirtd.pid')])
        self._wait_socket('libvirtd', LIBVIRT_SOCKET, timeout)
        self.timings.setdefault('libvirtd_start', []).append(time.monotonic() - t0)

    def kill_libvirtd(self, sig=signal.SIGTERM, timeout=15):
        procs.stop_popen(self._procs.get('libvirtd'), timeout, sig)

    def restart_libvirtd(self):
        """Running guests survive (libvirt calls the hook with 'reconnect')."""
        self.kill_libvirtd()
        self.start_libvirtd()

    # -- the hook ----------------------------------------------------------------
    def install_hook(self, program, env=None):
        """Install at /etc/libvirt/hooks/qemu.d/virtsnap a wrapper that execs
        *program* with *env* (libvirtd runs hooks with only PATH, HOME and
        LC_ALL).  A file already there is kept aside and put back by
        remove_hook().  Takes effect at the next start of libvirtd."""
        if self._record['hook']:
            self.remove_hook()
        made = [d for d in (HOOKS_DIR, os.path.dirname(HOOK_PATH)) if not os.path.isdir(d)]
        backup = None
        if os.path.lexists(HOOK_PATH):
            backup = self.path('hook.backup')
            shutil.copy2(HOOK_PATH, backup, follow_symlinks=False)
        # Deepest first, so that undo removes qemu.d before hooks.
        self._record['hook'] = {'backup': backup, 'made_dirs': made[::-1]}
        self._save_record()
        os.makedirs(os.path.dirname(HOOK_PATH), exist_ok=True)
        assigns = ' '.join(f'{k}={shlex.quote(v)}' for k, v in sorted((env or {}).items()))
        tmp = HOOK_PATH + '.vslab-tmp'
        with open(tmp, 'w') as f:
            f.write('#!/bin/sh\n'
                    '# virtsnap system lab (tests/lab/system.py): removed when the lab stops.\n'
                    f'{assigns} exec {shlex.quote(os.path.abspath(program))} "$@"\n')
        os.chmod(tmp, 0o755)
        os.replace(tmp, HOOK_PATH)

    def remove_hook(self):
        """Take the hook away and put back what was there before."""
        hook = self._record['hook']
        if not hook:
            return
        _undo_hook(hook)
        self._record['hook'] = None
        self._save_record()

    @property
    def hook_installed(self):
        return bool(self._record and self._record['hook'])

    # -- virsh -------------------------------------------------------------------
    def virsh(self, *args, check=True, timeout=120):
        res = self.virsh_result(*args, timeout=timeout)
        if check and res.returncode != 0:
            raise LabError(f'virsh {" ".join(args)} failed: {res.stderr.strip()}')
        return res.stdout

    def virsh_result(self, *args, timeout=120):
        return procs.run(['virsh', '-c', LIBVIRT_URI, *args], check=False, timeout=timeout,
                           env=self.env)

    def domains(self):
        out = self.virsh('list', '--all', '--name')
        return [n.strip() for n in out.splitlines() if n.strip()]

    # -- guests ------------------------------------------------------------------
    def make_guest(self, name, **kw):
        """lab.py's Lab.make_guest (same arguments), the guest recorded for undo."""
        if not self._started or self._stopped:
            raise LabError('lab not running')
        self._record['guests'].append(name)
        self._save_record()
        return labmod.Lab.make_guest(self, name, **kw)

    def add_guest(self, name, disks, xml, agent=True, define=True):
        """lab.py's Lab.add_guest, the guest recorded for undo."""
        if name not in self._record['guests']:
            self._record['guests'].append(name)
            self._save_record()
        return labmod.Lab.add_guest(self, name, disks, xml, agent, define)

    # -- stop --------------------------------------------------------------------
    def stop(self):
        """Undo everything; safe to call twice and after a partial start."""
        if self._stopped or not self._started:
            self._stopped = True
            return
        self._stopped = True
        t0 = time.monotonic()
        try:
            undo(self._record)
            for p in self._procs.values():
                if p.poll() is None:
                    p.kill()
                p.wait(5)
        finally:
            procs.stop_watchdog(self._watchdog)
            procs.untrack(self)
            if self.keep:
                print(f'system lab: kept {self.workdir} (VIRTSNAP_LAB_KEEP=1)', file=sys.stderr)
            self.timings['stop'] = time.monotonic() - t0


def _listdir(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _selftest():
    with SystemLab() as lab:
        print(f'system lab up in {lab.timings["start"]:.1f}s ({lab.workdir})')
        g = lab.make_guest('sys-one')
        g.start()
        print(f'sys-one ready in {g.wait_ready(90):.1f}s')
        g.destroy()
        workdir = lab.workdir
    assert not os.path.exists(workdir)
    assert not system_daemons_running(), system_daemons_running()
    print('SELFTEST PASSED')
    return 0


def main(argv):
    return procs.command_line(argv, {'_watchdog': _watchdog_main, 'selftest': _selftest},
                              'selftest')


if __name__ == '__main__':
    sys.exit(main(sys.argv))
