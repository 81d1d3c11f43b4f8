# SPDX-License-Identifier: LGPL-2.1-or-later
"""virtsnapctl as people type it: global options before or after the command, command
options anywhere after it, "--", each command's --help, usage errors, and the bash
completion (completion/virtsnapctl) asking the real agent for domains, snapshots and jobs."""

import json
import os
import re
import subprocess

from conftest import REPO, VIRTSNAPCTL

COMPLETION = os.path.join(REPO, 'completion', 'virtsnapctl')
BASH_COMPLETION = '/usr/share/bash-completion/bash_completion'
COMMANDS = ['status', 'domains', 'watch', 'snapshot', 'jobs', 'job', 'wait', 'cancel',
            'snapshots', 'delete', 'clone', 'verify', 'policy', 'mount', 'umount', 'exports',
            'revert', 'help']
NO_BUS = 'unix:path=/nonexistent/virtsnap-test-bus'


def ctl(*args, timeout=120):
    """virtsnapctl with exactly these arguments (no --address put in front)."""
    return subprocess.run([VIRTSNAPCTL] + list(args), capture_output=True, text=True,
                          timeout=timeout)


def complete(words, cword=None, bash_completion=False, line=None):
    """What _virtsnapctl offers for COMP_WORDS=words (the last one is completed unless
    cword says otherwise). With bash_completion, the real bash-completion library is
    loaded first and words are split the way bash splits them (at '=' and ':')."""
    assert os.path.exists(COMPLETION), f'{COMPLETION} missing (is completion/ staged?)'
    cword = len(words) - 1 if cword is None else cword
    prologue = f'source {BASH_COMPLETION}; ' if bash_completion else ''
    script = (prologue + 'source "$1"; shift; COMP_LINE=$1; COMP_POINT=${#COMP_LINE}; shift; '
              'COMP_CWORD=$1; shift; COMP_WORDS=("$@"); _virtsnapctl; '
              'printf "%s\\n" "${COMPREPLY[@]}"')
    line = ' '.join(words) if line is None else line
    res = subprocess.run(['bash', '-c', script, 'bash', COMPLETION, line, str(cword)] + words,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stderr == '', res.stderr  # errors of the agent calls are silenced
    return [w for w in res.stdout.split('\n') if w]


def bash_split(line):
    """COMP_WORDS as bash builds them: words at blanks, and '=' and ':' as words of their
    own (they are in COMP_WORDBREAKS)."""
    words = []
    for token in line.split(' '):
        words += [w for w in re.split(r'([=:]+)', token) if w] or ['']
    return words


def help_options(command):
    """The long options a command's --help lists (its own and the global ones)."""
    res = ctl(command, '--help') if command else ctl('--help')
    assert res.returncode == 0, res.stderr
    return {m.group(1) for m in re.finditer(r'^  (?:-\S, |    )(--[a-z][a-z-]*)', res.stdout,
                                            re.M)}


def test_global_options_after_the_command(agent, writer):
    addr = agent.lab.bus_address
    res = ctl('domains', '--json', '--address', addr)
    assert res.returncode == 0, res.stderr
    assert 'writer' in {d['name'] for d in json.loads(res.stdout)}
    # Before the command, after it, short and with '=': the same document.
    for args in (['--json', f'--address={addr}', 'domains'], ['domains', '-j', '-a', addr],
                 ['-a', addr, 'domains', '--json']):
        res = ctl(*args)
        assert res.returncode == 0, (args, res.stderr)
        assert {d['name'] for d in json.loads(res.stdout)} == \
            {d['name'] for d in json.loads(ctl('domains', '--json', '-a', addr).stdout)}
    names = ctl('domains', '--names', '--address', addr)
    assert names.returncode == 0 and 'writer' in names.stdout.splitlines()
    # Without --json after the command: the table, not JSON.
    table = ctl('domains', '--address', addr).stdout.splitlines()
    assert table[0].split()[:2] == ['NAME', 'STATE']
    # Two bus options exclude each other wherever they are.
    res = ctl('domains', '--session', '--address', addr)
    assert res.returncode == 2 and 'exclude each other' in res.stderr


def test_snapshot_options_anywhere(agent, writer):
    addr = agent.lab.bus_address
    res = ctl('snapshot', 'writer', '--wait', '--json', '--address', addr)
    assert res.returncode == 0, res.stderr
    first = json.loads(res.stdout)
    assert first['state'] == 'succeeded' and first['domain'] == 'writer', first
    assert first['snapshot_id']
    # Command options before the domain, grouped short flags, --opt=value.
    res = agent.ctl('snapshot', '--name=cli-opts', '-wj', '--quiesce', 'try', 'writer')
    assert res.returncode == 0, res.stderr
    second = json.loads(res.stdout)
    assert second['state'] == 'succeeded' and second['result']['name'] == 'cli-opts'
    ids = agent.ctl('snapshots', 'writer', '--ids').stdout.splitlines()
    assert set(ids) >= {first['snapshot_id'], second['snapshot_id']}
    jobs = agent.ctl('jobs', '--ids').stdout.splitlines()
    assert {str(first['id']), str(second['id'])} <= set(jobs)
    res = agent.ctl('job', str(second['id']), '--json')
    assert res.returncode == 0 and json.loads(res.stdout)['snapshot_id'] == second['snapshot_id']


def test_every_command_has_its_help_without_an_agent(agent):
    listed = ctl('--help')
    assert listed.returncode == 0
    section = listed.stdout.split('Commands:\n')[1].split('\n\n')[0]
    assert [line.split()[0] for line in section.splitlines()] == COMMANDS
    for command in COMMANDS:
        # No agent on this bus: help does not need one.
        res = ctl(command, '--help', '--address', NO_BUS)
        assert res.returncode == 0, (command, res.stderr)
        assert res.stdout.startswith(f'Usage: virtsnapctl {command}'), res.stdout
        assert 'Global options:' in res.stdout and '--json' in res.stdout
        assert ctl('help', command).stdout == res.stdout
        assert ctl('-a', NO_BUS, command, '-h').stdout == res.stdout
    snap = ctl('snapshot', '--help').stdout
    for option in ('--disk=TARGET', '--method=METHOD', '--quiesce=MODE', '--wait',
                   '--legacy-undefine', '--no-flatten'):
        assert option in snap
    assert '--ids' in ctl('jobs', '--help').stdout
    assert '--names' in ctl('domains', '--help').stdout


def test_usage_errors_name_the_command(agent, writer):
    cases = [
        (['domains', '--bogus'], "virtsnapctl domains: unknown option '--bogus'", 'domains'),
        (['snapshot', 'writer', '-x'], "virtsnapctl snapshot: unknown option '-x'", 'snapshot'),
        (['snapshot', 'writer', '--method'], "virtsnapctl snapshot: option '--method' needs",
         'snapshot'),
        (['snapshot'], 'virtsnapctl snapshot: missing argument', 'snapshot'),
        (['delete', 'a', 'b'], "virtsnapctl delete: unexpected argument 'b'", 'delete'),
        (['jobs', '--wait'], "virtsnapctl jobs: unknown option '--wait'", 'jobs'),
        (['domains', '--json=yes'], "virtsnapctl domains: option '--json' takes no value",
         'domains'),
        (['policy', 'frob', 'writer'], "virtsnapctl policy: 'frob' is not show", 'policy'),
        (['job', 'seven'], "virtsnapctl job: 'seven' is not a job ID", 'job'),
    ]
    for args, message, command in cases:
        res = agent.ctl(*args)
        assert res.returncode == 2, (args, res)
        lines = res.stderr.splitlines()
        assert len(lines) == 2 and lines[0].startswith(message), (args, res.stderr)
        assert lines[1] == f"Try 'virtsnapctl {command} --help'.", (args, res.stderr)
    res = agent.ctl('frobnicate')
    assert res.returncode == 2
    assert res.stderr.splitlines() == ["virtsnapctl: unknown command 'frobnicate'",
                                       "Try 'virtsnapctl --help'."]
    # None of these reached the agent: no job was started.
    assert agent.ctl('jobs', '--ids').stdout == ''


def test_double_dash_ends_options(agent, writer):
    # After --, '--wait' is the domain's name, not an option.
    res = agent.ctl('snapshot', '--', '--wait')
    assert res.returncode == 4, res
    assert "'--wait'" in res.stderr and 'NoSuchDomain' in res.stderr
    res = agent.ctl('domains', '--', '--json')
    assert res.returncode == 2 and "unexpected argument '--json'" in res.stderr
    # Options before -- still count; the command may come after it.
    res = agent.ctl('--json', '--', 'domains')
    assert res.returncode == 0 and 'writer' in {d['name'] for d in json.loads(res.stdout)}
    assert agent.ctl('jobs', '--ids').stdout == ''


def test_a_job_by_number_or_path(agent, writer):
    """job, wait and cancel name a job by its number or its object path and read the same
    properties either way; an ended job waits no more and cancelling it changes nothing;
    a job that is not there is exit 4 (NoSuchJob), a malformed path a usage error."""
    res = agent.ctl('snapshot', 'writer', '--wait', '--json')
    assert res.returncode == 0, res.stderr
    done = json.loads(res.stdout)
    path, number = done['job'], str(done['id'])
    assert path.endswith(f'/job/{number}') and done['snapshot_id'], done
    for args in (['job', number], ['job', path], ['wait', number], ['wait', path]):
        res = agent.ctl(*args, '--json')
        assert res.returncode == 0, (args, res.stderr)
        assert json.loads(res.stdout) == done, args
    human = agent.ctl('job', number).stdout.splitlines()
    assert human[0] == f'job {path}: succeeded (done) of writer', human
    assert f"  snapshot: {done['snapshot_id']} (name {done['result']['name']})" in human
    row = [line.split() for line in agent.ctl('jobs').stdout.splitlines()[1:]]
    assert [number, 'succeeded', 'done', '100%', 'writer', done['snapshot_id']] in row, row
    res = agent.ctl('cancel', path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f'cancel requested for {path} (it undoes its work, then ends)\n'
    assert json.loads(agent.ctl('job', number, '--json').stdout)['state'] == 'succeeded'
    missing = path[:-len(number)] + '999999'
    for command in ('job', 'wait', 'cancel'):
        res = agent.ctl(command, '999999')
        assert res.returncode == 4, (command, res)
        assert res.stderr == f'virtsnapctl: no job {missing} (org.virtsnap.Error.NoSuchJob)\n'
        res = agent.ctl(command, path[:-len(number)])
        assert res.returncode == 2, (command, res)
        assert 'is not a job ID' in res.stderr, res.stderr


def test_completion_offers_what_the_agent_has(agent, writer):
    props = agent.snapshot('writer', name='for-completion')
    assert props['State'] == 'succeeded', props['Error']
    snap_id = props['Result']['snapshot-id']
    job_id = str(props['Id'])
    addr = agent.lab.bus_address

    assert complete([VIRTSNAPCTL, 'sn']) == ['snapshot', 'snapshots']
    assert 'writer' in complete([VIRTSNAPCTL, '--address', addr, 'snapshot', ''])
    assert complete([VIRTSNAPCTL, '--address', addr, 'snapshot', 'wr']) == ['writer']
    assert 'writer' in complete([VIRTSNAPCTL, '-a', addr, 'policy', 'show', ''])
    assert snap_id in complete([VIRTSNAPCTL, '--address', addr, 'delete', ''])
    assert job_id in complete([VIRTSNAPCTL, '-a', addr, 'wait', ''])
    assert job_id in complete([VIRTSNAPCTL, '-a', addr, 'cancel', ''])
    # The bus given after the word being completed counts too.
    assert snap_id in complete([VIRTSNAPCTL, 'delete', '', '--address', addr], cword=2)
    # Option values.
    assert complete([VIRTSNAPCTL, 'snapshot', 'writer', '--method', '']) == \
        ['auto', 'live', 'cold', 'rbd', 'mixed']
    assert complete([VIRTSNAPCTL, 'snapshot', '--quiesce=r']) == ['require']
    # No agent on that bus: nothing offered, and nothing printed.
    assert complete([VIRTSNAPCTL, '--address', NO_BUS, 'snapshot', '']) == []

    # With bash-completion loaded, as in a real shell: --address=unix:path=... arrives in
    # pieces and is put together again.
    line = f'{VIRTSNAPCTL} --address={addr} delete '
    assert snap_id in complete(bash_split(line), bash_completion=True, line=line)
    line = f'{VIRTSNAPCTL} snapshots --address {addr} '
    assert 'writer' in complete(bash_split(line), bash_completion=True, line=line)


def test_completion_options_match_help():
    """The completion's option lists are the ones each command's --help prints."""
    assert set(complete([VIRTSNAPCTL, '--'])) == help_options(None)
    for command in COMMANDS:
        offered = complete([VIRTSNAPCTL, command, '--'])
        assert set(offered) == help_options(command), command
    assert complete([VIRTSNAPCTL, 'help', '']) == COMMANDS
