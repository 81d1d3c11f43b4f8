# SPDX-License-Identifier: LGPL-2.1-or-later
"""The foundation against the real lab: the agent on the bus, ListDomains against
virsh, lifecycle events, surviving libvirtd restarts, errors, and the CLI."""

import json
import signal
import subprocess
import time

from gi.repository import GLib

from conftest import VIRTSNAPD, VIRTSNAPCTL, Agent, remove_guest


def test_version(agent):
    out = subprocess.run([VIRTSNAPD, '--version'], capture_output=True, text=True, check=True)
    assert out.stdout.startswith('virtsnapd ')
    version = out.stdout.split()[1]
    assert agent.prop('Version') == version
    assert agent.prop('ApiVersion') == 1
    assert agent.prop('LibvirtUri') == agent.lab.libvirt_uri
    assert agent.prop('SnapshotDirectory') == agent.snapshot_dir
    assert agent.prop('Connected') is True
    ctl = subprocess.run([VIRTSNAPCTL, '--version'], capture_output=True, text=True, check=True)
    assert ctl.stdout.strip() == f'virtsnapctl {version}'


def test_list_domains_matches_virsh(lab, agent, writer):
    stopped = lab.make_guest('idle-defined', agent=False)
    try:
        (domains,) = agent.call('ListDomains')
        by_name = {d['name']: d for d in domains}
        virsh_names = set(lab.virsh('list', '--all', '--name').split())
        assert set(by_name) == virsh_names
        for name in virsh_names:
            state = lab.virsh('domstate', name).strip()
            assert by_name[name]['state'] == {'shut off': 'shutoff'}.get(state, state)
            assert by_name[name]['uuid'] == lab.virsh('domuuid', name).strip()
            assert by_name[name]['persistent'] is True
        w = by_name['writer']
        assert w['id'] > 0 and by_name['idle-defined']['id'] == -1
        assert w['agent-channel'] and w['agent-connected']
        assert not by_name['idle-defined']['agent-channel']
        vda = w['disks'][0]
        assert vda['target'] == 'vda' and vda['format'] == 'qcow2' and vda['type'] == 'file'
        assert vda['source'] == writer.disks[0]['path']
        assert vda['backing-chain'] == [writer.disks[0]['backing']]
        assert vda['backing-formats'] == [writer.disks[0]['backing_format']]

        # The CLI says the same, as JSON and as a table.
        res = agent.ctl('--json', 'domains')
        assert res.returncode == 0, res.stderr
        assert {d['name'] for d in json.loads(res.stdout)} == virsh_names
        table = agent.ctl('domains').stdout.splitlines()
        assert table[0].split()[:3] == ['NAME', 'STATE', 'PERSISTENT']
        assert any(line.split()[:2] == ['writer', 'running'] for line in table)
    finally:
        stopped.undefine()


def test_lifecycle_events(lab, agent, events):
    guest = lab.make_guest('events', agent=False)
    try:
        expected = [
            (lambda: guest.start(), 'started', 'booted'),
            (lambda: guest.virsh('suspend', guest.name), 'suspended', 'paused'),
            (lambda: guest.virsh('resume', guest.name), 'resumed', 'unpaused'),
            (lambda: guest.destroy(), 'stopped', 'destroyed'),
            (lambda: guest.undefine(), 'undefined', 'removed'),
        ]
        for action, event, detail in expected:
            action()
            done = time.monotonic()
            _, when, _, _, _ = events.wait_event('events', event, detail, timeout=5)
            # The event may come before the command returns; never a second after.
            assert when - done < 1.0, f'{event} arrived {when - done:.2f} s after the action'
    finally:
        if guest.name in lab.domains():
            remove_guest(guest)


def test_watch_streams_events(lab, agent):
    guest = lab.make_guest('watched', agent=False)
    watch = subprocess.Popen([VIRTSNAPCTL, '--address', lab.bus_address, '--json', 'watch'],
                             stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)  # the subscription is in place
        guest.start()
        guest.destroy()
        seen = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(seen) < 2:
            line = watch.stdout.readline()
            item = json.loads(line)
            # libvirt also reports resumed/unpaused at start (QEMU starts paused).
            if item.get('domain') == 'watched' and item['event'] in ('started', 'stopped'):
                seen.append((item['event'], item['detail']))
        assert seen == [('started', 'booted'), ('stopped', 'destroyed')]
    finally:
        watch.send_signal(signal.SIGINT)
        assert watch.wait(5) == 0
        guest.undefine()


def test_survives_libvirtd_restart(lab, agent, events):
    events.drain()
    lab.kill_libvirtd(signal.SIGKILL)
    events.wait_for(lambda e: e[0] == 'connected' and e[2] is False, timeout=10)
    assert agent.prop('Connected') is False
    name, message = agent.call_error('ListDomains')
    assert name == 'org.virtsnap.Error.NotConnected', message
    assert agent.ctl('domains').returncode == 8

    lab.start_libvirtd()
    events.wait_for(lambda e: e[0] == 'connected' and e[2] is True, timeout=15)
    assert agent.prop('Connected') is True

    # Events flow again after the reconnect.
    guest = lab.make_guest('after-restart', agent=False)
    try:
        guest.start()
        events.wait_event('after-restart', 'started', 'booted', timeout=5)
        guest.destroy()
        events.wait_event('after-restart', 'stopped', 'destroyed', timeout=5)
    finally:
        guest.undefine()


def test_bad_arguments(lab, agent):
    cases = [
        (('no-such-domain', {}), 'org.virtsnap.Error.NoSuchDomain'),
        (('x', {'colour': GLib.Variant('s', 'red')}), 'org.virtsnap.Error.InvalidArgument'),
        (('x', {'quiesce': GLib.Variant('b', True)}), 'org.virtsnap.Error.InvalidArgument'),
        (('x', {'method': GLib.Variant('s', 'teleport')}), 'org.virtsnap.Error.InvalidArgument'),
        (('x', {'name': GLib.Variant('s', '../../etc/passwd')}),
         'org.virtsnap.Error.InvalidArgument'),
    ]
    for (domain, options), expected in cases:
        name, message = agent.call_error('CreateSnapshot',
                                         GLib.Variant('(sa{sv})', (domain, options)))
        assert name == expected, message
    name, _ = agent.call_error('DeleteSnapshot', GLib.Variant('(s)', ('../../etc',)))
    assert name == 'org.virtsnap.Error.InvalidArgument'
    name, _ = agent.call_error('DeleteSnapshot', GLib.Variant('(s)', ('nope',)))
    assert name == 'org.virtsnap.Error.NoSuchSnapshot'
    name, _ = agent.call_error('Cancel', iface='org.virtsnap.Job1',
                               path='/org/virtsnap/Agent1/job/999')
    assert name.startswith('org.freedesktop.DBus.Error.Unknown')


def test_cli_exit_codes(lab, agent):
    assert agent.ctl('snapshot', 'no-such-domain').returncode == 4
    res = agent.ctl('snapshot', 'x', '--quiesce', 'sometimes')
    assert res.returncode == 2 and 'InvalidArgument' in res.stderr
    assert agent.ctl('frobnicate').returncode == 2
    assert agent.ctl('job', '4242').returncode == 4
    # No agent on the bus: 3, with a message that says so.
    agent.stop()
    res = agent.ctl('domains')
    assert res.returncode == 3, res
    assert 'not running' in res.stderr or 'ServiceUnknown' in res.stderr
    # Help needs no agent.
    res = agent.ctl('snapshot', '--help')
    assert res.returncode == 0 and '--copy=MODE' in res.stdout and 'default direct' in res.stdout
    res = agent.ctl('status', '--help')
    assert res.returncode == 0 and res.stdout.startswith('Usage: virtsnapctl status')


def test_idle_agent_uses_no_cpu(lab, agent, writer):
    """No polling timers: an idle agent does not run at all."""
    time.sleep(1)

    def ticks():
        with open(f'/proc/{agent.pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    before = ticks()
    time.sleep(5)
    assert ticks() - before <= 1


def test_second_agent_cannot_take_the_name(lab, agent):
    second = Agent(lab, name='agent-second')
    second.proc = subprocess.Popen(
        [VIRTSNAPD, '--config', second.config, '--bus-address', lab.bus_address, '--uri',
         lab.libvirt_uri, '--snapshot-dir', second.snapshot_dir, '--state-dir',
         second.state_dir], stdout=open(second.log, 'w'), stderr=subprocess.STDOUT)
    assert second.proc.wait(10) == 3
    assert 'could not own org.virtsnap.Agent1' in second.log_text()


def test_bad_config_is_refused(lab, tmp_path):
    conf = tmp_path / 'bad.conf'
    conf.write_text('[agent]\nmax_jobs = lots\n')
    res = subprocess.run([VIRTSNAPD, '--config', str(conf), '--bus-address', lab.bus_address],
                         capture_output=True, text=True, timeout=10)
    assert res.returncode == 2
    assert "max_jobs: 'lots' is not a whole number" in res.stderr
