"""LLM fine-tuning with LoRA (playbooks/jobs/llm-lora, `flctl.client.peft`): two simulated sites fine-tune a tiny
Llama config; only adapter tensors reach the server, their FedAvg is numpy's weighted mean, the global adapter
loads back into PEFT with the same logits, and the full mode streams the whole model (more bytes). The trained
adapter then runs federated inference (generate.yml) on one real federation with `flctl job submit generate.yml
--model-from JOB_ID`, the generations kept at the sites; simulated, its safetensors file is the initial model.

Cheap on purpose (the CI's budget): one simulated lora run shared by every check that reads it, full mode checked
at a site in this process, one real federation for both the training and the inference job."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from flctl.node.jobs.job_spec import load_job
from flctl.node.jobs.job_status import JobStatus
from flctl.node.simulator.runtime import simulate
from flctl.node.wire.tensors import read_file

from .conftest import ROOT
from .federation import FLCTL
from .test_example_jobs import load_script

torch = pytest.importorskip("torch", reason="needs the torch extra: bash scripts/setup.sh --all")
pytest.importorskip("transformers", reason="needs the llm extra: bash scripts/setup.sh --all")
peft = pytest.importorskip("peft", reason="needs the llm extra: bash scripts/setup.sh --all")

from flctl.client import peft as flp  # noqa: E402  (needs peft, checked above)

EXAMPLE = ROOT / "playbooks" / "jobs" / "llm-lora"
SITES = ["site-1", "site-2"]
FAST = ["--model", "tiny", "--steps", "4", "--chars", "6000", "--eval-batches", "2"]
"""The example's tiny model, with fewer steps and less text: a round takes about a second."""


def job_copy(root: Path, mode: str, rounds: int, extra: list[str], evaluate_every: int = 1,
             cross_site_eval: bool = False) -> Path:
    """The example's app/ with a job.yml of `rounds` rounds running train.py in `mode` with FAST settings."""
    folder = root / f"llm-{mode}"
    shutil.copytree(EXAMPLE / "app", folder / "app")
    command = ["python", "train.py", "--mode", mode, *FAST, *extra]
    (folder / "job.yml").write_text(
        f"api_version: 1\nname: llm-{mode}\nmin_sites: 2\n"
        f"workflow: {{type: fedavg, args: {{rounds: {rounds}, round_timeout_s: 300, "
        f"evaluate_every: {evaluate_every}, cross_site_eval: {str(cross_site_eval).lower()}}}}}\n"
        f"app: {{command: {json.dumps(command)}, framework: pytorch, env: {{HF_HUB_OFFLINE: '1'}}}}\n")
    return folder


def run(folder: Path, workspace: Path) -> Path:
    """Simulate the job with SITES in one worker (one import of torch and transformers); its results folder."""
    result = simulate(load_job(folder), SITES, workspace, 1)
    logs = "".join(p.read_text() for p in (result.job_dir / "logs").glob("*.log"))
    assert result.status == JobStatus.FINISHED, f"{result.error}\n{logs}"
    return result.job_dir


def metrics(job_dir: Path) -> dict[tuple[str, int, str], float]:
    """(site, round, name) -> value, from the run's metrics.json."""
    return {(row["site"], row["round"], row["name"]): row["value"]
            for row in json.loads((job_dir / "metrics.json").read_text())}


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lora job, two rounds, two sites, then cross-site evaluation (shared by the checks below)."""
    root = tmp_path_factory.mktemp("llm-lora")
    return run(job_copy(root, "lora", 2, [], cross_site_eval=True), root / "ws")


def on_one_thread(app_file: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The example's app/`app_file` (its llm.py beside it), on one torch thread as the job runs it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_script(EXAMPLE / "app" / app_file, monkeypatch)
    torch.set_num_threads(before)


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """train.py, as the job runs it."""
    yield from on_one_thread("train.py", monkeypatch)


@pytest.fixture
def generator(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """generate.py, as the job runs it."""
    yield from on_one_thread("generate.py", monkeypatch)


def generation_job(folder: Path, initial_model: str | None) -> Path:
    """generate.yml beside a copy of the example's app/ in `folder`, its initial_model replaced (None: as it is)."""
    if not (folder / "app").is_dir():
        shutil.copytree(EXAMPLE / "app", folder / "app")
    text = (EXAMPLE / "generate.yml").read_text()
    if initial_model is not None:
        text = text.replace("initial_model: app/generate.py:seeded_adapter", f"initial_model: {initial_model}")
        assert f"initial_model: {initial_model}" in text
    (folder / "generate.yml").write_text(text)
    return folder / "generate.yml"


def generations(folder: Path) -> list[dict[str, str]]:
    """A site's generations.jsonl (in its fl.output_dir())."""
    return [json.loads(line) for line in (folder / "generations.jsonl").read_text().splitlines()]


def expected_generations(generator: ModuleType, final: Path | None, site: str) -> list[dict[str, str]]:
    """What generate.yml's command makes at `site`, computed here: its prompts, and the greedy continuations of the
    seeded base with the adapter in `final` (None: the seeded untrained adapter)."""
    chosen = generator.generation(load_job(EXAMPLE / "generate.yml").spec.app.command[2:])
    params = read_file(final) if final is not None else generator.seeded_adapter()
    model, tokenizer = generator.model_for(chosen.settings, params, torch.device("cpu"))
    prompts = generator.site_prompts(site, chosen.prompts)
    outputs, tokens, _ = generator.generate(model, tokenizer, prompts, chosen.new_tokens)
    assert tokens == chosen.prompts * chosen.new_tokens
    return [{"prompt": p, "output": o} for p, o in zip(prompts, outputs, strict=True)]


def settings(script: ModuleType, mode: str = "lora", extra: list[str] | None = None) -> Any:
    return script.llm.settings(["--mode", mode, *FAST, *(extra or [])])


def logits(model: Any) -> Any:
    """The model's logits for a fixed batch of byte tokens."""
    model.eval()
    ids = torch.arange(2 * 24).view(2, 24) % 250
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_only_adapter_tensors_reach_the_server_and_each_round_reports_perplexity_bytes_and_speed(lora_run: Path):
    """Every round model and the final one hold exactly the adapter's tensors (names lora_*; none of the base
    model); each site reports its held-out perplexity after each round, the bytes it sent (the round model's
    safetensors size, far below the whole model's) and its tokens/s."""
    # Prepare
    models = sorted((lora_run / "models").glob("*.safetensors"))
    values = metrics(lora_run)
    # Execute
    names = {path.name: set(read_file(path)) for path in models}
    # Assert
    assert sorted(names) == ["final.safetensors", "round-0.safetensors", "round-1.safetensors"]
    for found in names.values():
        assert found and all(flp.is_adapter_name(name) for name in found), found
        assert all(".lora_A." in name or ".lora_B." in name for name in found)
    adapter_bytes = (lora_run / "models" / "round-1.safetensors").stat().st_size
    for site in SITES:
        for round_no in (0, 1):
            assert 1 < values[(site, round_no, "val_perplexity")] < 300
            assert values[(site, round_no, "val_loss")] == pytest.approx(np.log(values[(site, round_no,
                                                                                      "val_perplexity")]))
            assert values[(site, round_no, "bytes_sent")] == adapter_bytes
            assert values[(site, round_no, "bytes_sent")] * 4 < values[(site, round_no, "full_model_bytes")]
            assert values[(site, round_no, "tokens_per_s")] > 0
        assert values[(site, 0, "bytes_received")] == 0 and values[(site, 1, "bytes_received")] == adapter_bytes
    log = (lora_run / "logs" / "site-1.log").read_text()
    assert "tokens/s on cpu" in log and f"sent {adapter_bytes} bytes (lora" in log


def test_cross_site_evaluation_gets_each_sites_own_adapter(lora_run: Path):
    """cross_site_eval: each site submits its own last-trained adapter (not the global one it evaluated since), and
    every site reports every model's perplexity on its held-out text."""
    # Prepare / Execute
    report = json.loads((lora_run / "reports" / "cross_site_eval.json").read_text())
    # Assert
    assert report["missing"] == {} and sorted(report["models"]) == ["global", *SITES]
    for site in SITES:
        seen = report["metrics"][site]
        assert all(1 < seen[model]["perplexity"] < 300 for model in report["models"])
        assert seen[site]["perplexity"] != seen["global"]["perplexity"]


def test_the_adapter_fedavg_equals_the_numpy_weighted_mean_of_the_sites_adapters(lora_run: Path, script):
    """Each site's round-0 and round-1 adapters, recomputed here from the same seeds, average (weighted by the
    sites' training sequences, in numpy) to the simulator's round models."""
    # Prepare
    sites = {site: script.Site(site, settings(script)) for site in SITES}
    expected: dict[int, dict[str, np.ndarray]] = {}
    given: dict[str, Any] = {}
    # Execute
    for round_no in (0, 1):
        answers = [site.train_round(given, round_no) for site in sites.values()]
        total = sum(n for _, _, n in answers)
        expected[round_no] = {name: sum(params[name].numpy().astype(np.float64) * n for params, _, n in answers)
                              / total for name in answers[0][0]}
        given = {name: torch.from_numpy(np.array(value)) for name, value in
                 read_file(lora_run / "models" / f"round-{round_no}.safetensors").items()}
    # Assert
    for round_no, reference in expected.items():
        server = read_file(lora_run / "models" / f"round-{round_no}.safetensors")
        assert set(server) == set(reference)
        for name, value in reference.items():
            np.testing.assert_allclose(server[name], value, rtol=0, atol=1e-6, err_msg=name)
    assert any(np.abs(value).max() > 0 for name, value in expected[1].items() if "lora_B" in name)  # it trained


def test_the_global_adapter_loads_back_into_peft_with_the_same_logits(lora_run: Path, script, tmp_path: Path,
                                                                      monkeypatch):
    """The folder each site saved at the end and export.py's folder of the server's final model both load with
    PeftModel.from_pretrained over the same base config and give the logits of the final adapter set by hand."""
    from peft import PeftModel

    # Prepare
    llm = script.llm
    chosen = settings(script)
    final = read_file(lora_run / "models" / "final.safetensors")
    by_hand = llm.with_lora(llm.base_model(chosen)[0], chosen)
    flp.load_adapter(by_hand, final)
    exported = tmp_path / "exported"
    export = load_script(EXAMPLE / "app" / "export.py", monkeypatch)
    # Execute
    export.export(lora_run / "models" / "final.safetensors", exported, chosen)
    loaded = {folder: PeftModel.from_pretrained(llm.base_model(chosen)[0], folder)
              for folder in (lora_run / "sites" / "site-1" / "outputs" / "global-model", exported)}
    # Assert
    want = logits(by_hand)
    assert not torch.equal(want, logits(llm.base_model(chosen)[0]))  # the adapter changes the model
    for folder, model in loaded.items():
        assert torch.equal(logits(model), want), folder
        saved = read_file(folder / "adapter_model.safetensors")
        assert set(saved) == set(final) and all(np.array_equal(saved[n], final[n]) for n in final)


def test_full_mode_sends_the_whole_model_in_bfloat16(script, lora_run: Path):
    """--mode full --dtype bfloat16 (full.yml's), at a site as train.py runs it: it sends the whole model's tensors
    (the state_dict's names, none an adapter's) in bfloat16, 2 bytes a value; its bytes_sent is their safetensors
    encoding's size and the whole model's (full_model_bytes), more than the lora run's; the model sent back is
    evaluated (perplexity). Run in this process, not simulated: that the server averages a bf16 model and keeps it
    bf16 is test_dtypes'."""
    from flctl.node.wire import tensors

    # Prepare
    site = script.Site("site-1", settings(script, "full", ["--dtype", "bfloat16", "--save="]))
    values_in_model = sum(t.numel() for t in site.model.state_dict().values())
    # Execute
    sent, values, n = site.train_round({}, 0)
    evaluated = site.evaluate(sent)
    # Assert
    assert set(sent) == set(site.model.state_dict()) and "lm_head.weight" in sent
    assert not any(flp.is_adapter_name(name) for name in sent)
    assert {value.dtype for value in sent.values()} == {torch.bfloat16}
    assert values["bytes_sent"] == len(tensors.encode(sent)) == values["full_model_bytes"]
    assert 2 * values_in_model < values["bytes_sent"] < 2 * values_in_model + 65536
    assert values["bytes_sent"] > metrics(lora_run)[("site-1", 0, "bytes_sent")]
    assert values["tokens_per_s"] > 0 and n == len(site.train_data)
    assert 1 < evaluated["perplexity"] < 300


def test_load_adapter_refuses_an_adapter_of_another_rank_or_other_modules(script):
    """An adapter whose tensors have another shape (rank 4 into rank 8) or other names (q_proj only): ValueError
    naming what does not fit; the model's adapter is unchanged. One that fits is loaded; the params taken from the
    model before stay as they were (copies)."""
    # Prepare
    llm = script.llm
    model = llm.with_lora(llm.base_model(settings(script))[0], settings(script))
    before = flp.adapter_params(model)
    rank4 = flp.adapter_params(llm.with_lora(llm.base_model(settings(script))[0],
                                             settings(script, extra=["--lora-r", "4"])))
    q_only = flp.adapter_params(llm.with_lora(llm.base_model(settings(script))[0],
                                              settings(script, extra=["--target-modules", "q_proj"])))
    # Execute / Assert
    with pytest.raises(ValueError, match=r"shape \(4, 64\) received.*\(8, 64\)"):
        flp.load_adapter(model, rank4)
    with pytest.raises(ValueError, match=r"missing .*mlp.down_proj.lora_A.weight, .* and 21 more"):
        flp.load_adapter(model, q_only)
    after = flp.adapter_params(model)
    assert all(torch.equal(before[name], after[name]) for name in before)
    flp.load_adapter(model, {name: value + 1 for name, value in before.items()})  # one that fits
    assert all(torch.equal(flp.adapter_params(model)[name], before[name] + 1) for name in before)
    assert all(torch.equal(before[name], after[name]) for name in before)  # what adapter_params gave: copies


def test_a_local_pretrained_model_folder_is_used_as_the_base(script, tmp_path: Path):
    """--model PATH: a model folder saved by transformers (no tokenizer in it: bytes) is read offline and wrapped
    with LoRA; its weights are the folder's, not the seeded preset's."""
    # Prepare
    llm = script.llm
    preset = settings(script, extra=["--seed", "7"])
    saved, _ = llm.base_model(preset)
    saved.save_pretrained(str(tmp_path / "my-model"))
    # Execute
    model, tokenizer, full_bytes = llm.build(settings(script, extra=["--model", str(tmp_path / "my-model")]),
                                             torch.device("cpu"))
    # Assert
    assert isinstance(tokenizer, llm.ByteTokenizer) and full_bytes > 0
    assert model.peft_config["default"].base_model_name_or_path == str(tmp_path / "my-model")
    assert torch.equal(model.get_base_model().model.embed_tokens.weight, saved.model.embed_tokens.weight)


@pytest.mark.parametrize("job_file", ["job.yml", "full.yml", "gpu.yml"])
def test_each_job_file_of_the_example_loads_and_its_command_parses(job_file: str, script):
    """job.yml, full.yml and gpu.yml load, and train.py takes each one's options (gpu.yml: a GPU per site, the
    100m preset in bfloat16)."""
    # Prepare
    path = EXAMPLE / job_file if job_file != "job.yml" else EXAMPLE
    # Execute
    loaded = load_job(path)
    chosen = script.llm.settings(loaded.spec.app.command[2:])
    # Assert
    assert loaded.spec.app.command[:2] == ["python", "train.py"] and loaded.spec.min_sites == 2
    assert chosen.mode == ("full" if job_file == "full.yml" else "lora")
    if job_file == "gpu.yml":
        assert loaded.spec.resources.gpus == 1 and chosen.model == "100m" and chosen.dtype == "bfloat16"


def test_train_py_options_name_the_knobs(script):
    """train.py's options (python train.py --help) name the mode, model size, dtype, device, LoRA and save knobs."""
    # Execute
    text = script.llm.parser().format_help()
    # Assert
    for option in ("--mode", "--model", "--layers", "--hidden", "--dtype", "--device", "--lora-r", "--steps",
                   "--save"):
        assert option in text


def server_side_holds_none_of(root: Path, lines: list[dict[str, str]]) -> bool:
    """Whether no file under `root` (outside each site's sites/ and the job's app/) holds any of the generation
    `lines`: a prompt with its output, as generations.jsonl writes it or as plain text."""
    files = [p for p in root.rglob("*") if p.is_file() and not {"sites", "app"} & set(p.relative_to(root).parts)]
    wanted = [text.encode() for line in lines for text in (json.dumps(line), line["prompt"] + line["output"])]
    return not any(w in p.read_bytes() for w in wanted for p in files)


def test_a_simulation_names_the_trained_adapter_file_as_initial_model(lora_run: Path, tmp_path: Path):
    """Simulated (no server to resolve --model-from), generate.yml takes the lora run's final.safetensors copied into
    app/ as its initial_model: the job loads and the model its sites are sent is that adapter, tensor for tensor.
    (What the sites do with it is the real federation's test below: the same task, the same script.)"""
    from flctl.node.jobs.initial_model import load

    # Prepare
    final = lora_run / "models" / "final.safetensors"
    job = generation_job(tmp_path / "generate", "app/final.safetensors")
    shutil.copy(final, job.parent / "app" / "final.safetensors")
    # Execute
    loaded = load_job(job)
    sent = load(loaded.spec.initial_model, lambda path: (job.parent / path).read_bytes(), lambda ref: {})
    # Assert
    assert loaded.spec.initial_model == "app/final.safetensors"
    want = read_file(final)
    assert set(sent) == set(want) and all(np.array_equal(sent[name], want[name]) for name in want)


@pytest.mark.parametrize("job_file", ["generate.yml", "generate-full.yml"])
def test_the_generation_job_files_load_and_their_initial_models_fit_their_commands(job_file: str, generator):
    """generate.yml (an adapter) and generate-full.yml (the whole model in bfloat16) are inference jobs returning
    count, tokens and tokens_per_s; the initial model each names (app/generate.py's seeded_adapter, seeded_model)
    loads into the model its command builds."""
    # Prepare
    loaded = load_job(EXAMPLE / job_file)
    chosen = generator.generation(loaded.spec.app.command[2:])
    function = loaded.spec.initial_model.split(":")[1]
    # Execute
    params = getattr(generator, function)()
    model, _ = generator.model_for(chosen.settings, params, torch.device("cpu"))
    # Assert
    assert loaded.spec.workflow.type == "inference" and loaded.spec.app.command[:2] == ["python", "generate.py"]
    assert loaded.args.returns == ["count", "tokens", "tokens_per_s"] and loaded.args.sum == ["count", "tokens"]
    assert loaded.spec.initial_model.startswith("app/generate.py:")
    if job_file == "generate.yml":
        assert chosen.settings.mode == "lora" and all(flp.is_adapter_name(name) for name in params)
    else:
        assert chosen.settings.mode == "full" and {str(t.dtype) for t in params.values()} == {"torch.bfloat16"}
        assert {str(t.dtype) for t in model.state_dict().values()} == {"torch.bfloat16"}


def test_on_a_real_federation_only_the_adapter_travels_and_its_result_generates_at_the_sites(tmp_path: Path,
                                                                                              generator):
    """Server and two sites as real processes over mTLS: the lora job finishes; every model in the server's job
    folder (round-0 and final) holds adapter tensors only, and each site's job process sent about that many bytes.
    Then `flctl job submit generate.yml --model-from JOB_ID`: the server sends that final adapter (adapter tensors
    only) to every site; each site's generations, kept in its job workspace, are those of the seeded base with it;
    the report holds the declared figures only, and no generated text is on the server."""
    from flctl.node.admin.admin_client import AdminClient
    from flctl.node.jobs.initial_model import FROM_JOB_FILE

    from .federation import make_federation, running

    # Prepare
    folder = job_copy(tmp_path, "lora", 1, ["--save="], evaluate_every=0)
    generate = generation_job(folder, None)  # as the example is: --model-from replaces its initial_model
    fed = make_federation(tmp_path, sites=2)
    with running(fed), AdminClient.from_kit(fed.admin_kit) as admin:
        # Execute
        job_id = admin.submit_job(folder)
        list(admin.watch(job_id))
        info = admin.get_job(job_id)
        submitted = subprocess.run([FLCTL, "job", "submit", str(generate), "--model-from", job_id, "--watch",
                                    "--json", "--kit", str(fed.admin_kit)], capture_output=True, text=True,
                                   timeout=300, check=False)
        generate_id = json.loads(submitted.stdout or "{}").get("id", "")
        shown = admin.get_job(generate_id).to_json() if generate_id else {}
        logs = fed.logs()
    # Assert
    assert info.status == "FINISHED", info.error + logs
    jobs = fed.prod / "localhost" / "workspace" / "jobs"
    models = jobs / job_id / "models"
    assert sorted(p.name for p in models.iterdir()) == ["final.safetensors", "round-0.safetensors"]
    final = models / "final.safetensors"
    names = set(read_file(final))
    assert names and all(flp.is_adapter_name(name) for name in names), names
    for site in SITES:
        sent = (fed.prod / site / "workspace" / "jobs" / job_id / "job_process.log").read_text()
        assert f"answer sent, {final.stat().st_size / 1e6:.1f} MB" in sent, sent
    assert submitted.returncode == 0 and shown["status"] == "FINISHED", submitted.stdout + submitted.stderr + logs
    sent_out = read_file(jobs / generate_id / FROM_JOB_FILE)
    assert set(sent_out) == names and all(np.array_equal(sent_out[n], read_file(final)[n]) for n in names)
    report = shown["reports"]["inference"]
    texts: list[dict[str, str]] = []
    for site in SITES:
        got = generations(fed.prod / site / "workspace" / "jobs" / generate_id / "job" / "outputs")
        assert got == expected_generations(generator, final, site), site
        texts += got
        assert report["sites"][site]["metrics"].keys() == {"count", "tokens", "tokens_per_s"}
        metrics = report["sites"][site]["metrics"]
        assert metrics["count"] == 6.0 and metrics["tokens"] == 72.0 and metrics["tokens_per_s"] > 0
    assert report["all_sites"]["count"] == 12.0 and report["all_sites"]["tokens"] == 144.0
    assert expected_generations(generator, None, "site-1") != texts[:6]  # the adapter mattered
    assert [line["prompt"] for line in texts[:6]] != [line["prompt"] for line in texts[6:]]  # each site its own
    assert server_side_holds_none_of(fed.prod / "localhost" / "workspace", texts)
    assert not list((jobs / generate_id).rglob("models/*.safetensors"))  # an inference job saves no model
