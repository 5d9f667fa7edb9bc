"""The Client API: what a training script uses to take part in a job, and nothing else of flctl.

    import flctl.client as fl

    fl.init()
    while fl.running():
        model = fl.receive()                      # params: name -> array (or torch tensor); round, meta, task
        params = train(model.params)
        fl.send(fl.Model(params=params, metrics={"loss": loss}, num_examples=n))

`import flctl.client as fl` is the documented entry point (the old `import node.api` still works, with a
warning). flctl runs the script in a subprocess of the site job process (`flctl.node.client.script_bridge`) and
tells it where to connect through the environment (`FLCTL_API_ADDRESS`, `FLCTL_API_AUTHKEY`). Run by hand,
`init()` says so. NVIDIA FLARE's names work too: `is_running`, `get_site_name`, `get_job_id`; a script written for
NVIDIA FLARE itself runs with job.yml `app: {compat: nvflare}` (`flctl.node.client.compat`).

Params arrive as numpy arrays, or as torch tensors when job.yml says `app: {framework: pytorch}`
(`FLCTL_FRAMEWORK`): then `net.load_state_dict(model.params)` works as it is, and `net.state_dict()` goes back
as it is. With `app: {framework: keras}` they are numpy arrays named by a Keras 3 model's weight paths
(`hidden/kernel`): `flctl.client.keras.load(model, model_in.params)`, and `fl.Model(params=model)` sends the
model's weights (`flctl.node.client.keras_weights`). Importing this module is cheap: numpy, safetensors and the
connection are loaded by `init()` and the first task; torch only for a pytorch job's first task (sent tensors are
converted through their methods).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flctl.node.client import api_wire as wire
from flctl.node.jobs.tasks import PARAMS_TYPE, PARAMS_TYPES, SCAFFOLD_C

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from pathlib import Path

    from flctl.node.client.summary_writer import SummaryWriter

__path__ = [os.path.join(os.path.dirname(os.path.realpath(__file__)), "api_extras")]
"""`flctl.client.lightning` and the Client API's other submodules (`flctl.node.client.api_extras`)."""

__all__ = [
    "Model", "Trainer", "attach", "csv_ids", "current_round", "get_job_id", "get_site_name", "init", "is_evaluate",
    "is_inference", "is_running", "is_submit_model", "is_train", "job_id", "load_model", "log", "output_dir",
    "proximal_term", "psi", "receive", "running", "scaffold_correct", "scaffold_params", "send", "serve_statistics",
    "site_name", "split_nn", "summary_writer",
]


@dataclass
class Model:
    """A model travelling between flctl and the script: the task's input, or the script's result.

    From `receive()`: `params` (name -> numpy array, or torch tensor in a job with `app.framework: pytorch`),
    `round`, `meta` and `task` (its kind: "train", "evaluate" or "submit_model"). For `send()`: `params` (numpy
    arrays, numbers or torch tensors, e.g. `net.state_dict()`; or a Keras model, sent as its weights by name),
    `metrics` (name -> number: the result of this task, which the workflow uses and records once per site and
    round; `fl.log` is for values during training),
    `num_examples` (how many examples produced it, the weight in averaging), `meta` (JSON values) and
    `params_type`: "full" (the model itself) or "diff" (what training added to the model received; the server
    adds it back).
    """

    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    num_examples: int = 0
    round: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    task: str = "train"
    params_type: str = "full"


class _Session:
    """The script's one connection to its site job process, and where it is in the task loop."""

    def __init__(self, conn: Connection[Any, Any], site: str, job: str, framework: str | None = None) -> None:
        self.site = site
        self.job = job
        self.framework = framework or os.environ.get(wire.FRAMEWORK_ENV, "numpy")
        self.round = 0
        self._conn = conn
        self._send_lock = threading.Lock()
        self._task_lock = threading.RLock()
        self._current: Model | None = None
        self._current_id = 0
        self._asked = False
        self._ended = False
        self.scaffold_control: dict[str, Any] = {}  # SCAFFOLD's c, from the current task
        self.scaffold_own: dict[int, dict[str, Any]] = {}  # SCAFFOLD's c_i, this site's: round -> c_i after it
        self.answered_metrics: dict[str, float] = {}  # the last answer's metrics, until the next task arrives
        # the arrays of the last answer, offered to the next task's params (`tensors.receive` takes one only when the
        # script no longer refers to it): held only from the answer to the next task, while the script waits
        self._sent: dict[str, Any] = {}

    def send(self, message: wire.Message, parts: Sequence[wire.Payload] = ()) -> None:
        """Send a message (and its payload, in parts) as one unit, whatever other threads send."""
        with self._send_lock:
            try:
                wire.send(self._conn, message, parts)
            except OSError as exc:
                raise _lost(exc) from None

    def next_task(self, timeout: float | None) -> Model | None:
        """The current task (asking for the next one when it has been answered); None once the job ended. A swarm's
        `aggregate` task is answered here, never shown to the script."""
        with self._task_lock:
            while True:
                if self._ended:
                    return None
                if self._current is not None:
                    return self._current
                current = self._receive(timeout)
                if current is not None and current.task == "aggregate":
                    self._current = current
                    self.answer(Model(params=aggregate(current.params, current.meta), num_examples=1))
                    continue
                return current

    def _receive(self, timeout: float | None) -> Model | None:
        if not self._asked:
            with contextlib.suppress(ConnectionError):  # the site may have said End and closed: read it below
                self.send(wire.Ask())
            self._asked = True
        try:
            arrived = timeout is None or self._conn.poll(timeout)
            frame = self._conn.recv_bytes() if arrived else b""
        except (EOFError, OSError) as exc:
            raise _lost(exc) from None
        if not arrived:
            raise TimeoutError(f"fl.receive(): no task arrived within {timeout} s")
        message, size = wire.decode(frame)
        self._asked = False
        reuse, self._sent = self._sent, {}  # held no longer than this: the next task's arrays, or let go
        if isinstance(message, wire.End):
            self._ended = True
            return None
        if not isinstance(message, wire.Assign):
            raise RuntimeError(f"flctl sent {message.kind!r} where a task was expected (a bug in flctl)")
        from flctl.node.wire.tensors import receive

        try:
            params = receive(lambda view: wire.read_payload(self._conn, view), size, reuse) if size else {}
        except (EOFError, OSError) as exc:
            raise _lost(exc) from None
        self.scaffold_control = {name[len(SCAFFOLD_C):]: params.pop(name) for name in list(params)
                                 if name.startswith(SCAFFOLD_C)}
        if message.task_kind != "aggregate" and self.framework == "pytorch":
            params = _as_torch(params)
        self._current = Model(params=params, round=message.round, meta=message.meta, task=message.task_kind)
        self.answered_metrics = {}
        self._current_id = message.task_id
        self.round = message.round
        return self._current

    def answer(self, model: Model) -> None:
        """Send `model` as the result of the current task."""
        from flctl.node.wire.tensors import layout, reusable

        with self._task_lock:
            if self._current is None:
                if self._ended:
                    raise RuntimeError("fl.send(): the job has ended, there is no task to answer")
                raise RuntimeError("fl.send(): no task to answer; call fl.receive() first "
                                   "(each task takes exactly one send)")
            if not isinstance(model.meta, dict):
                raise TypeError(f"fl.send(): meta must be a dict, not {type(model.meta).__name__}")
            if model.params_type not in PARAMS_TYPES:
                raise ValueError(f"fl.send(): params_type must be 'full' or 'diff', not {model.params_type!r}")
            meta = {**model.meta, PARAMS_TYPE: model.params_type} if model.params_type != "full" else model.meta
            params = _keras_params(model.params)
            result = wire.Result(task_id=self._current_id, num_examples=_num_examples(model.num_examples),
                                 metrics=_metrics(model.metrics), meta=meta)
            try:
                self.send(result, layout(params).parts())  # straight from the arrays
            except wire.WireError as exc:
                raise TypeError(f"fl.send(): Model.meta: {exc}") from None
            except ValueError as exc:
                raise ValueError(f"fl.send(): {exc}") from None
            self._current = None
            self.answered_metrics = dict(result.metrics)
            self._sent = reusable(params) if isinstance(params, dict) else {}

    def close(self) -> None:
        """End the connection to the site's job process."""
        with self._task_lock:
            self._ended = True
            self._conn.close()

    def log(self, name: str, value: float, step: int | None) -> None:
        """`fl.log` on this session."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"fl.log(): the metric name must be a non-empty string, not {name!r}")
        if step is not None and (not isinstance(step, int) or isinstance(step, bool)):
            raise TypeError(f"fl.log(): step must be an int or None, not {step!r}")
        number = _float(value, f"metric {name!r}")
        if not self.recorded(name, number):
            self.send(wire.Log(name=name, value=number, step=step))

    def recorded(self, name: str, value: float) -> bool:
        """Whether `value` under `name` was sent with the task just answered (a log of it after `send` would record
        it twice)."""
        with self._task_lock:
            return self._current is None and self.answered_metrics.get(name) == value


@dataclass
class _Process:
    """This process's one session (a script talks to one site job process)."""

    session: _Session | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


_process = _Process()

_thread = threading.local()
"""The simulator runs many sites' scripts as threads of one process: a thread's own session, when it has one."""


def init() -> None:
    """Connect to the site job process that runs this script; calling it again does nothing."""
    if getattr(_thread, "session", None) is not None:
        return
    with _process.lock:
        if _process.session is not None:
            return
        address = os.environ.get(wire.ADDRESS_ENV)
        authkey = os.environ.get(wire.AUTHKEY_ENV)
        if not address or not authkey:
            raise RuntimeError(f"run this script through flctl (flctl simulate / flctl job submit): "
                               f"{wire.ADDRESS_ENV} and {wire.AUTHKEY_ENV} are not set")
        from multiprocessing import AuthenticationError
        from multiprocessing.connection import Client

        try:
            conn = Client(address, family="AF_UNIX", authkey=bytes.fromhex(authkey))
        except (OSError, ValueError, AuthenticationError, EOFError) as exc:
            raise RuntimeError(f"cannot connect to flctl's site job process at {address}: {exc}") from None
        session = _Session(conn, os.environ.get(wire.SITE_ENV, ""), os.environ.get(wire.JOB_ID_ENV, ""))
        session.send(wire.Hello())
        _process.session = session


class Trainer:
    """An external trainer's session with one job at one site (`attach()`): the Client API's task loop as methods.

        trainer = fl.attach("/srv/site-1/workspace/jobs/JOB_ID/agent")
        while trainer.running():
            task = trainer.receive()
            trainer.send(fl.Model(params=train(task.params), num_examples=n))
    """

    def __init__(self, session: _Session) -> None:
        self._session = session

    @property
    def site(self) -> str:
        """The site this trainer works for ('' when attached by socket path alone)."""
        return self._session.site

    @property
    def job_id(self) -> str:
        """The job's id ('' when attached by socket path alone)."""
        return self._session.job

    def running(self) -> bool:
        """Wait for the next task: True when one arrived, False when the job ended at the site."""
        return self._session.next_task(None) is not None

    def receive(self, timeout: float | None = None) -> Model | None:
        """The current task's model (as `fl.receive()`); None when the job ended."""
        return self._session.next_task(timeout)

    def send(self, model: Model) -> None:
        """Answer the current task (as `fl.send()`)."""
        if not isinstance(model, Model):
            raise TypeError(f"send() takes an fl.Model, not {type(model).__name__}")
        self._session.answer(model)

    def log(self, name: str, value: float, step: int | None = None) -> None:
        """Record a metric value (as `fl.log()`)."""
        self._session.log(name, value, step)

    def close(self) -> None:
        """Detach: the site's part of the job fails if a task was still unanswered (the trainer went away)."""
        with _process.lock:
            if _process.session is self._session:
                _process.session = None
        self._session.close()


def attach(path: str | os.PathLike[str], token_file: str | os.PathLike[str] | None = None, wait_s: float = 0.0,
           job: str | None = None) -> Trainer:
    """Attach this process, which the site runs itself, to a job with `app: {external: true}` as its trainer
    (NVIDIA FLARE's agent): `path` is the site's workspace or kit (the job there waiting for a trainer; `job`, an
    id or name, picks one of several), the job's folder at the site, its `agent/` folder or the `attach.json` in
    it (`<site workspace>/jobs/<job id>/agent/attach.json`), or the socket itself with `token_file`. Waits up to
    `wait_s` for the site to make it (a trainer started before its job). Reading the token (a 0600 file) proves
    the process may act for the site; once attached, the token is gone (one trainer per job and site).

    The first attach of a process also becomes its session for `fl.receive()`, `fl.send()`, `fl.log()`...
    RuntimeError saying why when the site cannot be reached or refuses (a wrong token)."""
    from multiprocessing import AuthenticationError
    from multiprocessing.connection import Client

    from flctl.node.client.attach_file import read_attach

    info = read_attach(path, token_file, wait_s, job)
    try:
        conn = Client(info.address, family="AF_UNIX", authkey=info.token)
    except (OSError, AuthenticationError, EOFError) as exc:
        raise RuntimeError(f"cannot attach to the site's job process at {info.address}: "
                           f"{exc or type(exc).__name__}") from None
    session = _Session(conn, info.site, info.job_id, info.framework)
    session.send(wire.Hello())
    with _process.lock:
        if _process.session is None:
            _process.session = session
    return Trainer(session)


def running() -> bool:
    """Wait for the next task: True when one arrived (read it with `receive()`), False when the job ended.

    While the current task is not answered with `send()`, it returns True at once.
    """
    return _connected().next_task(None) is not None


is_running = running


def receive(timeout: float | None = None) -> Model | None:
    """The current task's model, waiting for it if needed (TimeoutError after `timeout` s); None when the job ended.

    Until the task is answered with `send()`, every call returns the same model.
    """
    return _connected().next_task(timeout)


def aggregate(params: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """A swarm aggregator's work: the weighted mean of the models a task carries (`<site>/<tensor>`, weights in
    `meta["weights"]`), computed as the server computes FedAvg's."""
    from flctl.node.client.swarm import weighted_mean

    return weighted_mean(params, meta.get("weights", {}))


def psi(load_ids: Callable[[], Iterable[Any]]) -> int:
    """Take part in a `psi` job (private set intersection): answer its tasks until the job ends, with the IDs that
    `load_ids()` returns (all str or all int; duplicates count once), and return the size of the intersection of
    all sites, which is written, one ID a line, to `psi/intersection.txt` in the job workspace. The IDs never leave
    this process; the PSI messages are computed here (`flctl.node.client.psi`).

        fl.init()
        fl.psi(lambda: fl.csv_ids("/data/customers.csv", "customer_id"))
    """
    from pathlib import Path

    from flctl.node.client.psi import PsiError, PsiParty

    session = _connected()
    if getattr(_thread, "session", None) is not None:
        raise PsiError("fl.psi() needs the site's own job workspace; flctl simulate does not run psi jobs, run it "
                       "on a federation (flctl poc or a provisioned one)")
    party = PsiParty(load_ids, Path(os.environ.get("HOME") or Path.cwd().parent))
    size = 0
    while (task := session.next_task(None)) is not None:
        params, meta = party.answer(task.task, task.params, task.meta)
        session.answer(Model(params=params, meta=meta, num_examples=0))
        size = int(meta.get("size", size)) if task.task == "psi_done" else size
    return size


def split_nn(bottom: Any, features: Any, optimizer: Any, *, top: Any = None, labels: Any = None,
             loss_fn: Any = None) -> None:
    """Take part in a `split_nn` job (vertical split learning) until it ends: `bottom` (a torch module) runs over
    this site's `features` (a tensor, one row per ID of the shared intersection, in its order); the site holding
    the labels also gives `top` (over its own bottom's output, then each feature site's, in the job's order),
    `labels` and `loss_fn`. `optimizer` steps this site's modules. Only activations, gradients and each batch's
    loss and accuracy leave the site (`flctl.node.client.split_nn`).

        fl.split_nn(bottom, x, torch.optim.SGD(bottom.parameters(), lr=0.1))                  # a feature site
        fl.split_nn(bottom, x, opt, top=top, labels=y, loss_fn=torch.nn.BCEWithLogitsLoss())  # the label site
    """
    from flctl.node.client.split_nn import SplitParty

    session = _connected()
    party = SplitParty(bottom, features, optimizer, top=top, labels=labels, loss_fn=loss_fn)
    while (task := session.next_task(None)) is not None:
        params, metrics, meta = party.answer(task.task, task.params, task.meta)
        session.answer(Model(params=params, metrics=metrics, meta=meta, num_examples=len(task.meta.get("rows", []))))


def csv_ids(path: str, column: str) -> list[str]:
    """The values of `column` of the CSV file at `path` (its first line names the columns): IDs for `fl.psi`."""
    from flctl.node.client.psi import csv_ids as read

    return read(path, column)


def is_train() -> bool:
    """Whether the current task (waited for like `receive()`) asks to train: answer with a model."""
    return _task_kind() == "train"


def is_evaluate() -> bool:
    """Whether the current task asks to evaluate the model it carries: answer with metrics only, no params."""
    return _task_kind() == "evaluate"


def is_submit_model() -> bool:
    """Whether the current task asks for this site's own best local model: answer with it."""
    return _task_kind() == "submit_model"


def is_inference() -> bool:
    """Whether the current task asks to run the model it carries over this site's data (an `inference` job): keep
    predictions in `output_dir()` and answer with metrics only (those job.yml's `returns` names leave the site)."""
    return _task_kind() == "inference"


def output_dir() -> Path:
    """The folder (made if missing) where the script keeps what it writes for this site alone, such as an inference
    job's predictions: nothing in it is sent, and `flctl job download` never fetches it. At a site:
    `<site workspace>/jobs/<job id>/job/outputs/`; in `flctl simulate`: `<workspace>/<job name>/sites/<site>/outputs/`;
    for an attached trainer (app.external): `./outputs` of its own working folder."""
    from pathlib import Path

    session = _connected()
    given = os.environ.get(wire.OUTPUT_DIR_ENV)
    folder = Path(given.replace("{site}", session.site)) if given else Path.cwd() / "outputs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _task_kind() -> str:
    current = _connected().next_task(None)
    return current.task if current is not None else ""


def send(model: Model) -> None:
    """Answer the current task with `model` (exactly once per task)."""
    if not isinstance(model, Model):
        raise TypeError(f"fl.send() takes an fl.Model, not {type(model).__name__}")
    _connected().answer(model)


def serve_statistics(load: Any) -> None:
    """A statistics job's whole script: answer every `statistics` task (summary, spread, cohort, data check) with
    figures of `load()`'s data (a pandas DataFrame or a dict of column name -> values), until the job ends. The
    site's privacy rules are applied to them after, in the site's job process (`flctl.node.client.statistics`).

        fl.serve_statistics(load)
    """
    from flctl.node.client.statistics import serve

    serve(load)


def log(name: str, value: float, step: int | None = None) -> None:
    """Record one metric value during training (a loss per epoch, with `step`): it goes to the server as it is
    logged. The task's result goes in `send(Model(metrics=...))`; a value logged in a round and also sent in that
    round's metrics, under the same name, is recorded once: logged before `send`, as logged (the server leaves out
    the result's copy); logged after it, as sent (this log is not sent)."""
    _connected().log(name, value, step)


def site_name() -> str:
    """The name of the site this script runs at."""
    return _connected().site


get_site_name = site_name


def job_id() -> str:
    """The id of the job this script belongs to."""
    return _connected().job


get_job_id = job_id


def current_round() -> int:
    """The round of the latest task received (0 before the first)."""
    return _connected().round


def proximal_term(module: Any) -> Any:
    """FedProx's proximal term for a torch module, to add to the loss: (mu / 2) * sum ||w - w_global||², with
    w_global the current task's params and mu its `proximal_mu` (job.yml's `workflow.args.proximal_mu`; 0, and so
    a term of 0, when the job sets none).

        loss = loss_fn(net(x), y) + fl.proximal_term(net)
    """
    from flctl.node.client.fedprox import proximal_term as term

    current = _connected()._current
    if current is None:
        raise RuntimeError("fl.proximal_term(): no current task; call it while training on a task, after "
                           "fl.receive() and before fl.send()")
    return term(module, current.params, float(current.meta.get("proximal_mu", 0.0)))


def scaffold_correct(module: Any) -> None:
    """SCAFFOLD's correction, after each `loss.backward()` of a torch module: grad += c - c_i (c the server's
    control variate from the current task, c_i this site's own)."""
    from flctl.node.client.scaffold import correct

    session = _connected()
    correct(module, session.scaffold_control, _own_before(session, session.round))


def scaffold_params(module: Any, steps: int, lr: float) -> dict[str, Any]:
    """What a SCAFFOLD site answers with after `steps` local steps of learning rate `lr`: the module's state_dict
    and its control-variate update (this site's c_i is updated too).

        fl.send(fl.Model(params=fl.scaffold_params(net, steps, lr), num_examples=n))
    """
    from flctl.node.client.scaffold import update

    session = _connected()
    current = session._current
    if current is None:
        raise RuntimeError("fl.scaffold_params(): no current task; call it after training on a task, after "
                           "fl.receive() and before fl.send()")
    own = dict(_own_before(session, current.round))
    params = update(module, current.params, session.scaffold_control, own, steps, lr)
    session.scaffold_own[current.round] = own
    for old in [r for r in session.scaffold_own if r < current.round - 2]:
        del session.scaffold_own[old]
    return params


def _own_before(session: _Session, round_no: int) -> dict[str, Any]:
    """This site's c_i as it was after its last round before `round_no` (a server that resumes a round the site
    already answered gets the answer the site would have given then, not one from a c_i a round ahead)."""
    earlier = [r for r in session.scaffold_own if r < round_no]
    return session.scaffold_own[max(earlier)] if earlier else {}


def load_model(path: str | os.PathLike[str], into: Any = None, strict: bool = True) -> dict[str, Any]:
    """A model flctl saved (a job's `models/final.safetensors`, a round's checkpoint) as name -> numpy array; with
    `into` (a torch module), loaded into it too (`load_state_dict`, `strict` as torch's), and returned as tensors;
    with `into` a Keras model, its weights are set by name (`flctl.client.keras.load`) and the arrays returned.

        net = Net()
        fl.load_model("ws/my-job/models/final.safetensors", into=net)

    Needs no connection: it works in any Python with flctl installed. The names are those the sites sent
    (`state_dict()` keys)."""
    from pathlib import Path

    from flctl.node.wire.tensors import read_file

    arrays: dict[str, Any] = read_file(Path(path))  # bfloat16 too, which safetensors.numpy cannot load
    if into is None:
        return arrays
    from flctl.node.client.keras_weights import is_keras_model, load

    if is_keras_model(into):
        load(into, arrays)
        return arrays
    tensors = _as_torch(arrays)
    into.load_state_dict(tensors, strict=strict)
    return tensors


def _keras_params(params: Any) -> dict[str, Any]:
    """`params` as they are, or a Keras model's weights by name (`flctl.node.client.keras_weights`)."""
    from flctl.node.client.keras_weights import is_keras_model, weights

    return weights(params) if is_keras_model(params) else params


def _as_torch(params: dict[str, Any]) -> dict[str, Any]:
    """numpy arrays as torch tensors (sharing their memory where it is writable); a bfloat16 or float8 array
    (ml_dtypes) becomes a tensor of torch's own dtype of that name, bit for bit."""
    import numpy as np

    return {name: _tensor_of(value if value.flags.writeable else np.array(value))
            if isinstance(value, np.ndarray) else value for name, value in params.items()}


def _tensor_of(array: Any) -> Any:
    import torch

    from flctl.node.wire.tensors import EXTRA_FLOATS

    if array.dtype not in EXTRA_FLOATS:
        return torch.from_numpy(array)
    words = torch.from_numpy(array.view("<i2" if array.dtype.itemsize == 2 else "u1"))
    return words.view(getattr(torch, array.dtype.name))  # torch names them as ml_dtypes does


def _connected() -> _Session:
    session: _Session | None = getattr(_thread, "session", None) or _process.session
    if session is None:
        raise RuntimeError("call fl.init() first")
    return session


def _lost(exc: BaseException) -> ConnectionError:
    return ConnectionError(f"lost the connection to flctl's site job process ({str(exc) or type(exc).__name__}); "
                           "the job was stopped at this site")


def _num_examples(value: Any) -> int:
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = -1
    if isinstance(value, bool) or count != value or count < 0:
        raise ValueError(f"fl.send(): num_examples must be a whole number >= 0, not {value!r}")
    return count


def _metrics(metrics: Any) -> dict[str, float]:
    if not isinstance(metrics, dict):
        raise TypeError(f"fl.send(): metrics must be a dict of name -> number, not {type(metrics).__name__}")
    result: dict[str, float] = {}
    for name, value in metrics.items():
        if not isinstance(name, str):
            raise TypeError(f"fl.send(): metric names must be strings, not {name!r}")
        result[name] = _float(value, f"metric {name!r}")
    return result


def summary_writer() -> SummaryWriter:
    """A writer like TensorBoard's `SummaryWriter` (`add_scalar(tag, value, global_step)`, `add_scalars`) whose
    values go through `log`: recorded on the server, and in the job's TensorBoard runs, MLflow or W&B there."""
    from flctl.node.client.summary_writer import SummaryWriter

    return SummaryWriter(log)


def _float(value: Any, what: str) -> float:
    """A float from a python number, a numpy scalar or a one-element torch tensor."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a number, not {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a number, not {type(value).__name__} ({value!r})") from None
