# SPDX-License-Identifier: LGPL-2.1-or-later
"""What the hook suite and latency.py share: the built programs, the agent
under test (a real virtsnapd, as root, on the system lab's private bus and
qemu:///system) and the environment the installed hook wrapper gets.

Environment: VIRTSNAP_BUILD_DIR (default <repo>/build) holds virtsnapd,
virtsnapctl and virtsnap-hook; VIRTSNAP_LAB_ASSETS the guest kernel+initramfs."""

import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, 'tests', 'lab'))

import system  # noqa: E402

import gi  # noqa: E402

gi.require_version('Gio', '2.0')
from gi.repository import Gio, GLib  # noqa: E402

BUILD = os.path.abspath(os.environ.get('VIRTSNAP_BUILD_DIR', os.path.join(REPO, 'build')))
VIRTSNAPD = os.path.join(BUILD, 'agent', 'virtsnapd')
VIRTSNAPCTL = os.path.join(BUILD, 'tools', 'virtsnapctl')
HOOK = os.path.join(BUILD, 'hooks', 'virtsnap-hook')
BUS_NAME = 'org.virtsnap.Agent1'
AGENT_PATH = '/org/virtsnap/Agent1'
FINAL_STATES = ('succeeded', 'failed', 'cancelled', 'interrupted')


def sanitizer_env():
    """The sanitizer options of a CI build (run-tests sets them), if any."""
    return {k: os.environ[k] for k in ('ASAN_OPTIONS', 'UBSAN_OPTIONS') if k in os.environ}


def hook_env(lab):
    """What the wrapper at /etc/libvirt/hooks/qemu.d/virtsnap sets: libvirtd
    gives hooks only PATH, HOME and LC_ALL, so the bus (and the sanitizer
    options) must be written into it."""
    return dict(sanitizer_env(), VIRTSNAP_HOOK_BUS_ADDRESS=lab.bus_address)


class Agent:
    """A real virtsnapd on the system lab's bus, with its own directories."""

    def __init__(self, lab, name='agent'):
        self.lab = lab
        self.dir = lab.path('agent', name)
        self.log = os.path.join(self.dir, 'virtsnapd.log')
        self.config = os.path.join(self.dir, 'virtsnapd.conf')
        os.makedirs(self.dir, exist_ok=True)
        with open(self.config, 'w') as f:
            f.write('[agent]\n')
        self.proc = None
        self.bus = Gio.DBusConnection.new_for_address_sync(
            lab.bus_address, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT |
            Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)

    def start(self):
        env = dict(os.environ, G_DEBUG='fatal-criticals')
        self.proc = subprocess.Popen(
            [VIRTSNAPD, '--verbose', '--config', self.config, '--bus-address',
             self.lab.bus_address, '--uri', self.lab.libvirt_uri,
             '--snapshot-dir', os.path.join(self.dir, 'snapshots'),
             '--state-dir', os.path.join(self.dir, 'state')],
            stdout=open(self.log, 'a'), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f'virtsnapd exited: {self.log_text()[-2000:]}'
            try:
                if self.prop('Connected'):
                    return self
            except GLib.Error:
                pass
            time.sleep(0.05)
        raise AssertionError(f'virtsnapd not ready: {self.log_text()[-2000:]}')

    def stop(self):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGCONT)  # a test may have stopped it
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(90)
        self.proc = None
        assert code == 0, f'virtsnapd exit code {code}: {self.log_text()[-3000:]}'
        assert 'CRITICAL' not in self.log_text(), self.log_text()[-3000:]

    def log_text(self):
        with open(self.log, errors='replace') as f:
            return f.read()

    def prop(self, name):
        reply = self.bus.call_sync(BUS_NAME, AGENT_PATH, 'org.freedesktop.DBus.Properties', 'Get',
                                   GLib.Variant('(ss)', (BUS_NAME, name)), None,
                                   Gio.DBusCallFlags.NONE, 10000, None)
        return reply.unpack()[0]

    def hook_counts(self):
        return dict(self.prop('HookCounts'))

    def wait_counts(self, expected, timeout=15):
        """Wait until HookCounts holds at least *expected* (operation -> n)."""
        deadline = time.monotonic() + timeout
        while True:
            counts = self.hook_counts()
            if all(counts.get(k, 0) >= v for k, v in expected.items()):
                return counts
            if time.monotonic() > deadline:
                raise AssertionError(f'hook counts {counts}, expected at least {expected}')
            time.sleep(0.05)

    def ctl(self, *args, timeout=60):
        return subprocess.run([VIRTSNAPCTL, '--address', self.lab.bus_address, *args],
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def ctl_json(self, *args):
        res = self.ctl('--json', *args)
        assert res.returncode == 0, f'virtsnapctl {" ".join(args)}: {res.stderr}'
        return json.loads(res.stdout)

    def job(self, job_id):
        """A job as `virtsnapctl --json job ID` shows it, keys lower-cased."""
        return {k.lower(): v for k, v in self.ctl_json('job', str(job_id)).items()}


# -- libvirtd's log of the hook runs (SystemLab(log_commands=True)) ------------------

def log_offset(lab):
    try:
        return os.path.getsize(lab.libvirtd_log)
    except OSError:
        return 0


def log_since(lab, offset):
    with open(lab.libvirtd_log, 'rb') as f:
        f.seek(offset)
        return f.read().decode(errors='replace')


_RUN = re.compile(r"^(\S+ \S+): (\d+): debug : virCommandRunAsync:\d+ : About to run .*"
                  + re.escape(system.HOOK_PATH) + r" (\S*) (\S*)")
_RESULT = re.compile(r"^(\S+ \S+): (\d+): debug : virCommandRun:\d+ : Result status (\d+), "
                     r"stdout: '(.*?)' stderr: '(.*)")


def _stamp(text):
    return datetime.datetime.strptime(text, '%Y-%m-%d %H:%M:%S.%f%z').timestamp()


def hook_runs(lab, offset):
    """The hook's runs that libvirtd logged since *offset*, as dicts: domain,
    operation, seconds (as libvirtd waited for it), status, stdout, stderr
    (first line).  Refused runs are not in it (libvirtd logs them as errors)."""
    runs, pending = [], {}
    for line in log_since(lab, offset).splitlines():
        if m := _RUN.match(line):
            pending[m[2]] = {'domain': m[3], 'operation': m[4], 't0': _stamp(m[1])}
        elif (m := _RESULT.match(line)) and m[2] in pending:
            run = pending.pop(m[2])
            stderr = m[5][:-1] if m[5].endswith("'") else m[5]  # a one-line stderr ends there
            run.update(seconds=_stamp(m[1]) - run.pop('t0'), status=int(m[3]), stdout=m[4],
                       stderr=stderr)
            runs.append(run)
    return runs
