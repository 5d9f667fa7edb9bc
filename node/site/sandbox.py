"""Confining a job's training script: what it may read and write, which environment it gets, as which user it runs.

    python -m flctl.node.site.sandbox [--read PATH]... [--write PATH]... [--append PATH]... [--user NAME] -- COMMAND...

The launcher restricts itself, then execs COMMAND (same process id), so the site's job process and daemon stay
unrestricted. Which isolation is in force is decided once, by `available()`:

- `landlock vN`: the kernel's Landlock LSM (ABI N, found with the `landlock_create_ruleset` syscall). The script
  may read (and execute) only the Python installation, the `node` package, a few system folders and files, the
  site's granted data paths; write only its job workspace and its Client API folder. Everything else (the kit's
  `startup/`, other jobs, the daemon's workspace, `/proc/<other pid>`) is refused by the kernel. From ABI 6 it can
  neither signal processes outside its domain nor reach their abstract unix sockets. A few lines of ctypes over
  the three syscalls (the PyPI binding `landlock` is a pre-release; this needs no dependency).
- `user NAME`: no Landlock, but the site runs as root: the script runs as NAME (default `nobody`) with no
  supplementary groups; its workspace is chowned to NAME. Files of root's that are not world-readable (the kit's
  keys, `/proc/<parent>/environ`) are refused; world-readable files are not.
- `none`: neither. Only the minimal environment (`script_env`) protects the site.

Both set `no_new_privs`, so nothing the script execs gains privileges (setuid binaries).
"""

from __future__ import annotations

import ctypes
import glob
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# -- Landlock, from <linux/landlock.h> ------------------------------------------------------------------------------
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # the same on every architecture
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_DUMPABLE = 4

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR, MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = (
    1 << 4, 1 << 5, 1 << 6, 1 << 7, 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12)
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
"""The only rights a rule on a file (not a folder) may carry."""

READ = EXECUTE | READ_FILE | READ_DIR
APPEND = WRITE_FILE | MAKE_REG
"""Write-only: create and write files, never read them back (the simulator's per-site logs)."""

SYSTEM_READ = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/ld.so.cache", "/etc/ld.so.conf",
               "/etc/ld.so.conf.d", "/etc/localtime", "/etc/nsswitch.conf", "/etc/hosts", "/etc/resolv.conf",
               "/etc/host.conf", "/etc/gai.conf", "/etc/mime.types", "/etc/ssl", "/etc/ca-certificates",
               "/etc/pki", "/etc/alternatives", "/proc/cpuinfo", "/proc/meminfo", "/proc/stat",
               "/sys/devices/system/cpu", "/sys/devices/system/node", "/sys/fs/cgroup")
"""What any Python (and torch) needs to start and to see its CPUs: shared libraries, time zone, name lookup,
CA certificates. Not /etc as a whole (it holds /etc/shadow, which root's scripts could read)."""
SYSTEM_WRITE = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/shm")
GPU_DEVICES = ("/dev/nvidia*", "/dev/dri")

BASE_ENV = ("PATH", "LANG", "LC_ALL", "TZ")
"""Variables of the site's own environment a script gets; a site adds others with `job_env_allow`."""
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


class SandboxError(OSError):
    """The script could not be confined as asked (the launcher then refuses to run it)."""


@dataclass(frozen=True)
class Isolation:
    """Which isolation a site's job scripts get: kind `landlock` (with its ABI), `user` (with its name) or `none`."""

    kind: str
    abi: int = 0
    user: str = ""

    def describe(self) -> str:
        if self.kind == "landlock":
            return f"landlock v{self.abi}"
        if self.kind == "user":
            return f"user {self.user}"
        return "none"


@dataclass(frozen=True)
class Grants:
    """The paths a confined script may use: `read` (and execute), `write` (everything), `append` (write-only)."""

    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    append: tuple[str, ...] = ()
    extra: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Confinement:
    """How one script runs: its isolation, its workspace (HOME, writable), what else of the site it may read
    and which of the site's variables it gets."""

    isolation: Isolation
    workspace: Path
    data_paths: tuple[str, ...] = ()
    env_allow: tuple[str, ...] = ()


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when it has none (not built in, not enabled, or not Linux)."""
    if sys.platform != "linux":
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    version = int(libc.syscall(ctypes.c_long(_SYS_CREATE_RULESET), None, ctypes.c_size_t(0),
                               ctypes.c_uint32(_CREATE_RULESET_VERSION)))
    return max(0, version)


def choose(abi: int, euid: int, job_user: str) -> Isolation:
    """Landlock when the kernel has it; else another user when running as root; else none (pure)."""
    if abi >= 1:
        return Isolation("landlock", abi=abi)
    if euid == 0:
        return Isolation("user", user=job_user)
    return Isolation("none")


def available(job_user: str = "nobody") -> Isolation:
    """The isolation this machine gives job scripts."""
    return choose(landlock_abi(), os.geteuid() if hasattr(os, "geteuid") else -1, job_user)


def python_paths() -> list[str]:
    """The Python installation a script needs to read: this interpreter's prefixes and its real executable."""
    out = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
           str(Path(os.path.realpath(sys.executable)).parent), str(Path(sys.executable).parent)}
    for entry in sys.path:  # site-packages outside the prefixes (a user install)
        if entry.endswith(("site-packages", "dist-packages")):
            out.add(entry)
    return sorted(p for p in out if p and p != "/")


def package_dirs() -> list[str]:
    """The `flctl` package's folder and, where it links to them (a checkout), the real folder of `flctl.node`:
    a script imports `flctl.client`."""
    import flctl

    top = Path(flctl.__file__).resolve().parent
    return sorted({str(top), str((top / "node").resolve()), str(Path(__file__).resolve().parent.parent)})


def script_grants(workspace: Path, api_dir: Path | None, data_paths: Sequence[str] = ()) -> Grants:
    """What a site's training script may use: its workspace and Client API folder (write), the Python
    installation, `node`, system files and the granted data paths (read)."""
    read = [*SYSTEM_READ, *python_paths(), *package_dirs(), *data_paths]
    write = [str(workspace), *SYSTEM_WRITE, *_gpu_devices()]
    if api_dir is not None:
        write.append(str(api_dir))
    return Grants(read=tuple(read), write=tuple(write))


def exposing(grants: Grants, secret: Path) -> str:
    """The granted path under which `secret` lies (so a confined script could read it), else ''."""
    target = os.path.realpath(secret)
    for granted in (*grants.read, *grants.write, *grants.append):
        real = os.path.realpath(granted)
        if target == real or target.startswith(real.rstrip("/") + "/"):
            return granted
    return ""


def _gpu_devices() -> list[str]:
    return [p for pattern in GPU_DEVICES for p in glob.glob(pattern)]


def script_env(source: Mapping[str, str], *, job_env: Mapping[str, str], allow: Sequence[str], home: Path,
               tmp: Path) -> dict[str, str]:
    """The environment a script starts with: PATH, LANG, LC_ALL, TZ and the `allow` names from `source` (the
    site's), HOME and TMPDIR in its workspace, then what the job declares (`app.env`). Nothing else of the
    site's (its cloud credentials, its own variables) reaches it. The caller adds the Client API's variables."""
    env = {name: source[name] for name in (*BASE_ENV, *allow) if name in source}
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("LANG", "C.UTF-8")
    env.update({"HOME": str(home), "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"})
    env.update(job_env)
    return env


def launcher(grants: Grants, isolation: Isolation, command: Sequence[str]) -> list[str]:
    """The command line that runs `command` confined by `isolation` to `grants` (unchanged when it is none)."""
    if isolation.kind == "none":
        return list(command)
    args = [sys.executable, "-m", "flctl.node.site.sandbox"]
    if isolation.kind == "landlock":
        for flag, paths in (("--read", grants.read), ("--write", grants.write), ("--append", grants.append)):
            for path in paths:
                args += [flag, path]
    else:
        args += ["--user", isolation.user]
    return [*args, "--", *command]


# -- applying it ------------------------------------------------------------------------------------------------------


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


class _RulesetAttr(ctypes.Structure):
    _fields_ = (("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64))


def _fs_rights(abi: int) -> int:
    rights = (1 << 13) - 1  # ABI 1: EXECUTE .. MAKE_SYM
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.prctl.restype = ctypes.c_int
    return libc


def no_new_privs() -> None:
    """Nothing this process execs gains privileges (Landlock requires it of an unprivileged caller)."""
    if _libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise SandboxError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


def not_dumpable() -> None:
    """Make this process's /proc/PID/environ, mem and maps unreadable by other processes of its user (unless
    privileged), and refuse core dumps: defence in depth for the site daemon and job process. Not on Linux:
    nothing."""
    if sys.platform == "linux":
        _libc().prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def restrict(grants: Grants, abi: int) -> None:
    """Confine this thread (and what it starts or execs from now on) to `grants` with Landlock ABI `abi`.

    This process's own /proc/PID is readable too (Python and torch read /proc/self). A granted path that does not
    exist is left out. SandboxError when the kernel refuses."""
    libc = _libc()
    handled = _fs_rights(abi)
    attr = _RulesetAttr(handled, 0, (SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL) if abi >= 6 else 0)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = int(libc.syscall(ctypes.c_long(_SYS_CREATE_RULESET), ctypes.byref(attr), ctypes.c_size_t(size),
                               ctypes.c_uint32(0)))
    if ruleset < 0:
        raise SandboxError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        rules = [(p, READ) for p in (*grants.read, f"/proc/{os.getpid()}")] + [(p, handled) for p in grants.write] + \
            [(p, APPEND) for p in grants.append] + list(grants.extra.items())
        for path, rights in rules:
            _add_rule(libc, ruleset, path, rights & handled)
        no_new_privs()
        if libc.syscall(ctypes.c_long(_SYS_RESTRICT_SELF), ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            raise SandboxError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)


def _add_rule(libc: ctypes.CDLL, ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # not on this machine
    try:
        if not os.path.isdir(path):
            rights &= _FILE_RIGHTS
        rule = _PathBeneath(rights, fd)
        if libc.syscall(ctypes.c_long(_SYS_ADD_RULE), ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                        ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
            raise SandboxError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
    finally:
        os.close(fd)


def become(user: str) -> None:
    """Run as `user` (by name or number) from now on, with its group and no supplementary groups."""
    import pwd

    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except (KeyError, ValueError):
        raise SandboxError(f"no such user {user!r} (job_user in local/resources.yml)") from None
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    no_new_privs()


def user_ids(user: str) -> tuple[int, int]:
    """`user`'s uid and gid (for chowning a workspace to it)."""
    import pwd

    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except (KeyError, ValueError):
        raise SandboxError(f"no such user {user!r} (job_user in local/resources.yml)") from None
    return entry.pw_uid, entry.pw_gid


def chown_tree(root: Path, uid: int, gid: int) -> None:
    """Give `root` and everything under it to uid:gid (links themselves, never what they point to)."""
    os.chown(root, uid, gid, follow_symlinks=False)
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)


def main(argv: list[str]) -> int:
    """The launcher: confine this process as the flags say, then exec the command."""
    read: list[str] = []
    write: list[str] = []
    append: list[str] = []
    user = ""
    args = list(argv)
    while args and args[0] != "--":
        flag = args.pop(0)
        if flag in ("--read", "--write", "--append", "--user") and args:
            value = args.pop(0)
            {"--read": read, "--write": write, "--append": append}.get(flag, []).append(value)
            if flag == "--user":
                user = value
        else:
            print(f"flctl.node.site.sandbox: unknown or incomplete option {flag!r}", file=sys.stderr)
            return 2
    command = args[1:]
    if not command:
        print("flctl.node.site.sandbox: no command after --", file=sys.stderr)
        return 2
    try:
        if user:
            become(user)
        else:
            abi = landlock_abi()
            if abi < 1:
                raise SandboxError(f"this kernel ({platform.release()}) has no Landlock; the script was not started")
            restrict(Grants(tuple(read), tuple(write), tuple(append)), abi)
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"flctl.node.site.sandbox: cannot confine or start {command[0]!r}: {exc}", file=sys.stderr)
        return 126
    return 126  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
