"""Regenerate `flctl_pb2.py`, `flctl_pb2.pyi` and `flctl_pb2_grpc.py` from `flctl.proto`.

    python -m flctl.node.wire.proto.generate            # write the files
    python -m flctl.node.wire.proto.generate --check    # exit 1 when the checked-in files are stale
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import flctl

ROOT = Path(flctl.__file__).parent.parent  # the folder above the flctl package: protoc names modules from it
HERE = ROOT / "flctl" / "node" / "wire" / "proto"  # through the package, so the generated imports say flctl.node...
OUTPUTS = ("flctl_pb2.py", "flctl_pb2.pyi", "flctl_pb2_grpc.py")


def generate(out_dir: Path) -> None:
    from grpc_tools import protoc

    args = ["protoc", f"-I{ROOT}", f"--python_out={out_dir}", f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}", str(HERE / "flctl.proto")]
    # protoc writes under out_dir/flctl/node/wire/proto; generating into ROOT writes through the flctl/ links
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def stale() -> list[str]:
    """Names of generated files that differ from what protoc makes now."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh = Path(tmp) / "flctl" / "node" / "wire" / "proto"
        return [name for name in OUTPUTS
                if not (HERE / name).exists() or (HERE / name).read_bytes() != (fresh / name).read_bytes()]


def main() -> None:
    if "--check" in sys.argv:
        names = stale()
        if names:
            print(f"stale generated code: {', '.join(names)}; run python -m flctl.node.wire.proto.generate")
            raise SystemExit(1)
        return
    generate(ROOT)


if __name__ == "__main__":
    main()
