"""The default policy: every role against every command, on own, same-org and other-org jobs (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flctl.node.security.authz import DEFAULT, Actor, JobOwner, PolicyError, decide, load_policy, signer_allowed
from flctl.provisioner.kit_files import _POLICY

COMMANDS = {"submit": "submit_job", "ls": "view", "show": "view", "logs": "download_job", "watch": "view",
            "abort": "manage_job", "download": "download_job"}

# (role, command) -> the job relations on which it is allowed (own, same_org, other_org).
EXPECTED = {
    "project_admin": {c: {"own", "same_org", "other_org"} for c in COMMANDS},
    "org_admin": {"submit": set(), "ls": {"own", "same_org", "other_org"}, "show": {"own", "same_org", "other_org"},
                  "logs": {"own", "same_org"}, "watch": {"own", "same_org", "other_org"},
                  "abort": {"own", "same_org"}, "download": {"own", "same_org"}},
    "lead": {"submit": {"own", "same_org", "other_org"}, "ls": {"own", "same_org", "other_org"},
             "show": {"own", "same_org", "other_org"}, "logs": {"own"},
             "watch": {"own", "same_org", "other_org"}, "abort": {"own"}, "download": {"own"}},
    "member": {"submit": set(), "ls": {"own", "same_org", "other_org"}, "show": {"own", "same_org", "other_org"},
               "logs": set(), "watch": {"own", "same_org", "other_org"},
               "abort": set(), "download": set()},
}


def job_for(actor: Actor, relation: str) -> JobOwner:
    return {"own": JobOwner(actor.name, actor.org), "same_org": JobOwner("colleague", actor.org),
            "other_org": JobOwner("stranger", "elsewhere")}[relation]


@pytest.mark.parametrize("role", list(EXPECTED))
@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("relation", ["own", "same_org", "other_org"])
def test_matrix(role, command, relation):
    """Each cell of the role x command x job-relation matrix matches the documented default policy."""
    actor = Actor("me", "acme", role)
    job = None if command == "submit" else job_for(actor, relation)
    allowed = decide(DEFAULT, actor, COMMANDS[command], job) is None  # type: ignore[arg-type]
    assert allowed == (relation in EXPECTED[role][command])


def test_the_kit_default_policy_is_the_built_in_default():
    """The policy.yml the provisioner writes into kits parses to the same rules the server uses by default."""
    assert load_policy_text(_POLICY.format(kind="site")) == DEFAULT


def load_policy_text(text: str):
    from flctl.node.security.authz import Policy

    return Policy.model_validate(yaml.safe_load(text))


def test_refusals_name_the_missing_right():
    assert decide(DEFAULT, Actor("m", "a", "member"), "submit_job") == "role 'member' lacks the right submit_job"
    reason = decide(DEFAULT, Actor("l", "a", "lead"), "manage_job", JobOwner("other", "a"))
    assert reason == "role 'lead' has manage_job only on its own jobs; this job was submitted by other"


def test_own_org_site_condition_at_a_site():
    """own_org_site: allowed only where the site belongs to the admin's organisation."""
    from flctl.node.security.authz import Policy, RoleRights

    policy = Policy(roles={"lead": RoleRights(submit_job="own_org_site")})
    assert decide(policy, Actor("l", "a", "lead"), "submit_job", site_org="a") is None
    assert "only at sites of its own organisation" in str(decide(policy, Actor("l", "a", "lead"), "submit_job",
                                                                 site_org="b"))


def test_unknown_role_has_no_rights():
    assert decide(DEFAULT, Actor("x", "a", "intern"), "view") == "role 'intern' has no rights in this policy"


def test_allowed_signers():
    from flctl.node.security.authz import JobRules, Policy

    policy = Policy(roles=DEFAULT.roles, jobs=JobRules(allowed_signers=["boss@a", "org:trusted"]))
    assert signer_allowed(policy, Actor("boss@a", "a", "lead")) is None
    assert signer_allowed(policy, Actor("anyone", "trusted", "lead")) is None
    assert signer_allowed(policy, Actor("eve", "b", "lead")) == \
        "jobs signed by eve (b) are not allowed by this site's policy"


def test_invalid_policy_file_is_named(tmp_path: Path):
    path = tmp_path / "policy.yml"
    path.write_text("api_version: 1\nroles: {lead: {submit_job: sometimes}}\n")
    with pytest.raises(PolicyError, match=r"policy\.yml: roles\.lead\.submit_job: 'sometimes' is not allowed; use "
                                          "'any', 'own_org', 'own', 'own_org_site' or 'none'"):
        load_policy(path)


def test_missing_policy_file_means_the_default(tmp_path: Path):
    assert load_policy(tmp_path / "none.yml") == DEFAULT


def test_a_policy_file_that_is_not_yaml_is_named():
    """Unreadable or not YAML: one sentence naming the file, as privacy.yml and resources.yml say it."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy.yml"
        path.write_text("roles: [unclosed\n")
        with pytest.raises(PolicyError, match=r"cannot read .*policy\.yml: "):
            load_policy(path)
        with pytest.raises(PolicyError, match=r"cannot read .*"):
            load_policy(Path(tmp))  # a folder
