#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""virtsnap test lab: a real single-node Ceph cluster for the RBD tests.

One ``ceph-mon`` and one ``ceph-osd`` (``osd objectstore = memstore``: the data
lives in the OSD's memory), ``auth none``, pools of size 1, no mgr, listening on
127.0.0.1 only: the monitor on a free port picked at start (msgr2 only), the
OSD in Ceph's usual 6800-7300 range (it skips ports in use, so two clusters of
parallel test runs do not collide).  Everything runs as the current
(unprivileged) user, with all state inside one work directory; /etc/ceph and
/var/lib/ceph are never used (every path of the generated ceph.conf points into
the work directory, and every command gets ``-c`` that file).

    ceph = Ceph(workdir).start()       # or: with Ceph(workdir) as ceph:
    ceph.create_pool('vs')
    ceph.import_ext4_image('vs', 'img')
    g = make_rbd_guest(lab, ceph, 'vm1', 'vs', 'img')
    ceph.rbd('snap', 'create', 'vs/img@s1')
    ceph.stop()

``ceph.conf`` works for ``rbd -c``, librados' ``rados_conf_read_file()`` and
QEMU/libvirt ``<config file=...>``; ``mon_host`` is '127.0.0.1:PORT'.

``Ceph.stop()`` (also run at exit, on SIGTERM/SIGHUP, and by a watchdog process
if this process dies without it) kills the daemons and any ``rbd``/``rados``/
``ceph`` command still running on the cluster, and removes the work directory.
It does not kill other processes that use the cluster (QEMU, the agent): stop
the lab (or destroy the guests) for those.

Only the standard library is used.  ``ceph.py selftest`` runs a smoke test
with a lab guest on an RBD disk.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from xml.sax.saxutils import escape as _xml_escape

LAB_DIR = os.path.dirname(os.path.abspath(__file__))
if LAB_DIR not in sys.path:
    sys.path.insert(0, LAB_DIR)

import lab as _lab  # noqa: E402  (the lab module next to this file)
import procs  # noqa: E402
from procs import tail as _tail  # noqa: E402

__all__ = ['Ceph', 'CephError', 'make_rbd_guest', 'rbd_disk_xml', 'ceph_processes']

_STOP_GRACE = 3.0
# Programs of ours that stop() may kill (matched on /proc/PID/exe or argv).
_CEPH_PROGRAMS = ('ceph-mon', 'ceph-osd', 'ceph-mgr', 'rbd', 'rados', 'monmaptool',
                  'ceph-conf', 'ceph-authtool', 'ceph')


class CephError(RuntimeError):
    """A Ceph operation failed; the message carries the command's output."""


def _run(argv, check=True, timeout=120, env=None, text=True):
    return procs.run(argv, check=check, timeout=timeout, env=env, text=text, error=CephError)


def _free_port():
    """A TCP port on 127.0.0.1 that is free right now (the kernel picks it
    from the ephemeral range, at random)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _listen_inodes(port):
    """Socket inodes listening on 127.0.0.1:PORT (or 0.0.0.0:PORT)."""
    inodes = set()
    try:
        with open('/proc/net/tcp') as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return inodes
    for line in lines:
        fields = line.split()
        if len(fields) < 10 or fields[3] != '0A':      # LISTEN
            continue
        addr, _, hexport = fields[1].partition(':')
        if int(hexport, 16) == port and addr in ('0100007F', '00000000'):
            inodes.add(fields[9])
    return inodes


def _pid_listens_on(pid, port):
    """True if process *pid* holds the listening socket of 127.0.0.1:PORT."""
    inodes = _listen_inodes(port)
    if not inodes:
        return False
    try:
        fds = os.listdir(f'/proc/{pid}/fd')
    except OSError:
        return False
    for fd in fds:
        try:
            link = os.readlink(f'/proc/{pid}/fd/{fd}')
        except OSError:
            continue
        if link.startswith('socket:[') and link[8:-1] in inodes:
            return True
    return False


def _is_ceph_program(pid):
    try:
        exe = os.path.basename(os.readlink(f'/proc/{pid}/exe'))
    except OSError:
        exe = ''
    if exe in _CEPH_PROGRAMS:
        return True
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            argv = f.read().split(b'\0')
    except OSError:
        return False
    # the ceph CLI is a Python script: python3 /usr/bin/ceph ...
    return any(os.path.basename(a.decode(errors='replace')) in _CEPH_PROGRAMS
               for a in argv[:2])


def ceph_processes(workdir):
    """PIDs of this user's Ceph programs (daemons, rbd/rados/ceph commands)
    whose command line or environment names *workdir*.  QEMU, the agent and
    other users of the cluster are not included."""
    return [p for p in _lab.lab_processes(workdir) if _is_ceph_program(p)]


def kill_ceph_processes(workdir, grace=_STOP_GRACE, sig=signal.SIGKILL):
    procs.kill_all(lambda: ceph_processes(workdir), sig, grace, poll=0.02)


def _watchdog_main(workdir, keep):
    """The watchdog child: unless the parent said 'done', kill the cluster's processes
    and remove *workdir* (the parent died uncleanly)."""
    def cleanup():
        kill_ceph_processes(workdir)
        if keep != '1':
            shutil.rmtree(workdir, ignore_errors=True)
    return procs.watchdog_main(cleanup)


# --------------------------------------------------------------------------

_CONF = """\
# virtsnap test lab: single-node Ceph, all state in {w}
[global]
fsid = {fsid}
mon host = 127.0.0.1:{port}
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind msgr2 = true
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
keyring = {w}/keyring
run dir = {w}/run
crash dir = {w}/crash
mon cluster log file = {w}/log/$cluster.log
mon debug dump location = {w}/log/$name.tdump
mon data = {w}/mon/$name
osd data = {w}/osd/$name
osd journal = {w}/osd/$name/journal
mgr data = {w}/mgr/$name
mds data = {w}/mds/$name
rgw data = {w}/rgw/$name
immutable object cache sock = {w}/run/immutable_object_cache_sock
gss ktab client file = {w}/run/$name.ktab
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 0
mon data avail crit = 0
mon warn on insecure global id reclaim allowed = false
client mount timeout = {mount_timeout}

[mon]
# commit map updates (OSD boot, pool create, snap ids) sooner than 1 s
paxos propose interval = 0.05
paxos min wait = 0.01
log file = {w}/log/$name.log
ms bind retry count = 1
ms bind retry delay = 0

[mon.a]
public addr = v2:127.0.0.1:{port}

[osd]
log file = {w}/log/$name.log
osd objectstore = memstore
memstore device bytes = {memstore_bytes}
osd crush update on start = true
osd max object name len = 256
osd max object namespace len = 64

[client]
admin socket =
log file =
"""


class Ceph:
    """A single-node Ceph cluster (1 mon, 1 memstore OSD, auth none).

    ``Ceph(workdir=None, memstore_gib=16, mount_timeout=30)``: *workdir*
    holds everything (conf, mon store, OSD dir, logs); None = a fresh
    directory under $TMPDIR.  It is removed by stop() (unless
    VIRTSNAP_LAB_KEEP=1).  Keep it short (admin socket paths are limited to
    107 bytes).  memstore_gib is the OSD's advertised capacity (memory is used
    only for data actually written).  mount_timeout: the conf's
    ``client mount timeout`` (seconds a client waits for the mon).

    Attributes after start(): conf, mon_host ('127.0.0.1:PORT'), port, fsid,
    client ('admin'), env (os.environ plus CEPH_CONF), timings.
    """

    client = 'admin'

    def __init__(self, workdir=None, memstore_gib=16, mount_timeout=30, allow_root=False):
        self.workdir = os.path.abspath(workdir) if workdir else None
        self.allow_root = allow_root
        self.memstore_bytes = int(memstore_gib * 1024 ** 3)
        self.mount_timeout = int(mount_timeout)
        self.keep = os.environ.get('VIRTSNAP_LAB_KEEP') == '1'
        self.conf = None
        self.port = None
        self.mon_host = None
        self.fsid = None
        self.env = None
        self.timings = {}
        self._mon = None
        self._osd = None
        self._watchdog = None
        self._started = False
        self._stopped = False
        self._paused = False

    @property
    def paused(self):
        return self._paused

    def __repr__(self):
        return f'<Ceph {self.mon_host} {self.workdir}>'

    def path(self, *parts):
        return os.path.join(self.workdir, *parts)

    @property
    def logs_dir(self):
        return self.path('log')

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self, timeout=90):
        if self._started:
            raise CephError('ceph already started')
        if os.getuid() == 0 and not self.allow_root:
            raise CephError('the lab Ceph must not run as root; use tests/lab/as-user.sh '
                            '(the system lab passes allow_root=True)')
        for prog in ('ceph-mon', 'ceph-osd', 'monmaptool', 'ceph', 'rbd', 'rados'):
            if not shutil.which(prog, path=os.environ.get('PATH', '') + ':/usr/bin:/usr/sbin'):
                raise CephError(f'{prog} not found: install the packages of '
                                'tests/lab/PACKAGES.ceph')
        self._started = True
        t0 = time.monotonic()
        procs.open_workdir(self, 'vsc-', 60, 'ceph')
        try:
            self._start_watchdog()
            self.conf = self.path('ceph.conf')
            self.fsid = str(uuid.uuid4())
            self.env = dict(os.environ, CEPH_CONF=self.conf)
            self.env.pop('CEPH_ARGS', None)
            self._start_mon(t0 + timeout)
            self.timings['mon'] = time.monotonic() - t0
            self._start_osd(t0 + timeout)
            self.timings['start'] = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise
        return self

    def _start_watchdog(self):
        self._watchdog = procs.start_watchdog(__file__, self.workdir,
                                              '1' if self.keep else '0')

    def _write_conf(self):
        text = _CONF.format(w=self.workdir, fsid=self.fsid, port=self.port,
                            memstore_bytes=self.memstore_bytes,
                            mount_timeout=self.mount_timeout)
        tmp = self.conf + '.tmp'
        with open(tmp, 'w') as f:
            f.write(text)
        os.replace(tmp, self.conf)

    def _daemon(self, argv, logname):
        return procs.spawn(argv, self.path('log', logname), env=self.env, cwd=self.workdir)

    def _start_mon(self, deadline):
        last = ''
        for attempt in range(5):
            shutil.rmtree(self.path('mon'), ignore_errors=True)
            for d in ('mon', 'osd', 'run', 'log', 'crash', 'tmp'):
                os.makedirs(self.path(d), exist_ok=True)
            self.port = _free_port()
            self.mon_host = f'127.0.0.1:{self.port}'
            self._write_conf()
            monmap = self.path('tmp', 'monmap')
            _run(['monmaptool', '--create', '--clobber', '--fsid', self.fsid,
                  '--addv', 'a', f'[v2:127.0.0.1:{self.port}]', monmap], env=self.env)
            _run(['ceph-mon', '-c', self.conf, '--mkfs', '-i', 'a', '--monmap', monmap],
                 env=self.env)
            self._mon = self._daemon(['ceph-mon', '-c', self.conf, '-f', '-i', 'a'],
                                     'mon.a.stderr')
            while True:
                if self._mon.poll() is not None:
                    break
                # the listening socket must be our mon's (not someone else's)
                if _pid_listens_on(self._mon.pid, self.port):
                    return
                if time.monotonic() > deadline:
                    raise CephError(f'ceph-mon not listening on {self.mon_host}: '
                                    + self._log_tail('mon.a'))
                time.sleep(0.02)
            last = self._log_tail('mon.a')
            self._mon.wait()
            self._mon = None
            # most likely the port was taken between picking and binding it
        raise CephError(f'ceph-mon did not start (5 attempts): {last}')

    def _start_osd(self, deadline):
        osd_uuid = str(uuid.uuid4())
        osd_id = self.ceph('osd', 'new', osd_uuid).strip()
        if osd_id != '0':
            raise CephError(f'unexpected OSD id {osd_id!r}')
        os.makedirs(self.path('osd', 'osd.0'), exist_ok=True)
        _run(['ceph-osd', '-c', self.conf, '-i', '0', '--mkfs', '--osd-uuid', osd_uuid],
             env=self.env)
        self._osd = self._daemon(['ceph-osd', '-c', self.conf, '-f', '-i', '0'],
                                 'osd.0.stderr')
        log = self.path('log', 'osd.0.log')
        next_check = time.monotonic() + 2
        while True:
            if self._osd.poll() is not None:
                raise CephError(f'ceph-osd exited ({self._osd.returncode}): '
                                + self._log_tail('osd.0'))
            # cheap: the OSD logs its boot; the mon has the final word
            booted = 'state: booting -> active' in _tail(log, 200)
            if booted or time.monotonic() > next_check:
                st = json.loads(self.ceph('osd', 'stat', '--format', 'json'))
                if st.get('num_up_osds') == 1 and st.get('num_in_osds') == 1:
                    return
                next_check = time.monotonic() + 1
            if time.monotonic() > deadline:
                raise CephError('osd.0 not up; ' + self._log_tail('osd.0'))
            time.sleep(0.05)

    def _log_tail(self, name, lines=15):
        out = []
        for f in (f'{name}.log', f'{name}.stderr'):
            t = _tail(self.path('log', f), lines)
            if t:
                out.append(f'--- {f}:\n{t}')
        return '\n'.join(out)

    def daemon_pids(self):
        """{'mon.a': pid, 'osd.0': pid} of the running daemons."""
        out = {}
        for name, p in (('mon.a', self._mon), ('osd.0', self._osd)):
            if p is not None and p.poll() is None:
                out[name] = p.pid
        return out

    def running(self):
        return len(self.daemon_pids()) == 2

    def memory_kib(self):
        """{'mon.a': VmRSS KiB, 'osd.0': VmRSS KiB} (the OSD holds the data)."""
        out = {}
        for name, pid in self.daemon_pids().items():
            try:
                with open(f'/proc/{pid}/status') as f:
                    m = re.search(r'^VmRSS:\s+(\d+)', f.read(), re.M)
                out[name] = int(m.group(1)) if m else None
            except OSError:
                out[name] = None
        return out

    def pause(self):
        """SIGSTOP both daemons: the cluster hangs (clients block / time out)
        but its port stays bound.  resume() continues it."""
        for pid in self.daemon_pids().values():
            os.kill(pid, signal.SIGSTOP)
        self._paused = True

    def resume(self):
        for pid in self.daemon_pids().values():
            os.kill(pid, signal.SIGCONT)
        self._paused = False

    def stop(self):
        """Kill the daemons and any rbd/rados/ceph command on this cluster,
        remove the work dir.  Safe to call twice and after a partial start."""
        if self._stopped or not self._started:
            self._stopped = True
            return
        self._stopped = True
        t0 = time.monotonic()
        try:
            # memstore state is thrown away anyway: no clean shutdown needed
            # (a SIGTERMed memstore OSD would first dump all its data to disk).
            for p in (self._osd, self._mon):
                if p is not None and p.poll() is None:
                    try:
                        p.kill()
                    except OSError:
                        pass
            for p in (self._osd, self._mon):
                if p is not None:
                    try:
                        p.wait(_STOP_GRACE)
                    except subprocess.TimeoutExpired:
                        pass
            if self.workdir:
                kill_ceph_processes(self.workdir, grace=_STOP_GRACE)
        finally:
            procs.close_workdir(self, 'ceph')
            self.timings['stop'] = time.monotonic() - t0

    # -- commands --------------------------------------------------------------
    def _cmd(self, prog, args, timeout, check=True):
        if not self._started or self._stopped:
            raise CephError('ceph not running')
        res = _run([prog, '-c', self.conf, *map(str, args)], check=False,
                   timeout=timeout, env=self.env)
        if check and res.returncode != 0:
            raise CephError(f'{prog} {" ".join(map(str, args))} failed ({res.returncode}): '
                            f'{(res.stderr or res.stdout).strip()}')
        return res

    def rbd(self, *args, timeout=300):
        """``rbd -c CONF ARGS``; return stdout (CephError on failure)."""
        return self._cmd('rbd', args, timeout).stdout

    def rbd_result(self, *args, timeout=300):
        """Like rbd() but return the CompletedProcess without checking."""
        return self._cmd('rbd', args, timeout, check=False)

    def rados(self, *args, timeout=120):
        """``rados -c CONF ARGS``; return stdout."""
        return self._cmd('rados', args, timeout).stdout

    def ceph(self, *args, timeout=60):
        """``ceph -c CONF ARGS``; return stdout."""
        return self._cmd('ceph', args, timeout).stdout

    # -- pools and images --------------------------------------------------------
    def create_pool(self, name, pg_num=8, timeout=60):
        """A replicated pool of size 1 with application rbd, ready for I/O."""
        # size 1 and pg_num come from the conf's osd pool default *;
        # 'rbd pool init' enables application rbd and validates the pool
        # (a self-managed snapshot round trip, which waits for the PGs)
        self.ceph('osd', 'pool', 'create', name, str(pg_num), str(pg_num), 'replicated')
        self.rbd('pool', 'init', name, timeout=timeout)
        return name

    def delete_pool(self, name):
        self.ceph('osd', 'pool', 'delete', name, name, '--yes-i-really-really-mean-it')

    def pools(self):
        return json.loads(self.ceph('osd', 'pool', 'ls', '--format', 'json'))

    def import_ext4_image(self, pool, name, size_mib=64, label=None, features=None):
        """Make an ext4 whole-disk image of size_mib MiB (like lab.make_disk:
        mkfs.ext4 -E lazy_itable_init=0,lazy_journal_init=0 on a sparse raw
        file) and ``rbd import`` it as POOL/NAME (format 2, default features
        unless *features*, e.g. 'layering').  Return 'POOL/NAME'."""
        raw = self.path('tmp', f'{pool}-{name}.mkfs.raw')
        try:
            with open(raw, 'wb') as f:
                f.truncate(int(size_mib) * 1024 * 1024)
            argv = ['mkfs.ext4', '-F', '-q', '-E', 'lazy_itable_init=0,lazy_journal_init=0']
            if label:
                argv += ['-L', label[:16]]
            _run(argv + [raw])
            args = ['import', '--no-progress', '--image-format', '2']
            if features:
                args += ['--image-feature', features]
            self.rbd(*args, raw, f'{pool}/{name}')
        finally:
            try:
                os.unlink(raw)
            except OSError:
                pass
        return f'{pool}/{name}'

    def create_image(self, pool, name, size_mib, features=None):
        """An empty image POOL/NAME (thin); return 'POOL/NAME'."""
        args = ['create', '--size', f'{int(size_mib)}M']
        if features:
            args += ['--image-feature', features]
        self.rbd(*args, f'{pool}/{name}')
        return f'{pool}/{name}'

    @staticmethod
    def _spec(pool, image_or_snap):
        return image_or_snap if pool is None else f'{pool}/{image_or_snap}'

    def export(self, pool, image_or_snap, dest_path):
        """``rbd export POOL/IMAGE[@SNAP] DEST`` (raw, sparse); return DEST.
        pool=None: image_or_snap is a full spec."""
        if os.path.exists(dest_path):
            os.unlink(dest_path)
        self.rbd('export', '--no-progress', self._spec(pool, image_or_snap), dest_path)
        return dest_path

    def image_info(self, spec):
        """``rbd info --format json SPEC`` as a dict."""
        return json.loads(self.rbd('info', '--format', 'json', spec))

    def image_exists(self, spec):
        return self.rbd_result('info', spec).returncode == 0

    def snaps(self, spec):
        """``rbd snap ls --format json SPEC``: list of dicts (id, name, size,
        protected ('true'/'false'), timestamp)."""
        return json.loads(self.rbd('snap', 'ls', '--format', 'json', spec))

    def snap_names(self, spec):
        return [s['name'] for s in self.snaps(spec)]

    def children(self, spec):
        """Clones of SNAP-SPEC (POOL/IMAGE@SNAP), or of every snapshot of
        POOL/IMAGE: a list of 'POOL/IMAGE'."""
        args = ['children', '--format', 'json']
        if '@' not in spec:
            args.append('--all')
        out = json.loads(self.rbd(*args, spec))
        res = []
        for c in out:
            ns = c.get('pool_namespace') or ''
            res.append(f"{c['pool']}/{ns + '/' if ns else ''}{c['image']}")
        return res

    def images(self, pool):
        """Image names in POOL (``rbd ls``)."""
        return json.loads(self.rbd('ls', '--format', 'json', pool))

    def remove_image(self, spec, purge_snaps=True):
        """Remove POOL/IMAGE, first unprotecting and removing its snapshots."""
        if purge_snaps:
            for s in self.snaps(spec):
                if str(s.get('protected')) == 'true':
                    self.rbd('snap', 'unprotect', f'{spec}@{s["name"]}')
            self.rbd('snap', 'purge', '--no-progress', spec)
        self.rbd('rm', '--no-progress', spec)

    def qemu_uri(self, spec):
        """'rbd:POOL/IMAGE[@SNAP]:conf=CONF' for qemu-img / lab.read_records()
        / lab.fsck_clean() (needs qemu-block-extra)."""
        return f'rbd:{spec}:conf={self.conf}'


# --------------------------------------------------------------------------
# guests with an RBD disk

def rbd_disk_xml(ceph, pool, image, target='vda', cache='none', indent='    '):
    """The libvirt <disk type='network'> element of an RBD disk (auth none)."""
    e = _xml_escape
    cache_attr = f" cache='{e(cache)}'" if cache else ''
    i = indent
    return '\n'.join([
        f"{i}<disk type='network' device='disk'>",
        f"{i}  <driver name='qemu' type='raw'{cache_attr}/>",
        f"{i}  <source protocol='rbd' name='{e(pool)}/{e(image)}'>",
        f"{i}    <host name='127.0.0.1' port='{int(ceph.port)}'/>",
        f"{i}    <config file='{e(ceph.conf)}'/>",
        f'{i}  </source>',
        f"{i}  <target dev='{e(target)}' bus='virtio'/>",
        f'{i}</disk>',
    ]) + '\n'


def make_rbd_guest(lab, ceph, name, pool, image, agent=True, file_disks=0,
                   disk_size_mib=64, fmt='qcow2', backing=False, cache='none',
                   file_cache='auto', memory_mib=256, vcpus=1, write_delay_us=10000,
                   sync_every=10, extra_cmdline='', define=True):
    """Define a persistent lab guest whose vda is the RBD image POOL/IMAGE
    (which must hold a whole-disk ext4, e.g. from Ceph.import_ext4_image), plus
    *file_disks* local data disks vdb, vdc, ... made with lab.make_disk (fmt,
    backing, disk_size_mib as in lab.make_guest).  Registered in lab.guests,
    so lab.stop() destroys and undefines it.  Return the lab.Guest.

    The RBD disk's dict in guest.disks: target 'vda', type 'network',
    protocol 'rbd', rbd 'POOL/IMAGE', format 'raw', path = ceph.qemu_uri()
    (so lab.read_records(d['path']) / lab.fsck_clean(d['path']) read it
    through qemu-img), backing None.  File disks have type 'file'.
    cache: the RBD disk's cache mode (None = QEMU's default); file_cache:
    that of the file disks ('auto' as in lab.make_guest).
    """
    if not lab.running:
        raise _lab.LabError('lab not running')
    if not ceph._started or ceph._stopped:
        raise CephError('ceph not running')
    _lab.check_guest_name(name)
    if file_cache == 'auto':
        file_cache = lab.auto_cache()
    spec = f'{pool}/{image}'
    rbd_disk = {'target': 'vda', 'type': 'network', 'protocol': 'rbd', 'rbd': spec,
                'pool': pool, 'image': image, 'path': ceph.qemu_uri(spec),
                'format': 'raw', 'backing': None, 'backing_format': None}
    files = []
    for i in range(int(file_disks)):
        target = _lab.target_name(i + 1)
        ext = 'qcow2' if (fmt == 'qcow2' or backing) else 'raw'
        path = os.path.join(lab.images_dir, f'{name}-{target}.{ext}')
        d = lab.make_disk(path, disk_size_mib, fmt, backing, label=f'{name}-{target}')
        d['target'] = target
        d['type'] = 'file'
        files.append(d)
    cmdline = _lab.guest_cmdline(write_delay_us, sync_every, extra_cmdline)
    xml = _lab.domain_xml(name, lab.kernel, lab.initrd, cmdline, memory_mib, vcpus, files,
                          file_cache, agent, lab.console_log(name),
                          first_disks_xml=rbd_disk_xml(ceph, pool, image, 'vda', cache))
    return lab.add_guest(name, [rbd_disk] + files, xml, agent, define)


# --------------------------------------------------------------------------
# command line

def _selftest():
    from lab import Lab, read_records, records_contiguous, fsck_clean, lab_processes
    t_all = time.monotonic()
    report = []
    with Lab() as lab:
        report.append(f'lab start: {lab.timings["start"]:.2f}s')
        with Ceph(lab.path('ceph')) as ceph:
            report.append(f'ceph start (mon {ceph.timings["mon"]:.2f}s): '
                          f'{ceph.timings["start"]:.2f}s, mon at {ceph.mon_host}')
            cwork = ceph.workdir
            t = time.monotonic()
            ceph.create_pool('vs')
            report.append(f'create_pool vs: {time.monotonic() - t:.2f}s')
            t = time.monotonic()
            ceph.import_ext4_image('vs', 'img', 64, label='rbd-img')
            report.append(f'import_ext4_image 64 MiB: {time.monotonic() - t:.2f}s')
            assert ceph.images('vs') == ['img'], ceph.images('vs')
            info = ceph.image_info('vs/img')
            assert info['size'] == 64 << 20, info

            g = make_rbd_guest(lab, ceph, 'rbd1', 'vs', 'img', agent=True, file_disks=1)
            xml = g.inactive_xml()
            assert "protocol='rbd'" in xml and 'vs/img' in xml, xml
            g.start()
            boot = g.wait_ready(120)
            report.append(f'boot-to-agent rbd1 (vda rbd + vdb qcow2): {boot:.2f}s')
            console = g.console_text()
            assert 'mounted /dev/vda on /data0' in console, console
            assert 'mounted /dev/vdb on /data1' in console, console
            time.sleep(3)

            t = time.monotonic()
            g.fsfreeze()
            t_frozen = time.monotonic()
            ceph.rbd('snap', 'create', 'vs/img@s1')
            t_snap = time.monotonic() - t_frozen
            g.fsthaw()
            report.append(f'freeze + rbd snap create (64 MiB, lock owned by QEMU) + thaw: '
                          f'{time.monotonic() - t:.2f}s (snap create {t_snap:.2f}s)')
            assert [s['name'] for s in ceph.snaps('vs/img')] == ['s1']
            ceph.rbd('snap', 'protect', 'vs/img@s1')
            t = time.monotonic()
            ceph.rbd('clone', 'vs/img@s1', 'vs/clone1')
            t_clone = time.monotonic() - t
            assert ceph.children('vs/img@s1') == ['vs/clone1'], ceph.children('vs/img@s1')
            assert ceph.image_info('vs/clone1')['parent']['snapshot'] == 's1'
            t = time.monotonic()
            ceph.rbd('flatten', '--no-progress', 'vs/clone1')
            t_flat = time.monotonic() - t
            assert 'parent' not in ceph.image_info('vs/clone1')
            assert ceph.children('vs/img@s1') == []
            report.append(f'clone {t_clone:.2f}s; flatten (64 MiB, mostly unallocated) {t_flat:.2f}s '
                          f'({64 / t_flat:.0f} MiB/s)')
            out = lab.path('clone1.raw')
            t = time.monotonic()
            ceph.export('vs', 'clone1', out)
            report.append(f'export 64 MiB: {time.monotonic() - t:.2f}s')
            ok, fsck_out = fsck_clean(out)
            assert ok, fsck_out
            nums = read_records(out)
            assert records_contiguous(nums), f'records not contiguous: {nums[:3]}...{nums[-3:]}'
            report.append(f'snapshot: fsck clean ({fsck_out.splitlines()[0]}), '
                          f'{len(nums)} contiguous records')
            # the snapshot directly through QEMU's rbd driver
            nums_s1 = read_records(ceph.qemu_uri('vs/img@s1'))
            assert nums_s1 == nums, (len(nums_s1), len(nums))

            ceph.rbd('snap', 'unprotect', 'vs/img@s1')
            ceph.rbd('snap', 'rm', '--no-progress', 'vs/img@s1')
            ceph.remove_image('vs/clone1')
            assert ceph.snaps('vs/img') == []
            assert ceph.images('vs') == ['img']

            # snapshot time vs image size
            ceph.create_image('vs', 'big', 1024)
            times = {}
            for spec in ('vs/img', 'vs/big'):
                ts = []
                for i in range(3):
                    t = time.monotonic()
                    ceph.rbd('snap', 'create', f'{spec}@t{i}')
                    ts.append(time.monotonic() - t)
                times[spec] = min(ts)
            report.append(f'rbd snap create (guest running on vs/img), best of 3: '
                          f'64 MiB {times["vs/img"]:.3f}s, 1 GiB (idle, empty) '
                          f'{times["vs/big"]:.3f}s')
            # flatten throughput with real data: 256 MiB written into the 1 GiB image
            rss0 = ceph.memory_kib().get('osd.0', 0)
            t = time.monotonic()
            ceph.rbd('bench', '--io-type', 'write', '--io-size', '4M', '--io-threads', '4',
                     '--io-total', '256M', '--io-pattern', 'seq', 'vs/big')
            t_fill = time.monotonic() - t
            t = time.monotonic()
            ceph.rbd('snap', 'create', 'vs/big@full')
            t_snap_full = time.monotonic() - t
            ceph.rbd('snap', 'protect', 'vs/big@full')
            ceph.rbd('clone', 'vs/big@full', 'vs/bigclone')
            t = time.monotonic()
            ceph.rbd('flatten', '--no-progress', 'vs/bigclone')
            t_flat = time.monotonic() - t
            rss1 = ceph.memory_kib().get('osd.0', 0)
            report.append(f'1 GiB image with 256 MiB written (rbd bench {256 / t_fill:.0f} MiB/s): '
                          f'snap create {t_snap_full:.3f}s; flatten of its clone '
                          f'{t_flat:.2f}s = {256 / t_flat:.0f} MiB/s of data; '
                          f'OSD RSS +{(rss1 - rss0) // 1024} MiB for the 512 MiB written')
            ceph.remove_image('vs/bigclone')
            ceph.remove_image('vs/big')

            g.destroy()
            nums_live = read_records(g.disks[0]['path'])
            assert records_contiguous(nums_live) and len(nums_live) > len(nums)
            nums_b = read_records(g.disks[1]['path'])
            assert records_contiguous(nums_b)
            report.append(f'after destroy: vda (rbd) {len(nums_live)} records, '
                          f'vdb (qcow2) {len(nums_b)}; both contiguous')
            mem = ceph.memory_kib()
            report.append(f'RSS: mon {mem.get("mon.a", 0) // 1024} MiB, '
                          f'osd {mem.get("osd.0", 0) // 1024} MiB')
            g.undefine()
        report.append(f'ceph stop: {ceph.timings["stop"]:.2f}s')
        assert not ceph_processes(cwork), ceph_processes(cwork)
        assert not os.path.exists(cwork)
        workdir = lab.workdir
    left = lab_processes(workdir)
    assert not left, f'processes left: {left}'
    report.append(f'selftest total: {time.monotonic() - t_all:.1f}s')
    print('\n'.join(report))
    print('SELFTEST PASSED')
    return 0


def _up():
    c = Ceph().start()
    c.create_pool('vs')
    print(f'export CEPH_CONF={c.conf!r}   # mon {c.mon_host}, pool vs, '
          f'started in {c.timings["start"]:.1f}s', flush=True)
    print('# Ctrl-C or SIGTERM stops the cluster', flush=True)
    return procs.serve(c)


def main(argv):
    return procs.command_line(argv, {'_watchdog': _watchdog_main, 'selftest': _selftest,
                                     'up': _up}, 'selftest | up')


if __name__ == '__main__':
    sys.exit(main(sys.argv))
