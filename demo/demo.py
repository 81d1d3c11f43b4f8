#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The virtsnap demo: a sandboxed lab (private D-Bus, session libvirtd, a tiny
guest writing records), the real agent, a live snapshot of the running guest,
and a check of what it produced. Run by ./run-demo; everything it starts, it stops."""

import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, 'tests', 'lab'))
import lab as labmod  # noqa: E402

BUILD = os.environ.get('VIRTSNAP_BUILD_DIR', os.path.join(ROOT, 'build'))
VIRTSNAPD = os.path.join(BUILD, 'agent', 'virtsnapd')
VIRTSNAPCTL = os.path.join(BUILD, 'tools', 'virtsnapctl')


def say(text):
    print(f'\n\033[1m# {text}\033[0m' if sys.stdout.isatty() else f'\n# {text}', flush=True)


def ctl(lab, *args, check=True):
    shown = ' '.join(['virtsnapctl'] + list(args))
    print(f'$ {shown}', flush=True)
    res = subprocess.run([VIRTSNAPCTL, '--address', lab.bus_address] + list(args), text=True,
                         stdout=None if '--json' not in args else subprocess.PIPE)
    if check and res.returncode != 0:
        raise SystemExit(f'demo: {shown} failed ({res.returncode})')
    return res


def echo_watch(proc):
    for line in proc.stdout:
        print(f'  [watch] {line.rstrip()}', flush=True)


def main():
    t_start = time.monotonic()
    say('starting the lab: a private dbus-daemon and a session libvirtd, as this user')
    with labmod.Lab() as lab:
        print(f'  bus:     {lab.bus_address}\n  libvirt: {lab.libvirt_uri}')
        guest = lab.make_guest('demo', disks=1, agent=True, backing=True)
        print(f'  guest "demo": TCG, direct kernel boot, qemu-ga, data disk {guest.disks[0]["path"]}'
              f' (qcow2 over a backing file)')

        say('starting virtsnapd on the private bus')
        snapdir = lab.path('snapshots')
        agent = subprocess.Popen([VIRTSNAPD, '--bus-address', lab.bus_address, '--uri',
                                  lab.libvirt_uri, '--snapshot-dir', snapdir, '--state-dir',
                                  lab.path('state')],
                                 stdout=open(lab.path('virtsnapd.log'), 'w'),
                                 stderr=subprocess.STDOUT)
        try:
            for _ in range(100):
                if subprocess.run([VIRTSNAPCTL, '--address', lab.bus_address, 'status'],
                                  capture_output=True).returncode == 0:
                    break
                time.sleep(0.1)
            ctl(lab, 'status')
            ctl(lab, 'domains')

            say('streaming lifecycle events while the guest boots')
            print('$ virtsnapctl watch &', flush=True)
            watch = subprocess.Popen([VIRTSNAPCTL, '--address', lab.bus_address, 'watch'],
                                     stdout=subprocess.PIPE, text=True)
            threading.Thread(target=echo_watch, args=(watch,), daemon=True).start()
            time.sleep(0.5)
            guest.start()
            boot = guest.wait_ready(120)
            print(f'  guest up, agent answering (boot {boot:.1f} s); it appends a numbered record'
                  ' to /data0/records every 10 ms', flush=True)
            ctl(lab, 'domains')

            say('a live snapshot of the running guest (freeze only while the mirrors are cut)')
            time.sleep(2)
            res = ctl(lab, '--json', 'snapshot', 'demo', '--wait')
            job = json.loads(res.stdout)
            result = job['result']
            image = result['disks'][0]['image']
            print(f'  state {job["state"]}: quiesced={result["quiesced"]}, '
                  f'freeze window {result["freeze-ms"]} ms, copy {result["copy-ms"]} ms, '
                  f'flatten {result["flatten-ms"]} ms, total {result["total-ms"]} ms')
            ctl(lab, 'snapshots', 'demo')

            say('checking the image for real')
            info = labmod.image_info(image)
            clean, _ = labmod.fsck_clean(image, replay_journal=False)
            nums = labmod.read_records(image)
            print(f'  {image}\n  format {info["format"]}, backing file: '
                  f'{info.get("backing-filename", "none")}, e2fsck -fn: '
                  f'{"clean" if clean else "NOT CLEAN"}, records 1..{nums[-1]} '
                  f'{"contiguous" if labmod.records_contiguous(nums) else "NOT CONTIGUOUS"}')
            print(f'  the domain: {guest.state()}, persistent={guest.is_persistent()}, '
                  f'block jobs={guest.block_jobs()}, agent answers={guest.agent_ping()}')

            say('pausing, resuming and stopping the guest (events above)')
            lab.virsh('suspend', 'demo')
            lab.virsh('resume', 'demo')
            guest.destroy()
            time.sleep(0.5)
            watch.terminate()
            watch.wait(5)
            ok = clean and labmod.records_contiguous(nums) and job['state'] == 'succeeded'
        finally:
            agent.terminate()
            agent.wait(60)
        say(f'done in {time.monotonic() - t_start:.0f} s; the lab is stopped and removed')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
