"""`flctl job import`: an NVIDIA FLARE job folder (`nvflare_job.read_job`) mapped onto a flctl job folder.

What maps (PEER-APIS.md §2):

    meta.json name, min_clients, deploy_map, scope     job.yml name, min_sites, sites, privacy_scope
    FedAvg / ScatterAndGather (rounds, clients, mu)      workflow fedavg (rounds, min_sites, proximal_mu, timeout)
    + CrossSiteModelEval                                 fedavg's cross_site_eval: true (alone: cross_site_eval)
    CyclicController (rounds, order)                     workflow cyclic
    the Client API executor's script and its args        app.command [python, SCRIPT, ARGS...], compat: nvflare
      (ScriptRunner: launcher or in-process)             app.framework from params_exchange_format
    the persistor's model class in custom/               initial_model: app/flctl_initial_model.py:make_model
    TBAnalyticsReceiver / MLflowReceiver                 metrics: tensorboard / mlflow
    custom/                                              app/

Everything else is named in `Conversion.unmapped`, one sentence each (an argument with its value, a component
with its class); the job is still written when its workflow and script map. A job whose workflow or executor
cannot map at all is refused (JobError, exit 2), naming it.
"""

from __future__ import annotations

import filecmp
import json
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flctl.node.errors import JobError
from flctl.node.jobs.nvflare_job import Component, NvflareApp, NvflareJob
from flctl.provisioner.errors import Problem

INITIAL_MODEL_FILE = "flctl_initial_model.py"
_FEDAVG = {"FedAvg", "BaseFedAvg", "PTFedAvg", "FedAvgEarlyStopping"}
_CROSS_SITE = {"CrossSiteModelEval", "CrossSiteEval"}
_CYCLIC = {"CyclicController"}
_LAUNCHER_EXECUTORS = {"ClientAPILauncherExecutor", "PTClientAPILauncherExecutor", "TFClientAPILauncherExecutor"}
_IN_PROCESS_EXECUTORS = {"InProcessClientAPIExecutor", "PTInProcessClientAPIExecutor",
                         "TFInProcessClientAPIExecutor", "ClientAPIExecutor"}
_PLUMBING = {"SubprocessLauncher", "CellPipe", "FilePipe", "MetricRelay", "ExternalConfigurator", "ConvertToFedEvent",
             "FullModelShareableGenerator", "PTFileModelLocator", "ValidationJsonGenerator", "NPModelLocator",
             "NPFormatter", "PTFormatter", "SimpleFormatter"}
"""Components whose work flctl does itself (the script's pipes, the cross-site matrix...): mapped by doing nothing."""
_WEIGHTED = {"InTimeAccumulateWeightedAggregator", "AccumulateWeightedAggregator"}
_SAFE_DEFAULTS: dict[str, Any] = {"start_round": 0, "train_task_name": "train", "task_name": "train",
                                  "persist_every_n_rounds": 1, "snapshot_every_n_rounds": 1, "ignore_result_error":
                                  None, "allow_empty_global_weights": False, "task_check_period": None}
_REFERENCES = {"aggregator_id", "persistor_id", "shareable_generator_id", "model_locator_id", "formatter_id",
               "save_filename", "cross_val_dir", "model_id", "persistor", "shareable_generator", "aggregator"}
"""Workflow args that name components or files flctl has its own of (read through the components, or not needed)."""
_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Conversion:
    """The flctl job made of an NVIDIA FLARE job: its job.yml (as data), the app whose custom/ becomes app/, what
    mapped and, one sentence each, what did not."""

    job: dict[str, Any]
    app: NvflareApp
    initial_model_code: str = ""
    mapped: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)


def convert(source: NvflareJob) -> Conversion:
    """Map `source` onto a flctl job; JobError when its workflow or its script cannot map at all."""
    server_app, client_app, notes = _apps(source)
    unmapped = list(notes)
    mapped: list[str] = []
    job: dict[str, Any] = {"api_version": 1, "name": _job_name(source)}
    job["workflow"], model_source = _workflow(source, server_app, mapped, unmapped)
    sites = _sites(source, client_app)
    job["sites"] = sites
    job["min_sites"] = _min_sites(source, job["workflow"], sites, unmapped)
    app, framework = _app(client_app, mapped, unmapped)
    job["app"] = {**app, "framework": framework, "compat": "nvflare"}
    scope = source.meta.get("scope")
    if isinstance(scope, str) and scope:
        job["privacy_scope"] = scope
        mapped.append(f"meta.json scope '{scope}' -> privacy_scope (each site's local/privacy.yml must have it)")
    metrics = _metrics(server_app, mapped, unmapped)
    if metrics:
        job["metrics"] = metrics
    code = _initial_model(model_source, server_app, client_app, mapped, unmapped)
    if code:
        job["initial_model"] = f"app/{INITIAL_MODEL_FILE}:make_model"
    resources = _resources(source.meta.get("resource_spec"), mapped, unmapped)
    if resources:
        job["resources"] = resources
    _meta_rest(source, unmapped)
    if server_app is not None:
        _filters(server_app.server, f"{server_app.name}/config/config_fed_server", unmapped)
    _filters(client_app.client, f"{client_app.name}/config/config_fed_client", unmapped)
    return Conversion(job, client_app, code, mapped, unmapped)


def write(conversion: Conversion, out: Path, source: Path) -> None:
    """Write the flctl job folder `out` (new or empty): job.yml (with what did not map as comments) and app/."""
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    app = out / "app"
    if conversion.app.custom.is_dir():
        shutil.copytree(conversion.app.custom, app, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        app.mkdir()
    if conversion.initial_model_code:
        (app / INITIAL_MODEL_FILE).write_text(conversion.initial_model_code)
    header = [f"# Imported from the NVIDIA FLARE job {source} by `flctl job import`."]
    if conversion.unmapped:
        header.append("# Not mapped (flctl does otherwise, or not at all):")
        header += [f"#   - {line}" for line in conversion.unmapped]
    text = yaml.safe_dump(conversion.job, sort_keys=False, default_flow_style=None, width=110)
    (out / "job.yml").write_text("\n".join(header) + "\n" + text)


# -- apps and sites ----------------------------------------------------------------------------------------------

def _apps(source: NvflareJob) -> tuple[NvflareApp | None, NvflareApp, list[str]]:
    """The server's app, the app the sites run, and why other client apps were not used."""
    deploy = source.deploy_map()
    server_apps = [a for a, sites in deploy.items() if "server" in sites or "@ALL" in sites]
    client_apps = [a for a, sites in deploy.items() if any(s != "server" for s in sites) and a in source.apps]
    client_apps = [a for a in client_apps if source.apps[a].client is not None] or \
        [a for a in source.apps if source.apps[a].client is not None]
    if not client_apps:
        raise _refuse(source.folder, "no app has a config_fed_client: there is no site code to run")
    server = next((source.apps[a] for a in server_apps if a in source.apps and source.apps[a].server), None)
    if server is None:
        server = next((a for a in source.apps.values() if a.server is not None), None)
    first = source.apps[client_apps[0]]
    notes = [f"app '{other}' for {', '.join(deploy.get(other, []))}: it differs from '{first.name}', which flctl "
             f"runs at every site (one app per job)" for other in client_apps[1:]
             if not _same_app(first, source.apps[other])]
    return server, first, notes


def _same_app(a: NvflareApp, b: NvflareApp) -> bool:
    if a.client != b.client:
        return False
    if not (a.custom.is_dir() and b.custom.is_dir()):
        return a.custom.is_dir() == b.custom.is_dir()
    return _same_tree(filecmp.dircmp(a.custom, b.custom, ignore=["__pycache__"]))


def _same_tree(cmp: filecmp.dircmp[str]) -> bool:
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(cmp.left, cmp.right, cmp.common_files, shallow=False)
    return not mismatch and not errors and all(_same_tree(sub) for sub in cmp.subdirs.values())


def _sites(source: NvflareJob, client_app: NvflareApp) -> str | list[str]:
    named = sorted({s for app, sites in source.deploy_map().items() for s in sites
                    if s not in ("server", "@ALL") and app in source.apps and source.apps[app].client is not None})
    every = any("@ALL" in sites for sites in source.deploy_map().values()) or not named
    return "all" if every else named


def _job_name(source: NvflareJob) -> str:
    raw = source.meta.get("name") if isinstance(source.meta.get("name"), str) else source.folder.name
    name = _NAME.sub("-", str(raw)).strip("-._")[:64] or "imported"
    return name if name[0].isalnum() else f"job-{name}"[:64]


def _min_sites(source: NvflareJob, workflow: dict[str, Any], sites: str | list[str], unmapped: list[str]) -> int:
    wanted = source.meta.get("min_clients", workflow.pop("_min_sites", 1))
    count = wanted if isinstance(wanted, int) and not isinstance(wanted, bool) and wanted >= 1 else 1
    if isinstance(sites, list) and count > len(sites):
        unmapped.append(f"min_clients {count} is more than the {len(sites)} sites deploy_map names; min_sites "
                        f"is {len(sites)}")
        count = len(sites)
    return count


def _meta_rest(source: NvflareJob, unmapped: list[str]) -> None:
    meta = source.meta
    if meta.get("mandatory_clients"):
        unmapped.append(f"meta.json mandatory_clients {meta['mandatory_clients']}: flctl has no mandatory sites "
                        "(min_sites counts any)")
    for key in ("launcher_spec", "custom_props", "study"):
        if meta.get(key):
            unmapped.append(f"meta.json {key}: no flctl equivalent")


GPU_KEYS = ("num_of_gpus", "num_gpus")
"""NVIDIA FLARE's names for a site's GPU count in resource_spec (the resource manager's, and its docs')."""
GPU_MEMORY_KEY = "mem_per_gpu_in_GiB"


def _resources(spec: Any, mapped: list[str], unmapped: list[str]) -> dict[str, Any]:
    """meta.json's resource_spec (per site, or `@default`) as job.yml's resources, which ask the same of every
    site: the largest ask of any site (named when the sites differ)."""
    if not isinstance(spec, dict) or not spec:
        return {}
    gpus, memory = 0, 0.0
    for site, ask in spec.items():
        if not isinstance(ask, dict):
            unmapped.append(f"meta.json resource_spec {site}: {ask!r} is not a mapping of resources")
            continue
        for key, value in ask.items():
            number = value if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0 else None
            if key in GPU_KEYS and number is not None:
                gpus = max(gpus, int(number))
            elif key == GPU_MEMORY_KEY and number is not None:
                memory = max(memory, float(number))
            else:
                unmapped.append(f"meta.json resource_spec {site}.{key}: {value!r} has no flctl equivalent")
    out: dict[str, Any] = {"gpus": gpus} if gpus else {}
    if memory and gpus:
        out["gpu_memory_gb"] = memory
    if out:
        asks = {json.dumps(a, sort_keys=True) for a in spec.values() if isinstance(a, dict)}
        every = "every site" if len(asks) == 1 else "every site (the largest of the sites' asks)"
        mapped.append(f"meta.json resource_spec -> resources {out} of {every}")
    return out


def _filters(config: dict[str, Any] | None, where: str, unmapped: list[str]) -> None:
    for key in ("task_data_filters", "task_result_filters"):
        for entry in (config or {}).get(key, []) or []:
            for flt in (entry.get("filters", []) if isinstance(entry, dict) else []) or []:
                path = flt.get("path", flt.get("name", "?")) if isinstance(flt, dict) else "?"
                unmapped.append(f"{where} {key}: {path}: a job's filters are not imported; a site's filters are "
                                "its local/privacy.yml (privacy_scope)")


# -- the workflow ------------------------------------------------------------------------------------------------

def _workflow(source: NvflareJob, server: NvflareApp | None, mapped: list[str],
              unmapped: list[str]) -> tuple[dict[str, Any], Any]:
    """job.yml's workflow, and where the initial model comes from (a FedAvg `model` arg, or a persistor id)."""
    if server is None:
        raise _refuse(source.folder, "no app has a config_fed_server: there is no workflow to map")
    training: dict[str, Any] | None = None
    cross: Component | None = None
    model_source: Any = None
    for flow in server.workflows():
        name = flow.class_name
        args = dict(flow.args)
        if name in _FEDAVG or name == "ScatterAndGather":
            if training is not None:
                unmapped.append(f"workflow '{flow.id}' ({name}): a second training workflow; flctl runs one")
                continue
            model_source = args.get("model") or args.get("persistor_id") or "persistor"
            training = _fedavg(flow, args, unmapped)
            mapped.append(f"workflow '{flow.id}' ({name}) -> fedavg, {training['args']['rounds']} rounds")
        elif name in _CYCLIC:
            if training is not None:
                unmapped.append(f"workflow '{flow.id}' ({name}): a second training workflow; flctl runs one")
                continue
            training = _cyclic(flow, args, unmapped)
            model_source = args.get("persistor_id") or "persistor"
            mapped.append(f"workflow '{flow.id}' ({name}) -> cyclic, {training['args']['rounds']} rounds")
        elif name in _CROSS_SITE:
            cross = flow
        else:
            unmapped.append(f"workflow '{flow.id}' ({flow.path}): flctl maps FedAvg, ScatterAndGather, "
                            "CyclicController and CrossSiteModelEval only")
    if cross is not None:
        training = _cross_site(cross, training, mapped, unmapped)
    if training is None:
        found = ", ".join(f.path for f in server.workflows()) or "none"
        raise _refuse(source.folder, f"no workflow flctl can map (found: {found}); flctl maps FedAvg, "
                                     "ScatterAndGather, CyclicController and CrossSiteModelEval")
    return training, model_source


def _fedavg(flow: Component, args: dict[str, Any], unmapped: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": _int(args.pop("num_rounds", 5), 5)}
    clients = args.pop("min_clients", args.pop("num_clients", None))
    mu = args.pop("fedprox_mu", None)
    if isinstance(mu, int | float) and mu:
        out["proximal_mu"] = float(mu)
    timeout = args.pop("train_timeout", args.pop("timeout", 0))
    if isinstance(timeout, int | float) and timeout > 0:
        out["round_timeout_s"] = float(timeout)
    args.pop("model", None)
    aggregator = args.pop("aggregator", None)
    if aggregator is not None:
        unmapped.append(f"workflow '{flow.id}' aggregator {aggregator!r}: flctl's FedAvg averages weighted by "
                        "NUM_STEPS_CURRENT_ROUND")
    wait = args.pop("wait_time_after_min_received", 0)
    if wait:
        unmapped.append(f"workflow '{flow.id}' wait_time_after_min_received {wait}: flctl waits for every site "
                        "of the round (up to round_timeout_s), then goes on with min_sites")
    _rest(flow, args, unmapped)
    workflow: dict[str, Any] = {"type": "fedavg", "args": out}
    if isinstance(clients, int) and clients >= 1:
        workflow["_min_sites"] = clients
    return workflow


def _cyclic(flow: Component, args: dict[str, Any], unmapped: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": _int(args.pop("num_rounds", 5), 5)}
    order = args.pop("order", "FIXED")
    if isinstance(order, list):
        out["order"] = [str(s) for s in order]
    elif isinstance(order, str) and order.lower() in ("fixed", "random", "random_without_same_in_a_row"):
        out["order"] = order.lower()
    else:
        unmapped.append(f"workflow '{flow.id}' order {order!r}: flctl's cyclic orders are fixed, random, "
                        "random_without_same_in_a_row or a list of sites")
    timeout = args.pop("task_assignment_timeout", None)
    if timeout is not None:
        unmapped.append(f"workflow '{flow.id}' task_assignment_timeout {timeout}: flctl's cyclic waits "
                        "site_timeout_s (300) for each site's answer instead")
    early = args.pop("allow_early_termination", False)
    if early:
        unmapped.append(f"workflow '{flow.id}' allow_early_termination: a flctl cyclic job runs all its rounds")
    _rest(flow, args, unmapped)
    return {"type": "cyclic", "args": out}


def _cross_site(flow: Component, training: dict[str, Any] | None, mapped: list[str],
                unmapped: list[str]) -> dict[str, Any]:
    args = dict(flow.args)
    timeout = args.pop("validation_timeout", None)
    for key in ("submit_model_timeout", "wait_for_clients_timeout", "model_locator_id", "formatter_id",
                "cross_val_dir", "validation_task_name", "submit_model_task_name"):
        args.pop(key, None)
    if args.get("participating_clients"):
        unmapped.append(f"workflow '{flow.id}' participating_clients {args.pop('participating_clients')}: every "
                        "site of the job takes part in flctl's cross-site evaluation")
    args.pop("participating_clients", None)
    _rest(flow, args, unmapped)
    if training is not None and training["type"] == "fedavg":
        training["args"]["cross_site_eval"] = True
        mapped.append(f"workflow '{flow.id}' ({flow.class_name}) -> fedavg's cross_site_eval: true")
        return training
    if training is not None:
        unmapped.append(f"workflow '{flow.id}' ({flow.class_name}) after {training['type']}: flctl evaluates "
                        "across sites after fedavg only")
        return training
    mapped.append(f"workflow '{flow.id}' ({flow.class_name}) -> cross_site_eval (the sites' own models)")
    out: dict[str, Any] = {}
    if isinstance(timeout, int | float) and timeout > 0:
        out["timeout_s"] = float(timeout)
    return {"type": "cross_site_eval", "args": out}


def _rest(flow: Component, args: dict[str, Any], unmapped: list[str]) -> None:
    """Name every argument left that is not a component reference or at a value flctl behaves as."""
    for key, value in args.items():
        if key in _REFERENCES or (key in _SAFE_DEFAULTS and value in (_SAFE_DEFAULTS[key], None)):
            continue
        unmapped.append(f"workflow '{flow.id}' {key} {value!r}: no flctl equivalent")


# -- the site's app ----------------------------------------------------------------------------------------------

def _app(client: NvflareApp, mapped: list[str], unmapped: list[str]) -> tuple[dict[str, Any], str]:
    """job.yml's app (command) and framework, from the executor that takes the train task."""
    executors = client.executors()
    train = next((e for e in executors if "train" in e.tasks or "*" in e.tasks), None)
    if train is None:
        raise _refuse(client.folder, "no executor takes the 'train' task in config_fed_client")
    for other in executors:
        if other is not train and other.component.path != train.component.path:
            unmapped.append(f"executor {other.component.path} for {other.tasks}: flctl runs one script for every "
                            f"task ({train.component.class_name}'s)")
    component = train.component
    args = component.args
    components = client.components(client.client)
    used = {component.args.get("launcher_id", "launcher")}
    if component.class_name in _LAUNCHER_EXECUTORS:
        launcher = components.get(str(args.get("launcher_id", "launcher")))
        line = str(launcher.args.get("script", "")) if launcher is not None else ""
        if launcher is not None and launcher.args.get("launch_once") is False:
            unmapped.append("launcher launch_once false: flctl starts the script once per job (its loop takes "
                            "every task)")
        command = _command(line, client, unmapped)
    elif component.class_name in _IN_PROCESS_EXECUTORS:
        script = str(args.get("task_script_path", args.get("script", "")))
        extra = args.get("task_script_args", args.get("script_args", ""))
        extra_line = " ".join(map(str, extra)) if isinstance(extra, list) else str(extra)
        command = _command(f"python {script} {extra_line}", client, unmapped)
    else:
        raise _refuse(client.folder, f"executor {component.path} takes 'train' and is not a Client API executor "
                                     "(ScriptRunner, in-process or launcher): flctl runs Client API scripts only")
    mapped.append(f"executor {component.class_name} -> app.command {command} with compat: nvflare")
    exchange = str(args.get("params_exchange_format", "")).lower()
    framework = "pytorch" if exchange == "pytorch" or (not exchange and component.class_name.startswith("PT")) \
        else "numpy"
    if exchange and exchange not in ("pytorch", "numpy"):
        unmapped.append(f"params_exchange_format {exchange!r}: flctl gives scripts numpy arrays or torch tensors")
    if str(args.get("params_transfer_type", "FULL")).upper() == "DIFF":
        mapped.append("params_transfer_type DIFF: the script's full model is sent; FedAvg's average is the same")
    for cid, comp in components.items():
        if cid in used or comp.class_name in _PLUMBING:
            continue
        unmapped.append(f"client component '{cid}' ({comp.path}): no flctl equivalent")
    return {"command": command}, framework


def _command(line: str, client: NvflareApp, unmapped: list[str]) -> list[str]:
    """[python, SCRIPT, ARGS...] from a launcher's command line (`python3 -u custom/client.py --epochs 2`)."""
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    script_at = next((i for i, w in enumerate(words) if w.endswith(".py")), None)
    if script_at is None:
        raise _refuse(client.folder, f"cannot find the training script in {line.strip()!r}")
    runner = words[:script_at]
    if runner and not re.fullmatch(r"python[0-9.]*", Path(runner[0]).name):
        unmapped.append(f"the script's runner {' '.join(runner)!r}: flctl runs it with the site's python")
    script = words[script_at].removeprefix("custom/").removeprefix("./")
    if not (client.custom / script).is_file():
        raise _refuse(client.folder, f"the script {script!r} is not in {client.custom}")
    return ["python", script, *words[script_at + 1:]]


# -- metrics and the initial model -------------------------------------------------------------------------------

def _metrics(server: NvflareApp | None, mapped: list[str], unmapped: list[str]) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    if server is None:
        return metrics
    for cid, comp in server.components(server.server).items():
        name = comp.class_name
        if name == "TBAnalyticsReceiver":
            metrics["tensorboard"] = True
            mapped.append(f"component '{cid}' (TBAnalyticsReceiver) -> metrics: tensorboard")
        elif name == "MLflowReceiver":
            spec: dict[str, Any] = {}
            if isinstance(comp.args.get("tracking_uri"), str) and comp.args["tracking_uri"]:
                spec["tracking_uri"] = comp.args["tracking_uri"]
            experiment = (comp.args.get("kw_args") or {}).get("experiment_name")
            if isinstance(experiment, str) and experiment:
                spec["experiment"] = experiment
            metrics["mlflow"] = spec
            mapped.append(f"component '{cid}' (MLflowReceiver) -> metrics: mlflow")
        elif name in _WEIGHTED or name in _PLUMBING or name.endswith("ModelPersistor") or cid == "model":
            continue
        elif name == "IntimeModelSelector":
            unmapped.append(f"component '{cid}' (IntimeModelSelector): flctl keeps the final global model, not the "
                            f"best by {comp.args.get('key_metric', 'accuracy')!r}")
        else:
            unmapped.append(f"server component '{cid}' ({comp.path}): no flctl equivalent")
    return metrics


def _initial_model(source: Any, server: NvflareApp | None, client: NvflareApp, mapped: list[str],
                   unmapped: list[str]) -> str:
    """app/flctl_initial_model.py's code when the persistor's (or FedAvg's) model class is in custom/, else ''."""
    components = server.components(server.server) if server is not None else {}
    model: Any = source
    if isinstance(source, str) and source in components:  # a persistor id
        persistor = components[source]
        model = persistor.args.get("model")
        if model is None:
            unmapped.append(f"persistor '{source}' ({persistor.class_name}) builds its model inside NVIDIA FLARE; "
                            "give job.yml an initial_model")
            return ""
    if isinstance(model, str) and model in components:  # a component id
        model = {"path": components[model].path, "args": components[model].args}
    if not isinstance(model, dict):
        unmapped.append("no initial model found (no persistor model): round 0 sends an empty model; give job.yml "
                        "an initial_model")
        return ""
    path = str(model.get("class_path") or model.get("path") or "")
    args = model.get("args") if isinstance(model.get("args"), dict) else {}
    module, _, cls = path.rpartition(".")
    file = Path(*module.split(".")).with_suffix(".py") if module else None
    if not cls or file is None or not (client.custom / file).is_file():
        unmapped.append(f"the initial model {path!r} is not a class of custom/: give job.yml an initial_model")
        return ""
    mapped.append(f"the persistor's model {path} -> initial_model: app/{INITIAL_MODEL_FILE}:make_model")
    return (f'"""Round 0\'s model, as the NVIDIA FLARE job\'s persistor built it (written by flctl job import)."""\n'
            f"\n\ndef make_model():\n    from {module} import {cls}\n\n    return {cls}(**{args!r})\n")


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else default


def _refuse(where: Path, message: str) -> JobError:
    return JobError([Problem(str(where), None, "", message)])
