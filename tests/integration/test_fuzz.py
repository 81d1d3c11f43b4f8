# SPDX-License-Identifier: LGPL-2.1-or-later
"""Hostile input over D-Bus, generated from the introspection XML in data/ (a new method or
option is covered without touching this file): wrong types for every argument and option,
unknown keys, 1 MiB strings, control characters, names and ids that try to leave the
snapshot directory, invalid UTF-8 and NUL on the wire (raw socket), 50 CreateSnapshot calls
at once on one domain, calls on jobs and exports that ended; and links planted in the
snapshot directory before every method that reads it.

Every call gets a specific error (org.virtsnap.Error.*, or GDBus's own InvalidArgs /
UnknownMethod / UnknownObject / PropertyReadOnly where GDBus answers before the agent's
code runs), never NoReply or a generic Failed; the agent is the same process at the end and
exits cleanly (the run-tests build is ASan: an error there aborts it); inotify on the
folders around the snapshot directory and on the targets of the planted links proves that
nothing outside was opened, written or removed."""

import ctypes
import os
import re
import shutil
import struct
import socket
import tempfile
import threading
import time
import xml.etree.ElementTree as ET

import pytest
from gi.repository import Gio, GLib

from conftest import (FUZZ_TOTALS, REPO, SYSTEM, Agent, AGENT_IFACE, AGENT_PATH, BUS_NAME,
                      JOB_IFACE, dbus_error_name, domain_intact)

EXPORT_IFACE = 'org.virtsnap.Export1'
ERR = 'org.virtsnap.Error.'
GDBUS = 'org.freedesktop.DBus.Error.'
MIB = 1024 * 1024

# ---- the API, read from data/*.xml ------------------------------------------------------------


def read_api():
    """{interface: {method: ([(arg name, signature)], {option: signature})}} and
    {interface: {property: signature}} from the introspection XML and its comments (options
    are documented there as 'key (sig...)' after the word Option)."""
    methods, props = {}, {}
    for name in ('org.virtsnap.Agent1.xml', 'org.virtsnap.Job1.xml', 'org.virtsnap.Export1.xml'):
        parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))
        root = ET.parse(os.path.join(REPO, 'data', name), parser).getroot()
        for iface in root.iter('interface'):
            m, p = methods.setdefault(iface.get('name'), {}), props.setdefault(iface.get('name'),
                                                                                {})
            comment = ''
            for el in iface:
                if el.tag is ET.Comment:
                    comment = el.text
                    continue
                if el.tag == 'method':
                    args = [(a.get('name'), a.get('type')) for a in el.iter('arg')
                            if a.get('direction', 'in') == 'in']
                    options = {}
                    if '(' in comment and re.search(r'\b[Oo]ptions?\b', comment):
                        text = re.split(r'\b[Oo]ptions?\b', comment, maxsplit=1)[1]
                        text = re.split(r'\b(?:Returns|Errors)\b', text)[0]
                        options = dict(re.findall(r'\b([a-z][a-z-]*) \((as|s|b|t|u|i|x)\b', text))
                    m[el.get('name')] = (args, options)
                elif el.tag == 'property':
                    p[el.get('name')] = el.get('type')
                comment = ''
    return methods, props


METHODS, PROPS = read_api()

# ---- hostile values ---------------------------------------------------------------------------

# Strings a caller may send (all valid UTF-8: the wire allows nothing else; see test_raw_wire).
HOSTILE_STRINGS = [
    '', ' ', 'a' * MIB, 'x' * 256, '\x01\x02\x1b[31mred\x1b[0m', 'tab\there', 'new\nline',
    'cr\rline', '\x7f', '/', '//', '.', '..', '...', '../x', '../../etc/passwd', '/etc/passwd',
    '/tmp', '.hidden', '-rf', '--help', '-', 'a/b', 'a/../b', 'snap/..',
    '20261123T125532Z-1a2b3c/../..', '20261123T125532Z-1a2b3c/', './20261123T125532Z-1a2b3c',
    '.20261123T125532Z-1a2b3c.partial', 'clones', 'clones/x', '*', '?', '$(id)', '`id`',
    '; rm -rf /', '%s%s%n', '\u202e', 'caf\u00e9', '\ufeff', '\U0001f4a9', 'name with space',
]
# Values of every D-Bus type, for "wrong type" (each option gets all but its own).
TYPED = {
    's': GLib.Variant('s', 'x'), 'b': GLib.Variant('b', True), 't': GLib.Variant('t', 1),
    'as': GLib.Variant('as', ['x']), 'i': GLib.Variant('i', -1), 'u': GLib.Variant('u', 7),
    'x': GLib.Variant('x', -(2 ** 63)), 'd': GLib.Variant('d', float('nan')),
    'y': GLib.Variant('y', 0), 'o': GLib.Variant('o', '/'), 'a{sv}': GLib.Variant('a{sv}', {}),
    'ay': GLib.Variant('ay', b'\xff\x00'), 'v': GLib.Variant('v', GLib.Variant('s', 'x')),
    'aas': GLib.Variant('aas', [['x']]), '(ss)': GLib.Variant('(ss)', ('a', 'b')),
}
# A value of each argument signature, for well-typed calls.
SAMPLE = {'s': 'x', 'a{sv}': {}, 'a{ss}': {}, 'b': True, 'u': 1, 't': 1, 'o': '/'}
# Well-formed options of id methods, so that the id is what gets checked.
ID_OPTIONS = {'CloneSnapshot': {'name': GLib.Variant('s', 'fuzz-clone')}}
UNKNOWN_KEYS = ['colour', '', 'a' * MIB, 'method\x01', '../method', 'Method', 'method ',
                '\u202e']


def valid_name(s):
    """The documented rule for names and ids: 1..255 of [A-Za-z0-9._-], not starting with
    '.' or '-' (vs_name_is_valid)."""
    return bool(re.fullmatch(r'[A-Za-z0-9_][A-Za-z0-9._-]{0,254}', s))


# ---- inotify: nothing outside the snapshot directory is touched --------------------------------

IN_ACCESS, IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x1, 0x2, 0x4, 0x8
IN_OPEN, IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x20, 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF, IN_ISDIR, IN_NONBLOCK = 0x400, 0x800, 0x40000000, 0o4000
WATCHED = (IN_ACCESS | IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_OPEN | IN_MOVED_FROM |
           IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF)


class Watch:
    """inotify on folders (not recursive: each one given): every open, read, write, change,
    creation and removal in them, with the file's name."""

    def __init__(self, folders, ignore=()):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(IN_NONBLOCK)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        self.paths, self.ignore = {}, set(ignore)
        for folder in folders:
            wd = self.libc.inotify_add_watch(self.fd, folder.encode(), WATCHED)
            assert wd >= 0, f'{folder}: {os.strerror(ctypes.get_errno())}'
            self.paths[wd] = folder

    def events(self):
        out = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            i = 0
            while i < len(data):
                wd, mask, _, size = struct.unpack_from('iIII', data, i)
                name = data[i + 16:i + 16 + size].rstrip(b'\0').decode(errors='replace')
                i += 16 + size
                if name not in self.ignore:
                    out.append((os.path.join(self.paths.get(wd, '?'), name), hex(mask)))

    def close(self):
        os.close(self.fd)


def tree_state(folders):
    """Every file and link under @folders: (lstat mtime, size, content or link target)."""
    state = {}
    for top in folders:
        for dirpath, dirnames, filenames in os.walk(top):
            for n in dirnames + filenames:
                p = os.path.join(dirpath, n)
                st = os.lstat(p)
                if os.path.islink(p):
                    what = os.readlink(p)
                elif os.path.isfile(p):
                    with open(p, 'rb') as f:
                        what = f.read()
                else:
                    what = 'dir'
                state[p] = (st.st_mtime_ns, st.st_size, what)
    return state


# ---- the module's agent, guest and planted files ------------------------------------------------

PLANTED_FOLDER_LINK = '20261123T125532Z-aaaaaa'  # the folder is a link to one outside
PLANTED_META_LINK = '20261123T125533Z-bbbbbb'  # a real folder; metadata.json links outside
PLANTED_IMAGE_LINK = '20261123T125536Z-eeeeee'  # real folder and metadata; the image links out
PLANTED_PARTIAL = '.20261123T125534Z-cccccc.partial'  # links to the folder outside
PLANTED_DANGLING = '.20261123T125535Z-dddddd.partial'  # links to nothing
PLANTED_SCRATCH = '.20261123T125536Z-eeeeee.1.verify'  # a verify scratch folder (swept at start)


class Fuzz:
    """Counts: inputs sent, how each was answered."""

    def __init__(self, agent):
        self.agent = agent
        self.sent = 0
        self.rejected = 0
        self.answered = 0  # read-only queries answered with nothing (or allow, for the hook)
        self.by_error = {}
        self.bad = []

    def send(self, iface, path, method, params, timeout=30):
        self.sent += 1
        try:
            reply = self.agent.bus.call_sync(BUS_NAME, path, iface, method, params, None,
                                             Gio.DBusCallFlags.NONE, int(timeout * 1000), None)
            return None, reply.unpack() if reply is not None else ()
        except GLib.Error as e:
            name = dbus_error_name(e) or f'(local) {e.message}'
            self.by_error[name] = self.by_error.get(name, 0) + 1
            return name, e.message

    def expect(self, what, got, allowed):
        """@got (error name, message) from send(); @allowed: the error names that are right."""
        name, message = got
        if name in allowed:
            self.rejected += 1
        else:
            self.bad.append(f'{what}: {name} {str(message)[:200]!r}, expected {sorted(allowed)}')

    def check(self):
        assert not self.bad, f'{len(self.bad)} of {self.sent} hostile inputs answered wrongly:\n' + \
            '\n'.join(self.bad[:40])
        assert not any(n.endswith(('.NoReply', '.Failed', '.Timeout')) or 'local' in n
                       for n in self.by_error), self.by_error


def args_variant(args, values):
    sig = '(' + ''.join(s for _, s in args) + ')'
    return GLib.Variant(sig, tuple(values))


@pytest.fixture(scope='module')
def fuzz_agent(lab):
    a = Agent(lab, name='agent-fuzz')
    a.start()
    yield a
    if a.proc is not None:
        a.stop()


@pytest.fixture(scope='module')
def planted(lab, fuzz_agent, writer):
    """Links planted in the snapshot directory, pointing at a folder outside that holds a
    valid-looking snapshot of writer named 'planted'; canaries around the snapshot directory
    and in /tmp; inotify on all of them."""
    snapdir = fuzz_agent.snapshot_dir
    os.makedirs(snapdir, exist_ok=True)
    outside = lab.path('fuzz-outside')
    fake = os.path.join(outside, 'fake')
    tmp = tempfile.mkdtemp(prefix='vs-fuzz-canary-')
    uuid = lab.virsh('domuuid', 'writer').strip()
    os.makedirs(fake, exist_ok=True)
    meta = ('{"id": "%s", "name": "planted", "domain": "writer", "uuid": "%s", '
            '"created": "2026-11-23T12:55:32Z", "created-us": 1, "method": "live", '
            '"domain-xml": "<domain/>", "disks": [{"target": "vda", "image": "vda.qcow2", '
            '"format": "qcow2", "virtual-size": 1048576, "bytes": 0, "source": "x"}]}')
    with open(os.path.join(fake, 'metadata.json'), 'w') as f:
        f.write(meta % (PLANTED_FOLDER_LINK, uuid))
    image = os.path.join(fake, 'vda.qcow2')
    with open(image, 'wb') as f:
        f.write(b'outside image: never read, written or removed\n')
    for folder in (outside, tmp, fuzz_agent.dir):
        for n in ('canary', 'x', 'metadata.json', 'passwd'):
            with open(os.path.join(folder, n), 'w') as f:
                f.write(f'canary {n}\n')
    os.symlink(fake, os.path.join(snapdir, PLANTED_FOLDER_LINK))
    real = os.path.join(snapdir, PLANTED_META_LINK)
    os.mkdir(real, 0o711)
    os.symlink(os.path.join(fake, 'metadata.json'), os.path.join(real, 'metadata.json'))
    os.symlink(image, os.path.join(real, 'vda.qcow2'))
    real = os.path.join(snapdir, PLANTED_IMAGE_LINK)
    os.mkdir(real, 0o711)
    with open(os.path.join(real, 'metadata.json'), 'w') as f:
        f.write((meta % (PLANTED_IMAGE_LINK, uuid)).replace('"planted"', '"image-link"'))
    os.symlink(image, os.path.join(real, 'vda.qcow2'))
    os.symlink(fake, os.path.join(snapdir, PLANTED_PARTIAL))
    os.symlink('/nonexistent/virtsnap-fuzz', os.path.join(snapdir, PLANTED_DANGLING))
    os.symlink(fake, os.path.join(snapdir, PLANTED_SCRATCH))
    outside_folders = [outside, fake, tmp]
    before = tree_state(outside_folders)
    agent_dir_before = {n: tree_state([os.path.join(fuzz_agent.dir, n)])
                        for n in ('canary', 'x', 'metadata.json', 'passwd')}
    # The agent's own files in its folder are its to write; the canaries are not.
    watch = Watch(outside_folders + [fuzz_agent.dir],
                  ignore={'virtsnapd.log', 'snapshots', 'state', 'run', 'virtsnapd.conf'})
    p = {'outside': outside, 'fake': fake, 'image': image, 'tmp': tmp, 'uuid': uuid,
         'watch': watch, 'before': before, 'folders': outside_folders,
         'agent_dir_before': agent_dir_before, 'writer_xml': writer.inactive_xml()}
    yield p
    watch.close()
    shutil.rmtree(tmp, ignore_errors=True)


def assert_outside_untouched(p, agent):
    events = p['watch'].events()
    assert events == [], f'files outside the snapshot directory were touched: {events[:20]}'
    assert tree_state(p['folders']) == p['before']
    for n, state in p['agent_dir_before'].items():
        assert tree_state([os.path.join(agent.dir, n)]) == state
    p['watch'].events()  # our own reads just now
    for n in (PLANTED_FOLDER_LINK, PLANTED_PARTIAL, PLANTED_DANGLING, PLANTED_SCRATCH):
        assert os.path.islink(os.path.join(agent.snapshot_dir, n)), n


def fuzz_ids():
    """Ids that try to leave the snapshot directory, plus the hostile strings."""
    return HOSTILE_STRINGS + ['../agent-fuzz/canary', '../canary', '../x', '../metadata.json',
                              '..%2fx', 'x\\..\\..', '20261123T125532Z-1a2b3c/../../canary',
                              '20261123T000000Z-000000', 'no-such-snapshot']


# ---- the tests --------------------------------------------------------------------------------


def test_fuzz_concurrent_create(lab, fuzz_agent, writer, planted):
    """50 CreateSnapshot calls at once on one domain, named like the planted (linked)
    snapshot: one job, 49 Busy (README: one job per domain), the job succeeds (the planted
    name is no collision: links are not snapshots), all calls end."""
    agent = fuzz_agent
    results = [None] * 50
    options = {'name': GLib.Variant('s', 'planted')}

    def call(i):
        try:
            results[i] = ('job',) + agent.call('CreateSnapshot',
                                               GLib.Variant('(sa{sv})', ('writer', options)),
                                               timeout=60)
        except GLib.Error as e:
            results[i] = (dbus_error_name(e), e.message)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert all(r is not None for r in results), 'a CreateSnapshot call did not end'
    jobs = [r[1] for r in results if r[0] == 'job']
    others = [r for r in results if r[0] != 'job']
    assert len(jobs) == 1, results
    wrong = [r for r in others if r[0] != ERR + 'Busy' or jobs[0] not in r[1]]
    assert not wrong, wrong
    props = agent.wait_job(jobs[0], timeout=120)
    assert props['State'] == 'succeeded', (props['ErrorName'], props['Error'])
    assert props['Result']['name'] == 'planted'
    domain_intact(writer, planted['writer_xml'])
    FUZZ_TOTALS['inputs'] = FUZZ_TOTALS.get('inputs', 0) + 50
    FUZZ_TOTALS['rejected'] = FUZZ_TOTALS.get('rejected', 0) + 49
    FUZZ_TOTALS['accepted'] = FUZZ_TOTALS.get('accepted', 0) + 1
    planted['snapshot'] = props['Result']['snapshot-id']
    planted['job'] = jobs[0]
    # Calls on the job that ended: Cancel changes nothing; a wrong signature is InvalidArgs.
    before = agent.job_props(jobs[0])
    agent.call('Cancel', iface=JOB_IFACE, path=jobs[0])
    assert agent.job_props(jobs[0]) == before


def test_fuzz_planted_links(lab, fuzz_agent, writer, planted):
    """Links planted in the snapshot directory are never followed: not listed, NoSuchSnapshot
    for every method that takes an id, and a real folder whose image is a link is refused (or
    deleted as a link) without the file outside being read."""
    agent = fuzz_agent
    fz = Fuzz(agent)
    (listed,) = agent.call('ListSnapshots', GLib.Variant('(s)', ('',)))
    ids = {s['id'] for s in listed}
    assert PLANTED_FOLDER_LINK not in ids and PLANTED_META_LINK not in ids, ids
    assert planted['snapshot'] in ids and PLANTED_IMAGE_LINK in ids
    assert [s['name'] for s in listed if s['name'] == 'planted'] == ['planted']
    (listed,) = agent.call('ListSnapshots', GLib.Variant('(s)', (planted['uuid'],)))
    assert {s['id'] for s in listed} == {planted['snapshot'], PLANTED_IMAGE_LINK}

    id_methods = {m: args for m, (args, _) in METHODS[AGENT_IFACE].items()
                  if args and args[0][0] == 'id'}
    assert {'DeleteSnapshot', 'CloneSnapshot', 'RevertSnapshot', 'VerifySnapshot',
            'ExportSnapshot'} <= set(id_methods)
    extra = {'CloneSnapshot': {'name': GLib.Variant('s', 'fuzz-clone')}}
    for method, args in sorted(id_methods.items()):
        for sid in (PLANTED_FOLDER_LINK, PLANTED_META_LINK):
            values = [sid] + [extra.get(method, {}) if s == 'a{sv}' else SAMPLE[s]
                              for _, s in args[1:]]
            got = fz.send(AGENT_IFACE, AGENT_PATH, method, args_variant(args, values))
            fz.expect(f'{method}({sid})', got, {ERR + 'NoSuchSnapshot'})
        for sid in (PLANTED_PARTIAL, PLANTED_DANGLING, PLANTED_SCRATCH):
            values = [sid] + [extra.get(method, {}) if s == 'a{sv}' else SAMPLE[s]
                              for _, s in args[1:]]
            got = fz.send(AGENT_IFACE, AGENT_PATH, method, args_variant(args, values))
            fz.expect(f'{method}({sid})', got, {ERR + 'InvalidArgument'})

    # The real folder whose image is a link: nothing reads through it.
    img = PLANTED_IMAGE_LINK
    got = fz.send(AGENT_IFACE, AGENT_PATH, 'ExportSnapshot',
                  GLib.Variant('(sa{sv})', (img, {})))
    fz.expect(f'ExportSnapshot({img})', got, {ERR + 'IO'})
    got = fz.send(AGENT_IFACE, AGENT_PATH, 'CloneSnapshot',
                  GLib.Variant('(sa{sv})', (img, extra['CloneSnapshot'])))
    fz.expect(f'CloneSnapshot({img})', got, {ERR + 'IO', ERR + 'InvalidArgument'})
    got = fz.send(AGENT_IFACE, AGENT_PATH, 'RevertSnapshot',
                  GLib.Variant('(sa{sv})', (img, {})))
    fz.expect(f'RevertSnapshot({img})', got, {ERR + 'Running', ERR + 'IO', ERR + 'Unsupported'})
    name, out = fz.send(AGENT_IFACE, AGENT_PATH, 'VerifySnapshot',
                        GLib.Variant('(sa{sv})', (img, {})))
    if name is None:  # a job: it must fail and say why
        props = agent.wait_job(out[0], timeout=60)
        assert props['State'] == 'failed' and props['ErrorName'] in (ERR + 'Corrupt', ERR + 'IO'), \
            props
        fz.rejected += 1
    else:
        fz.expect(f'VerifySnapshot({img})', (name, out), {ERR + 'Corrupt', ERR + 'IO'})
    # Delete removes the link itself, never the file it points to.
    name, out = fz.send(AGENT_IFACE, AGENT_PATH, 'DeleteSnapshot', GLib.Variant('(s)', (img,)))
    assert name is None, out
    fz.answered += 1
    assert not os.path.lexists(os.path.join(agent.snapshot_dir, img))

    fz.check()
    FUZZ_TOTALS['inputs'] = FUZZ_TOTALS.get('inputs', 0) + fz.sent
    FUZZ_TOTALS['rejected'] = FUZZ_TOTALS.get('rejected', 0) + fz.rejected
    FUZZ_TOTALS['accepted'] = FUZZ_TOTALS.get('accepted', 0) + fz.answered
    assert_outside_untouched(planted, agent)


def expected_for_string(method, argname, value):
    """The error a well-typed call with hostile @value in @argname must get; None: the call
    is a query that answers (with nothing)."""
    if method == 'ListSnapshots':
        return None  # a filter: nothing matches ('' is every domain: not sent)
    if method == 'HookEvent':
        return None  # the hook is answered (allowed: no job of ours runs on such a domain)
    if argname == 'id':
        if not valid_name(value):
            return {ERR + 'InvalidArgument'}
        return {ERR + 'NoSuchSnapshot'}
    if argname == 'domain':
        return {ERR + 'NoSuchDomain', ERR + 'InvalidArgument'}
    return {ERR + 'InvalidArgument'}


def test_fuzz_dbus(lab, fuzz_agent, writer, planted):
    """Every method, argument and option of Agent1, Job1 and Export1, from the XML: wrong
    signatures, hostile strings, wrong option types, unknown keys, bad values."""
    agent = fuzz_agent
    fz = Fuzz(agent)
    t0 = time.monotonic()
    sid = planted['snapshot']
    job = planted['job']
    (export,) = agent.call('ExportSnapshot', GLib.Variant('(sa{sv})', (sid, {})))
    paths = {AGENT_IFACE: AGENT_PATH, JOB_IFACE: job, EXPORT_IFACE: export}
    assert set(METHODS) == set(paths), METHODS.keys()

    for iface, methods in sorted(METHODS.items()):
        path = paths[iface]
        # Unknown methods; a method of one interface asked on another.
        for bogus in ('NoSuchMethod', 'X' * 255, 'listdomains', 'Cancel_'):
            got = fz.send(iface, path, bogus, None)
            fz.expect(f'{iface}.{bogus!r}', got, {GDBUS + 'UnknownMethod'})
        for method, (args, options) in sorted(methods.items()):
            what = f'{iface}.{method}'
            sig = [s for _, s in args]
            # Wrong signatures: each argument of another type, one too many, none at all.
            for i, s in enumerate(sig):
                for wrong in ('i', 's', 'as', 'a{sv}', 'v'):
                    if wrong == s:
                        continue
                    values = [TYPED[wrong] if j == i else GLib.Variant(t, SAMPLE[t])
                              for j, t in enumerate(sig)]
                    params = GLib.Variant.new_tuple(*values)
                    got = fz.send(iface, path, method, params)
                    fz.expect(f'{what} arg {i} as {wrong}', got, {GDBUS + 'InvalidArgs'})
            extra = GLib.Variant.new_tuple(*[GLib.Variant(t, SAMPLE[t]) for t in sig],
                                           GLib.Variant('s', 'extra'))
            fz.expect(f'{what} extra arg', fz.send(iface, path, method, extra),
                      {GDBUS + 'InvalidArgs'})
            if sig:
                fz.expect(f'{what} no args', fz.send(iface, path, method, None),
                          {GDBUS + 'InvalidArgs'})
            # Hostile strings in each string argument (the others well-formed and harmless).
            for i, (argname, s) in enumerate(args):
                if s != 's':
                    continue
                for value in fuzz_ids() if argname == 'id' else HOSTILE_STRINGS:
                    if method == 'ListSnapshots' and value == '':
                        continue  # every domain's snapshots, as documented
                    values = [value if j == i else
                              ('no-such-domain-fuzz' if n == 'domain' else
                               'no-such-snapshot' if n == 'id' else
                               ID_OPTIONS.get(method, {}) if t == 'a{sv}' else SAMPLE[t])
                              for j, (n, t) in enumerate(args)]
                    if method == 'SetPolicy':
                        values[1] = {'keep': 'lots'}
                    got = fz.send(iface, path, method, args_variant(args, values))
                    allowed = expected_for_string(method, argname, value)
                    if allowed is None:
                        name, out = got
                        if method == 'ListSnapshots':
                            ok = name is None and out == ([],)
                        else:
                            ok = name is None and out[0] is True
                        if ok:
                            fz.answered += 1
                        else:
                            fz.bad.append(f'{what}({value[:40]!r}): {got!r:.200}')
                    else:
                        fz.expect(f'{what}({argname}={value[:40]!r})', got, allowed)
            # a{ss} settings (SetPolicy): unknown keys, bad values, on the real domain.
            for i, (argname, s) in enumerate(args):
                if s != 'a{ss}':
                    continue
                bad = [{k: '1'} for k in UNKNOWN_KEYS] + \
                    [{k: v} for k in ('on-stop', 'every', 'keep', 'quiesce', 'method', 'format')
                     for v in ('\x01', 'a' * MIB, '-1', '../x', '1e999', 'yes please')]
                for settings in bad:
                    values = ['writer' if n == 'domain' else settings if j == i else SAMPLE[t]
                              for j, (n, t) in enumerate(args)]
                    got = fz.send(iface, path, method, args_variant(args, values))
                    fz.expect(f'{what}({str(settings)[:60]})', got, {ERR + 'InvalidArgument'})
            # Options: each known key with every other type, unknown keys, hostile values.
            if not options:
                continue
            target = {'CreateSnapshot': 'no-such-domain-fuzz'}.get(method, sid)
            base = {'CloneSnapshot': {'name': GLib.Variant('s', '-bad-clone-name')}}.get(method,
                                                                                         {})
            def opts_call(opts):  # noqa: E306
                merged = dict(base)
                merged.update(opts)
                return args_variant(args, [target if j == 0 else merged
                                           for j, (n, t) in enumerate(args)])
            for key, ksig in sorted(options.items()):
                for tname, value in TYPED.items():
                    if tname == ksig:
                        continue
                    got = fz.send(iface, path, method, opts_call({key: value}))
                    fz.expect(f'{what} option {key} as {tname}', got, {ERR + 'InvalidArgument'})
                if ksig in ('s', 'as'):
                    for value in HOSTILE_STRINGS:
                        if method == 'CloneSnapshot' and key == 'name' and valid_name(value):
                            continue  # a good name: that clone would be made
                        v = GLib.Variant(ksig, value if ksig == 's' else [value])
                        got = fz.send(iface, path, method, opts_call({key: v}))
                        allowed = {ERR + 'InvalidArgument'}
                        if key in ('disk', 'disks') and valid_name(value):
                            allowed.add(ERR + 'NoSuchDisk')
                        if method == 'CreateSnapshot' and key in ('name', 'disks') and \
                                valid_name(value):
                            allowed = {ERR + 'NoSuchDomain'}  # a good name: the domain is next
                        fz.expect(f'{what} option {key}={value[:40]!r}', got, allowed)
            for key in UNKNOWN_KEYS:
                got = fz.send(iface, path, method, opts_call({key: GLib.Variant('s', 'x')}))
                fz.expect(f'{what} unknown option {key[:40]!r}', got, {ERR + 'InvalidArgument'})

    # Properties: read-only, unknown ones, hostile interface names.
    for iface, props in sorted(PROPS.items()):
        path = paths[iface]
        for prop, psig in sorted(props.items()):
            got = fz.send('org.freedesktop.DBus.Properties', path, 'Set',
                          GLib.Variant('(ssv)', (iface, prop, TYPED['s'])))
            fz.expect(f'Set {iface}.{prop}', got,
                      {GDBUS + 'PropertyReadOnly', GDBUS + 'InvalidArgs'})
        for prop in ('NoSuch', '', 'a' * MIB):
            got = fz.send('org.freedesktop.DBus.Properties', path, 'Get',
                          GLib.Variant('(ss)', (iface, prop)))
            fz.expect(f'Get {iface}.{prop[:20]!r}', got, {GDBUS + 'InvalidArgs'})
        got = fz.send('org.freedesktop.DBus.Properties', path, 'GetAll',
                      GLib.Variant('(s)', ('org.virtsnap.NoSuch1',)))
        fz.expect(f'GetAll on {path}', got, {GDBUS + 'InvalidArgs', GDBUS + 'UnknownInterface'})

    # The export that ended, and objects that never were.
    agent.call('Remove', iface=EXPORT_IFACE, path=export)
    for iface, path in ((EXPORT_IFACE, export), (JOB_IFACE, '/org/virtsnap/Agent1/job/999999'),
                        (EXPORT_IFACE, '/org/virtsnap/Agent1/export/999999')):
        method = 'Remove' if iface == EXPORT_IFACE else 'Cancel'
        fz.expect(f'{method} on {path}', fz.send(iface, path, method, None),
                  {GDBUS + 'UnknownObject', GDBUS + 'UnknownMethod'})

    fz.check()
    (exports,) = agent.call('ListExports')
    assert exports == []
    # The writer's definition is as it was (SetPolicy's hostile settings changed nothing).
    domain_intact(writer, planted['writer_xml'])
    assert agent.call('GetPolicy', GLib.Variant('(s)', ('writer',)))[0] == {}
    FUZZ_TOTALS['inputs'] = FUZZ_TOTALS.get('inputs', 0) + fz.sent
    FUZZ_TOTALS['rejected'] = FUZZ_TOTALS.get('rejected', 0) + fz.rejected
    FUZZ_TOTALS['accepted'] = FUZZ_TOTALS.get('accepted', 0) + fz.answered
    FUZZ_TOTALS['errors'] = dict(sorted(fz.by_error.items()))
    print(f'hostile inputs: {fz.sent} in {time.monotonic() - t0:.1f} s, '
          f'{fz.rejected} rejected with specific errors, {fz.answered} queries answered with '
          f'nothing: {fz.by_error}')
    assert_outside_untouched(planted, agent)


# ---- the raw wire: what GDBus would refuse to send ---------------------------------------------

def raw_connect(address):
    """A socket to the bus, authenticated (EXTERNAL) and Hello'd."""
    kv = dict(p.split('=', 1) for p in address.split(':', 1)[1].split(','))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(kv['path'] if 'path' in kv else '\0' + kv['abstract'])
    s.sendall(b'\0AUTH EXTERNAL ' + str(os.geteuid()).encode().hex().encode() + b'\r\n')
    assert s.recv(4096).startswith(b'OK '), 'bus refused EXTERNAL authentication'
    s.sendall(b'BEGIN\r\n')
    hello = Gio.DBusMessage.new_method_call('org.freedesktop.DBus', '/org/freedesktop/DBus',
                                            'org.freedesktop.DBus', 'Hello')
    hello.set_serial(1)
    s.sendall(hello.to_blob(Gio.DBusCapabilityFlags.NONE))
    assert raw_read_reply(s).get_message_type() == Gio.DBusMessageType.METHOD_RETURN
    return s


def raw_read_reply(s):
    """The next message that is not a signal (NameAcquired), None at EOF."""
    while True:
        msg = raw_read_message(s)
        if msg is None or msg.get_message_type() != Gio.DBusMessageType.SIGNAL:
            return msg


def raw_read_message(s):
    """One message from the socket (None at EOF), as a Gio.DBusMessage."""
    data = b''
    while len(data) < 16:
        chunk = s.recv(65536)
        if not chunk:
            return None
        data += chunk
    need = Gio.DBusMessage.bytes_needed(data[:16])
    while len(data) < need:
        chunk = s.recv(65536)
        if not chunk:
            return None
        data += chunk
    return Gio.DBusMessage.new_from_blob(data[:need], Gio.DBusCapabilityFlags.NONE)


def test_fuzz_raw_wire(lab, fuzz_agent, planted):
    """Invalid UTF-8 and NUL inside strings, a truncated message, a body that does not match
    its signature: the bus drops such a sender (or the agent answers InvalidArgs); the agent
    is the same process afterwards and still answers."""
    agent = fuzz_agent
    pid = agent.pid
    cases = []
    for method, args in (('DeleteSnapshot', '(s)'), ('CreateSnapshot', '(sa{sv})'),
                         ('ListSnapshots', '(s)'), ('GetPolicy', '(s)')):
        for evil in (b'\xff\xfe', b'\xc0\xaf', b'\xed\xa0\x80', b'a\x00', b'\x80\x80'):
            cases.append((method, args, evil, 'patch'))
    cases.append(('DeleteSnapshot', '(s)', b'', 'truncate'))
    cases.append(('DeleteSnapshot', '(s)', b'', 'signature'))
    answered = 0
    for method, sig, evil, how in cases:
        marker = 'MARKERMARKER'
        values = (marker,) if sig == '(s)' else (marker, {})
        msg = Gio.DBusMessage.new_method_call(BUS_NAME, AGENT_PATH, AGENT_IFACE, method)
        msg.set_body(GLib.Variant(sig, values))
        msg.set_serial(2)
        blob = bytearray(msg.to_blob(Gio.DBusCapabilityFlags.NONE))
        at = blob.find(marker.encode())
        if how == 'patch':
            blob[at:at + len(evil)] = evil  # same length: the framing stays right
        elif how == 'truncate':
            blob = blob[:len(blob) - 4]
        else:  # the signature header says 'u' where the body holds a string
            sig_at = blob.find(b'\x01s\x00')
            blob[sig_at + 1:sig_at + 2] = b'u'
        s = raw_connect(lab.bus_address)
        try:
            s.sendall(bytes(blob))
            if how == 'truncate':
                s.shutdown(socket.SHUT_WR)
            try:
                reply = raw_read_reply(s)
            except (socket.timeout, ConnectionResetError):
                reply = None
            # Dropped by the bus (None), or an error reply, never a method return.
            assert reply is None or reply.get_message_type() == Gio.DBusMessageType.ERROR, \
                (method, evil, how, reply.print_(0) if reply else None)
            if reply is not None:
                assert reply.get_error_name().startswith(('org.freedesktop.DBus.Error.',
                                                          ERR)), reply.get_error_name()
                assert not reply.get_error_name().endswith(('.NoReply', '.Failed'))
        finally:
            s.close()
        answered += 1
    assert agent.proc.poll() is None and agent.pid == pid
    assert agent.call('ListJobs') is not None
    FUZZ_TOTALS['inputs'] = FUZZ_TOTALS.get('inputs', 0) + answered
    FUZZ_TOTALS['rejected'] = FUZZ_TOTALS.get('rejected', 0) + answered
    assert_outside_untouched(planted, agent)


def test_fuzz_agent_survives(lab, fuzz_agent, writer, planted):
    """The same agent process answered everything; it exits cleanly (exit 0, no CRITICAL,
    ASan/LSan quiet); restarted on the same directories (its start-up sweep meets the planted
    links) it lists the same snapshots and removes nothing outside."""
    agent = fuzz_agent
    pid = agent.pid
    assert agent.proc.poll() is None, agent.log_text()[-3000:]
    (before,) = agent.call('ListSnapshots', GLib.Variant('(s)', ('',)))
    agent.stop()  # exit code 0 and no CRITICAL, or it fails
    again = Agent(lab, name='agent-fuzz')
    again.start()
    try:
        (after,) = again.call('ListSnapshots', GLib.Variant('(s)', ('',)))
        assert sorted(s['id'] for s in after) == sorted(s['id'] for s in before)
        assert 'symbolic link in the snapshot directory' in again.log_text()
    finally:
        again.stop()
    assert_outside_untouched(planted, agent)
    total = FUZZ_TOTALS.get('inputs', 0)
    rejected = FUZZ_TOTALS.get('rejected', 0) + FUZZ_TOTALS.get('accepted', 0)
    assert total > 1000 and rejected == total, \
        f'hostile inputs: {total}, {rejected} answered as they must'
    FUZZ_TOTALS['done'] = True
