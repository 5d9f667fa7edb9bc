"""A site's part in private set intersection (the `psi` workflow), done by the Client API in the site's script process
with OpenMined's ECDH PSI (`openmined.psi`, imported as `private_set_intersection.python`).

The site's IDs come from a function of the job's app (`fl.psi(load_ids)`); they never leave this process: what goes
out is the PSI request (the IDs hashed and raised to this site's secret key), the setup and response when this site
plays the PSI server (its set under its key; the peer's request under it too), and sizes. Each key lives only as
long as one step and never leaves the process. At the end the site writes the intersection of all sites, one ID a
line in sorted order, to `psi/intersection.txt` in its job workspace.

Errors about this site's own IDs raise `PsiError` (the script fails: the site's part fails with that reason).
A message from another site that cannot be read is not this site's fault: the answer then says so in its meta
(`psi_error`), and the workflow drops the site that sent it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REQUEST, SETUP, RESPONSE = "psi_request", "psi_setup", "psi_response"
"""The names of the opaque messages in a task's or an answer's params (uint8 arrays)."""
ERROR = "psi_error"
"""An answer's meta key: the message from the other site could not be used (why)."""
RESULT_FILE = Path("psi") / "intersection.txt"
"""Where the intersection is written, relative to the job workspace."""
ID_TYPES = ("str", "int")


class PsiError(ValueError):
    """This site cannot take part: its IDs are unusable, or the workflow said its part failed (the reason)."""


def check_ids(raw: Iterable[Any]) -> tuple[list[str], str]:
    """The distinct IDs of `raw` as strings (sorted) and their type, "str" or "int"; PsiError when `raw` is empty or
    mixes types (the first item of another type is named by its position, never by its value)."""
    if isinstance(raw, (str, bytes)):
        raise PsiError("the ID function returned one string, not a list of IDs")
    kind = ""
    seen: set[str] = set()
    for position, item in enumerate(raw):
        item_kind = "str" if isinstance(item, str) else "int" if _is_int(item) else type(item).__name__
        if item_kind not in ID_TYPES:
            raise PsiError(f"ID number {position + 1} is a {item_kind}; IDs must be all str or all int")
        if kind and item_kind != kind:
            raise PsiError(f"ID number {position + 1} is a {item_kind} where the IDs before it are {kind}; "
                           "IDs must be all str or all int")
        kind = item_kind
        seen.add(item if isinstance(item, str) else str(int(item)))
    if not seen:
        raise PsiError("this site's ID list is empty")
    return sorted(seen), kind


def _is_int(item: Any) -> bool:
    if isinstance(item, bool):
        return False
    try:
        import numpy as np

        return isinstance(item, (int, np.integer))
    except ImportError:  # pragma: no cover - numpy comes with flctl
        return isinstance(item, int)


@dataclass
class PsiParty:
    """One site's PSI state between tasks: its own IDs, its current set (the running intersection), and, between
    its request and the intersection, the client key and the set the request was made from."""

    load_ids: Callable[[], Iterable[Any]]
    workspace: Path
    own: list[str] = field(default_factory=list)
    id_type: str = ""
    current: list[str] = field(default_factory=list)
    _client: Any = None
    _asked: list[str] = field(default_factory=list)

    def answer(self, kind: str, params: dict[str, Any], meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The answer (params, meta) to a psi task of `kind`."""
        if kind == "psi_items":
            self.own, self.id_type = check_ids(self.load_ids())
            self.current = list(self.own)
            return {}, {"count": len(self.own), "id_type": self.id_type}
        if not self.own:
            raise PsiError(f"a {kind} task came before this site's IDs were loaded (psi_items)")
        if kind == "psi_request":
            return self._request(meta)
        if kind == "psi_response":
            return self._respond(params, meta)
        if kind == "psi_intersect":
            return self._intersect(params)
        if kind == "psi_done":
            return self._done(meta)
        raise PsiError(f"fl.psi() got a {kind!r} task; it answers psi tasks only")

    def _set(self, meta: dict[str, Any]) -> list[str]:
        """The set a step uses: the site's own IDs (a chain starting over) or its current set."""
        return list(self.own) if meta.get("set") == "own" else list(self.current)

    def _request(self, meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        psi = _library()
        self._asked = self._set(meta)
        self._client = psi.client.CreateWithNewKey(True)
        request = self._client.CreateRequest(self._asked)
        return {REQUEST: _array(request.SerializeToString())}, {"size": len(self._asked)}

    def _respond(self, params: dict[str, Any], meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        psi = _library()
        items = self._set(meta)
        request = psi.Request()
        try:
            request.ParseFromString(_bytes(params, REQUEST))
            server = psi.server.CreateWithNewKey(True)
            setup = server.CreateSetupMessage(0.0, max(1, len(request.encrypted_elements)), items,
                                              psi.DataStructure.RAW)
            response = server.ProcessRequest(request)
        except _unusable() as exc:
            return {}, {ERROR: f"the PSI request could not be used: {_short(exc)}"}
        return {SETUP: _array(setup.SerializeToString()), RESPONSE: _array(response.SerializeToString())}, {}

    def _intersect(self, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        psi = _library()
        if self._client is None:
            raise PsiError("a psi_intersect task came without a psi_request before it")
        setup, response = psi.ServerSetup(), psi.Response()
        try:
            setup.ParseFromString(_bytes(params, SETUP))
            response.ParseFromString(_bytes(params, RESPONSE))
            if len(response.encrypted_elements) != len(self._asked):
                raise ValueError(f"the response has {len(response.encrypted_elements)} elements for a request of "
                                 f"{len(self._asked)}")
            found = self._client.GetIntersection(setup, response)
            if any(not 0 <= index < len(self._asked) for index in found):
                raise ValueError("the response names rows the request did not have")
        except _unusable() as exc:
            return {}, {ERROR: f"the PSI setup or response could not be used: {_short(exc)}"}
        finally:
            self._client = None  # one key, one step
        self.current = sorted({self._asked[index] for index in found})
        self._asked = []
        return {}, {"size": len(self.current)}

    def _done(self, meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        failed = meta.get("failed")
        if failed:
            raise PsiError(f"this site's part in the intersection failed: {failed}")
        path = self.workspace / RESULT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".txt.part")
        partial.write_text("".join(f"{item}\n" for item in self.current))
        partial.replace(path)  # a reader never sees half a file
        return {}, {"size": len(self.current)}


def _library() -> Any:
    try:
        import private_set_intersection.python as psi  # type: ignore[import-untyped]
    except ImportError:
        raise PsiError("this site has no openmined.psi; install the privacy extra (pip install 'flctl[privacy]' or "
                       "bash scripts/setup.sh --all)") from None
    return psi


def _unusable() -> tuple[type[Exception], ...]:
    """What reading or using another site's message raises when it is malformed."""
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

    return DecodeError, ValueError, RuntimeError, KeyError


def _array(data: bytes) -> Any:
    import numpy as np

    return np.frombuffer(data, dtype=np.uint8)


def _bytes(params: dict[str, Any], name: str) -> bytes:
    import numpy as np

    value = params.get(name)
    if value is None:
        raise KeyError(f"the task carries no {name}")
    array = np.asarray(value)
    if array.dtype != np.uint8 or array.ndim != 1:
        raise ValueError(f"{name} is a {array.dtype} array of shape {array.shape}, not bytes")
    return array.tobytes()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def csv_ids(path: str | Path, column: str) -> list[str]:
    """The values of `column` in the CSV file at `path` (with a header line): a ready-made ID function body."""
    import csv

    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or column not in reader.fieldnames:
            raise PsiError(f"{path} has no column {column!r} (its header: {', '.join(reader.fieldnames or [])})")
        return [row[column] for row in reader]
