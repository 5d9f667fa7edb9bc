"""GPUs and resources at a site (issue 30): GPU detection through a fake nvidia-smi, the placement rules (pure),
the site's hold on its resources, its local/resources.yml settings, the server scheduler's use of what sites report,
`flctl simulate --gpus`'s spread, NVIDIA FLARE's resource_spec, and what `flctl site ls` shows."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from flctl.node.admin.site_resources import gpu_cell, resources_json
from flctl.node.config.resources import load_resources
from flctl.node.jobs.job_spec import JobSpec, Resources
from flctl.node.server.scheduler import PENDING_S, hold, job_ask, resource_fit, with_pending
from flctl.node.server.store import JobRow
from flctl.node.simulator.gpu_spread import GpuSpreadError, parse_gpus, spread
from flctl.node.site import gpu_inventory
from flctl.node.site.job_launch import JobPlacement, read_placement, write_placement
from flctl.node.site.job_slots import JobSlots
from flctl.node.site.placement import Ask, Capacity, Gpu, Grant, SiteLoad, cuda_visible, never_fits, place, why_waiting
from flctl.node.site.site_capacity import site_capacity
from flctl.node.wire.resources_serde import load_from_pb, load_to_pb
from flctl.provisioner.errors import KitError

from .gpu_fakes import A100, fake_nvidia_smi, path_with

GIB = 1024
TWO_GPUS = Capacity(cpus=(0, 1, 2, 3), memory_mb=64 * GIB, gpus=(Gpu(0, A100, 40 * GIB), Gpu(1, A100, 40 * GIB)),
                    manages_gpus=True)
SHARED = Capacity(cpus=(0, 1), memory_mb=64 * GIB, gpus=(Gpu(0, A100, 40 * GIB),), gpu_sharing=True,
                  manages_gpus=True)
TWO_CORES = Capacity(cpus=(0, 1), memory_mb=4 * GIB)
HUGE = Ask(cpus=64, memory_mb=100_000_000)  # 64 CPUs and about 95 TiB


# -- detection ------------------------------------------------------------------------------------------------------

def test_gpus_are_listed_from_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fake nvidia-smi on PATH: its GPUs with index, name and memory in MiB, and where they came from."""
    # Prepare
    monkeypatch.setenv("PATH", path_with(fake_nvidia_smi(tmp_path / "bin")))
    monkeypatch.setattr(gpu_inventory, "_nvml", lambda: None)  # a machine with nvidia-ml-py must not answer instead
    # Execute
    gpus, source = gpu_inventory.list_gpus()
    usage = gpu_inventory.gpu_usage([1])
    # Assert
    assert source == "nvidia-smi"
    assert gpus == [Gpu(0, A100, 40960, 0, 40326), Gpu(1, A100, 40960, 1024, 39302)]
    assert usage == {1: Gpu(1, A100, 40960, 1024, 39302)}


def test_nvidia_smi_output_with_commas_in_names_and_unknown_memory_parses():
    """A name with a comma stays whole; `[N/A]` memory reads as 0 (not known); other lines are skipped."""
    # Execute
    gpus = gpu_inventory.parse_nvidia_smi("0, Tesla T4, 15360, 0, 15100\n1, Odd, Name, [N/A], [N/A], [N/A]\nNo dev\n")
    # Assert
    assert gpus == [Gpu(0, "Tesla T4", 15360, 0, 15100), Gpu(1, "Odd, Name", 0, 0, 0)]


def test_a_failing_nvidia_smi_means_no_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """nvidia-smi that exits non-zero (no driver): nothing listed by it."""
    # Prepare
    (tmp_path / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' ; exit 9\n")
    (tmp_path / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", path_with(tmp_path))
    # Execute / Assert
    assert gpu_inventory._nvidia_smi() is None


def test_torch_s_view_is_asked_in_a_child_process(monkeypatch: pytest.MonkeyPatch):
    """Without NVML and nvidia-smi, torch is asked in a child process (the daemon holds no CUDA context): its lines
    become GPUs."""
    # Prepare
    pytest.importorskip("torch", reason="needs torch: bash scripts/setup.sh")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(gpu_inventory, "_nvml", lambda: None)
    monkeypatch.setattr(gpu_inventory, "TORCH_PROBE", "print('[0, \"NVIDIA L4\", 23034]')")
    # Execute
    found = gpu_inventory.list_gpus()
    # Assert
    assert found == ([Gpu(0, "NVIDIA L4", 23034)], "torch")


# -- placement (pure) -----------------------------------------------------------------------------------------------

def test_two_jobs_on_a_two_gpu_site_get_different_gpus():
    """Each job is given a GPU no other job holds, and cores no other job holds."""
    # Prepare
    ask = Ask(cpus=1, gpus=1)
    # Execute
    first = place(SiteLoad(TWO_GPUS), ask, "a")
    assert first is not None
    second = place(SiteLoad(TWO_GPUS, (first,)), ask, "b")
    # Assert
    assert (first.gpus, second.gpus if second else None) == ((0,), (1,))
    assert second is not None and first.cpus == (0,) and second.cpus == (1,)
    assert cuda_visible(TWO_GPUS, first) == "0" and cuda_visible(TWO_GPUS, second) == "1"


def test_a_shared_gpu_takes_jobs_while_their_memory_fits():
    """gpu_sharing: two jobs of 16 GiB both get GPU 0 (40 GiB); a third waits."""
    # Prepare
    ask = Ask(gpus=1, gpu_memory_mb=16 * GIB)
    first = place(SiteLoad(SHARED), ask, "a")
    assert first is not None
    second = place(SiteLoad(SHARED, (first,)), ask, "b")
    assert second is not None
    # Execute
    third = place(SiteLoad(SHARED, (first, second)), ask, "c")
    # Assert
    assert first.gpus == second.gpus == (0,)
    assert third is None
    assert "1 free GPU (0 free; held by a, b)" in why_waiting(SiteLoad(SHARED, (first, second)), ask)


def test_a_job_that_does_not_fit_now_waits_and_fits_once_freed():
    """Both GPUs held: the third job waits, saying for what; once one is released it is given that one."""
    # Prepare
    held = (Grant("a", gpus=(0,)), Grant("b", gpus=(1,)))
    ask = Ask(gpus=1)
    # Execute
    now = place(SiteLoad(TWO_GPUS, held), ask, "c")
    later = place(SiteLoad(TWO_GPUS, held[1:]), ask, "c")
    # Assert
    assert now is None and why_waiting(SiteLoad(TWO_GPUS, held), ask) == "1 free GPU (0 free; held by a, b)"
    assert later == Grant("c", (), 0, (0,), 0)


def test_a_job_that_can_never_fit_is_told_why():
    """64 CPUs and about 95 TiB on a 2-core site; 3 GPUs of a 2-GPU site; 80 GiB on 40 GiB GPUs; GPUs where none."""
    # Execute / Assert
    assert never_fits(TWO_CORES, HUGE) == "the job asks 64 CPUs; this site offers 2"
    assert never_fits(TWO_CORES, Ask(memory_mb=100_000_000)) == ("the job asks 95.4 TiB of memory; this site "
                                                                 "offers 4.0 GiB")
    assert never_fits(TWO_GPUS, Ask(gpus=3)) == "the job asks 3 GPUs; this site offers 2"
    assert never_fits(TWO_GPUS, Ask(gpus=1, gpu_memory_mb=80 * GIB)) == (
        "the job asks 80.0 GiB on its GPU; this site's GPUs have at most 40.0 GiB")
    assert never_fits(TWO_CORES, Ask(gpus=1)).endswith("offers none (gpus in its local/resources.yml)")
    assert never_fits(TWO_GPUS, Ask(cpus=4, memory_mb=64 * GIB, gpus=2)) == ""


def test_memory_held_by_running_jobs_counts():
    """Memory: what running jobs hold plus the ask stays within what the site offers."""
    # Prepare
    load = SiteLoad(TWO_CORES, (Grant("a", memory_mb=3 * GIB),))
    # Execute / Assert
    assert place(load, Ask(memory_mb=2 * GIB), "b") is None
    assert why_waiting(load, Ask(memory_mb=2 * GIB)) == "2.0 GiB of free memory (1.0 GiB free)"
    assert place(load, Ask(memory_mb=GIB), "b") == Grant("b", memory_mb=GIB)


def test_only_what_a_job_states_is_its_ask():
    """No resources block: an empty ask (today's behaviour); a block asks only its keys; GiB become MiB."""
    # Execute
    none = Ask.of(JobSpec.model_validate({"api_version": 1, "name": "j", "workflow": {"type": "fedavg"}}).resources)
    gpus = Ask.of(Resources.model_validate({"gpus": 2, "gpu_memory_gb": 1.5}))
    # Assert
    assert none == Ask() and none.empty
    assert gpus == Ask(cpus=0, memory_mb=0, gpus=2, gpu_memory_mb=1536)
    assert Resources.model_validate({"gpus": 2}).model_dump() == {"gpus": 2}  # the server's copy: the stated keys
    assert cuda_visible(TWO_GPUS, None) == "" and cuda_visible(TWO_CORES, None) is None


# -- the site's hold ------------------------------------------------------------------------------------------------

def test_a_queued_job_starts_when_the_first_frees_its_gpu():
    """JobSlots: with its one GPU held, a second job waits (saying why) until the first is released."""
    # Prepare
    slots = JobSlots(Capacity((0,), GIB, (Gpu(0, A100, 40 * GIB),), manages_gpus=True))
    ask = Ask(gpus=1)
    assert slots.acquire("a", ask, threading.Event(), print) is not None
    reasons: list[str] = []
    got: list[Grant | None] = []
    waiter = threading.Thread(target=lambda: got.append(slots.acquire("b", ask, threading.Event(), reasons.append)))
    # Execute
    waiter.start()
    time.sleep(0.2)
    queued = slots.load().queued
    slots.release("a")
    waiter.join(5)
    # Assert
    assert queued == 1 and reasons == ["1 free GPU (0 free; held by a)"]
    assert got == [Grant("b", gpus=(0,))] and slots.load().queued == 0


def test_a_queued_job_stops_waiting_when_cancelled():
    """A job stopped while it waits gets no grant."""
    # Prepare
    slots = JobSlots(TWO_CORES)
    slots.acquire("a", Ask(cpus=2), threading.Event(), print)
    cancelled = threading.Event()
    cancelled.set()
    # Execute / Assert
    assert slots.acquire("b", Ask(cpus=1), cancelled, print) is None


def test_the_placement_file_carries_cores_and_gpus(tmp_path: Path):
    """What the daemon writes, the job process reads; GPUs numbered in PCI order for CUDA too."""
    # Prepare
    write_placement(tmp_path, JobPlacement((1, 2), "1"))
    # Execute
    placement = read_placement(tmp_path)
    # Assert
    assert placement == JobPlacement((1, 2), "1")
    assert placement.script_env() == {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert read_placement(tmp_path / "none") == JobPlacement() and JobPlacement().script_env() == {}


# -- a site's local/resources.yml ------------------------------------------------------------------------------------

def test_gpus_auto_finds_the_fake_gpus_and_a_list_picks_some(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """gpus: auto lists nvidia-smi's GPUs; [1] with gpu_memory_gb offers GPU 1 with that memory; cpus: 1 one core."""
    # Prepare
    monkeypatch.setenv("PATH", path_with(fake_nvidia_smi(tmp_path / "bin")))
    monkeypatch.setattr(gpu_inventory, "_nvml", lambda: None)
    auto = tmp_path / "auto.yml"
    auto.write_text("gpus: auto\n")
    listed = tmp_path / "listed.yml"
    listed.write_text("gpus: [1]\ngpu_memory_gb: 20\ngpu_sharing: true\ncpus: 1\nmemory_mb: 2048\n")
    # Execute
    found = site_capacity(load_resources(auto), auto)
    picked = site_capacity(load_resources(listed), listed)
    # Assert
    assert [g.index for g in found.gpus] == [0, 1] and found.manages_gpus and found.memory_mb > 0
    assert picked.gpus == (Gpu(1, A100, 20 * GIB, 1024, 39302),)
    assert (len(picked.cpus), picked.memory_mb, picked.gpu_sharing) == (1, 2048, True)


def test_a_gpu_the_machine_does_not_have_stops_the_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """gpus: [0, 3] where nvidia-smi shows 0 and 1: a KitError (exit 2) naming the file, the key and what is there."""
    # Prepare
    monkeypatch.setenv("PATH", path_with(fake_nvidia_smi(tmp_path / "bin")))
    monkeypatch.setattr(gpu_inventory, "_nvml", lambda: None)
    path = tmp_path / "resources.yml"
    path.write_text("gpus: [0, 3]\n")
    # Execute
    with pytest.raises(KitError) as caught:
        site_capacity(load_resources(path), path)
    # Assert
    assert str(caught.value) == (f"{path}: gpus lists 3, but nvidia-smi shows GPUs 0, 1; list those this site offers "
                                 "(or gpus: auto)")


def test_sites_sharing_a_machine_start_from_different_cores():
    """site-1 and site-2 on one 2-core machine pin their first jobs to different cores; no name: core 0."""
    # Prepare
    from flctl.node.site.site_capacity import first_core

    # Execute / Assert
    assert [first_core(f"site-{i}", 2) for i in (1, 2, 3)] == [1, 0, 1]
    assert first_core("hospital-a", 4) in range(4) and first_core("", 4) == 0 and first_core("site-7", 1) == 0


@pytest.mark.parametrize(("text", "key"), [
    ("gpus: 2\n", "gpus must be auto"), ("gpus: [0, 0]\n", "gpus must be auto"), ("gpus: [-1]\n", "gpus must be"),
    ("cpus: 0\n", "cpus must be auto"), ("cpus: many\n", "cpus must be auto"),
    ("memory_mb: 1.5\n", "memory_mb must be auto"), ("gpu_memory_gb: -1\n", "gpu_memory_gb must be"),
    ("gpu_sharing: sometimes\n", "gpu_sharing must be true or false"),
])
def test_bad_resource_settings_name_the_file_and_the_key(tmp_path: Path, text: str, key: str):
    """Each bad value: a KitError (the node exits 2) naming the file, the key and what is allowed."""
    # Prepare
    path = tmp_path / "resources.yml"
    path.write_text(text)
    # Execute
    with pytest.raises(KitError) as caught:
        load_resources(path)
    # Assert
    assert str(caught.value).startswith(f"{path}: {key}")


# -- the server's scheduler -----------------------------------------------------------------------------------------

def _job(resources: dict[str, object]) -> JobRow:
    return JobRow("j", "n", "SUBMITTED", "a", "o", "lead", 0.0, 0.0, 0.0, -1, 3, "fedavg", 1, ["s1"], "", "", "sha",
                  {"resources": resources})


def test_the_scheduler_refuses_waits_or_starts_by_what_sites_report():
    """Named site that can never hold it: refused with why; busy: waits with why; free: starts and holds it."""
    # Prepare
    loads = {"s1": SiteLoad(TWO_GPUS, (Grant("x", gpus=(0,)), Grant("y", gpus=(1,)))), "s2": SiteLoad(TWO_CORES)}
    gpu = job_ask(_job({"gpus": 1}))
    # Execute
    never = resource_fit(job_ask(_job({"cpus": 64, "memory_mb": 100_000_000})), ["s2"], loads, True, 1)
    busy = resource_fit(gpu, ["s1"], loads, True, 1)
    loads["s1"] = SiteLoad(TWO_GPUS, (Grant("x", gpus=(0,)),))
    free = resource_fit(gpu, ["s1"], loads, True, 1)
    hold(loads, "j", gpu, ["s1"])
    # Assert
    assert never == (None, "", "s2 can never run it: the job asks 64 CPUs; this site offers 2")
    assert busy == (None, "waiting for 1 free GPU (0 free; held by x, y) at s1", "")
    assert free == (["s1"], "", "")
    assert [g.gpus for g in loads["s1"].grants] == [(0,), (1,)]
    assert resource_fit(job_ask(_job({})), ["s9"], loads, True, 1) == (["s9"], "", "")  # asks nothing


def test_a_job_started_counts_until_its_site_reports_holding_it():
    """A heartbeat sent before the site placed the job still counts it; once reported, ended or stale, it drops."""
    # Prepare
    loads = {"s1": SiteLoad(TWO_GPUS)}
    pending: dict[str, dict[str, tuple[Grant, float]]] = {}
    hold(loads, "a", Ask(gpus=2), ["s1"], pending, now=100.0)
    # Execute
    early = with_pending(SiteLoad(TWO_GPUS), pending["s1"], {"a"}, 101.0)
    stale = with_pending(SiteLoad(TWO_GPUS), dict(pending["s1"]), {"a"}, 101.0 + PENDING_S)
    reported = with_pending(SiteLoad(TWO_GPUS, (Grant("a", gpus=(0, 1)),)), pending["s1"], {"a"}, 102.0)
    # Assert
    assert early.grants == (Grant("a", gpus=(0, 1)),) and stale.grants == ()
    assert reported.grants == (Grant("a", gpus=(0, 1)),) and pending["s1"] == {}


def test_sites_all_leaves_out_sites_that_can_never_hold_the_job():
    """sites: all: a site too small is left out while enough others remain; else the job waits, saying why."""
    # Prepare
    loads = {"big": SiteLoad(TWO_GPUS), "small": SiteLoad(TWO_CORES)}
    ask = Ask(gpus=1)
    # Execute / Assert
    assert resource_fit(ask, ["big", "small"], loads, False, 1) == (["big"], "", "")
    sites, reason, never = resource_fit(ask, ["big", "small"], loads, False, 2)
    assert (sites, never) == (None, "")
    assert reason.startswith("waiting for 2 sites that can hold what the job asks (1 GPU); 1 online cannot (small:")


# -- the wire and the listing ---------------------------------------------------------------------------------------

def test_a_site_s_resources_travel_and_show():
    """SiteLoad survives the heartbeat message; site ls shows a GPU cell and the JSON of each GPU and job."""
    # Prepare
    load = SiteLoad(Capacity((0, 1), 4096, (Gpu(0, A100, 40960, 1024, 39936), Gpu(1, A100, 40960, 0, 40960)), False,
                             True), (Grant("a1", (0,), 1024, (0,), 2048),), queued=1)
    # Execute
    back = load_from_pb(load_to_pb(load))
    shown = resources_json(back)
    # Assert
    assert back == load
    assert gpu_cell(back) == "1/2 used, 79 GiB free"
    assert gpu_cell(None) == "-" and gpu_cell(SiteLoad(TWO_CORES)) == "none"
    assert shown is not None and shown["gpus"][0]["jobs"] == ["a1"] and shown["cpus_free"] == 1
    assert shown["jobs"] == {"a1": {"cpus": [0], "memory_mb": 1024, "gpus": [0], "gpu_memory_mb": 2048}}


# -- flctl simulate --gpus ------------------------------------------------------------------------------------------

def test_sites_spread_over_the_gpus_given():
    """One worker per GPU (per group of the job's gpus); a GPU's memory refuses more sites than fit at once."""
    # Execute
    single = spread(parse_gpus("0,1"), 5, Ask())
    pairs = spread(parse_gpus("0,1,2,3"), 4, Ask(gpus=2))
    # Assert
    assert single.groups == ("0", "1") and single.sites_per_group == 3
    assert pairs.groups == ("0,1", "2,3")
    known = {i: Gpu(i, A100, 40 * GIB) for i in range(2)}
    assert spread((0, 1), 4, Ask(gpus=1, gpu_memory_mb=20 * GIB), known).sites_per_group == 2
    with pytest.raises(GpuSpreadError, match="put 3 on GPU 0, each asking 20 GiB of its 40 GiB"):
        spread((0, 1), 6, Ask(gpus=1, gpu_memory_mb=20 * GIB), known)
    with pytest.raises(GpuSpreadError, match="distinct GPU indices"):
        parse_gpus("0,0")


def test_the_recipe_s_sim_env_takes_gpus_as_flctl_simulate_does(tmp_path: Path):
    """SimEnv(gpus=...) is `flctl simulate --gpus`: a bad list is refused before anything runs."""
    # Prepare
    from flctl.recipe import FedAvgJob, RecipeInputError, SimEnv

    script = tmp_path / "train.py"
    script.write_text("import flctl.client as fl\nfl.init()\n")
    job = FedAvgJob(name="spread", script=script, rounds=1)
    # Execute / Assert
    with pytest.raises(RecipeInputError, match=r"SimEnv: gpus must list distinct GPU indices, e.g. 0,1, not '0,x'"):
        SimEnv(sites=2, gpus="0,x", workspace=tmp_path / "ws").run(job)


def test_nvflare_resource_spec_becomes_job_resources():
    """meta.json's resource_spec (num_of_gpus or num_gpus, mem_per_gpu_in_GiB) maps to resources; other keys named."""
    # Prepare
    from flctl.node.jobs.nvflare_import import _resources

    mapped: list[str] = []
    unmapped: list[str] = []
    # Execute
    out = _resources({"site-1": {"num_of_gpus": 1, "mem_per_gpu_in_GiB": 8}, "site-2": {"num_gpus": 2, "tpu": 1}},
                     mapped, unmapped)
    # Assert
    assert out == {"gpus": 2, "gpu_memory_gb": 8.0}
    assert Resources.model_validate(out).gpus == 2
    assert unmapped == ["meta.json resource_spec site-2.tpu: 1 has no flctl equivalent"]
    assert "largest" in mapped[0]



def test_simulate_gpus_gives_each_site_s_worker_its_own_gpu(tmp_path: Path):
    """`flctl simulate -n 4 --gpus 0,1`: site-1 and site-3 see GPU 0, site-2 and site-4 GPU 1 (their workers'
    CUDA_VISIBLE_DEVICES); --gpus 0 with a job asking 2 GPUs a site is refused with exit 2."""
    # Prepare
    from .conftest import run_flctl

    job = tmp_path / "job"
    (job / "app").mkdir(parents=True)
    (job / "job.yml").write_text("api_version: 1\nname: spread\nworkflow: {type: fedavg, args: {rounds: 1}}\n"
                                 "min_sites: 4\nresources: {gpus: 1}\n")
    (job / "app" / "train.py").write_text(
        "import os\nimport flctl.client as fl\nfl.init()\nwhile fl.running():\n    m = fl.receive()\n"
        "    seen = float(os.environ.get('CUDA_VISIBLE_DEVICES') or -1)\n"
        "    fl.send(fl.Model(params=m.params, metrics={'gpu': seen}, num_examples=1))\n")
    # Execute
    ran = run_flctl("simulate", job, "-n", "4", "--gpus", "0,1", "-w", tmp_path / "ws", "--json")
    (job / "job.yml").write_text((job / "job.yml").read_text().replace("gpus: 1", "gpus: 2"))
    refused = run_flctl("simulate", job, "-n", "4", "--gpus", "0", "-w", tmp_path / "ws")
    # Assert
    assert ran.code == 0, ran.stderr
    seen = {m["site"]: m["value"] for m in json.loads((tmp_path / "ws" / "spread" / "metrics.json").read_text())}
    assert seen == {"site-1": 0.0, "site-2": 1.0, "site-3": 0.0, "site-4": 1.0}
    assert refused.code == 2 and "the job asks 2 GPUs a site; --gpus gives 1" in refused.stderr


def test_the_site_agent_refuses_a_job_it_can_never_hold(tmp_path: Path):
    """The agent reads the extracted job.yml's ask against its own capacity: the reason it reports, '' when it fits."""
    # Prepare
    from flctl.node.site.agent import SiteAgent

    agent = SiteAgent.__new__(SiteAgent)  # only its slots: the rest is a daemon's
    agent.slots = JobSlots(TWO_CORES)
    folder = tmp_path / "job"
    (folder / "app").mkdir(parents=True)
    (folder / "app" / "train.py").write_text("")
    (folder / "job.yml").write_text("api_version: 1\nname: j\nworkflow: {type: fedavg, args: {rounds: 1}}\n"
                                    "resources: {cpus: 64, memory_mb: 100000000}\n")
    # Execute
    refusal = agent._never_fits(folder)
    (folder / "job.yml").write_text("api_version: 1\nname: j\nworkflow: {type: fedavg, args: {rounds: 1}}\n")
    # Assert
    assert refusal == "the job asks 64 CPUs; this site offers 2"
    assert agent._never_fits(folder) == ""


def test_a_sites_report_of_its_resources_out_of_bounds_is_refused_naming_what():
    """A heartbeat's resources are a peer's message: negative amounts, more GPUs than a machine holds, or a GPU name
    with control characters (shown in terminals) are refused with the reason; a real report goes through."""
    from flctl.node.wire import resources_serde
    from flctl.node.wire.proto import flctl_pb2 as pb

    good = pb.SiteResources(cpus=[0, 1], memory_mb=4096,
                            gpus=[pb.GpuInfo(index=0, name="NVIDIA A100", memory_mb=40960)])
    assert resources_serde.load_from_pb(good).capacity.gpus[0].name == "NVIDIA A100"
    bad = {
        "negative": pb.SiteResources(cpus=[0], memory_mb=-1),
        "GPUs": pb.SiteResources(gpus=[pb.GpuInfo(index=i) for i in range(resources_serde.MAX_GPUS + 1)]),
        "control characters": pb.SiteResources(gpus=[pb.GpuInfo(index=0, name="A100\x1b[2J")]),
        "jobs held": pb.SiteResources(grants=[pb.ResourceGrant(job_id=str(i))
                                              for i in range(resources_serde.MAX_GRANTS + 1)]),
    }
    for word, msg in bad.items():
        with pytest.raises(resources_serde.ResourcesRefused, match=word):
            resources_serde.reported(pb.HeartbeatRequest(resources=msg))
