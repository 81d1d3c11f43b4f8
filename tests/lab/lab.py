#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""virtsnap test lab: a hermetic libvirt + QEMU + D-Bus world for the tests.

Everything runs as the current (unprivileged) user, inside one work directory:

* a private ``dbus-daemon`` (session-like policy; ``lab.bus_address``);
* a session-mode ``libvirtd`` whose XDG_* dirs and HOME point into the work
  directory (``lab.libvirt_uri`` reaches it from any process of this user);
* guests booted straight from the kernel and initramfs that
  ``build-guest.sh`` makes (``VIRTSNAP_LAB_ASSETS``): busybox, qemu-ga, and an
  /init that appends numbered records to every data disk.

The machine's own libvirt and buses are never touched.  ``Lab.stop()`` (also
run at exit, on SIGTERM/SIGHUP, and by a watchdog process if this process dies
without it) leaves no process and no file behind.

Image helpers (no root, no mounting): ``image_info``, ``image_chain``, ``image_check``,
``read_records``, ``records_contiguous``, ``records_consistent``,
``fsck_clean``, ``needs_recovery``, ``flatten_to_raw``.

Only the standard library is used (``gi`` is not needed), so the module can be
imported by pytest and by demo scripts alike.  Run ``lab.py selftest`` for a
smoke test, ``lab.py up [NAME...]`` for a lab to poke at by hand.
"""

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from xml.sax.saxutils import escape as _xml_escape

__all__ = [
    'Lab', 'Guest', 'LabError', 'READY_MARKER', 'AGENT_CHANNEL',
    'image_info', 'image_chain', 'image_check', 'read_records', 'records_contiguous',
    'records_consistent', 'fsck_clean', 'needs_recovery', 'flatten_to_raw',
    'lab_processes', 'kill_lab_processes', 'check_guest_name', 'guest_cmdline',
    'target_name', 'domain_xml', 'define_secret', 'undefine_secret', 'luks_spec',
    'luks_to_raw',
]

READY_MARKER = 'VIRTSNAP-GUEST-READY'
AGENT_CHANNEL = 'org.qemu.guest_agent.0'
LAB_DIR = os.path.dirname(os.path.abspath(__file__))

_QEMU = '/usr/bin/qemu-system-x86_64'
_STOP_GRACE = 5.0


sys.path.insert(0, LAB_DIR)
import procs  # noqa: E402  (the process plumbing next to this file)
from procs import LabError, tail as _tail  # noqa: E402

_run = procs.run


def lab_processes(workdir):
    """PIDs of this user's processes that belong to the lab in *workdir*.

    A process belongs to it if its command line or its environment names a
    path inside *workdir* (libvirtd, dbus-daemon, qemu, helpers, and anything
    the tests started with ``lab.env``).  This process and its ancestors are
    never included.
    """
    return procs.processes_naming(os.path.abspath(workdir).rstrip('/') + '/',
                                  uid=os.getuid())


def kill_lab_processes(workdir, grace=_STOP_GRACE):
    """SIGTERM, then SIGKILL, every process of the lab in *workdir*."""
    return procs.kill_all(lambda: lab_processes(workdir), signal.SIGTERM, grace)


def _watchdog_main(workdir, keep):
    """The watchdog child: unless the parent said 'done', kill the lab's processes and
    remove *workdir* (the parent died uncleanly)."""
    def cleanup():
        kill_lab_processes(workdir)
        if keep != '1':
            shutil.rmtree(workdir, ignore_errors=True)
    return procs.watchdog_main(cleanup)


# --------------------------------------------------------------------------
# image helpers (no root, no mounting)

def image_info(path, force_share=True):
    """``qemu-img info --output=json`` of an image, as a dict."""
    argv = ['qemu-img', 'info', '--output=json']
    if force_share:
        argv.append('-U')
    return json.loads(_run(argv + [path]).stdout)


def image_chain(path, force_share=True):
    """The backing chain of an image, top first: a list of info dicts."""
    argv = ['qemu-img', 'info', '--output=json', '--backing-chain']
    if force_share:
        argv.append('-U')
    return json.loads(_run(argv + [path]).stdout)


def image_check(path, force_share=True):
    """``qemu-img check --output=json`` of a qcow2 image, as a dict: allocated-clusters,
    compressed-clusters (absent when there are none), image-end-offset, check-errors.
    Raises LabError if the image has corruptions or leaks."""
    argv = ['qemu-img', 'check', '--output=json']
    if force_share:
        argv.append('-U')
    return json.loads(_run(argv + [path]).stdout)


def flatten_to_raw(path, dest, force_share=False):
    """Write the guest-visible content of *path* (any format, whole backing
    chain) to the raw file *dest* (sparse)."""
    argv = ['qemu-img', 'convert', '-O', 'raw']
    if force_share:
        argv.append('-U')
    _run(argv + [path, dest])
    return dest


# -- LUKS-encrypted qcow2 (tests/integration/test_luks.py) ----------------------
# The passphrase reaches qemu-img through a pipe (file=/dev/fd/N), as virtsnapd passes
# it: never in argv or a file, so a test can look for it everywhere else.

def _run_with_secret(argv, passphrase, **kw):
    """Run qemu-img *argv* (its subcommand first, without the program) with the object
    'sec0' holding *passphrase*."""
    r, w = os.pipe()
    try:
        os.write(w, passphrase.encode())
        os.close(w)
        w = -1
        full = ['qemu-img', argv[0], '--object', f'secret,id=sec0,file=/dev/fd/{r}'] + argv[1:]
        res = subprocess.run(full, capture_output=True, text=True, pass_fds=(r,),
                             stdin=subprocess.DEVNULL, timeout=kw.get('timeout', 300))
        if kw.get('check', True) and res.returncode != 0:
            raise LabError(f'{" ".join(full)} failed ({res.returncode}): {res.stderr.strip()}')
        return res
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def luks_spec(path):
    """qemu-img's name for the LUKS qcow2 *path* opened with the secret 'sec0'."""
    return 'json:' + json.dumps({'driver': 'qcow2', 'encrypt.key-secret': 'sec0',
                                 'file': {'driver': 'file', 'filename': path}})


def luks_to_raw(path, dest, passphrase, force_share=True):
    """Decrypt the LUKS qcow2 *path* into the raw file *dest* (for read_records)."""
    argv = ['convert', '-O', 'raw'] + (['-U'] if force_share else [])
    _run_with_secret(argv + [luks_spec(path), dest], passphrase)
    return dest


def define_secret(lab, passphrase, private=False):
    """A libvirt passphrase secret holding *passphrase*, defined in *lab*'s libvirtd
    (either mode); its UUID.  undefine_secret() removes it."""
    d = tempfile.mkdtemp(prefix='secret-', dir=lab.workdir)
    try:
        xml = os.path.join(d, 'secret.xml')
        with open(xml, 'w') as f:
            f.write(f"<secret ephemeral='no' private='{'yes' if private else 'no'}'>"
                    "<description>virtsnap lab LUKS passphrase</description></secret>\n")
        out = lab.virsh('secret-define', xml)
        m = re.search(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', out)
        if not m:
            raise LabError(f'secret-define said: {out.strip()}')
        value = os.path.join(d, 'value')
        fd = os.open(value, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, 'w') as f:
            f.write(passphrase)
        lab.virsh('secret-set-value', m.group(0), '--file', value, '--plain')
        return m.group(0)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def undefine_secret(lab, uuid):
    lab.virsh_result('secret-undefine', uuid)


def needs_recovery(path):
    """True if the ext4 in the raw image *path* has a journal to replay."""
    out = _run(['dumpe2fs', '-h', path], check=False).stdout
    for line in out.splitlines():
        if line.startswith('Filesystem features:'):
            return 'needs_recovery' in line.split()
    raise LabError(f'{path}: not an ext4 image (dumpe2fs: no features line)')


def _replay_journal(raw):
    res = _run(['e2fsck', '-E', 'journal_only', '-y', raw], check=False)
    if res.returncode not in (0, 1):
        raise LabError(f'journal replay of {raw} failed ({res.returncode}): '
                       f'{res.stdout}{res.stderr}')
    return res.stdout + res.stderr


class _RawCopy:
    """Context manager: a private raw image with the content of *path*, and
    its journal replayed if asked (as a mount would do)."""

    def __init__(self, path, replay_journal, force_share, tmpdir=None):
        self.path = path
        self.replay = replay_journal
        self.force_share = force_share
        self.tmpdir = tmpdir
        self.notes = []

    def __enter__(self):
        self._td = tempfile.mkdtemp(prefix='vsl-img-', dir=self.tmpdir)
        raw = os.path.join(self._td, 'image.raw')
        flatten_to_raw(self.path, raw, self.force_share)
        self.recovery_needed = needs_recovery(raw)
        if self.recovery_needed:
            if self.replay:
                _replay_journal(raw)
                self.notes.append('journal: replayed (the image needed recovery)')
            else:
                self.notes.append('journal: needs recovery (not replayed)')
        else:
            self.notes.append('journal: clean')
        return raw

    def __exit__(self, *exc):
        shutil.rmtree(self._td, ignore_errors=True)
        return False


def read_records(path, disk_file='records', replay_journal=True,
                 force_share=False, strict=True, tmpdir=None):
    """The numbers in the guest's records file inside the ext4 image *path*.

    *path* may be raw or qcow2, with a backing chain.  The image is copied to a
    private raw file first (the original is never written); if its journal
    needs recovery it is replayed on that copy (replay_journal=False reads the
    on-disk state as is).  A trailing incomplete line is ignored; a complete
    line that is not a number raises ValueError (or is skipped if
    strict=False).  A missing file raises FileNotFoundError.
    """
    name = '/' + disk_file.lstrip('/')
    with _RawCopy(path, replay_journal, force_share, tmpdir) as raw:
        res = _run(['debugfs', '-R', f'cat {name}', raw], text=False)
    err = res.stderr.decode(errors='replace')
    if 'not found' in err or 'File not found' in err:
        raise FileNotFoundError(f'{name} not in {path}: {err.strip()}')
    lines = res.stdout.split(b'\n')
    lines.pop()          # after the last newline: empty, or an incomplete line
    nums = []
    for i, line in enumerate(lines):
        try:
            nums.append(int(line.decode('ascii')))
        except (UnicodeDecodeError, ValueError):
            if strict:
                raise ValueError(f'{path}:{name} line {i + 1} is not a number: {line[:40]!r}')
    return nums


def records_contiguous(nums):
    """True if *nums* is non-empty, starts at 1, and goes up by one."""
    if not nums or nums[0] != 1:
        return False
    return all(b == a + 1 for a, b in zip(nums, nums[1:]))


def records_consistent(per_disk):
    """True if the records of several disks of one guest (disk0 first) form a
    point-in-time state: each contiguous, and since the guest writes disk0
    first then disk1, ... in each iteration, every later disk holds the same
    last number as disk0 or one less."""
    if not per_disk or not all(records_contiguous(n) for n in per_disk):
        return False
    first = per_disk[0][-1]
    return all(n[-1] in (first, first - 1) for n in per_disk[1:])


def fsck_clean(path, replay_journal=True, force_share=False, tmpdir=None):
    """``e2fsck -fn`` on a raw copy of *path* -> (clean: bool, output: str).

    A journal that needs recovery is replayed on the copy first (what a mount
    would do; a crash-consistent snapshot needs it), unless
    replay_journal=False: then such an image is reported not clean.  The
    output starts with a line telling which case it was.
    """
    copy = _RawCopy(path, replay_journal, force_share, tmpdir)
    with copy as raw:
        res = _run(['e2fsck', '-fn', raw], check=False)
    out = '\n'.join(copy.notes) + '\n' + res.stdout + res.stderr
    clean = res.returncode == 0 and not (copy.recovery_needed and not replay_journal)
    return clean, out


# --------------------------------------------------------------------------
# the lab

DBUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <keep_umask/>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <servicedir>{services}</servicedir>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


class Lab:
    """A private dbus-daemon and session libvirtd, plus guests.

    ``Lab(workdir=None, assets=None)``: *workdir* defaults to a fresh
    directory under $TMPDIR (kept short: UNIX socket paths are limited to 107
    bytes); *assets* is the output directory of build-guest.sh, default
    $VIRTSNAP_LAB_ASSETS.
    """

    mode = 'session'

    # Capabilities cache of libvirt, reused by later labs of this process (the
    # QEMU probe takes a few seconds).
    _caps_cache = {}

    def __init__(self, workdir=None, assets=None):
        self._own_workdir = workdir is None
        self.workdir = os.path.abspath(workdir) if workdir else None
        self.assets = os.path.abspath(assets or os.environ.get('VIRTSNAP_LAB_ASSETS', '') or '.')
        self.keep = os.environ.get('VIRTSNAP_LAB_KEEP') == '1'
        self.debug = os.environ.get('VIRTSNAP_LAB_DEBUG') == '1'
        self.bus_address = None
        self.libvirt_uri = None
        self.env = None
        self.guests = {}
        self.timings = {}
        self._dbus = None
        self._libvirtd = None
        self._libvirtd_log = None
        self._watchdog = None
        self._started = False
        self._stopped = False

    # -- paths ---------------------------------------------------------------
    def path(self, *parts):
        return os.path.join(self.workdir, *parts)

    @property
    def libvirt_socket(self):
        return self.path('run', 'libvirt', 'libvirt-sock')

    @property
    def images_dir(self):
        return self.path('images')

    @property
    def logs_dir(self):
        return self.path('logs')

    @property
    def qemu_log_dir(self):
        return self.path('cache', 'libvirt', 'qemu', 'log')

    @property
    def kernel(self):
        return os.path.join(self.assets, 'vmlinuz')

    @property
    def initrd(self):
        return os.path.join(self.assets, 'initrd.img')

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        if self._started:
            raise LabError('lab already started')
        if os.getuid() == 0:
            raise LabError('the lab must not run as root (it would be the system libvirtd); '
                           'use tests/lab/as-user.sh')
        for f in (self.kernel, self.initrd):
            if not os.access(f, os.R_OK):
                raise LabError(f'{f} is missing or unreadable: run tests/lab/build-guest.sh '
                               'and set VIRTSNAP_LAB_ASSETS')
        self._started = True
        t0 = time.monotonic()
        procs.open_workdir(self, 'vsl-', 40, 'lab')
        try:
            for d in ('run', 'cfg', 'cache', 'data', 'home', 'images', 'logs',
                      'bus', 'bus/services'):
                os.makedirs(self.path(d), exist_ok=True)
            os.chmod(self.path('run'), 0o700)
            self._start_watchdog()
            self._start_dbus()
            self._write_libvirt_config()
            self.libvirt_uri = f'qemu+unix:///session?socket={self.libvirt_socket}'
            self.env = self._make_env(client=True)
            self.timings['dbus'] = time.monotonic() - t0
            self.start_libvirtd()
            self.timings['start'] = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise
        return self

    def _start_watchdog(self):
        self._watchdog = procs.start_watchdog(__file__, self.workdir,
                                              '1' if self.keep else '0')

    def _start_dbus(self):
        conf = self.path('bus', 'bus.conf')
        with open(conf, 'w') as f:
            f.write(DBUS_CONF.format(socket=_xml_escape(self.path('bus', 'socket')),
                                      services=_xml_escape(self.path('bus', 'services'))))
        self._dbus = procs.spawn(
            ['dbus-daemon', f'--config-file={conf}', '--nofork', '--nopidfile',
             '--print-address'], self.path('logs', 'dbus-daemon.log'),
            env=self._make_env(client=False), cwd=self.workdir, stdout=subprocess.PIPE,
            log_mode='wb')
        ready, _, _ = select.select([self._dbus.stdout], [], [], 15)
        line = self._dbus.stdout.readline().decode().strip() if ready else ''
        if not line:
            raise LabError('dbus-daemon did not start: ' +
                           _tail(self.path('logs', 'dbus-daemon.log')))
        self.bus_address = line

    def _write_libvirt_config(self):
        d = self.path('cfg', 'libvirt')
        os.makedirs(d, exist_ok=True)
        log = self.path('logs', 'libvirtd.log')
        with open(os.path.join(d, 'libvirtd.conf'), 'w') as f:
            if self.debug:
                f.write('log_filters="1:qemu 1:libvirt 1:conf 1:security 3:object 3:json '
                        '3:event 3:util 3:rpc"\n')
                f.write(f'log_outputs="1:file:{log}"\n')
            else:
                f.write(f'log_outputs="3:file:{log}"\n')
        with open(os.path.join(d, 'qemu.conf'), 'w') as f:
            # QEMU writes its own log files: no virtlogd to spawn and reap.
            f.write('stdio_handler = "file"\n')
        # Reuse the capabilities probe of an earlier lab of this process (or
        # of $VIRTSNAP_LAB_CAPS_CACHE, a directory shared across runs).
        self._load_caps_cache()
        if Lab._caps_cache:
            capdir = self.path('cache', 'libvirt', 'qemu', 'cache', 'capabilities')
            os.makedirs(capdir, exist_ok=True)
            for name, data in Lab._caps_cache.items():
                with open(os.path.join(capdir, name), 'wb') as f:
                    f.write(data)

    def _make_env(self, client):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(('LIBVIRT_', 'VIRSH_', 'XDG_', 'DBUS_'))}
        path = env.get('PATH', '')
        for p in ('/usr/sbin', '/usr/bin', '/sbin', '/bin'):
            if p not in path.split(':'):
                path = f'{path}:{p}' if path else p
        env.update({
            'PATH': path,
            'HOME': self.path('home'),
            'XDG_RUNTIME_DIR': self.path('run'),
            'XDG_CONFIG_HOME': self.path('cfg'),
            'XDG_CACHE_HOME': self.path('cache'),
            'XDG_DATA_HOME': self.path('data'),
            'VIRTSNAP_LAB_WORKDIR': self.workdir,
        })
        if self.bus_address:
            env['DBUS_SESSION_BUS_ADDRESS'] = self.bus_address
            env['DBUS_SYSTEM_BUS_ADDRESS'] = self.bus_address
        else:
            env['DBUS_SESSION_BUS_ADDRESS'] = 'disabled:'
            env['DBUS_SYSTEM_BUS_ADDRESS'] = 'unix:path=/nonexistent'
        if client and self.libvirt_uri:
            env['LIBVIRT_DEFAULT_URI'] = self.libvirt_uri
            env['VIRTSNAP_LAB_BUS_ADDRESS'] = self.bus_address or ''
        return env

    # -- libvirtd ------------------------------------------------------------
    @property
    def libvirtd_pid(self):
        if self._libvirtd and self._libvirtd.poll() is None:
            return self._libvirtd.pid
        return None

    def libvirtd_running(self):
        return self.libvirtd_pid is not None

    def start_libvirtd(self, timeout=30):
        """Start the session libvirtd; return when its socket accepts."""
        if self.libvirtd_running():
            raise LabError('libvirtd is already running')
        t0 = time.monotonic()
        self._libvirtd = procs.spawn(['libvirtd'], self.path('logs', 'libvirtd.stderr'),
                                     env=self._make_env(client=False), cwd=self.path('home'))
        deadline = t0 + timeout
        while True:
            if self._libvirtd.poll() is not None:
                raise LabError(f'libvirtd exited ({self._libvirtd.returncode}): ' +
                               _tail(self.path('logs', 'libvirtd.stderr')) +
                               _tail(self.path('logs', 'libvirtd.log')))
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.libvirt_socket)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise LabError(f'libvirtd socket {self.libvirt_socket} not ready '
                                   f'after {timeout}s')
                time.sleep(0.02)
            finally:
                s.close()
        self.timings.setdefault('libvirtd_start', []).append(time.monotonic() - t0)
        return self._libvirtd.pid

    def kill_libvirtd(self, sig=signal.SIGTERM, timeout=10):
        """Stop libvirtd with *sig* (SIGKILL for a crash); SIGKILL it if it is
        still there after *timeout* s.  Running guests stay up."""
        procs.stop_popen(self._libvirtd, timeout, sig)

    def restart_libvirtd(self, sig=signal.SIGTERM, timeout=30):
        """kill_libvirtd(sig) then start_libvirtd().  Running guests survive;
        libvirt reconnects to their guest agents in the background, so an
        agent call made at once may fail with "QEMU guest agent is not
        connected" for a moment (Guest.wait_agent() waits for it)."""
        self.kill_libvirtd(sig)
        return self.start_libvirtd(timeout)

    # -- virsh -----------------------------------------------------------------
    def virsh(self, *args, check=True, timeout=120):
        """Run ``virsh -c <lab uri> ARGS``; return stdout (raise LabError on
        failure if check)."""
        res = _run(['virsh', '-c', self.libvirt_uri, *args], check=False,
                   timeout=timeout, env=self.env)
        if check and res.returncode != 0:
            raise LabError(f'virsh {" ".join(args)} failed: {res.stderr.strip()}')
        return res.stdout

    def virsh_result(self, *args, timeout=120):
        """Like virsh(), but return the CompletedProcess (returncode, stdout,
        stderr) without checking."""
        return _run(['virsh', '-c', self.libvirt_uri, *args], check=False,
                    timeout=timeout, env=self.env)

    def domains(self):
        """Names of all domains of the lab (active and inactive)."""
        out = self.virsh('list', '--all', '--name')
        return [n.strip() for n in out.splitlines() if n.strip()]

    # -- stop --------------------------------------------------------------------
    def stop(self):
        """Tear everything down; safe to call twice and after a partial start."""
        if self._stopped or not self._started:
            self._stopped = True
            return
        self._stopped = True
        t0 = time.monotonic()
        try:
            if self.libvirtd_running():
                try:
                    names = self.domains()
                except LabError:
                    names = []
                for name in names:
                    self.virsh_result('destroy', name, timeout=30)
                    self.virsh_result('undefine', '--managed-save', '--snapshots-metadata',
                                      '--checkpoints-metadata', name, timeout=30)
                self._save_caps_cache()
            self.kill_libvirtd(signal.SIGTERM, _STOP_GRACE)
            if self.workdir:
                kill_lab_processes(self.workdir)
            procs.stop_popen(self._dbus, _STOP_GRACE)
            if self._dbus and self._dbus.stdout:
                self._dbus.stdout.close()
            if self.workdir:
                kill_lab_processes(self.workdir, grace=1)
        finally:
            procs.close_workdir(self, 'lab')
            self.timings['stop'] = time.monotonic() - t0

    @staticmethod
    def _load_caps_cache():
        shared = os.environ.get('VIRTSNAP_LAB_CAPS_CACHE')
        if not shared or Lab._caps_cache:
            return
        try:
            for name in os.listdir(shared):
                if name.endswith('.xml'):
                    with open(os.path.join(shared, name), 'rb') as f:
                        Lab._caps_cache[name] = f.read()
        except OSError:
            pass

    def _save_caps_cache(self):
        capdir = self.path('cache', 'libvirt', 'qemu', 'cache', 'capabilities')
        shared = os.environ.get('VIRTSNAP_LAB_CAPS_CACHE')
        try:
            for name in os.listdir(capdir):
                with open(os.path.join(capdir, name), 'rb') as f:
                    Lab._caps_cache[name] = data = f.read()
                if shared:
                    os.makedirs(shared, exist_ok=True)
                    tmp = os.path.join(shared, f'.{name}.{os.getpid()}')
                    with open(tmp, 'wb') as f:
                        f.write(data)
                    os.replace(tmp, os.path.join(shared, name))
        except OSError:
            pass

    # -- guests ----------------------------------------------------------------
    @staticmethod
    def _direct_io_works(directory):
        probe = os.path.join(directory, '.odirect-probe')
        try:
            fd = os.open(probe, os.O_CREAT | os.O_RDWR | getattr(os, 'O_DIRECT', 0), 0o600)
            os.close(fd)
            return True
        except OSError:
            return False
        finally:
            try:
                os.unlink(probe)
            except OSError:
                pass

    def make_disk(self, path, size_mib=64, fmt='qcow2', backing=False, label=None,
                  top_data_mib=0, luks=None):
        """Create an ext4 data disk image at *path* (see make_guest); return its
        disk dict (target unset).

        top_data_mib > 0: the disk's virtual size becomes size_mib +
        top_data_mib MiB (the ext4 still spans only the first size_mib MiB),
        and once the image is complete, ``qemu-io -c 'write -P 0x5a ...'``
        fills the top_data_mib MiB after the filesystem with 0x5a bytes.  With
        backing=True that data lands in the top overlay only (the base holds
        just the ext4), so a shallow copy of the disk copies about that much;
        without backing it is in the only layer.  Needs fmt 'qcow2' or
        backing=True (the write goes through qemu-io -f qcow2).  The guest's
        filesystem is not touched.  0 (the default): no extra data.
        """
        if fmt not in ('qcow2', 'raw'):
            raise ValueError(f'unsupported format {fmt!r}')
        if luks and (fmt != 'qcow2' or backing or top_data_mib):
            raise ValueError('luks: a qcow2 without backing or top data only')
        top_data_mib = int(top_data_mib or 0)
        if top_data_mib < 0:
            raise ValueError(f'top_data_mib must be >= 0, not {top_data_mib}')
        if top_data_mib and fmt != 'qcow2' and not backing:
            raise ValueError('top_data_mib needs a qcow2 top layer (fmt=qcow2 or backing=True)')
        stem = os.path.splitext(path)[0]
        raw = stem + '.mkfs.raw'
        with open(raw, 'wb') as f:
            f.truncate(size_mib * 1024 * 1024)
        argv = ['mkfs.ext4', '-F', '-q', '-E', 'lazy_itable_init=0,lazy_journal_init=0']
        if label:
            argv += ['-L', label[:16]]
        _run(argv + [raw])
        disk = {'path': path, 'format': 'qcow2' if backing else fmt,
                'backing': None, 'backing_format': None}
        if backing:
            base = f'{stem}-base.{fmt}'
            if fmt == 'qcow2':
                _run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', raw, base])
                os.unlink(raw)
            else:
                os.rename(raw, base)
            _run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', fmt, '-b', base, path])
            disk['backing'] = base
            disk['backing_format'] = fmt
        elif luks:
            # luks: {'uuid': libvirt secret, 'passphrase': its value}.  A short PBKDF
            # time keeps the lab fast; the snapshots get qemu-img's default.
            _run_with_secret(['convert', '-f', 'raw', '-O', 'qcow2', '-o',
                              'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=50',
                              raw, path], luks['passphrase'])
            os.unlink(raw)
            disk['encryption'] = luks['uuid']
        elif fmt == 'qcow2':
            _run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', raw, path])
            os.unlink(raw)
        else:
            os.rename(raw, path)
        if top_data_mib:
            total = (size_mib + top_data_mib) * 1024 * 1024
            _run(['qemu-img', 'resize', '-q', '-f', 'qcow2', path, str(total)])
            _run(['qemu-io', '-f', 'qcow2', '-c',
                  f'write -P 0x5a {size_mib * 1024 * 1024} {top_data_mib}M', path],
                 timeout=600)
        return disk

    def make_guest(self, name, disks=1, agent=True, disk_size_mib=64, fmt='qcow2',
                   backing=False, memory_mib=256, images=None, cache='auto',
                   write_delay_us=10000, sync_every=10, extra_cmdline='', vcpus=1,
                   define=True, top_data_mib=0, luks=None):
        """Create data disks and define a persistent domain; return a Guest.

        disks: number of data disks (vda, vdb, ...), each a whole-disk ext4 of
        disk_size_mib MiB, in format fmt ('qcow2' or 'raw').  backing=True:
        each disk is a qcow2 overlay over a base image (format fmt) holding the
        ext4, i.e. a disk with a backing chain.  images: a list of existing
        image files to use instead (e.g. a snapshot to boot), format detected.
        agent: a virtio-serial channel org.qemu.guest_agent.0 (libvirt picks
        the socket path).  cache: 'none' / 'writeback' / ... / None (QEMU's
        default); 'auto' = 'none' if O_DIRECT works on the images directory.
        write_delay_us / sync_every tune the guest's record writer.
        top_data_mib: each created disk gets that many MiB of data (0x5a bytes)
        after its ext4, in its top layer (the overlay with backing=True), and a
        virtual size of disk_size_mib + top_data_mib; see make_disk().  Not
        used with images.  0 (the default): none.
        luks: {'uuid': a libvirt secret (define_secret()), 'passphrase': its value}:
        each disk a qcow2 with LUKS encryption under that secret, the <encryption>
        in its XML (fmt qcow2, no backing, no top data).
        """
        if not self.running:
            raise LabError('lab not running')
        check_guest_name(name)
        if cache == 'auto':
            cache = self.auto_cache()
        disk_list = []
        if images is not None:
            for i, img in enumerate(images):
                info = image_info(img)
                chain = image_chain(img)
                disk_list.append({
                    'path': os.path.abspath(img), 'format': info['format'],
                    'backing': chain[1]['filename'] if len(chain) > 1 else None,
                    'backing_format': chain[1]['format'] if len(chain) > 1 else None})
        else:
            for i in range(disks):
                target = target_name(i)
                ext = 'qcow2' if (fmt == 'qcow2' or backing) else 'raw'
                path = os.path.join(self.images_dir, f'{name}-{target}.{ext}')
                disk_list.append(self.make_disk(path, disk_size_mib, fmt, backing,
                                                label=f'{name}-{target}',
                                                top_data_mib=top_data_mib, luks=luks))
        for i, d in enumerate(disk_list):
            d['target'] = target_name(i)
        cmdline = guest_cmdline(write_delay_us, sync_every, extra_cmdline)
        xml = domain_xml(name, self.kernel, self.initrd, cmdline, memory_mib, vcpus,
                         disk_list, cache, agent, self.console_log(name))
        return self.add_guest(name, disk_list, xml, agent, define)

    # -- guests: the parts other guest makers (ceph.make_rbd_guest) use ----------
    @property
    def running(self):
        """Started and not stopped yet."""
        return self._started and not self._stopped

    def auto_cache(self):
        """The disk cache mode cache='auto' means: 'none' if O_DIRECT works on the
        images directory, else QEMU's default (None)."""
        return 'none' if self._direct_io_works(self.images_dir) else None

    def console_log(self, name):
        """The serial console file of guest *name*."""
        return os.path.join(self.logs_dir, f'{name}-console.log')

    def add_guest(self, name, disks, xml, agent=True, define=True):
        """Write a guest's domain XML (from domain_xml()), define it unless not
        *define*, register it in lab.guests (lab.stop() removes it); return the Guest.
        disks: dicts as Guest takes them, in the XML's order."""
        xml_path = os.path.join(self.workdir, f'{name}.xml')
        with open(xml_path, 'w') as f:
            f.write(xml)
        guest = Guest(self, name, disks, self.console_log(name), agent, xml_path)
        if define:
            self.virsh('define', xml_path)
        self.guests[name] = guest
        return guest


def check_guest_name(name):
    if not re.fullmatch(r'[A-Za-z0-9_.+-]+', name):
        raise ValueError(f'bad guest name {name!r}')


def guest_cmdline(write_delay_us=10000, sync_every=10, extra=''):
    """The guest kernel's command line: console, and the record writer's tuning."""
    return (f'console=ttyS0 quiet panic=-1 virtsnap.delay={int(write_delay_us)} '
            f'virtsnap.sync={int(sync_every)} {extra}').strip()


def target_name(i):
    """The device name of the i-th (from 0) virtio disk: vda, vdb, ..., vdz, vdaa."""
    letters = 'abcdefghijklmnopqrstuvwxyz'
    s = ''
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = letters[r] + s
    return 'vd' + s


def domain_xml(name, kernel, initrd, cmdline, memory_mib, vcpus, disks, cache,
               agent, console_log, first_disks_xml=''):
    """A lab guest's domain XML: direct kernel boot, the file *disks* (dicts with
    target, path, format) with *cache*, a serial console to *console_log*, a guest
    agent channel if *agent*.  first_disks_xml: disk elements (e.g. network disks)
    placed before the file disks (PCI order is /dev/vd* order in the guest)."""
    e = _xml_escape
    out = [
        "<domain type='qemu'>",
        f'  <name>{e(name)}</name>',
        f"  <memory unit='MiB'>{int(memory_mib)}</memory>",
        f'  <vcpu>{int(vcpus)}</vcpu>',
        '  <os>',
        "    <type arch='x86_64' machine='pc'>hvm</type>",
        f'    <kernel>{e(kernel)}</kernel>',
        f'    <initrd>{e(initrd)}</initrd>',
        f'    <cmdline>{e(cmdline)}</cmdline>',
        '  </os>',
        '  <features><acpi/></features>',
        "  <clock offset='utc'/>",
        '  <on_poweroff>destroy</on_poweroff>',
        '  <on_reboot>restart</on_reboot>',
        '  <on_crash>destroy</on_crash>',
        '  <devices>',
        f'    <emulator>{_QEMU}</emulator>',
    ]
    if first_disks_xml:
        out.append(first_disks_xml.rstrip('\n'))
    for d in disks:
        cache_attr = f" cache='{e(cache)}'" if cache else ''
        out += [
            "    <disk type='file' device='disk'>",
            f"      <driver name='qemu' type='{e(d['format'])}'{cache_attr}/>",
            f"      <source file='{e(d['path'])}'/>",
            f"      <target dev='{d['target']}' bus='virtio'/>",
        ]
        if d.get('encryption'):
            out += [f"      <encryption format='luks'><secret type='passphrase' "
                    f"uuid='{e(d['encryption'])}'/></encryption>"]
        out += [
            '    </disk>',
        ]
    out += [
        "    <controller type='usb' model='none'/>",
        "    <serial type='file'>",
        f"      <source path='{e(console_log)}' append='on'/>",
        "      <target port='0'/>",
        '    </serial>',
    ]
    if agent:
        out += [
            "    <channel type='unix'>",
            f"      <target type='virtio' name='{AGENT_CHANNEL}'/>",
            '    </channel>',
        ]
    out += [
        "    <memballoon model='none'/>",
        '  </devices>',
        '</domain>',
    ]
    return '\n'.join(out) + '\n'


class Guest:
    """A lab domain.  disks: list of dicts with target, path, format, backing,
    backing_format; console_log: the serial console file."""

    def __init__(self, lab, name, disks, console_log, agent, xml_path):
        self.lab = lab
        self.name = name
        self.disks = disks
        self.console_log = console_log
        self.agent = agent
        self.xml_path = xml_path
        self.boot_seconds = None
        self._console_offset = 0
        self._started_at = None

    def __repr__(self):
        return f'<Guest {self.name} disks={[d["target"] for d in self.disks]}>'

    @property
    def qemu_log(self):
        """libvirt's log of this domain's QEMU (command line, errors)."""
        return os.path.join(self.lab.qemu_log_dir, f'{self.name}.log')

    def disk(self, target):
        for d in self.disks:
            if d['target'] == target:
                return d
        raise KeyError(target)

    def virsh(self, *args, **kw):
        return self.lab.virsh(*args, **kw)

    # -- lifecycle -------------------------------------------------------------
    def mark_console(self):
        """Only console output after this point counts for wait_ready()."""
        try:
            self._console_offset = os.path.getsize(self.console_log)
        except OSError:
            self._console_offset = 0

    def start(self):
        self.mark_console()
        self._started_at = time.monotonic()
        self.lab.virsh('start', self.name)
        return self

    def console_text(self, since_start=False):
        try:
            with open(self.console_log, 'rb') as f:
                if since_start:
                    f.seek(self._console_offset)
                return f.read().decode(errors='replace')
        except OSError:
            return ''

    def wait_ready(self, timeout=60):
        """Wait for the READY marker (printed since start()) and, with an
        agent, for guest-ping to answer.  Return seconds since start()."""
        t0 = self._started_at or time.monotonic()
        deadline = time.monotonic() + timeout
        marker = False
        while True:
            if not marker:
                marker = READY_MARKER in self.console_text(since_start=True)
            if marker and (not self.agent or self.agent_ping(timeout=2)):
                self.boot_seconds = time.monotonic() - t0
                return self.boot_seconds
            st = self.state()
            if st in ('shut off', 'crashed'):
                raise LabError(f'{self.name} is {st} while waiting for it to be ready; '
                               f'console:\n{self.console_tail()}')
            if time.monotonic() > deadline:
                raise LabError(f'{self.name} not ready after {timeout}s (marker={marker}, '
                               f'state={st}); console:\n{self.console_tail()}')
            time.sleep(0.1)

    def console_tail(self, lines=30):
        return '\n'.join(self.console_text().splitlines()[-lines:])

    def destroy(self):
        if self.state() != 'shut off':
            self.lab.virsh('destroy', self.name)

    def shutdown(self, timeout=60, mode=None):
        """Clean shutdown (the guest unmounts its disks, then powers off):
        through the agent if it has one, else the ACPI power button.  Waits
        until the domain is shut off."""
        mode = mode or ('agent' if self.agent else 'acpi')
        self.lab.virsh('shutdown', '--mode', mode, self.name)
        self.wait_state('shut off', timeout)

    def wait_state(self, state, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            st = self.state()
            if st == state:
                return
            if time.monotonic() > deadline:
                raise LabError(f'{self.name} is still {st!r}, not {state!r}, after {timeout}s')
            time.sleep(0.1)

    def undefine(self):
        self.lab.virsh('undefine', '--managed-save', '--snapshots-metadata',
                       '--checkpoints-metadata', self.name)
        self.lab.guests.pop(self.name, None)

    def state(self):
        """``virsh domstate``: 'running', 'paused', 'shut off', ..."""
        res = self.lab.virsh_result('domstate', self.name, timeout=30)
        if res.returncode != 0:
            return 'undefined' if 'ailed to get domain' in res.stderr else 'unknown'
        return res.stdout.strip()

    def is_persistent(self):
        out = self.lab.virsh('dominfo', self.name)
        m = re.search(r'^Persistent:\s*(\S+)', out, re.M)
        return bool(m) and m.group(1) == 'yes'

    def xml(self):
        return self.lab.virsh('dumpxml', self.name)

    def inactive_xml(self):
        return self.lab.virsh('dumpxml', '--inactive', self.name)

    # -- agent -----------------------------------------------------------------
    def agent_command(self, cmd, timeout=10):
        """Run a guest agent command (dict or JSON string); return its
        'return' value."""
        if not isinstance(cmd, str):
            cmd = json.dumps(cmd)
        out = self.lab.virsh('qemu-agent-command', self.name, '--timeout', str(int(timeout)),
                             cmd, timeout=timeout + 30)
        return json.loads(out).get('return')

    def agent_ping(self, timeout=2):
        res = self.lab.virsh_result('qemu-agent-command', self.name, '--timeout',
                                    str(max(1, int(timeout))),
                                    '{"execute":"guest-ping"}', timeout=timeout + 30)
        if res.returncode != 0:
            return False
        try:
            return 'return' in json.loads(res.stdout)
        except ValueError:
            return False

    def wait_agent(self, timeout=30):
        """Wait until guest-ping answers (e.g. after a libvirtd restart, when
        libvirt reconnects to the agent in the background); return seconds."""
        t0 = time.monotonic()
        while not self.agent_ping(timeout=2):
            if time.monotonic() - t0 > timeout:
                raise LabError(f'{self.name}: guest agent not answering after {timeout}s')
            time.sleep(0.1)
        return time.monotonic() - t0

    def fsfreeze(self):
        """``virsh domfsfreeze``; returns its output."""
        return self.lab.virsh('domfsfreeze', self.name)

    def fsthaw(self):
        return self.lab.virsh('domfsthaw', self.name)

    def frozen(self):
        """True if the guest agent reports its filesystems frozen."""
        return self.agent_command({'execute': 'guest-fsfreeze-status'}) == 'frozen'

    # -- block jobs ------------------------------------------------------------
    def block_jobs(self):
        """Active block jobs on any disk: a list of dicts with target, type,
        cur, end, bandwidth (empty if none)."""
        jobs = []
        out = self.lab.virsh('domblklist', self.name)
        targets = [line.split()[0] for line in out.splitlines()[2:] if line.split()]
        for target in targets:
            res = self.lab.virsh_result('blockjob', self.name, target, '--raw')
            if res.returncode != 0:
                continue
            fields = dict(re.findall(r'(\w+)=(.*)', res.stdout))
            if not fields:
                continue     # "No current block job for vda"
            job = {'target': target}
            for k, v in fields.items():
                v = v.strip()
                job[k] = int(v) if v.isdigit() else v
            jobs.append(job)
        return jobs


# --------------------------------------------------------------------------
# command line

def _selftest():
    t_all = time.monotonic()
    report = []
    with Lab() as lab:
        report.append(f'lab start (dbus + libvirtd socket): {lab.timings["start"]:.2f}s '
                      f'in {lab.workdir}')
        t = time.monotonic()
        g = lab.make_guest('st-one', disks=1, agent=True)
        report.append(f'make_guest (1 qcow2 disk, define): {time.monotonic() - t:.2f}s')
        g.start()
        boot = g.wait_ready(90)
        report.append(f'boot-to-agent st-one: {boot:.2f}s')
        assert g.agent_ping(), 'guest-ping failed'
        assert g.state() == 'running'
        assert g.is_persistent()
        assert g.block_jobs() == [], g.block_jobs()

        # libvirtd restart: the guest must survive it.
        t = time.monotonic()
        lab.restart_libvirtd()
        report.append(f'libvirtd restart: {time.monotonic() - t:.2f}s')
        assert g.state() == 'running', g.state()
        # libvirt reconnects to the agent in the background: not at once
        wa = g.wait_agent(30)
        lab.restart_libvirtd(signal.SIGKILL)
        assert g.state() == 'running', g.state()
        wa = max(wa, g.wait_agent(30))
        report.append(f'guest survives libvirtd SIGTERM and SIGKILL restarts; agent back '
                      f'within {wa:.2f}s')

        fr = g.fsfreeze()
        assert g.frozen(), fr
        g.fsthaw()
        assert not g.frozen()

        time.sleep(3)
        g.destroy()
        nums = read_records(g.disks[0]['path'])
        assert records_contiguous(nums), f'records not contiguous: {nums[:5]}...{nums[-5:]}'
        ok, out = fsck_clean(g.disks[0]['path'])
        assert ok, out
        report.append(f'st-one wrote {len(nums)} records; fsck clean '
                      f'({out.splitlines()[0]})')

        # restart the same guest: it continues counting
        g.start()
        g.wait_ready(90)
        time.sleep(1)
        g.shutdown(timeout=60)
        nums2 = read_records(g.disks[0]['path'], replay_journal=False)
        assert records_contiguous(nums2) and len(nums2) > len(nums), (len(nums), len(nums2))
        ok, out = fsck_clean(g.disks[0]['path'], replay_journal=False)
        assert ok, out
        report.append(f'st-one rebooted, continued to {nums2[-1]}, clean shutdown, '
                      'fsck clean without journal replay')

        g2 = lab.make_guest('st-two', disks=2, agent=True, backing=True)
        g3 = lab.make_guest('st-noagent', disks=1, agent=False, fmt='raw')
        g2.start()
        g3.start()
        b2 = g2.wait_ready(120)
        b3 = g3.wait_ready(120)
        report.append(f'boot-to-agent st-two (2 disks with backing, parallel): {b2:.2f}s')
        report.append(f'boot-to-ready st-noagent (raw, parallel): {b3:.2f}s')
        assert not g3.agent_ping()
        assert 'agent=none' in g3.console_text()
        g2.fsfreeze()
        g2.fsthaw()
        time.sleep(2)
        g2.shutdown(timeout=60)
        g3.shutdown(timeout=60)
        per = [read_records(d['path']) for d in g2.disks]
        assert records_consistent(per), [(p[:3], p[-3:]) for p in per]
        assert image_chain(g2.disks[0]['path'])[1]['format'] == 'qcow2'
        report.append(f'st-two: {len(per[0])}/{len(per[1])} records, consistent; '
                      f'st-noagent: {len(read_records(g3.disks[0]["path"]))} records')
        workdir = lab.workdir
    left = lab_processes(workdir)
    assert not left, f'processes left: {left}'
    assert not os.path.exists(workdir) or lab.keep
    report.append(f'lab stop: {lab.timings["stop"]:.2f}s; nothing left running')
    report.append(f'selftest total: {time.monotonic() - t_all:.1f}s')
    print('\n'.join(report))
    print('SELFTEST PASSED')
    return 0


def _up(*names):
    lab = Lab().start()
    for n in names:
        g = lab.make_guest(n)
        g.start()
    for g in lab.guests.values():
        print(f'# {g.name} ready in {g.wait_ready(90):.1f}s', flush=True)
    print(f'export LIBVIRT_DEFAULT_URI={lab.libvirt_uri!r}')
    print(f'export DBUS_SESSION_BUS_ADDRESS={lab.bus_address!r}')
    print(f'export VIRTSNAP_LAB_WORKDIR={lab.workdir!r}')
    print('# Ctrl-C or SIGTERM stops the lab', flush=True)
    return procs.serve(lab)


def main(argv):
    return procs.command_line(argv, {'_watchdog': _watchdog_main, 'selftest': _selftest,
                                     'up': _up}, 'selftest | up [GUEST...]')


if __name__ == '__main__':
    sys.exit(main(sys.argv))
