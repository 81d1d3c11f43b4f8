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
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, 'tests', 'lab'))

import agent as agentmod  # noqa: E402
import system  # noqa: E402
from agent import FINAL_STATES, sanitizer_env  # noqa: E402,F401  (the tests import them here)

BUILD = os.path.abspath(agentmod.build_dir())
VIRTSNAPD, VIRTSNAPCTL = agentmod.built_programs(BUILD)
HOOK = os.path.join(BUILD, 'hooks', 'virtsnap-hook')


def hook_env(lab):
    """What the wrapper at /etc/libvirt/hooks/qemu.d/virtsnap sets: libvirtd
    gives hooks only PATH, HOME and LC_ALL, so the bus (and the sanitizer
    options) must be written into it."""
    return dict(sanitizer_env(), VIRTSNAP_HOOK_BUS_ADDRESS=lab.bus_address)


class Agent(agentmod.Agent):
    """The shared agent wrapper (tests/lab/agent.py), as root on the system lab's
    private bus (--bus-address) and qemu:///system, plus the hook's counters."""

    def __init__(self, lab, name='agent'):
        super().__init__(lab, name, programs=(VIRTSNAPD, VIRTSNAPCTL),
                         dir=lab.path('agent', name), ready_timeout=20)

    def prop(self, name, **kw):
        return super().prop(name, **dict({'timeout': 10}, **kw))

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
        return super().ctl(*args, timeout=timeout)

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
