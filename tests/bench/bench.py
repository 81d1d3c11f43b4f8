#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""virtsnap benchmark: the freeze window and the time to a finished image of a
live snapshot, virtsnap against the orders it replaces, on the real lab.

For each delta size (default 16 and 256 MiB) a guest is made whose data disk
is a qcow2 overlay over a qcow2 base, with DELTA MiB of data in the top
overlay (lab ``make_guest(..., backing=True, top_data_mib=DELTA)``), so that a
shallow copy copies about DELTA MiB.  The guest keeps appending records and
its guest agent is connected.  Each method then snapshots disk vda:

seed        the old Nova code: qemu-img create the delta, fsFreeze, undefine,
            blockRebase(COPY|REUSE_EXT|SHALLOW), poll blockJobInfo every 0.5 s
            until cur == end, blockJobAbort, defineXML(saved), fsThaw,
            qemu-img convert -O qcow2 (flatten).
nova        Nova today: create the delta, undefine, blockRebase, poll every
            0.5 s until cur == end, fsFreeze, blockJobAbort, defineXML, fsThaw,
            flatten.
floor       the libvirt API floor: create the delta, virDomainBlockCopy
            (SHALLOW|REUSE_EXT|TRANSIENT_JOB, no undefine), wait for the
            BLOCK_JOB_2 READY event (python-libvirt's default event loop in a
            thread), fsFreeze, blockJobAbort, fsThaw, flatten.
floor-direct  (extra) the floor of a full-chain copy: blockCopy
            (REUSE_EXT|TRANSIENT_JOB) into a qcow2 with no backing, READY,
            fsFreeze, abort, fsThaw; no flatten pass.
virtsnap-shallow, virtsnap-direct
            virtsnapd (started by the benchmark, --verbose) through its D-Bus
            API: CreateSnapshot(domain, {copy, quiesce: require}), waiting
            for the job's State to become final (PropertiesChanged).

Figures per run: freeze window (freeze call -> end of the thaw call), copy
total (copy request -> end of the abort), flatten, and total (first call ->
finished image; for the reference orders this includes the qemu-img info +
create of the delta and the flatten; for virtsnap it is the client's wall time
from the CreateSnapshot call to the final State signal, the agent's own
total-ms being kept in the JSON).  For virtsnap the freeze/copy/flatten figures
are the agent's (Result freeze-ms, copy-ms, flatten-ms), and the phase
timestamps of its --verbose log give a per-phase breakdown.

libvirt's blockJobInfo keeps cur < end for a mirror until QEMU reports it
ready, so the "cur == end" polls of the reference orders stop at READY.

Every image produced (each method, each run) is checked: ``fsck_clean`` and
``records_contiguous(read_records(img))`` must both hold, or the benchmark
aborts.  Between methods the guest is put back as it was (running, persistent
with the same inactive XML, no block job, file systems thawed) and every
produced file is removed; this is checked too.

The idle agent is measured first: virtsnapd connected to the lab with the
benchmark's guests defined (the first one running) sits for --idle-seconds;
the CPU ticks it used (utime + stime of /proc/PID/stat), its voluntary
context switches (/proc/PID/status of the main thread, and summed over its
threads) and VmRSS are reported.

Noise control: one warm-up round of every method per size is run and checked
but not counted (--warmup); the method order rotates from one repetition to
the next; after each run the benchmark syncs and pauses (--pause); and before
each run it waits (--quiet-wait) while QEMU or qemu-img processes that are not
of this lab run on the machine (another test suite): runs made with them
anyway are flagged in the output and the JSON.

Run as the lab user (tests/bench/run.sh does it):
    VIRTSNAP_LAB_ASSETS=/tmp/vs-assets tests/lab/as-user.sh \\
        /usr/bin/python3 tests/bench/bench.py [--sizes 16,256] [--reps 3] [--json FILE]

Needs python3-libvirt and python3-gi (Debian's /usr/bin/python3).
Environment: VIRTSNAP_BUILD_DIR (default <repo>/build), VIRTSNAP_LAB_ASSETS.
"""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, 'tests', 'lab'))

import lab as labmod  # noqa: E402
import procs  # noqa: E402

try:
    import libvirt  # noqa: E402
    import libvirt_qemu  # noqa: E402
except ImportError:
    sys.exit('bench: python3-libvirt is missing (apt-get install python3-libvirt) '
             'or this is not /usr/bin/python3')
try:
    import gi  # noqa: E402
    gi.require_version('Gio', '2.0')
    from gi.repository import Gio, GLib  # noqa: E402
    import agent as agentmod  # noqa: E402  (the shared agent wrapper, tests/lab/agent.py)
except (ImportError, ValueError):
    sys.exit('bench: python3-gi is missing or this is not /usr/bin/python3')
from agent import BUS_NAME, FINAL_STATES, JOB_IFACE, PROPS_IFACE  # noqa: E402

BUILD = agentmod.build_dir()
VIRTSNAPD = agentmod.built_programs(BUILD)[0]

DISK = 'vda'
POLL_S = 0.5
READY_TIMEOUT_S = 300

METHODS = ['seed', 'nova', 'floor', 'floor-direct', 'virtsnap-shallow', 'virtsnap-direct']
LABELS = {
    'seed': "seed's order (freeze first, poll)",
    'nova': 'Nova today (poll, freeze at ready)',
    'floor': 'libvirt API floor (events, transient)',
    'floor-direct': 'floor, direct full chain (extra)',
    'virtsnap-shallow': 'virtsnap, copy=shallow',
    'virtsnap-direct': 'virtsnap, copy=direct',
}

# Targets of the issue.
FREEZE_VS_FLOOR = 1.25
FREEZE_SIZE_SPREAD = 1.25      # max/min of per-size medians ...
FREEZE_SIZE_SLACK_MS = 10.0    # ... or an absolute difference this small
TOTAL_VS_NOVA = 0.5


class BenchError(RuntimeError):
    """The benchmark cannot go on (a bad image, a guest left changed, ...)."""


def now_ms():
    return time.monotonic() * 1000.0


def log(msg):
    print(f'[{time.strftime("%H:%M:%S")}] {msg}', file=sys.stderr, flush=True)


def run(argv, timeout=600):
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                         stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise BenchError(f'{" ".join(argv)} failed ({res.returncode}): {res.stderr.strip()}')
    return res.stdout


def foreign_load(workdir):
    """Other QEMU guests and qemu-img processes on this machine (not of the
    lab in *workdir*): they compete for the CPUs and skew the figures."""
    key = (workdir.rstrip('/') + '/').encode()
    found = []
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        try:
            with open(f'/proc/{name}/cmdline', 'rb') as f:
                cmd = f.read()
        except OSError:
            continue
        exe = os.path.basename(cmd.split(b'\0', 1)[0])
        if (exe.startswith(b'qemu-system') or exe == b'qemu-img') and key not in cmd:
            found.append(int(name))
    return found


def loadavg():
    with open('/proc/loadavg') as f:
        return float(f.read().split()[0])


# --------------------------------------------------------------------------
# libvirt with events

class Libvirt:
    """A libvirt connection whose events are dispatched by python-libvirt's
    default event loop, run in a thread."""

    _impl_registered = False

    def __init__(self, uri):
        if not Libvirt._impl_registered:
            libvirt.virEventRegisterDefaultImpl()
            Libvirt._impl_registered = True
            t = threading.Thread(target=self._loop, name='libvirt-events', daemon=True)
            t.start()
        self.conn = libvirt.open(uri)
        self._cond = threading.Condition()
        self._events = []      # (ms, domain name, disk, type, status)
        self._cb_ids = []
        self._cb_ids.append(self.conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2, self._on_block_job, None))

    @staticmethod
    def _loop():
        while True:
            libvirt.virEventRunDefaultImpl()

    def _on_block_job(self, conn, dom, disk, jtype, status, opaque):
        with self._cond:
            self._events.append((now_ms(), dom.name(), disk, jtype, status))
            self._cond.notify_all()

    def mark(self):
        """Events before this point are ignored by wait_block_job()."""
        with self._cond:
            return len(self._events)

    def wait_block_job(self, domain, disk, since, timeout):
        """Wait for a READY event of *disk* after mark *since*; raise on an
        end of the job (completed, failed, cancelled) before it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self._events[since:]:
                    if ev[1] != domain or ev[2] != disk:
                        continue
                    if ev[4] == libvirt.VIR_DOMAIN_BLOCK_JOB_READY:
                        return ev[0]
                    raise BenchError(f'block job on {domain}/{disk} ended with status '
                                     f'{ev[4]} before READY')
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(f'no READY event for {domain}/{disk} in {timeout}s')
                self._cond.wait(left)

    def close(self):
        for cid in self._cb_ids:
            try:
                self.conn.domainEventDeregisterAny(cid)
            except libvirt.libvirtError:
                pass
        self.conn.close()


# --------------------------------------------------------------------------
# virtsnapd

class Agent(agentmod.Agent):
    """The shared agent wrapper (tests/lab/agent.py) in the lab's environment, plus
    the State changes of jobs, seen through signals in a main context of its own."""

    error = BenchError

    def __init__(self, lab):
        # The bus connection dispatches its signals in the thread-default context at
        # the time it subscribes: ours, iterated by snapshot().
        self.ctx = GLib.MainContext.new()
        self.ctx.push_thread_default()
        super().__init__(lab, 'agent', programs=agentmod.built_programs(BUILD), env=lab.env,
                         fatal_criticals=False, ready_timeout=20)
        os.makedirs(self.snapshot_dir, exist_ok=True)
        os.makedirs(self.state_dir, exist_ok=True)
        self.job_states = {}   # path -> (state, ms when seen)
        self.bus.signal_subscribe(BUS_NAME, PROPS_IFACE, 'PropertiesChanged', None, JOB_IFACE,
                                  Gio.DBusSignalFlags.NONE, self._on_props)
        tick = GLib.timeout_source_new(100)
        tick.set_callback(lambda *a: True)
        tick.attach(self.ctx)

    def _on_props(self, bus, sender, path, iface, signal, params):
        _, changed, _ = params.unpack()
        if 'State' in changed:
            self.job_states[path] = (changed['State'], now_ms())

    def start(self):
        if not os.access(VIRTSNAPD, os.X_OK):
            raise BenchError(f'{VIRTSNAPD} is missing: ninja -C {BUILD}')
        return super().start()

    def stop(self):
        super().stop(expect_code=None, timeout=10, check=False)

    def snapshot(self, domain, copy, timeout=600):
        """CreateSnapshot and wait for the job to end; return (job props
        plus call_ms, the CreateSnapshot round trip; client ms from the call
        to the final State)."""
        opts = {'copy': GLib.Variant('s', copy), 'quiesce': GLib.Variant('s', 'require'),
                'disks': GLib.Variant('as', [DISK])}
        t0 = now_ms()
        path = self.call('CreateSnapshot', GLib.Variant('(sa{sv})', (domain, opts)),
                         reply_type='(o)')[0]
        call_ms = now_ms() - t0
        deadline = time.monotonic() + timeout
        while True:
            st = self.job_states.get(path)
            if st and st[0] in FINAL_STATES:
                break
            if time.monotonic() > deadline:
                raise BenchError(f'virtsnap job {path} not finished after {timeout}s')
            self.ctx.iteration(True)
        wall = st[1] - t0
        props = self.job_props(path)
        props['path'] = path
        props['call_ms'] = call_ms
        return props, wall

    def delete(self, snapshot_id):
        self.call('DeleteSnapshot', GLib.Variant('(s)', (snapshot_id,)))

    # -- the log: phase timestamps ---------------------------------------------
    _LINE = re.compile(r'(\d\d):(\d\d):(\d\d)\.(\d{3}): job (\d+)(?: \([^)]*\))?: '
                       r'(?:phase (\S+)|(succeeded|failed|cancelled|interrupted)\b)')

    def phases(self, job_id):
        """[(phase, ms)] of job *job_id* from the --verbose log: how long each
        phase lasted (the last one ends at the job's final message)."""
        marks = []
        try:
            with open(self.log, errors='replace') as f:
                for line in f:
                    m = self._LINE.search(line)
                    if not m or int(m.group(5)) != job_id:
                        continue
                    h, mi, s, ms = (int(m.group(i)) for i in range(1, 5))
                    t = ((h * 60 + mi) * 60 + s) * 1000 + ms
                    marks.append((m.group(6) or 'end', t))
        except OSError:
            return []
        out = []
        for (name, t), (_, t2) in zip(marks, marks[1:]):
            d = t2 - t
            if d < 0:
                d += 86400000     # past midnight
            out.append((name, d))
        return out

    # -- idle ------------------------------------------------------------------------
    def proc_sample(self):
        pid = self.proc.pid
        with open(f'/proc/{pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
        utime, stime = int(fields[11]), int(fields[12])
        status = {}
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                k, _, v = line.partition(':')
                status[k] = v.strip()
        per_thread = {}
        for tid in os.listdir(f'/proc/{pid}/task'):
            try:
                with open(f'/proc/{pid}/task/{tid}/status') as f:
                    for line in f:
                        if line.startswith('voluntary_ctxt_switches:'):
                            per_thread[tid] = int(line.split()[1])
            except OSError:
                pass
        return {
            'ticks': utime + stime, 'utime': utime, 'stime': stime,
            'vol_ctxt': int(status['voluntary_ctxt_switches']),
            'nonvol_ctxt': int(status['nonvoluntary_ctxt_switches']),
            'vol_ctxt_per_thread': per_thread,
            'vmrss_kib': int(status['VmRSS'].split()[0]),
            'vmhwm_kib': int(status['VmHWM'].split()[0]),
            'threads': int(status['Threads']),
        }


# --------------------------------------------------------------------------
# the bench

class Bench:
    def __init__(self, lab, lv, agent, args):
        self.lab = lab
        self.lv = lv
        self.agent = agent
        self.args = args
        self.work = lab.path('bench')
        os.makedirs(self.work, exist_ok=True)

    # -- guest state ---------------------------------------------------------------
    def dom(self, name):
        return self.lv.conn.lookupByName(name)

    def fs_frozen(self, dom):
        out = libvirt_qemu.qemuAgentCommand(dom, '{"execute":"guest-fsfreeze-status"}', 10, 0)
        return json.loads(out).get('return') == 'frozen'

    def check_guest(self, g, saved_xml):
        """The guest is as it was before the method: or abort."""
        dom = self.dom(g.name)
        problems = []
        if not dom.isActive():
            problems.append('not running')
        if not dom.isPersistent():
            problems.append('not persistent')
        elif dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE) \
                != saved_xml:
            problems.append('inactive XML changed')
        if dom.blockJobInfo(DISK, 0):
            problems.append(f'block job left: {dom.blockJobInfo(DISK, 0)}')
        if self.fs_frozen(dom):
            problems.append('file systems still frozen')
        src = re.search(r"<source file='([^']+)'", dom.XMLDesc(0)).group(1)
        if src != g.disks[0]['path']:
            problems.append(f'disk source is now {src}')
        left = os.listdir(self.work)
        if left:
            problems.append(f'files left in {self.work}: {left}')
        snaps = os.listdir(self.agent.snapshot_dir)
        if snaps:
            problems.append(f'snapshots left in {self.agent.snapshot_dir}: {snaps}')
        if problems:
            raise BenchError(f'{g.name} not back to its state: {"; ".join(problems)}')

    def verify(self, img, what):
        ok, out = labmod.fsck_clean(img, tmpdir=self.work)
        if not ok:
            raise BenchError(f'{what}: {img} is not clean:\n{out}')
        nums = labmod.read_records(img, tmpdir=self.work)
        if not labmod.records_contiguous(nums):
            raise BenchError(f'{what}: records in {img} not contiguous '
                             f'({len(nums)} records: {nums[:3]}...{nums[-3:]})')
        return len(nums), out.splitlines()[0]

    # -- reference orders -----------------------------------------------------------
    def create_delta(self, top, delta, shallow=True):
        """What Nova does before the copy: look at the disk, create the delta."""
        info = json.loads(run(['qemu-img', 'info', '-U', '--output=json', top]))
        size = str(info['virtual-size'])
        if shallow:
            backing = info.get('full-backing-filename') or info['backing-filename']
            bfmt = info.get('backing-filename-format', 'qcow2')
            run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', bfmt, '-b', backing,
                 delta, size])
        else:
            run(['qemu-img', 'create', '-q', '-f', 'qcow2', delta, size])

    def flatten(self, delta, out):
        run(['qemu-img', 'convert', '-O', 'qcow2', delta, out])

    def poll_until_ready(self, dom):
        polls = 0
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            polls += 1
            info = dom.blockJobInfo(DISK, 0)
            if not info:
                raise BenchError('the copy job disappeared while polling')
            if info['end'] != 0 and info['cur'] == info['end']:
                return polls
            if time.monotonic() > deadline:
                raise BenchError(f'copy not complete after {READY_TIMEOUT_S}s: {info}')
            time.sleep(POLL_S)

    def freeze(self, dom):
        n = dom.fsFreeze(None, 0)
        if n < 1:
            raise BenchError(f'fsFreeze froze {n} file systems')
        return now_ms()

    def reference(self, method, g, tag):
        """seed / nova / floor / floor-direct; returns the figures and the image."""
        dom = self.dom(g.name)
        top = g.disks[0]['path']
        delta = os.path.join(self.work, f'{tag}.delta.qcow2')
        out = os.path.join(self.work, f'{tag}.qcow2')
        r = {}
        frozen = undefined = copying = False
        saved = None
        try:
            t0 = now_ms()
            if method in ('seed', 'nova'):
                saved = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE |
                                    libvirt.VIR_DOMAIN_XML_SECURE)
            direct = method == 'floor-direct'
            self.create_delta(top, out if direct else delta, shallow=not direct)
            t_delta = now_ms()
            r['delta_ms'] = t_delta - t0

            if method == 'seed':
                t_freeze = now_ms()
                frozen = True
                r['fsfreeze_call_ms'] = self.freeze(dom) - t_freeze
            if method in ('seed', 'nova'):
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
                undefined = True
                t_copy = now_ms()
                dom.blockRebase(DISK, delta, 0, libvirt.VIR_DOMAIN_BLOCK_REBASE_COPY |
                                libvirt.VIR_DOMAIN_BLOCK_REBASE_REUSE_EXT |
                                libvirt.VIR_DOMAIN_BLOCK_REBASE_SHALLOW)
                copying = True
                r['polls'] = self.poll_until_ready(dom)
            else:
                flags = (libvirt.VIR_DOMAIN_BLOCK_COPY_REUSE_EXT |
                         libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB)
                if not direct:
                    flags |= libvirt.VIR_DOMAIN_BLOCK_COPY_SHALLOW
                dest = (f"<disk type='file'><source file='{out if direct else delta}'/>"
                        "<driver type='qcow2'/></disk>")
                mark = self.lv.mark()
                t_copy = now_ms()
                dom.blockCopy(DISK, dest, None, flags)
                copying = True
                t_ready = self.lv.wait_block_job(g.name, DISK, mark, READY_TIMEOUT_S)
                r['ready_event_ms'] = t_ready - t_copy
            r['ready_ms'] = now_ms() - t_copy

            if method != 'seed':
                t_freeze = now_ms()
                frozen = True
                r['fsfreeze_call_ms'] = self.freeze(dom) - t_freeze
            t_abort = now_ms()
            dom.blockJobAbort(DISK, 0)
            copying = False
            t_copy_end = now_ms()
            if undefined:
                self.lv.conn.defineXML(saved)
                undefined = False
                r['define_ms'] = now_ms() - t_copy_end
            t = now_ms()
            dom.fsThaw(None, 0)
            frozen = False
            t_thaw = now_ms()
            r['thaw_call_ms'] = t_thaw - t
            if not direct:
                self.flatten(delta, out)
            t_end = now_ms()
        finally:
            # Put the guest back even if a step failed (then the bench aborts).
            if copying:
                try:
                    dom.blockJobAbort(DISK, 0)
                except libvirt.libvirtError as e:
                    log(f'cleanup: abort: {e}')
            if undefined:
                try:
                    self.lv.conn.defineXML(saved)
                except libvirt.libvirtError as e:
                    log(f'cleanup: define: {e}')
            if frozen:
                try:
                    dom.fsThaw(None, 0)
                except libvirt.libvirtError as e:
                    log(f'cleanup: thaw: {e}')
        r.update({
            'freeze_ms': t_thaw - t_freeze,
            'copy_ms': t_copy_end - t_copy,
            'flatten_ms': (t_end - t_thaw) if not direct else 0.0,
            'total_ms': t_end - t0,
            'abort_ms': t_copy_end - t_abort,
        })
        if os.path.exists(delta):
            os.unlink(delta)
        return r, out, [out]

    # -- virtsnap ---------------------------------------------------------------------
    def virtsnap(self, method, g, tag):
        copy = method.split('-', 1)[1]
        props, wall = self.agent.snapshot(g.name, copy)
        if props.get('State') != 'succeeded':
            raise BenchError(f'virtsnap job {props.get("path")} {props.get("State")}: '
                             f'{props.get("ErrorName")}: {props.get("Error")}\n'
                             f'{procs.tail(self.agent.log, 20)}')
        res = props['Result']
        if not res.get('quiesced'):
            raise BenchError(f'virtsnap did not quiesce: {res.get("quiesce-note")}')
        img = res['disks'][0]['image']
        r = {
            'freeze_ms': float(res['freeze-ms']),
            'copy_ms': float(res['copy-ms']),
            'flatten_ms': float(res['flatten-ms']),
            'total_ms': wall,
            'agent_total_ms': float(res['total-ms']),
            'create_call_ms': props['call_ms'],     # CreateSnapshot round trip
            'job': props['path'],
            'snapshot_id': res['snapshot-id'],
            'phases': self.agent.phases(int(props['Id'])),
        }
        return r, img, res['snapshot-id']

    # -- one run -----------------------------------------------------------------------
    def one(self, method, g, size, rep):
        dom = self.dom(g.name)
        saved_xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
        tag = f'{method}-{size}-{rep}'
        foreign = foreign_load(self.lab.workdir)
        waited = 0.0
        if foreign and self.args.quiet_wait > 0:
            t = time.monotonic()
            log(f'other QEMU/qemu-img processes are running ({foreign}); waiting up to '
                f'{self.args.quiet_wait:g}s for them to end')
            while foreign and time.monotonic() - t < self.args.quiet_wait:
                time.sleep(1)
                foreign = foreign_load(self.lab.workdir)
            waited = time.monotonic() - t
            if not foreign:
                time.sleep(min(5.0, self.args.quiet_wait))   # let their clean-up finish
        load = loadavg()
        if method.startswith('virtsnap'):
            r, img, snap = self.virtsnap(method, g, tag)
        else:
            r, img, files = self.reference(method, g, tag)
        foreign_end = foreign_load(self.lab.workdir)
        nrec, journal = self.verify(img, f'{method} {size} MiB rep {rep}')
        r.update({'method': method, 'size_mib': size, 'rep': rep, 'records': nrec,
                  'foreign_processes': len(foreign), 'foreign_processes_end': len(foreign_end),
                  'loadavg1': load,
                  'quiet_wait_s': waited,
                  'journal': journal, 'image_bytes': os.stat(img).st_blocks * 512})
        if method.startswith('virtsnap'):
            self.agent.delete(snap)
        else:
            for f in files:
                os.unlink(f)
        self.check_guest(g, saved_xml)
        os.sync()
        time.sleep(self.args.pause)
        which = 'warm-up' if rep <= 0 else f'rep {rep}'
        log(f'{method:17s} {size:4d} MiB {which}: freeze {r["freeze_ms"]:7.1f}  '
            f'copy {r["copy_ms"]:7.1f}  flatten {r["flatten_ms"]:7.1f}  '
            f'total {r["total_ms"]:7.1f} ms  ({nrec} records, {journal})')
        return r


# --------------------------------------------------------------------------
# report

def med(xs):
    return statistics.median(xs) if xs else float('nan')


def summarize(runs, methods, sizes):
    summ = {}
    for m in methods:
        for s in sizes:
            rs = [r for r in runs if r['method'] == m and r['size_mib'] == s and r['rep'] > 0]
            if not rs:
                continue
            fz = [r['freeze_ms'] for r in rs]
            summ[(m, s)] = {
                'n': len(rs),
                'freeze': med(fz), 'freeze_min': min(fz), 'freeze_max': max(fz),
                'copy': med([r['copy_ms'] for r in rs]),
                'flatten': med([r['flatten_ms'] for r in rs]),
                'total': med([r['total_ms'] for r in rs]),
            }
    return summ


def ratio(a, b):
    return a / b if b else float('nan')


def print_table(summ, methods, sizes):
    hdr = (f'{"method":40s} {"delta":>6s} | {"freeze med (min-max)":>22s} | {"copy":>7s} | '
           f'{"flatten":>7s} | {"total":>7s} | {"frz/floor":>9s} {"tot/floor":>9s} | '
           f'{"frz/nova":>8s} {"tot/nova":>8s}')
    print()
    print('All times in ms, medians over the repetitions; ratios use the medians of the '
          'same delta size.')
    print(hdr)
    print('-' * len(hdr))
    for s in sizes:
        fl = summ.get(('floor', s))
        nv = summ.get(('nova', s))
        for m in methods:
            x = summ.get((m, s))
            if not x:
                continue
            fz = f'{x["freeze"]:.0f} ({x["freeze_min"]:.0f}-{x["freeze_max"]:.0f})'
            cols = [f'{LABELS[m]:40s} {s:4d}Mi', f'{fz:>22s}', f'{x["copy"]:7.0f}',
                    f'{x["flatten"]:7.0f}', f'{x["total"]:7.0f}']
            rf = (f'{ratio(x["freeze"], fl["freeze"]):8.2f}x {ratio(x["total"], fl["total"]):8.2f}x'
                  if fl else f'{"-":>9s} {"-":>9s}')
            rn = (f'{ratio(x["freeze"], nv["freeze"]):7.2f}x {ratio(x["total"], nv["total"]):7.2f}x'
                  if nv else f'{"-":>8s} {"-":>8s}')
            print(' | '.join(cols + [rf, rn]))
        print('-' * len(hdr))


def print_phases(runs, methods, sizes):
    rows = []
    for m in methods:
        if not m.startswith('virtsnap'):
            continue
        for s in sizes:
            rs = [r for r in runs if r['method'] == m and r['size_mib'] == s and r['rep'] > 0
                  and r.get('phases')]
            if not rs:
                continue
            names = []
            for r in rs:
                for n, _ in r['phases']:
                    if n not in names:
                        names.append(n)
            parts = []
            for n in names:
                vals = [sum(d for pn, d in r['phases'] if pn == n) for r in rs]
                parts.append(f'{n} {med(vals):.0f}')
            rows.append(f'  {LABELS[m]:24s} {s:4d} MiB: ' + ', '.join(parts))
    if rows:
        print('\nvirtsnap phases from the agent log (ms, medians; log resolution 1 ms):')
        print('\n'.join(rows))


def evaluate(summ, sizes):
    lines, results = [], []
    for mode in ('shallow', 'direct'):
        m = f'virtsnap-{mode}'
        have = [s for s in sizes if (m, s) in summ and ('floor', s) in summ]
        if not have:
            continue
        worst = max(ratio(summ[(m, s)]['freeze'], summ[('floor', s)]['freeze']) for s in have)
        per = ', '.join(f'{s} MiB {summ[(m, s)]["freeze"]:.0f} vs '
                        f'{summ[("floor", s)]["freeze"]:.0f} ms = '
                        f'{ratio(summ[(m, s)]["freeze"], summ[("floor", s)]["freeze"]):.2f}x'
                        for s in have)
        ok1 = worst <= FREEZE_VS_FLOOR
        fz = [summ[(m, s)]['freeze'] for s in have]
        if len(fz) > 1:
            spread = max(fz) / min(fz) if min(fz) > 0 else float('inf')
            diff = max(fz) - min(fz)
            ok2 = spread <= FREEZE_SIZE_SPREAD or diff <= FREEZE_SIZE_SLACK_MS
            ind = (f'medians {", ".join(f"{v:.0f}" for v in fz)} ms over {have} MiB: '
                   f'max/min {spread:.2f} (limit {FREEZE_SIZE_SPREAD}) or '
                   f'diff {diff:.0f} ms (limit {FREEZE_SIZE_SLACK_MS:.0f})')
        else:
            ok2, ind = True, 'only one size measured: not evaluated'
        ok = ok1 and ok2
        lines.append(f'{"PASS" if ok else "FAIL"}  [{mode}] virtsnap freeze window within '
                     f'{FREEZE_VS_FLOOR}x of the libvirt API floor, and independent of delta '
                     f'size')
        lines.append(f'        vs floor: {per} -> {"ok" if ok1 else "MISSED"}')
        lines.append(f'        size independence: {ind} -> {"ok" if ok2 else "MISSED"}')
        results.append({'target': 'freeze', 'copy': mode, 'pass': ok, 'worst_ratio': worst,
                        'size_independent': ok2})

        have = [s for s in sizes if (m, s) in summ and ('nova', s) in summ]
        if have:
            worst = max(ratio(summ[(m, s)]['total'], summ[('nova', s)]['total']) for s in have)
            ok = worst <= TOTAL_VS_NOVA
            per = ', '.join(f'{s} MiB {summ[(m, s)]["total"]:.0f} vs '
                            f'{summ[("nova", s)]["total"]:.0f} ms = '
                            f'{ratio(summ[(m, s)]["total"], summ[("nova", s)]["total"]):.2f}x'
                            for s in have)
            lines.append(f'{"PASS" if ok else "FAIL"}  [{mode}] virtsnap total time to a finished '
                         f'image at most {TOTAL_VS_NOVA}x of Nova\'s order')
            lines.append(f'        {per}')
            results.append({'target': 'total', 'copy': mode, 'pass': ok, 'worst_ratio': worst})
    print('\nTargets:')
    print('\n'.join(lines))
    return results


# --------------------------------------------------------------------------
# main

def measure_idle(agent, seconds):
    time.sleep(2)      # let the start-up settle
    a = agent.proc_sample()
    time.sleep(seconds)
    b = agent.proc_sample()
    hz = os.sysconf('SC_CLK_TCK')
    idle = {
        'seconds': seconds, 'clk_tck': hz,
        'ticks': b['ticks'] - a['ticks'], 'utime': b['utime'] - a['utime'],
        'stime': b['stime'] - a['stime'],
        'cpu_ms': (b['ticks'] - a['ticks']) * 1000.0 / hz,
        'vol_ctxt': b['vol_ctxt'] - a['vol_ctxt'],
        'nonvol_ctxt': b['nonvol_ctxt'] - a['nonvol_ctxt'],
        # threads alive at the end (a thread that ended meanwhile is not counted)
        'vol_ctxt_all_threads': sum(v - a['vol_ctxt_per_thread'].get(t, 0)
                                    for t, v in b['vol_ctxt_per_thread'].items()),
        'threads_before': a['threads'],
        'vmrss_kib': b['vmrss_kib'], 'vmhwm_kib': b['vmhwm_kib'], 'threads': b['threads'],
    }
    return idle


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--sizes', default='16,256',
                   help='delta sizes in MiB, comma-separated (default 16,256)')
    p.add_argument('--reps', type=int, default=3, help='repetitions per method and size '
                   '(default 3; the median is reported)')
    p.add_argument('--warmup', type=int, default=1,
                   help='rounds of all methods per size before the measured ones; checked '
                   'like the others but not counted (default 1)')
    p.add_argument('--methods', default=','.join(METHODS),
                   help=f'comma-separated subset of {",".join(METHODS)}')
    p.add_argument('--json', metavar='FILE', help='save the raw figures to FILE')
    p.add_argument('--agent-log', metavar='FILE', help="copy virtsnapd's --verbose log to FILE")
    p.add_argument('--idle-seconds', type=float, default=10.0,
                   help='how long the idle agent is watched (default 10; 0 skips it)')
    p.add_argument('--pause', type=float, default=1.0,
                   help='seconds to wait after each run (after sync) (default 1)')
    p.add_argument('--quiet-wait', type=float, default=120.0,
                   help='before each run, wait up to this many seconds while QEMU or '
                   'qemu-img processes that are not of this lab are running (default 120; '
                   'runs made with them anyway are flagged)')
    p.add_argument('--check-targets', action='store_true',
                   help='exit with status 2 if a target is missed')
    a = p.parse_args(argv)
    try:
        a.sizes = [int(x) for x in a.sizes.split(',') if x.strip()]
    except ValueError:
        p.error('--sizes: whole MiB numbers, comma-separated')
    if not a.sizes or any(s <= 0 for s in a.sizes):
        p.error('--sizes: positive numbers')
    a.methods = [m.strip() for m in a.methods.split(',') if m.strip()]
    bad = [m for m in a.methods if m not in METHODS]
    if bad:
        p.error(f'--methods: unknown {bad}; choose from {METHODS}')
    if a.reps < 1:
        p.error('--reps must be >= 1')
    if a.warmup < 0:
        p.error('--warmup must be >= 0')
    return a


def main(argv):
    args = parse_args(argv)
    t_start = time.monotonic()
    if args.json:
        # fail early, not after the whole run
        with open(args.json, 'a'):
            pass
    meta = {
        'started': time.strftime('%Y-%m-%dT%H:%M:%S%z'), 'host': platform.node(),
        'kernel': platform.release(), 'cpus': os.cpu_count(),
        'libvirt': libvirt.getVersion(), 'sizes_mib': args.sizes, 'reps': args.reps,
        'methods': args.methods, 'poll_s': POLL_S, 'virtsnapd': VIRTSNAPD,
    }
    qemu = subprocess.run(['qemu-img', '--version'], capture_output=True, text=True).stdout
    meta['qemu_img'] = qemu.splitlines()[0] if qemu else ''
    try:
        meta['virtsnapd_version'] = subprocess.run(
            [VIRTSNAPD, '--version'], capture_output=True, text=True).stdout.strip()
        meta['virtsnapd_mtime'] = time.strftime(
            '%Y-%m-%dT%H:%M:%S', time.localtime(os.stat(VIRTSNAPD).st_mtime))
    except OSError:
        pass
    git = subprocess.run(['git', '-c', 'safe.directory=*', '-C', REPO, 'rev-parse', 'HEAD'],
                         capture_output=True, text=True)
    meta['git_head'] = git.stdout.strip() if git.returncode == 0 else None
    agent = lv = None
    runs = []
    idle = None
    aborted = None
    with labmod.Lab() as lab:
        log(f'lab up in {lab.timings["start"]:.1f}s ({lab.workdir})')
        guests = {}
        for s in args.sizes:
            t = time.monotonic()
            guests[s] = lab.make_guest(f'bench{s}', disks=1, agent=True, backing=True,
                                       top_data_mib=s)
            log(f'guest bench{s}: {s} MiB in the top overlay, made in '
                f'{time.monotonic() - t:.1f}s')
        try:
            lv = Libvirt(lab.libvirt_uri)
            agent = Agent(lab)
            agent.start()
            bench = Bench(lab, lv, agent, args)
            first = guests[args.sizes[0]]
            first.start()
            first.wait_ready(120)
            if args.idle_seconds > 0:
                log(f'idle agent: {len(guests)} guests defined, {first.name} running; '
                    f'watching for {args.idle_seconds:g}s')
                idle = measure_idle(agent, args.idle_seconds)
                idle['guests_defined'] = len(guests)
                idle['guests_running'] = 1
            for s in args.sizes:
                g = guests[s]
                if g.state() != 'running':
                    g.start()
                    g.wait_ready(120)
                time.sleep(2)     # the record writer is going
                info = labmod.image_chain(g.disks[0]['path'])
                log(f'{g.name}: top {info[0]["actual-size"] / 2**20:.1f} MiB on disk, '
                    f'base {info[1]["actual-size"] / 2**20:.1f} MiB, '
                    f'virtual {info[0]["virtual-size"] / 2**20:.0f} MiB')
                # warm-up rounds have rep <= 0; each round starts with another
                # method (the order rotates)
                for rep in range(1 - args.warmup, args.reps + 1):
                    k = (rep - 1) % len(args.methods)
                    order = args.methods[k:] + args.methods[:k]
                    for m in order:
                        r = bench.one(m, g, s, rep)
                        r['warmup'] = rep <= 0
                        runs.append(r)
                g.destroy()
        except (BenchError, labmod.LabError) as e:
            aborted = f'{type(e).__name__}: {e}'
            print(f'\nBENCHMARK ABORTED: {aborted}', file=sys.stderr, flush=True)
        finally:
            bench_runs = runs
            if agent:
                agent.stop()
                if args.agent_log:
                    try:
                        shutil.copyfile(agent.log, args.agent_log)
                    except OSError as e:
                        log(f'cannot copy the agent log: {e}')
            if lv:
                lv.close()
    wall = time.monotonic() - t_start

    if aborted:
        print('\nBENCHMARK ABORTED; the figures below are partial.')
    busy = [r for r in bench_runs
            if r.get('foreign_processes') or r.get('foreign_processes_end')]
    if busy:
        print(f'\nWARNING: at the start or end of {len(busy)} of {len(bench_runs)} runs other '
              'QEMU/qemu-img processes (not of this lab) were running on this machine; those '
              'figures may be skewed: ' +
              ', '.join(f'{r["method"]}/{r["size_mib"]}/{r["rep"]}' for r in busy))
    summ = summarize(bench_runs, args.methods, args.sizes)
    print_table(summ, args.methods, args.sizes)
    print_phases(bench_runs, args.methods, args.sizes)
    targets = evaluate(summ, args.sizes)
    if idle:
        print(f'\nIdle agent ({idle["guests_defined"]} guests defined, '
              f'{idle["guests_running"]} running, {idle["seconds"]:g} s): '
              f'{idle["ticks"]} CPU ticks ({idle["utime"]} user + {idle["stime"]} sys, '
              f'{idle["cpu_ms"]:.0f} ms at {idle["clk_tck"]} Hz), '
              f'{idle["vol_ctxt"]} voluntary context switches (main thread; '
              f'{idle["vol_ctxt_all_threads"]} over all threads; {idle["threads_before"]}->'
              f'{idle["threads"]} threads), '
              f'VmRSS {idle["vmrss_kib"]} KiB (peak {idle["vmhwm_kib"]} KiB)')
    print(f'\nwall time: {wall:.0f} s')
    if args.json:
        data = {
            'meta': dict(meta, wall_s=wall, aborted=aborted, warmup=args.warmup),
            'idle': idle, 'runs': bench_runs,
            'summary': [dict(v, method=m, size_mib=s) for (m, s), v in summ.items()],
            'targets': targets,
        }
        with open(args.json, 'w') as f:
            json.dump(data, f, indent=1)
        print(f'raw figures: {args.json}')
    if aborted:
        print(f'\nBENCHMARK ABORTED: {aborted}', file=sys.stderr)
        return 1
    if args.check_targets and not all(t['pass'] for t in targets):
        return 2
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as e:
        print(f'\nBENCHMARK ABORTED: {e}', file=sys.stderr)
        sys.exit(1)
