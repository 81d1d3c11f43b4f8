# SPDX-License-Identifier: LGPL-2.1-or-later
"""Hostile input to the hook beyond test_hook.py's garbage: its environment (timeout and bus
address), stdin that trickles, never ends, is a directory or a FIFO nobody writes, an XML
bomb, and control characters in every argument -- against the real agent on the system
lab's bus and against no agent. Each run allows (exit 0), prints nothing on stdout (libvirtd
would take it as a new domain XML for migrate/restore), ends within its timeout, and ASan
finds nothing; the agent answers every call and is still the same process."""

import os
import subprocess
import tempfile
import threading
import time

from hookenv import HOOK, sanitizer_env

TIMEOUT_S = 2.0  # the hook's default


def run(args, env, stdin=b'', timeout=30):
    """The built hook: (returncode, stdout, stderr, seconds). @stdin: bytes, or a file
    descriptor, or a callable given the pipe to write to (in a thread)."""
    t0 = time.monotonic()
    if callable(stdin):
        proc = subprocess.Popen([HOOK, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        feeder = threading.Thread(target=stdin, args=(proc.stdin,), daemon=True)
        feeder.start()
        # Not communicate(): it would close stdin, which the feeder keeps writing.
        out = proc.stdout.read()
        err = proc.stderr.read()
        proc.wait(timeout)
        feeder.join(5)
        return proc.returncode, out, err, time.monotonic() - t0
    res = subprocess.run([HOOK, *args], input=stdin if isinstance(stdin, bytes) else None,
                         stdin=None if isinstance(stdin, bytes) else stdin,
                         capture_output=True, timeout=timeout, env=env)
    return res.returncode, res.stdout, res.stderr, time.monotonic() - t0


def check(result, shown, limit=TIMEOUT_S):
    code, out, err, seconds = result
    assert code == 0, (shown, err[-500:])
    assert out == b'', (shown, out[:200])
    assert seconds < limit + 1.0, (shown, seconds)
    assert b'AddressSanitizer' not in err and b'runtime error' not in err, err[-2000:]
    assert b'LeakSanitizer' not in err, err[-2000:]


def base_env(address):
    return dict(sanitizer_env(), PATH='/usr/bin:/bin', LC_ALL='C',
                VIRTSNAP_HOOK_BUS_ADDRESS=address)


def test_hook_hostile_environment():
    """Garbage timeouts fall back to the default; garbage bus addresses allow at once (or
    within the timeout for an address that never answers)."""
    count = 0
    for timeout in ('', '0', '-1', 'abc', '1e3', '2000ms', '99999999999999999999', ' 500',
                    '600001', '\x01'):
        env = dict(base_env('unix:path=/nonexistent/virtsnap-bus'),
                   VIRTSNAP_HOOK_TIMEOUT_MS=timeout)
        check(run(['vm', 'prepare', 'begin', '-'], env, b'<domain/>'), timeout)
        count += 1
    for address in ('', 'garbage', 'unix:', 'unix:path=', 'unix:path=' + 'x' * 100000,
                    'unix:abstract=virtsnap-fuzz-nobody', 'tcp:host=127.0.0.1,port=1',
                    'nonce-tcp:host=127.0.0.1,port=1,noncefile=/etc/shadow',
                    'unixexec:path=/bin/sh,argv1=-c,argv2=touch%20/tmp/virtsnap-pwned',
                    'unix:path=/dev/null', 'unix:path=/etc/passwd;tcp:',
                    'unix:path=/tmp/\u00e9\u202e\x01'):
        env = base_env(address)
        check(run(['vm', 'start', 'begin', '-'], env, b'<domain/>'), address[:40])
        count += 1
    assert not os.path.exists('/tmp/virtsnap-pwned')
    print(f'hook: {count} hostile environments, all allowed within the timeout')


def test_hook_hostile_stdin(syslab, agent):
    """stdin that trickles forever, never ends, is a directory, or a FIFO nobody writes; an
    XML bomb; control characters in each argument: the agent answers, the hook allows within
    its timeout."""
    env = base_env(syslab.bus_address)
    pid = agent.pid
    before = agent.hook_counts()

    def trickle(pipe):
        try:
            while True:
                pipe.write(b'<')
                pipe.flush()
                time.sleep(0.05)
        except (BrokenPipeError, ValueError, OSError):
            pass

    bomb = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">' +
            b''.join(b'<!ENTITY lol%d "%s">' % (i, (b'&lol%d;' % (i - 1) if i else b'&lol;') * 10)
                     for i in range(10)) + b']><domain>&lol9;</domain>')
    # A trickle never ends: read until the deadline, then allowed.
    check(run(['vm', 'start', 'begin', '-'], env, trickle), 'trickle')
    check(run(['vm', 'prepare', 'begin', '-'], env, bomb), 'xml bomb')
    with tempfile.TemporaryDirectory() as d:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            check(run(['vm', 'start', 'begin', '-'], env, fd), 'a directory')
        finally:
            os.close(fd)
        fifo = os.path.join(d, 'fifo')
        os.mkfifo(fifo)
        fd = os.open(fifo, os.O_RDWR)  # a writer that never writes: no EOF
        try:
            check(run(['vm', 'start', 'begin', '-'], env, fd), 'a silent fifo')
        finally:
            os.close(fd)
    controls = ''.join(chr(c) for c in range(1, 32)) + '\x7f\u202e\ufeff'
    n = 0
    for i in range(4):
        args = ['vm', 'start', 'begin', '-']
        args[i] = f'x{controls}y'
        check(run(args, env, b'<domain/>'), i)
        n += 1
    assert agent.proc.poll() is None and agent.pid == pid
    after = agent.hook_counts()
    # Every call reached the agent: 3 of the control-character calls have operation start.
    assert after.get('start', 0) - before.get('start', 0) >= 3 + n - 1, (before, after)
    assert after.get('prepare', 0) - before.get('prepare', 0) >= 1, (before, after)
    assert 'CRITICAL' not in agent.log_text()
