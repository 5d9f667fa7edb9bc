"""SSH transport (paramiko): host keys checked against known_hosts, key file or agent authentication."""

from __future__ import annotations

import io
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from flctl.cloud.connector import CommandResult, Connector
from flctl.cloud.deploy_errors import (
    AuthenticationFailed,
    DeployError,
    HostKeyChanged,
    HostKeyUnknown,
    HostUnreachable,
)

_KNOWN_HOSTS_LOCK = threading.Lock()  # hosts deployed in parallel may add keys to one file


@dataclass(frozen=True)
class SshOptions:
    """How to reach and authenticate to one host."""

    address: str
    port: int = 22
    user: str = "root"
    key_file: Path | None = field(default=None, metadata={"doc": "private key; None uses the SSH agent"})
    known_hosts: Path = field(default_factory=lambda: Path("~/.ssh/known_hosts").expanduser())
    accept_new_host_keys: bool = False
    connect_timeout_s: float = 10.0
    connect_attempts: int = 3
    proxy_command: str | None = None

    @classmethod
    def from_config(cls, config: Path | None, address: str, given: dict[str, object], **rest: object) -> SshOptions:
        """Options for `address`: what the inventory `given` wins; an OpenSSH `config` fills in HostName, Port,
        User, IdentityFile and ProxyCommand it left unset, like `ssh -F config`."""
        values: dict[str, object] = {"address": address, **rest}
        if config is not None:
            found = paramiko.SSHConfig.from_path(str(config)).lookup(address)
            values["address"] = found.get("hostname", address)
            if "port" in found:
                values["port"] = int(found["port"])
            if "user" in found:
                values["user"] = found["user"]
            if found.get("identityfile"):
                values["key_file"] = Path(found["identityfile"][0]).expanduser()
            if "proxycommand" in found and found["proxycommand"].lower() != "none":
                values["proxy_command"] = found["proxycommand"]
        values.update({k: v for k, v in given.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    @property
    def host_key_name(self) -> str:
        """The name known_hosts stores the key under: `host`, or `[host]:port` off port 22."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's `SHA256:...` fingerprint of a public key."""
    import base64
    import hashlib

    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class SshConnector(Connector):
    """One SSH session to one host."""

    def __init__(self, options: SshOptions, name: str | None = None) -> None:
        self.options = options
        self.name = name or options.host_key_name
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    def connect(self) -> None:
        """Connect, retrying an unreachable host with full-jitter backoff (a host that refuses us is not retried)."""
        for attempt in range(self.options.connect_attempts):
            try:
                self._connect_once()
                return
            except HostUnreachable:
                if attempt + 1 == self.options.connect_attempts:
                    raise
                time.sleep(random.uniform(0, min(10.0, 0.5 * 2**attempt)))

    def _connect_once(self) -> None:
        opts = self.options
        client = paramiko.SSHClient()
        if opts.known_hosts.is_file():
            client.get_host_keys().load(str(opts.known_hosts))
        client.set_missing_host_key_policy(_NewKeyPolicy(opts))
        try:
            sock = paramiko.ProxyCommand(opts.proxy_command) if opts.proxy_command else None
            client.connect(opts.address, port=opts.port, username=opts.user, sock=sock,
                           key_filename=str(opts.key_file) if opts.key_file else None,
                           allow_agent=opts.key_file is None, look_for_keys=False,
                           timeout=opts.connect_timeout_s, banner_timeout=opts.connect_timeout_s,
                           auth_timeout=opts.connect_timeout_s)
        except paramiko.BadHostKeyException as exc:
            client.close()
            target = f"'{opts.host_key_name}'"
            raise HostKeyChanged(
                f"the host key of {opts.host_key_name} changed (it now offers {exc.key.get_name()} "
                f"{fingerprint(exc.key)}); if the machine was really reinstalled, remove the old key with "
                f"`ssh-keygen -R {target} -f {opts.known_hosts}` and deploy again") from None
        except HostKeyUnknown:
            client.close()
            raise
        except paramiko.AuthenticationException:
            client.close()
            how = f"the key {opts.key_file}" if opts.key_file else "the keys of the SSH agent"
            raise AuthenticationFailed(f"{opts.user}@{opts.host_key_name} refused {how}; add its public key to the "
                                       "user's authorized_keys or fix key_file in the inventory") from None
        except (TimeoutError, OSError, paramiko.ssh_exception.NoValidConnectionsError) as exc:
            client.close()
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
            raise HostUnreachable(f"cannot reach {opts.host_key_name} ({why}); check the address, the port and "
                                  "that sshd runs there") from None
        except paramiko.SSHException as exc:
            client.close()
            raise DeployError(f"SSH to {opts.host_key_name} failed: {exc}; check that it is an SSH server") from None
        self._client = client

    def put_file(self, data: bytes, remote_path: str, mode: int = 0o644) -> None:
        if self._sftp is None:
            self._sftp = self._session().open_sftp()
        self._sftp.putfo(io.BytesIO(data), remote_path)
        self._sftp.chmod(remote_path, mode)

    def run(self, command: str, timeout_s: float = 300.0) -> CommandResult:
        try:
            _, stdout, stderr = self._session().exec_command(command, timeout=timeout_s)
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
            code = stdout.channel.recv_exit_status()
        except TimeoutError as exc:
            raise DeployError(f"a command on {self.name} did not finish within {timeout_s:.0f} s") from exc
        except (paramiko.SSHException, OSError) as exc:
            raise HostUnreachable(f"the SSH session to {self.name} broke ({exc}); deploy again") from exc
        return CommandResult(code, out, err)

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def _session(self) -> paramiko.SSHClient:
        if self._client is None:
            raise DeployError(f"not connected to {self.name}")
        return self._client


class _NewKeyPolicy(paramiko.MissingHostKeyPolicy):
    """A host not in known_hosts: refused, or accepted and saved when the user asked for it."""

    def __init__(self, options: SshOptions) -> None:
        self.options = options

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        opts = self.options
        if not opts.accept_new_host_keys:
            raise HostKeyUnknown(f"{opts.host_key_name} is not in {opts.known_hosts} (it offers {key.get_name()} "
                                 f"{fingerprint(key)}); check that fingerprint with the host's owner, then deploy "
                                 "again with --accept-new-host-keys")
        with _KNOWN_HOSTS_LOCK:
            opts.known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with opts.known_hosts.open("a", encoding="ascii") as out:
                out.write(f"{opts.host_key_name} {key.get_name()} {key.get_base64()}\n")
