"""The deployment's exception family: one `DeployError` per way a rollout to a host can fail.

Each carries `reason` (a short tag the summary and --json use) and a message that is one sentence
saying what went wrong and what to do.
"""

from __future__ import annotations


class DeployError(Exception):
    """Base class: a host could not be deployed, inspected or stopped."""

    reason = "failed"


class HostUnreachable(DeployError):
    """No TCP connection to the host's SSH port."""

    reason = "unreachable"


class AuthenticationFailed(DeployError):
    """The SSH server refused our key (or the agent had none it accepted)."""

    reason = "authentication failed"


class HostKeyUnknown(DeployError):
    """The host's key is not in known_hosts and accepting new keys was not asked for."""

    reason = "unknown host key"


class HostKeyChanged(DeployError):
    """The host presents a key different from the one in known_hosts."""

    reason = "host key changed"


class HostUnsuitable(DeployError):
    """The host lacks what a node needs: a usable Python, disk space, a writable install folder."""

    reason = "host unsuitable"


class RemoteCommandFailed(DeployError):
    """A command run on the host exited non-zero."""

    reason = "command failed"


class KitRejected(DeployError):
    """The kit's signature did not verify on the host: it was changed after provisioning or in transit."""

    reason = "kit rejected"


class Unhealthy(DeployError):
    """The node did not become healthy after it was started."""

    reason = "unhealthy after start"


class LocalBuildFailed(DeployError):
    """The flctl wheel or the dependency wheelhouse could not be built on this machine."""

    reason = "local build failed"


class CloudError(DeployError):
    """A cloud API refused or failed a call (its code and message are in the sentence)."""

    reason = "cloud api error"


class CloudCredentialsMissing(DeployError):
    """No usable credentials for the cloud API (none found, or refused)."""

    reason = "no cloud credentials"


class CloudUnreachable(DeployError):
    """The cloud API's endpoint could not be reached."""

    reason = "cloud unreachable"


class NotInInventory(DeployError):
    """The command named a participant the inventory does not have, or not with that provider."""

    reason = "bad input"


class NotCreated(DeployError):
    """A cloud host's machine does not exist yet (nothing in the deployment state)."""

    reason = "not created"


class DeployInputError(DeployError):
    """What a deployment is made from is not usable (no kits, a kit whose signature fails, a name or port that
    cannot be used): the message names the field; exit code 2."""

    reason = "bad input"


class SchedulerUnreachable(DeployError):
    """The batch scheduler (Slurm) cannot be asked: its commands are not installed here or its controller does
    not answer."""

    reason = "scheduler unreachable"
