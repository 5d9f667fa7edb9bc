"""job.yml: what is accepted, and how each mistake is reported (file, line, field)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flctl.node.errors import JobError
from flctl.node.jobs.job_spec import JobSpec, load_job
from flctl.node.workflows import WORKFLOWS
from flctl.node.workflows.fedavg import FedAvg, FedAvgArgs

GOOD = """\
api_version: 1
name: hello
workflow:
  type: fedavg
  args: {rounds: 3, round_timeout_s: 60}
sites: [site-1, site-2]
min_sites: 2
"""


@pytest.fixture
def job(tmp_path):
    """Write a job folder from job.yml text (with app/train.py) and return its path."""

    def write(text: str, app: bool = True) -> Path:
        folder = tmp_path / "job"
        folder.mkdir(exist_ok=True)
        (folder / "job.yml").write_text(text)
        if app:
            (folder / "app").mkdir(exist_ok=True)
            (folder / "app" / "train.py").write_text("print('train')\n")
        return folder

    return write


def problems_of(folder: Path) -> list[str]:
    with pytest.raises(JobError) as info:
        load_job(folder)
    return [str(p) for p in info.value.problems]


def test_good_job_loads_with_defaults(job):
    """A minimal job loads; resources and app take their defaults and the args are parsed."""
    # Prepare
    folder = job(GOOD)
    # Execute
    loaded = load_job(folder)
    # Assert
    assert loaded.folder == folder
    assert loaded.spec.name == "hello"
    assert loaded.spec.app.command == ["python", "train.py"]
    assert loaded.spec.app.env == {}
    assert (loaded.spec.resources.cpus, loaded.spec.resources.memory_mb) == (1, 0)
    assert loaded.args == FedAvgArgs(rounds=3, round_timeout_s=60)
    assert loaded.spec.site_names(["site-3"]) == ["site-1", "site-2"]


def test_create_workflow_passes_min_sites(job):
    """The job's workflow is built with its args and job.yml's min_sites."""
    # Prepare
    loaded = load_job(job(GOOD))
    # Execute
    workflow = loaded.create_workflow()
    # Assert
    assert isinstance(workflow, FedAvg)
    assert workflow.min_sites == 2
    assert workflow.settings.rounds == 3


def test_sites_all_uses_every_available_site(job):
    """With `sites: all`, the job runs wherever sites are available."""
    # Prepare
    loaded = load_job(job(GOOD.replace("[site-1, site-2]", "all")))
    # Execute
    names = loaded.spec.site_names(["a", "b", "c"])
    # Assert
    assert names == ["a", "b", "c"]


def test_no_job_yml(tmp_path):
    """A folder without job.yml is refused, naming the missing file."""
    # Prepare
    folder = tmp_path / "empty"
    folder.mkdir()
    # Execute
    problems = problems_of(folder)
    # Assert
    assert problems == [f"{folder / 'job.yml'}: no job.yml in {folder}; a job is a folder with job.yml and app/"]


def test_not_a_folder(tmp_path):
    """A path that is not a folder is refused."""
    # Prepare / Execute
    problems = problems_of(tmp_path / "missing")
    # Assert
    assert problems == [f"{tmp_path / 'missing'}: is not a folder; a job is a folder with job.yml and app/, or a "
                        "job file (NAME.yml) with app/ beside it"]


def test_malformed_yaml_names_the_line(job):
    """Broken YAML is reported with its line."""
    # Prepare
    folder = job("api_version: 1\nname: [unclosed\n")
    # Execute
    problems = problems_of(folder)
    # Assert
    assert len(problems) == 1
    assert problems[0].startswith(f"{folder / 'job.yml'}:2: malformed YAML")


def test_not_a_mapping(job):
    """A job.yml that is a list is refused with what is expected."""
    # Prepare
    folder = job("- a\n- b\n")
    # Execute
    problems = problems_of(folder)
    # Assert
    assert problems == [f"{folder / 'job.yml'}:1: expected a mapping with api_version, name, workflow, sites, "
                        "min_sites and app"]


def test_unknown_keys_list_the_allowed_ones(job):
    """Unknown keys, at the top and nested, are refused with their line and the allowed keys."""
    # Prepare
    folder = job(GOOD + "rounds: 3\nresources: {cpus: 1, gpu: 1}\n")
    # Execute
    problems = problems_of(folder)
    # Assert
    path = folder / "job.yml"
    assert problems == [
        f"{path}:8: rounds: unknown key 'rounds'; allowed here: api_version, name, workflow, sites, min_sites, "
        "resources, app, privacy_scope, metrics, initial_model, transfer, checkpoints, psi_job",
        f"{path}:9: resources.gpu: unknown key 'gpu'; allowed here: cpus, memory_mb, gpus, gpu_memory_gb",
    ]


def test_unknown_workflow_lists_the_known_ones(job):
    """An unregistered workflow type is refused, listing the registered ones."""
    # Prepare
    folder = job(GOOD.replace("type: fedavg", "type: fedmedian"))
    # Execute
    problems = problems_of(folder)
    # Assert
    assert problems == [f"{folder / 'job.yml'}:4: workflow.type: unknown workflow type 'fedmedian'; known: "
                        f"{', '.join(sorted(WORKFLOWS))}"]
    assert "fedavg" in WORKFLOWS and "cyclic" in WORKFLOWS


def test_bad_workflow_args_are_located_under_workflow_args(job):
    """The workflow's own Args model checks args; problems point at workflow.args.<key>."""
    # Prepare
    folder = job(GOOD.replace("args: {rounds: 3, round_timeout_s: 60}",
                              "args:\n    rounds: 0\n    round_timeout_s: 60\n    min_sites: 2"))
    # Execute
    problems = problems_of(folder)
    # Assert
    path = folder / "job.yml"
    assert problems == [
        f"{path}:6: workflow.args.rounds: 0 is too small; use 1 or more",
        f"{path}:8: workflow.args.min_sites: unknown key 'min_sites'; allowed here: "
        f"{', '.join(FedAvgArgs.model_fields)}",
    ]


def test_missing_args_are_required(job):
    """fedavg without rounds says rounds is required."""
    # Prepare
    folder = job(GOOD.replace("  args: {rounds: 3, round_timeout_s: 60}\n", ""))
    # Execute
    problems = problems_of(folder)
    # Assert
    assert problems == [f"{folder / 'job.yml'}:3: workflow.args.rounds: 'rounds' is required"]


def test_no_app_folder(job):
    """A job without app/ is refused, saying where the code should go."""
    # Prepare
    folder = job(GOOD, app=False)
    # Execute
    problems = problems_of(folder)
    # Assert
    assert problems == [f"{folder / 'job.yml'}: no app/ folder beside job.yml; put the code that runs at each site "
                        f"in {folder / 'app'}"]


def test_missing_script_is_located_at_the_command(job):
    """`command: [python, main.py]` without app/main.py points at the script in the command."""
    # Prepare
    folder = job(GOOD + "app:\n  command: [python, main.py]\n")
    # Execute
    problems = problems_of(folder)
    # Assert
    assert problems == [f"{folder / 'job.yml'}:9: app.command[1]: 'main.py' is not in app/ "
                        f"({folder / 'app' / 'main.py'} is missing)"]


def test_default_command_needs_train_py(job):
    """With no app key, the default command's train.py must exist."""
    # Prepare
    folder = job(GOOD)
    (folder / "app" / "train.py").unlink()
    # Execute
    problems = problems_of(folder)
    # Assert
    assert problems == [f"{folder / 'job.yml'}: app.command: 'train.py' is not in app/ "
                        f"({folder / 'app' / 'train.py'} is missing)"]


def test_script_outside_app_is_refused(job):
    """A script path that climbs out of app/ is refused."""
    # Prepare
    folder = job(GOOD + "app: {command: [python, ../job.yml]}\n")
    # Execute
    problems = problems_of(folder)
    # Assert
    assert problems == [f"{folder / 'job.yml'}:8: app.command[1]: '../job.yml' must be a path inside app/"]


def test_other_commands_are_not_checked_for_a_script(job):
    """`python -m pkg` and non-python commands are run as given."""
    # Prepare
    folder = job(GOOD + "app: {command: [python, -m, mypkg], env: {OMP_NUM_THREADS: '2'}}\n")
    # Execute
    loaded = load_job(folder)
    # Assert
    assert loaded.spec.app.script() is None
    assert loaded.spec.app.env == {"OMP_NUM_THREADS": "2"}


def test_shown_name_replaces_the_folder_path(job):
    """A temporary copy's path is replaced in problems by the name the caller gives."""
    # Prepare
    folder = job(GOOD, app=False)
    # Execute
    with pytest.raises(JobError) as info:
        load_job(folder, shown="hello")
    # Assert
    assert str(info.value) == "hello/job.yml: no app/ folder beside job.yml; put the code that runs at each site in " \
        "hello/app"


def test_min_sites_larger_than_named_sites(job):
    """min_sites above the number of listed sites points at min_sites."""
    # Prepare
    folder = job(GOOD.replace("min_sites: 2", "min_sites: 3"))
    # Execute
    problems = problems_of(folder)
    # Assert
    assert problems == [f"{folder / 'job.yml'}:7: min_sites: 3 is more than the 2 sites named in 'sites'"]


@pytest.mark.parametrize(
    ("sites", "line", "message"),
    [
        ("[site-1, SITE-1]", "6: sites[1]", "'SITE-1' is named twice"),
        ("[site-1, 'bad name']", "6: sites[1]", "'bad name' is not a valid name"),
        ("[]", "6: sites", "name at least one site, or use 'all'"),
        ("some", "6: sites", "use 'all' or a list of site names"),
    ],
    ids=["duplicate", "bad-name", "empty", "word"],
)
def test_bad_sites(job, sites, line, message):
    """Duplicate, malformed or missing site names are refused, located at the site."""
    # Prepare
    folder = job(GOOD.replace("[site-1, site-2]", sites).replace("min_sites: 2", "min_sites: 1"))
    # Execute
    problems = problems_of(folder)
    # Assert
    assert len(problems) == 1
    assert problems[0].startswith(f"{folder / 'job.yml'}:{line}: {message}")


@pytest.mark.parametrize(
    ("replace", "expected"),
    [
        (("api_version: 1", "api_version: 2"), "1: api_version: 2 is not allowed; use 1"),
        (("name: hello", "name: ../evil"), "2: name: '../evil' is not a valid job name"),
        (("min_sites: 2", "min_sites: 0"), "7: min_sites: 0 is too small; use 1 or more"),
        (("min_sites: 2", "min_sites: 2\napp: {env: {1BAD: x}}"), "8: app.env: '1BAD' is not a valid environment"),
        (("min_sites: 2", "min_sites: 2\napp: {env: {N: 1}}"),
         "8: app.env.N: expected a string, got 1; put it in quotes"),
        (("min_sites: 2", "min_sites: 2\ncheckpoints: {keep: 0}"),
         "8: checkpoints.keep: 0 is too small; use 1 or more"),
        (("min_sites: 2", "min_sites: 2\ncheckpoints: {kept: 2}"), "8: checkpoints.kept: unknown key"),
    ],
    ids=["api-version", "name", "min-sites", "env-name", "env-value", "keep-zero", "keep-misspelt"],
)
def test_field_checks(job, replace, expected):
    """Each field's own rule is reported at its line."""
    # Prepare
    folder = job(GOOD.replace(*replace))
    # Execute
    problems = problems_of(folder)
    # Assert
    assert len(problems) == 1
    assert problems[0].startswith(f"{folder / 'job.yml'}:{expected}")


def test_spec_checks_hold_without_a_file():
    """JobSpec built in code applies the same cross-field rule."""
    # Prepare
    data = {"api_version": 1, "name": "x", "workflow": {"type": "fedavg"}, "sites": ["a"], "min_sites": 2}
    # Execute
    with pytest.raises(ValueError) as info:
        JobSpec.model_validate(data)
    # Assert
    assert "2 is more than the 1 site named in 'sites'" in str(info.value)


def test_privacy_scope_is_optional_and_names_a_scope(job):
    """privacy_scope defaults to None (each site's default scope); an empty one is refused, naming its line."""
    # Prepare
    plain, scoped, empty = GOOD, GOOD + "privacy_scope: private\n", GOOD + "privacy_scope: ''\n"
    # Execute
    default = load_job(job(plain)).spec.privacy_scope
    chosen = load_job(job(scoped)).spec.privacy_scope
    problems = problems_of(job(empty))
    # Assert
    assert (default, chosen) == (None, "private")
    assert len(problems) == 1 and problems[0].endswith("job.yml:8: privacy_scope: '' is refused: string should have "
                                                       "at least 1 character")


def test_every_problem_of_a_job_is_reported_at_once(job):
    """A bad argument, a bad field and a missing script in one job.yml: three problems in one refusal, by line."""
    # Prepare
    folder = job(GOOD.replace("args: {rounds: 3, round_timeout_s: 60}", "args: {rounds: 0, round_timeout_s: 60}")
                 .replace("min_sites: 2", "min_sites: 0") + "app: {command: [python, missing.py]}\n")
    # Execute
    problems = problems_of(folder)
    # Assert
    path = folder / "job.yml"
    assert [p.split(": ", 2)[1] for p in problems] == ["workflow.args.rounds", "min_sites", "app.command[1]"], problems
    assert problems[2] == f"{path}:8: app.command[1]: 'missing.py' is not in app/ ({folder}/app/missing.py is missing)"
