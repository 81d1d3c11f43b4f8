# SPDX-License-Identifier: LGPL-2.1-or-later
"""The fault matrix: at every step of every snapshot method the agent is killed (SIGKILL,
at the step's start, and for steps with a child process or a libvirt job in flight also a
moment later) or the step fails (an injected IO error at the end of its work). After each
point -- a restarted agent having repaired what the journal says -- the domain must be as
it was: same state, persistent, same inactive XML, no block job, guest thawed, no managed
save of ours, no partial folder, delta, .part or journal record, no qemu-img left, and the
job shown interrupted (kill) or failed with IO (error).

Needs an agent built with -Dfault_injection=true (run-tests' build-ci): it reads
VIRTSNAP_FAULT=METHOD:PHASE:ACTION[:DELAY_MS]. One guest serves every method (live, the
legacy undefine path, cold on the running guest, then offline once it is shut off; then
a clone -- instant and full -- of one of its snapshots, and a revert to it). The
matrix goes to <stage>/results/fault-matrix-MODE.txt and, through conftest's
pytest_terminal_summary, to the run's output."""

import os
import re
import signal
import subprocess
import time

import pytest
from gi.repository import GLib

import conftest
from conftest import MODE, Agent
from test_rbd import ceph, rbdguest  # noqa: F401  (fixtures: test_rbd's Ceph and guest)

# What a clean run of each method goes through (Job1.Phase, in order), as the method
# tables in agent/vs-job-*.c have it; test_fault_point[...-clean] checks it against the
# agent's own log. delayed: steps that get a second kill while their work is in flight:
# 'child': as soon as the step's qemu-img has started (VIRTSNAP_FAULT ...:kill:child);
# 'held': 300 ms into a managed save that cannot end before the agent is dead and the next
# one repairs (the guest's QEMU is stopped meanwhile) -- libvirt finishes it only then.
METHODS = {
    # (compress: a delta that needs no conversion is only renamed, with no qemu-img to kill)
    'live': dict(word='live', options={},
                 phases=['prepare', 'copy', 'wait-ready', 'freeze-window', 'flatten', 'catalog'],
                 delayed={'flatten': 'child'}, child_options={'compress': True}),
    'legacy': dict(word='live', options={'legacy_undefine': True},
                   phases=['prepare', 'copy', 'wait-ready', 'freeze-window', 'redefine',
                           'flatten', 'catalog'],
                   delayed={}),
    'cold': dict(word='cold', options={'method': 'cold'},
                 phases=['prepare', 'save', 'extract', 'restore', 'catalog'],
                 delayed={'save': 'held', 'extract': 'child'}),
    'offline': dict(word='cold', options={},
                    phases=['prepare', 'extract', 'catalog'],
                    delayed={'extract': 'child'}),
    'rbd': dict(word='rbd', options={},
                phases=['prepare', 'freeze-window', 'clone', 'catalog'],
                delayed={}),
    # On the shut-off guest, of one of its snapshots (SNAP): a clone named 'fclone' (the
    # clean run's is 'fclone-ok'); a revert to an older content (its write-back ends only
    # after every disk is written, and the journal record with it).
    'clone': dict(word='clone', options={'name': 'fclone'},
                  phases=['prepare', 'overlay', 'define', 'catalog'],
                  delayed={'overlay': 'child'}),
    'clonefull': dict(word='clone', options={'name': 'fclone', 'full': True},
                      phases=['prepare', 'copy', 'define', 'catalog'],
                      delayed={'copy': 'child'}),
    'revert': dict(word='revert', options={},
                   phases=['prepare', 'extract', 'catalog', 'write-back'],
                   delayed={'extract': 'child', 'write-back': 'child'}),
}
# offline after the methods of a running guest: it shuts the shared guest down; clone and
# revert need it shut off.
ORDER = ['live', 'legacy', 'cold', 'rbd', 'offline', 'clone', 'clonefull', 'revert']
# What the clone and revert points share: the snapshot they use, the disk's content before.
SNAP = {}
RBD_CONFIG = '\n[rbd]\ndest_pool = vsdest\nconnect_timeout_s = 3\n'


def _points():
    points = []
    for name in ORDER:
        m = METHODS[name]
        points.append((name, '-', 'clean', 0))
        for phase in m['phases']:
            points.append((name, phase, 'kill', 0))
            if phase in m['delayed']:
                points.append((name, phase, 'kill', m['delayed'][phase]))
            # An error at the end of the step's work (DELAY_MS > 0), so that its real undo
            # runs -- but catalog's end is the published snapshot: it fails at its start.
            points.append((name, phase, 'error', 0 if phase == 'catalog' else 1))
    points.append(('offline', '-', 'clean', 0))  # the job after the last point works
    points.append(('revert', '-', 'final', 0))  # and a revert: to the snapshot's content
    return points


POINTS = _points()
N_FAULT_POINTS = sum(1 for p in POINTS if p[2] not in ('clean', 'final'))


def _point_id(p):
    return f'{p[0]}-{p[2]}' if p[2] in ('clean', 'final') else f'{p[0]}-{p[1]}-{p[2]}-{p[3]}'


def _matrix_file():
    assets = os.environ.get('VIRTSNAP_LAB_ASSETS', '')
    results = os.path.join(os.path.dirname(assets), 'results') if assets else ''
    if results and os.access(results, os.W_OK):
        return os.path.join(results, f'fault-matrix-{MODE}.txt')
    return None


def _record(line):
    conftest.FAULT_MATRIX.append(line)
    path = _matrix_file()
    if path:
        with open(path, 'w') as f:
            f.write('\n'.join(conftest.FAULT_MATRIX) + '\n')


@pytest.fixture(scope='module')
def guest(lab):
    g = conftest.start_guest(lab, 'faulty', disks=1, agent=True, backing=True)
    path = _matrix_file()
    if path and os.path.exists(path):
        os.unlink(path)
    yield g
    conftest.remove_guest(g)


def rbd_leftovers(ceph):
    """Our snapshot on the source image, our clone in the destination pool."""
    return ([s for s in ceph.snap_names('vs/img') if s.startswith('virtsnap-')] +
            [f'vsdest/{i}' for i in ceph.images('vsdest')])


def managed_save(lab, name):
    return 'Managed save:   yes' in lab.virsh('dominfo', name)


def qemu_img_children(snapshot_dir):
    """qemu-img processes that work in the agent's snapshot directory."""
    found = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                argv = f.read().split(b'\0')
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b'qemu-img' and \
                any(snapshot_dir.encode() in a for a in argv):
            found.append(int(pid))
    return found


def qemu_of(guest):
    """The pid of @guest's QEMU: the one that opens its disk (the other lab mode, running
    side by side, has a guest of the same name)."""
    disk = guest.disks[0]['path'].encode()
    for pid in os.listdir('/proc'):
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                argv = f.read().split(b'\0')
        except OSError:
            continue
        if b'qemu-system' in os.path.basename(argv[0]) and disk in b' '.join(argv):
            return int(pid)
    raise AssertionError(f'no QEMU process for {guest.name}')


def wait_killed(agent, path, timeout=120):
    """The killed agent's exit code; None if its job ended instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = agent.proc.poll()
        if code is not None:
            return code
        try:
            if path and agent.job_props(path)['State'] in conftest.FINAL_STATES:
                time.sleep(1)  # a kill timed after the job's end still comes
                return agent.proc.poll()
        except GLib.Error:
            pass  # dying
        time.sleep(0.05)
    return None


def wait_no_domain_job(lab, guest, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = lab.virsh_result('domjobinfo', guest.name).stdout
        if re.search(r'Job type:\s+None', out) or not out.strip():
            return
        time.sleep(0.1)
    raise AssertionError(f'libvirt job on {guest.name} still running: {out}')


def pid_gone(pid, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f'/proc/{pid}/stat') as f:
                if f.read().rsplit(')', 1)[1].split()[0] == 'Z':
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def snapshot_entries(agent):
    """Everything under the snapshot directory: (hidden names, visible names, stray files)."""
    hidden, visible, stray = [], [], []
    if not os.path.isdir(agent.snapshot_dir):
        return hidden, visible, stray
    for name in os.listdir(agent.snapshot_dir):
        (hidden if name.startswith('.') else visible).append(name)
    for root, _, files in os.walk(agent.snapshot_dir):
        stray += [os.path.join(root, f) for f in files
                  if f.endswith('.part') or '.delta.' in f]
    return sorted(hidden), sorted(visible), stray


def log_size(agent):
    return os.path.getsize(agent.log) if os.path.exists(agent.log) else 0


def phases_of_job(agent, since, job_id=r'\d+'):
    """The phases a job entered, from the agent's log (--verbose: "phase X") after byte
    @since (the agents of this module share one directory, and so one log)."""
    pattern = re.compile(rf'job {job_id} \([^)]*\): phase (\S+)')
    return [m.group(1) for m in pattern.finditer(agent.log_text()[since:])]


def wait_recovery(agent, timeout=90):
    """The recovery job the restarted agent runs (or None when it has none): final props."""
    (jobs,) = agent.call('ListJobs')
    if not jobs:
        return None
    assert len(jobs) == 1, jobs
    return agent.wait_job(jobs[0], timeout=timeout)


def check_domain(lab, agent, guest, expect_state, xml_before, visible_before, ceph=None):
    """What every point must leave; the list of what is wrong (empty: recovered)."""
    wrong = []
    state = guest.state()
    if state != expect_state:
        wrong.append(f'state {state!r}, was {expect_state!r}')
    if not guest.is_persistent():
        wrong.append('not persistent')
    elif guest.inactive_xml() != xml_before:
        wrong.append('inactive XML changed')
    if managed_save(lab, guest.name):
        wrong.append('managed-save image left')
    if state == 'running':
        jobs = guest.block_jobs()
        if jobs:
            wrong.append(f'block jobs {jobs}')
        try:
            guest.wait_agent(60)
            frozen = guest.agent_command('{"execute": "guest-fsfreeze-status"}')
            if frozen != 'thawed':
                wrong.append(f'guest file systems {frozen}')
        except Exception as e:  # noqa: BLE001 -- an agent that does not answer is wrong
            wrong.append(f'guest agent: {e}')
    hidden, visible, stray = snapshot_entries(agent)
    if hidden:
        wrong.append(f'partial folders {hidden}')
    if stray:
        wrong.append(f'stray files {stray}')
    if visible_before is not None and visible != visible_before:
        wrong.append(f'snapshots {sorted(set(visible) - set(visible_before))} appeared')
    if os.path.isdir(agent.state_dir) and os.listdir(agent.state_dir):
        wrong.append(f'journal records {os.listdir(agent.state_dir)}')
    if ceph is not None and rbd_leftovers(ceph):
        wrong.append(f'left in the cluster: {rbd_leftovers(ceph)}')
    children = qemu_img_children(agent.snapshot_dir)
    if children:
        wrong.append(f'qemu-img still running: {children}')
    return wrong


def start_job(agent, guest, name, options):
    """The point's job: a snapshot of @guest, or a clone of / revert to SNAP['id']."""
    if name.startswith('clone'):
        typed = {k: GLib.Variant('b' if isinstance(v, bool) else 's', v)
                 for k, v in options.items()}
        return agent.call('CloneSnapshot', GLib.Variant('(sa{sv})', (SNAP['id'], typed)))[0]
    if name == 'revert':
        return agent.call('RevertSnapshot', GLib.Variant('(sa{sv})', (SNAP['id'], {})))[0]
    return agent.create(guest.name, **options)


def listed_snapshots(agent, guest):
    (listed,) = agent.call('ListSnapshots', GLib.Variant('(s)', (guest.name,)))
    return {s['id']: s for s in listed}


def same_content(image, other, other_format=None):
    """qemu-img compare of what a guest reads from the two (-U: read while others hold)."""
    args = ['qemu-img', 'compare', '-U'] + (['-F', other_format] if other_format else [])
    r = subprocess.run(args + [image, other], capture_output=True, text=True)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode == 0


def domain_uuids(lab):
    return set(lab.virsh('list', '--all', '--uuid').split())


def clone_state(lab, agent, guest):
    """What a clone point must not change: the domains, the clone folders, the snapshot."""
    clones = os.path.join(agent.snapshot_dir, 'clones')
    image = SNAP['image']
    st = os.stat(image)
    return dict(uuids=domain_uuids(lab),
                clones=sorted(os.listdir(clones)) if os.path.isdir(clones) else [],
                image=(st.st_size, st.st_mtime_ns))


def check_clone(lab, agent, guest, before, finished):
    """Nothing of the clone left (by name, by UUID, its folder), the snapshot intact."""
    if finished:
        return []  # a kill after the job's end: the clone stays, as it should
    wrong = []
    if lab.virsh_result('dominfo', 'fclone').returncode == 0:
        wrong.append('clone domain fclone left defined')
    now = clone_state(lab, agent, guest)
    if now['uuids'] != before['uuids']:
        wrong.append(f"domains {sorted(now['uuids'] ^ before['uuids'])} appeared or went")
    if now['clones'] != before['clones']:
        wrong.append(f"clone folders {now['clones']}, were {before['clones']}")
    if now['image'] != before['image']:
        wrong.append("the snapshot's image changed")
    if SNAP['id'] not in listed_snapshots(agent, guest):
        wrong.append('the snapshot is not listed any more')
    return wrong


def check_revert(guest, finished):
    """The disk holds its old content, or (only after a finished revert) the snapshot's."""
    disk = guest.disks[0]['path']
    if finished:
        return [] if same_content(disk, SNAP['image']) else ["disk lacks the snapshot's content"]
    return [] if same_content(disk, SNAP['baseline'], 'raw') else ['disk content changed']


def set_up_snap(lab, agent, guest, name):
    """SNAP: the guest's oldest snapshot (taken while it ran: not what its disk holds now)."""
    if 'id' not in SNAP:
        listed = listed_snapshots(agent, guest)
        SNAP['id'] = min(listed)
        SNAP['image'] = listed[SNAP['id']]['disks'][0]['image']
    if name == 'revert' and 'baseline' not in SNAP:
        # The disk's content before the revert points, to compare each one with; the
        # snapshot's must differ, or a revert that wrote would go unseen.
        SNAP['baseline'] = lab.path('fault-baseline.raw')
        subprocess.run(['qemu-img', 'convert', '-U', '-O', 'raw', guest.disks[0]['path'],
                        SNAP['baseline']], check=True)
        assert not same_content(SNAP['image'], SNAP['baseline'], 'raw')


def run_clean_clone_revert(lab, guest, name, m, final=False):
    a = Agent(lab, name='agent-faults')
    since = log_size(a)
    a.start()
    try:
        set_up_snap(lab, a, guest, 'clone')
        options = dict(m['options'])
        if name.startswith('clone'):
            options['name'] = f'fclone-ok-{name}'
        if name == 'revert' and not final:
            # To the newest snapshot, what the disk holds: the points then revert from it.
            props = a.wait_job(a.call('RevertSnapshot', GLib.Variant(
                '(sa{sv})', (max(listed_snapshots(a, guest)), {})))[0], timeout=180)
            set_up_snap(lab, a, guest, name)
        else:
            props = a.wait_job(start_job(a, guest, name, options), timeout=180)
        assert props['State'] == 'succeeded', props['Error']
        seen = phases_of_job(a, since, props['Id'])
        assert seen == m['phases'] + ['done'], (name, seen)
        if name.startswith('clone'):  # defined; undefined, it holds the snapshot no more
            lab.virsh('undefine', options['name'])
        if final:
            assert check_revert(guest, True) == []
            # Deletable: no clone, export or job of the points holds it.
            a.call('DeleteSnapshot', GLib.Variant('(s)', (SNAP['id'],)))
            assert SNAP['id'] not in listed_snapshots(a, guest)
    finally:
        a.stop()
    assert guest.state() == 'shut off'
    return seen


def run_clean(lab, guest, name, m, ceph=None):
    if name == 'offline' and guest.state() != 'shut off':
        guest.destroy()
        guest.wait_state('shut off')
    a = Agent(lab, name='agent-faults', config=RBD_CONFIG if ceph else '')
    since = log_size(a)
    a.start()
    try:
        props = a.snapshot(guest.name, **m['options'])
        assert props['State'] == 'succeeded', props['Error']
        seen = phases_of_job(a, since, props['Id'])
        # Done after the steps; clear-jobs runs only with force and a foreign job.
        assert seen == m['phases'] + ['done'], (name, seen)
        if ceph is not None:  # the clean run's clone and snap go with its snapshot
            a.call('DeleteSnapshot', GLib.Variant('(s)', (props['Result']['snapshot-id'],)))
            assert rbd_leftovers(ceph) == []
    finally:
        a.stop()
    if name != 'offline':
        assert guest.state() == 'running'
    return seen


def check_clone_revert(lab, agent, guest, name, clone_before, finished):
    if name.startswith('clone'):
        return check_clone(lab, agent, guest, clone_before, finished)
    if name == 'revert':
        return check_revert(guest, finished)
    return []


def run_point(lab, guest, name, m, phase, action, delay, ceph=None):
    """One point; returns (line for the matrix, list of what is wrong)."""
    expect_state = 'running' if name in ('live', 'legacy', 'cold', 'rbd') else 'shut off'
    xml_before = guest.inactive_xml()
    spec = f"{m['word']}:{phase}:{action}:{300 if delay == 'held' else delay}"
    env = dict(os.environ, VIRTSNAP_FAULT=spec)
    config = RBD_CONFIG if ceph else ''
    first = Agent(lab, name='agent-faults', env=env, config=config)
    since = log_size(first)
    first.start()
    _, visible_before, _ = snapshot_entries(first)
    wrong, note = [], ''
    t0 = time.monotonic()
    held = path = None
    options = dict(m['options'], **(m.get('child_options', {}) if delay == 'child' else {}))
    clone_before = clone_state(lab, first, guest) if name.startswith('clone') else None
    finished = False
    try:
        path = start_job(first, guest, name, options)
        if delay == 'held':
            # Once planned (planning asks QEMU) and before the save has got far (it takes
            # longer than this loop's round trips): QEMU stops, and so does the save.
            qemu = qemu_of(guest)
            deadline = time.monotonic() + 30
            while first.job_props(path)['Phase'] not in ('prepare', 'save'):
                assert time.monotonic() < deadline, first.job_props(path)
            os.kill(qemu, signal.SIGSTOP)
            held = qemu
    except GLib.Error:
        if action != 'kill':
            raise  # a kill at once may cut the reply off; anything else is a failure
    if action == 'kill':
        code = wait_killed(first, path)
        if code is None:
            first.stop(check=False)
            if held:
                os.kill(held, signal.SIGCONT)
            return (f'FAIL {name:<7} {spec}: the job ended, the agent was not killed',
                    ['not killed'])
        first.proc = None
        log = first.log_text()[since:]
        if code != -9 or f'fault injection: SIGKILL in phase {phase}' not in log:
            wrong.append(f'agent ended {code}, not by the injected kill')
        if delay == 'child':  # it died with the agent (PDEATHSIG), not at the repair
            child = re.search(r'with child (\d+) running', log)
            if not child:
                wrong.append('the step ran no child')
            elif not pid_gone(int(child.group(1))):
                wrong.append(f'qemu-img {child.group(1)} outlived the agent')
            else:
                note = f' (qemu-img {child.group(1)} died with the agent)'
        if held:  # (virsh domjobinfo would wait for the stopped QEMU: the log tells)
            if ' saved in ' in log:
                wrong.append('the managed save ended before the kill')
            else:
                note = ' (managed save in flight during the repair)'
        had_record = bool(os.path.isdir(first.state_dir) and os.listdir(first.state_dir))
        seen = phases_of_job(first, since)
        finished = 'done' in seen
        if seen and seen[-1] != phase:
            note += f' (killed in {seen[-1]})'  # a delayed kill after the step ended
        if finished:
            visible_before = None  # the job had succeeded: its snapshot stays
        # Only a kill as the job enters prepare comes before its journal record.
        elif had_record != (phase != 'prepare' or delay != 0):
            wrong.append(f'journal record {"left" if had_record else "missing"} at the kill')
        second = Agent(lab, name='agent-faults', config=config)
        since_second = log_size(second)
        second.start()
        try:
            if held:
                # The repair has begun (it must wait for the save); then QEMU goes on.
                deadline = time.monotonic() + 3
                while time.monotonic() < deadline and 'waiting for libvirt' not in \
                        second.log_text()[since_second:]:
                    time.sleep(0.05)
                os.kill(held, signal.SIGCONT)
                held = None
            props = wait_recovery(second)
            if delay == 'held':  # what the save does after the repair counts too
                wait_no_domain_job(lab, guest)
            if had_record:
                if props is None:
                    wrong.append('no recovery job')
                elif props['State'] != 'interrupted':
                    wrong.append(f"recovery job {props['State']}: {props['Error']}")
                elif f'interrupted by an agent restart in phase' not in props['Error']:
                    wrong.append(f"recovery job's error: {props['Error']}")
                elif delay == 'child' and f'in phase {phase};' not in props['Error']:
                    # (the child is journaled in its step: the record names that step)
                    wrong.append(f"recovery job names another phase: {props['Error']}")
            elif props is not None:
                wrong.append(f'unexpected job {props}')
            wrong += check_domain(lab, second, guest, expect_state, xml_before, visible_before,
                                  ceph)
            wrong += check_clone_revert(lab, second, guest, name, clone_before, finished)
            job = f"{props['State']}: {props['Error']}" if props else 'no record, no job'
        finally:
            if held:
                os.kill(held, signal.SIGCONT)
            second.stop()
    else:
        try:
            (jobs,) = first.call('ListJobs')
            props = first.wait_job(jobs[0], timeout=120)
            if props['State'] != 'failed' or props['ErrorName'] != 'org.virtsnap.Error.IO' or \
                    f'injected fault in phase {phase}' not in props['Error']:
                wrong.append(f"job {props['State']} {props['ErrorName']}: {props['Error']}")
            wrong += check_domain(lab, first, guest, expect_state, xml_before, visible_before,
                                  ceph)
            wrong += check_clone_revert(lab, first, guest, name, clone_before, False)
            job = f"{props['State']} {props['ErrorName'].rsplit('.', 1)[-1]}: {props['Error']}"
        finally:
            first.stop()
    for pid in qemu_img_children(first.snapshot_dir):  # a failed point spoils no other
        os.kill(pid, signal.SIGKILL)
    took = time.monotonic() - t0
    status = 'ok  ' if not wrong else 'FAIL'
    what = '; '.join(wrong) if wrong else job
    line = f'{status} {name:<7} {spec:<34} {took:5.1f} s  {what}{note}'
    return line, wrong


@pytest.mark.parametrize('point', POINTS, ids=[_point_id(p) for p in POINTS])
def test_fault_point(lab, guest, point, request):
    name, phase, action, delay = point
    m = METHODS[name]
    ceph = request.getfixturevalue('ceph') if name == 'rbd' else None
    if ceph is not None:
        guest = request.getfixturevalue('rbdguest')
    if action in ('clean', 'final') and name in ('clone', 'clonefull', 'revert'):
        run_clean_clone_revert(lab, guest, name, m, final=action == 'final')
        return
    if action == 'clean':
        run_clean(lab, guest, name, m, ceph)
        return
    line, wrong = run_point(lab, guest, name, m, phase, action, delay, ceph)
    _record(line)
    assert not wrong, line + '\n\nfault matrix so far:\n' + '\n'.join(conftest.FAULT_MATRIX)


def test_fault_matrix_totals(lab):
    ok = sum(1 for line in conftest.FAULT_MATRIX if line.startswith('ok'))
    summary = f'fault matrix: {ok} of {N_FAULT_POINTS} points recovered'
    _record(summary)
    conftest.FAULT_MATRIX.pop()  # conftest's summary prints the totals itself
    assert ok == N_FAULT_POINTS, summary + '\n' + '\n'.join(conftest.FAULT_MATRIX)
