# SPDX-License-Identifier: LGPL-2.1-or-later
"""Process plumbing the lab modules share (lab.py, system.py, ceph.py): one ``run``,
spawning daemons, finding and stopping a lab's processes, the safety net (atexit and
SIGTERM/SIGHUP stop every started lab) and the watchdog child that cleans up when the
process that started a lab dies without stopping it.  Standard library only."""

import atexit
import inspect
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

__all__ = [
    'LabError', 'run', 'tail', 'pid_alive', 'ancestors', 'wait_pid_gone', 'stop_pid',
    'processes_naming', 'kill_all', 'spawn', 'stop_popen', 'track', 'untrack',
    'start_watchdog', 'stop_watchdog', 'watchdog_main',
]


class LabError(RuntimeError):
    """A lab operation failed; the message carries the command's output."""


def run(argv, check=True, timeout=300, env=None, input=None, text=True, error=LabError):
    """Run a command, capture its output; raise *error* if it cannot run, times out or
    (with check) fails."""
    try:
        res = subprocess.run(argv, capture_output=True, text=text, env=env, input=input,
                             timeout=timeout,
                             stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise error(f'timed out after {timeout}s: {" ".join(argv)}') from e
    except FileNotFoundError as e:
        raise error(f'cannot run {argv[0]}: {e}') from e
    if check and res.returncode != 0:
        out = res.stderr or res.stdout
        if not text:
            out = out.decode(errors='replace')
        raise error(f'{" ".join(argv)} failed ({res.returncode}): {out.strip()}')
    return res


def tail(path, lines=30):
    """The last *lines* lines of a file ('' if it cannot be read)."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError:
        return ''
    return '\n'.join(data.decode(errors='replace').splitlines()[-lines:])


# --------------------------------------------------------------------------
# processes

def pid_alive(pid):
    try:
        with open(f'/proc/{pid}/stat') as f:
            state = f.read().rsplit(')', 1)[1].split()[0]
        return state not in ('Z', 'X')
    except (OSError, IndexError):
        return False


def ancestors():
    """This process and its ancestors: never a lab's to kill."""
    pids = set()
    pid = os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            with open(f'/proc/{pid}/stat') as f:
                pid = int(f.read().rsplit(')', 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def wait_pid_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return not pid_alive(pid)


def stop_pid(pid, grace):
    """SIGTERM *pid*, SIGKILL it if it is still there after *grace* s."""
    if not pid or not pid_alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
        if not wait_pid_gone(pid, grace):
            os.kill(pid, signal.SIGKILL)
            wait_pid_gone(pid, 5)
    except ProcessLookupError:
        pass


def processes_naming(key, uid=None, environ=True):
    """PIDs of live processes whose command line (or, with *environ*, environment) holds
    the bytes of *key*; only those of user *uid* unless it is None.  This process and its
    ancestors are never included."""
    key = key.encode()
    skip = ancestors()
    found = []
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        pid = int(name)
        if pid in skip:
            continue
        try:
            if uid is not None and os.stat(f'/proc/{pid}').st_uid != uid:
                continue
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                blob = f.read()
            if environ:
                try:
                    with open(f'/proc/{pid}/environ', 'rb') as f:
                        blob += b'\0' + f.read()
                except OSError:
                    pass
        except OSError:
            continue
        if key in blob and pid_alive(pid):
            found.append(pid)
    return found


def kill_all(list_pids, sig=signal.SIGTERM, grace=5.0, poll=0.05):
    """Send *sig* to every PID list_pids() returns, wait up to *grace* s for them to go,
    then SIGKILL whatever list_pids() still returns.  Returns the PIDs that outlived the
    grace time."""
    pids = list_pids()
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if pid_alive(p)]
        if pids:
            time.sleep(poll)
    for pid in list_pids():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return pids


def spawn(argv, log_path, env=None, cwd=None, stdout=None, log_mode='ab'):
    """Start a daemon in a session of its own, stdin /dev/null, stderr (and stdout unless
    given) appended to *log_path*."""
    log = open(log_path, log_mode)
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout or log,
                                stderr=log, env=env, start_new_session=True, cwd=cwd)
    finally:
        log.close()


def stop_popen(proc, grace, sig=signal.SIGTERM):
    """Stop a child with *sig*; SIGKILL it if it is still there after *grace* s."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    except ProcessLookupError:
        pass


# --------------------------------------------------------------------------
# safety net: whatever was started is stopped at exit and on SIGTERM/SIGHUP, the last
# started first (a guest on an RBD disk goes before the cluster it reads)

_live = []  # labs, clusters: objects with stop() and workdir
_lock = threading.Lock()
_prev_handlers = {}
_installed = False


def _stop_all():
    with _lock:
        objs = list(reversed(_live))
    for obj in objs:
        try:
            obj.stop()
        except Exception as e:  # pragma: no cover - best effort at exit
            print(f'{type(obj).__name__}: cleanup of {getattr(obj, "workdir", "?")} failed: '
                  f'{e}', file=sys.stderr)


def _on_signal(signum, frame):
    _stop_all()
    prev = _prev_handlers.get(signum, signal.SIG_DFL)
    if callable(prev):
        prev(signum, frame)
    else:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _install():
    global _installed
    if _installed:
        return
    _installed = True
    atexit.register(_stop_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            prev = signal.getsignal(sig)
            if prev in (signal.SIG_DFL, None) or callable(prev):
                _prev_handlers[sig] = prev  # a handler there before ours runs after it
                signal.signal(sig, _on_signal)


def track(obj):
    """Have obj.stop() run at exit and on SIGTERM/SIGHUP (until untrack(obj))."""
    with _lock:
        if obj not in _live:
            _live.append(obj)
    _install()


def untrack(obj):
    with _lock:
        if obj in _live:
            _live.remove(obj)


# --------------------------------------------------------------------------
# a lab's work directory, the life of everything it starts

def open_workdir(obj, prefix, max_len, what):
    """Create obj.workdir (a fresh one under $TMPDIR if None) and track obj.  Warns when
    the path is longer than *max_len*: UNIX socket paths in it are limited to 107 bytes."""
    if obj.workdir is None:
        obj.workdir = tempfile.mkdtemp(prefix=prefix)
    else:
        os.makedirs(obj.workdir, exist_ok=True)
    if len(obj.workdir) > max_len:
        print(f'{what}: warning: work dir {obj.workdir} is long; UNIX socket paths in it '
              'may exceed 107 bytes', file=sys.stderr)
    track(obj)


def close_workdir(obj, what):
    """The end of obj.stop(): the watchdog told all is clean, obj.workdir removed (kept
    with obj.keep), obj untracked."""
    stop_watchdog(obj._watchdog)
    if obj.workdir and not obj.keep:
        shutil.rmtree(obj.workdir, ignore_errors=True)
    elif obj.workdir:
        print(f'{what}: kept {obj.workdir} (VIRTSNAP_LAB_KEEP=1)', file=sys.stderr)
    untrack(obj)


# --------------------------------------------------------------------------
# watchdog: a child that outlives an unclean death of its parent

def start_watchdog(script, *args):
    """Run ``python3 SCRIPT _watchdog ARGS...`` (whose main calls watchdog_main) in a
    session of its own; it waits for its stdin, our pipe, to close."""
    return subprocess.Popen([sys.executable, os.path.abspath(script), '_watchdog', *args],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, cwd='/')


def stop_watchdog(proc):
    """Tell the watchdog the stop was clean ('done'), so it cleans nothing up."""
    if proc is None:
        return
    try:
        proc.stdin.write(b'done')
        proc.stdin.close()
        proc.wait(5)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()


def _wait_for_parent():
    """Ignore the terminal's signals and wait until the parent closes our stdin (it
    exits, however it dies).  True if it said 'done' first (a clean stop)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    data = b''
    while True:
        try:
            chunk = os.read(0, 64)
        except InterruptedError:
            continue
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return b'done' in data


def watchdog_main(cleanup):
    """The watchdog child's body: run cleanup() unless the parent stopped cleanly."""
    if not _wait_for_parent():
        cleanup()
    return 0


# --------------------------------------------------------------------------
# the modules' command lines

def serve(obj):
    """For an ``up`` command: block until Ctrl-C or SIGTERM, then obj.stop()."""
    try:
        signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        obj.stop()
    return 0


def command_line(argv, commands, usage):
    """Run commands[argv[1]](*argv[2:]) (e.g. selftest, up, _watchdog); its exit code,
    or 2 and *usage* for anything else."""
    command = commands.get(argv[1]) if len(argv) >= 2 else None
    try:
        inspect.signature(command).bind(*argv[2:])
    except (TypeError, ValueError):
        print(f'usage: {argv[0]} {usage}', file=sys.stderr)
        return 2
    return command(*argv[2:])
