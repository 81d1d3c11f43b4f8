# SPDX-License-Identifier: LGPL-2.1-or-later
"""The installed .deb, as a user runs it (tests/package/test-deb.sh runs this with
VIRTSNAP_INSTALL_ROOT=/): the agent with no options at all -- the conffile
/etc/virtsnap/virtsnapd.conf, qemu:///system, the system bus, /var/lib/virtsnap --
and the installed virtsnapctl as a member of group libvirt, a live snapshot of a
writing guest, then the snapshot deleted again so that the purge leaves nothing."""

import json
import os

import pytest

from conftest import Agent, domain_intact
from test_live import check_image, check_private, image_of


@pytest.mark.installed_only
def test_live_snapshot_as_installed(lab, writer):
    agent = Agent(lab, 'installed', installed_defaults=True).start()
    try:
        before = writer.inactive_xml()
        member = lab.users['member']
        res = agent.ctl_as(member, 'snapshot', 'writer', '--wait', '--json', '--name', 'deb')
        assert res.returncode == 0, res.stderr
        job = json.loads(res.stdout)
        assert job['state'] == 'succeeded', job
        props = {'Result': job['result']}
        image = image_of(props)
        assert image.startswith(f"/var/lib/virtsnap/snapshots/{job['snapshot_id']}/"), image
        domain_intact(writer, before)
        assert len(check_image(image, replay_journal=False)) > 10
        check_private(agent, props)
        assert oct(os.stat('/var/lib/virtsnap').st_mode & 0o7777) == oct(0o711)
        assert oct(os.stat('/var/lib/virtsnap/state').st_mode & 0o7777) == oct(0o700)

        res = agent.ctl_as(member, 'delete', job['snapshot_id'])
        assert res.returncode == 0, res.stderr
        assert not os.path.exists(os.path.dirname(image))
    finally:
        agent.stop()
    assert agent.leftovers() == []
