#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The time to a booted clone, instant against --full, for a 1 GiB disk.

A lab guest whose data disk is 1 GiB (64 MiB of ext4 plus 960 MiB of data after it, all
in the image: lab ``make_guest(..., disk_size_mib=64, top_data_mib=960)``) runs and writes
records; virtsnapd (started here, like bench.py's) takes a live snapshot of it. Then, per
repetition and kind, CloneSnapshot(id, {name, start: true[, full: true]}) is called and
the clock runs from the call until the clone is booted: its READY marker on its console
and its guest agent answering guest-ping (lab ``Guest.wait_ready``). The job's own
total-ms (request to the clone started) is reported too. Each clone is then stopped and
its disk checked (records contiguous, the snapshot's first), then undefined.

Run as the lab user (as tests/bench/run.sh does for bench.py):
    VIRTSNAP_LAB_ASSETS=/var/tmp/vs-assets tests/lab/as-user.sh \\
        /usr/bin/python3 tests/bench/clone.py [--reps 1] [--json FILE]
Environment: VIRTSNAP_BUILD_DIR (default <repo>/build), VIRTSNAP_LAB_ASSETS.
"""

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, 'tests', 'lab'))

import lab as labmod  # noqa: E402

try:
    import gi  # noqa: E402
    gi.require_version('Gio', '2.0')
    from gi.repository import GLib  # noqa: E402
    import agent as agentmod  # noqa: E402
except (ImportError, ValueError):
    sys.exit('clone bench: python3-gi is missing or this is not /usr/bin/python3')

DATA_MIB = 960  # after 64 MiB of ext4: a 1 GiB disk


def log(msg):
    print(f'[{time.strftime("%H:%M:%S")}] {msg}', file=sys.stderr, flush=True)


def one_clone(lab, agent, snap_id, snap_nums, name, full):
    folder = os.path.join(agent.snapshot_dir, 'clones', name)
    image = os.path.join(folder, 'vda.qcow2')
    guest = lab.add_guest(name, [{'target': 'vda', 'path': image, 'format': 'qcow2'}],
                          '<domain/>\n', agent=True, define=False)
    guest.console_log = os.path.join(folder, 'console0.log')
    options = {'name': GLib.Variant('s', name), 'start': GLib.Variant('b', True)}
    if full:
        options['full'] = GLib.Variant('b', True)
    t0 = time.monotonic()
    guest._started_at = t0
    path = agent.call('CloneSnapshot', GLib.Variant('(sa{sv})', (snap_id, options)))[0]
    props = agent.wait_job(path, timeout=600)
    t_job = time.monotonic() - t0
    if props['State'] != 'succeeded':
        raise SystemExit(f'clone {name} {props["State"]}: {props["Error"]}')
    guest.wait_ready(300)
    booted = time.monotonic() - t0
    time.sleep(2)
    guest.destroy()
    nums = labmod.read_records(image)
    if not labmod.records_contiguous(nums) or nums[:len(snap_nums)] != snap_nums:
        raise SystemExit(f'clone {name}: its records are not the snapshot\'s continued')
    info = labmod.image_info(image)
    guest.undefine()
    return {'booted_s': booted, 'job_s': t_job, 'total_ms': props['Result']['total-ms'],
            'copy_ms': props['Result']['copy-ms'], 'image_bytes': info.get('actual-size'),
            'backing': info.get('full-backing-filename')}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--reps', type=int, default=1)
    ap.add_argument('--json')
    args = ap.parse_args()

    results = {'instant': [], 'full': []}
    with labmod.Lab() as lab:
        t = time.monotonic()
        src = lab.make_guest('cbench', disks=1, agent=True, disk_size_mib=64,
                             top_data_mib=DATA_MIB)
        log(f'guest cbench: 1 GiB disk made in {time.monotonic() - t:.1f}s')
        agent = agentmod.Agent(lab, 'agent', env=lab.env, fatal_criticals=False,
                               ready_timeout=20).start()
        try:
            src.start()
            src.wait_ready(120)
            time.sleep(2)
            props = agent.snapshot('cbench', timeout=600)
            if props['State'] != 'succeeded':
                raise SystemExit(f'snapshot {props["State"]}: {props["Error"]}')
            snap_id = props['Result']['snapshot-id']
            snap_nums = labmod.read_records(props['Result']['disks'][0]['image'])
            log(f'snapshot {snap_id}: {props["Result"]["total-ms"]} ms, '
                f'{len(snap_nums)} records')
            for rep in range(args.reps):
                for kind in ('instant', 'full'):
                    r = one_clone(lab, agent, snap_id, snap_nums, f'cb-{kind}-{rep}',
                                  kind == 'full')
                    results[kind].append(r)
                    log(f'{kind} #{rep + 1}: booted in {r["booted_s"]:.2f}s (job '
                        f'{r["total_ms"]} ms, copy {r["copy_ms"]} ms, image '
                        f'{(r["image_bytes"] or 0) >> 20} MiB)')
        finally:
            agent.stop(check=False)

    print('time to a booted clone, 1 GiB disk (CloneSnapshot call -> READY + guest-ping):')
    for kind in ('instant', 'full'):
        booted = statistics.median(r['booted_s'] for r in results[kind])
        job = statistics.median(r['total_ms'] for r in results[kind])
        print(f'  {kind:8s} {booted:7.2f} s   (job to started: {job} ms, '
              f'median of {len(results[kind])})')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)


if __name__ == '__main__':
    main()
