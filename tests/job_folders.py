"""Small job folders the federation tests submit: a job.yml and an app/train.py."""

from __future__ import annotations

from pathlib import Path

ECHO = ("import flctl.client as fl\nfl.init()\nwhile fl.running():\n    m = fl.receive()\n"
        "    fl.send(fl.Model(params=m.params, num_examples=1))\n")
"""A script that sends back the model it receives, every round."""
IDLE = "import flctl.client as fl\nfl.init()\n"
"""A script that starts and does nothing (a job that waits, or a job process to look at)."""


def job_folder(root: Path, name: str, *, sites: tuple[str, ...] = ("site-1",), rounds: int = 1,
               round_timeout_s: int = 30, script: str = ECHO) -> Path:
    """`root/name/` with a FedAvg job.yml over `sites` (min_sites 1) and `script` as its app/train.py."""
    folder = root / name
    (folder / "app").mkdir(parents=True, exist_ok=True)
    (folder / "job.yml").write_text(
        f"api_version: 1\nname: {name}\n"
        f"workflow: {{type: fedavg, args: {{rounds: {rounds}, round_timeout_s: {round_timeout_s}}}}}\n"
        f"sites: [{', '.join(sites)}]\nmin_sites: 1\n")
    (folder / "app" / "train.py").write_text(script)
    return folder


def workflow_job(root: Path, name: str, workflow: str, args: dict[str, object], script: str,
                 min_sites: int = 2) -> Path:
    """`root/name/` with a job.yml running `workflow` with `args` over every site, and `script` as app/train.py."""
    import json

    folder = root / name
    (folder / "app").mkdir(parents=True, exist_ok=True)
    (folder / "job.yml").write_text(f"api_version: 1\nname: {name}\nworkflow: {{type: {workflow}, args: "
                                    f"{json.dumps(args)}}}\nmin_sites: {min_sites}\n"
                                    "app: {command: [python, train.py]}\n")
    (folder / "app" / "train.py").write_text(script)
    return folder
