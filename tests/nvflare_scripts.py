"""Client scripts written for NVIDIA FLARE 2.x, in the style of its examples (hello-pt, cifar10 with evaluation and
cross-site evaluation), written here from its documented Client API: they must run under flctl as they are."""

from __future__ import annotations

from pathlib import Path

NET = '''
import torch
import torch.nn as nn


class SimpleNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def data(site, n=64):
    g = torch.Generator().manual_seed(sum(site.encode()))
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return x, y
'''

HELLO_PT = '''
import torch
import torch.nn as nn

import nvflare
import nvflare.client as flare
from nvflare.client.tracking import SummaryWriter

from net import SimpleNetwork, data


def main():
    model = SimpleNetwork()
    flare.init()
    sys_info = flare.system_info()
    client_name = sys_info["site_name"]
    print(f"compat={getattr(nvflare, 'FLCTL_COMPAT', False)} module={nvflare.__file__}")
    summary_writer = SummaryWriter()
    x, y = data(client_name)
    loss_fn = nn.CrossEntropyLoss()
    while flare.is_running():
        input_model = flare.receive()
        print(f"site={client_name} current_round={input_model.current_round} total_rounds={input_model.total_rounds} "
              f"tensor={type(next(iter(input_model.params.values()))).__name__} job={flare.get_job_id()}")
        model.load_state_dict(input_model.params)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        steps = 0
        for epoch in range(2):
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            steps += 1
            summary_writer.add_scalar(tag="loss_for_each_batch", scalar=loss.item(),
                                      global_step=input_model.current_round * 2 + epoch)
        output_model = flare.FLModel(params=model.cpu().state_dict(), meta={"NUM_STEPS_CURRENT_ROUND": steps})
        flare.send(output_model)


if __name__ == "__main__":
    main()
'''

CIFAR10_STYLE = '''
import torch
import torch.nn as nn

import nvflare.client as flare
from nvflare.app_common.abstract.fl_model import FLModel, ParamsType

from net import SimpleNetwork, data


def evaluate(net, weights, x, y):
    net.load_state_dict(weights)
    with torch.no_grad():
        return float((net(x).argmax(1) == y).float().mean())


def main():
    flare.init()
    site = flare.get_site_name()
    net = SimpleNetwork()
    x, y = data(site)
    best = None
    while flare.is_running():
        input_model = flare.receive()
        print(f"task={flare.get_task_name()} round={input_model.current_round}")
        if flare.is_evaluate():
            accuracy = evaluate(net, input_model.params, x, y)
            flare.send(FLModel(metrics={"accuracy": accuracy}))
            continue
        if flare.is_submit_model():
            flare.send(FLModel(params=best or net.state_dict()))
            continue
        assert flare.is_train()
        global_accuracy = evaluate(net, input_model.params, x, y)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        for _ in range(3):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(net(x), y)
            loss.backward()
            optimizer.step()
        best = {k: v.clone() for k, v in net.state_dict().items()}
        flare.log("train_loss", loss.item(), flare.AnalyticsDataType.SCALAR, global_step=input_model.current_round)
        flare.send(FLModel(params_type=ParamsType.FULL, params=net.cpu().state_dict(),
                           metrics={"accuracy": global_accuracy},
                           meta={"NUM_STEPS_CURRENT_ROUND": len(x)}))


main()
'''


def initial_model(path: Path) -> None:
    """`path`: SimpleNetwork's initial state_dict as safetensors (what an NVIDIA FLARE persistor would send)."""
    from safetensors.torch import save_file

    namespace: dict[str, object] = {}
    exec(NET, namespace)
    net = namespace["SimpleNetwork"]()  # type: ignore[operator]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))


def nvflare_job(root: Path, name: str, script: str, workflow: str, extra: str = "", compat: str = "nvflare") -> Path:
    """A flctl job running `script` (an NVIDIA FLARE client script) as it is, with an initial model."""
    folder = root / name
    (folder / "app").mkdir(parents=True)
    (folder / "app" / "client.py").write_text(script)
    (folder / "app" / "net.py").write_text(NET)
    initial_model(folder / "model" / "initial.safetensors")
    (folder / "job.yml").write_text(
        f"api_version: 1\nname: {name}\nworkflow: {workflow}\nmin_sites: 2\n"
        f"app: {{command: [python, client.py], compat: {compat}}}\ninitial_model: model/initial.safetensors\n{extra}")
    return folder
