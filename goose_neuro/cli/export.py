"""goose-export: lower a checkpoint to the deployment IR and write one target.

    goose-export --target onnx CHECKPOINT -o OUT/ [--variant float|int] [--prefill]
    goose-export --target loihi|loihi2|nir CHECKPOINT -o OUT/ [--opt KEY=VALUE ...]

Every target reads the same IR (goose_neuro.export.lower). Output directories are
written under a temporary name and renamed at the end, so a failure leaves nothing.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Sequence

from goose_neuro.cli import make_parser, run_cli
from goose_neuro.errors import ExportError

TARGETS = ("onnx", "loihi", "loihi2", "nir")
DEFAULT_ONNX_VARIANT = "int"  # measured faster than float on CPU (benchmarks/onnx_speed.py)


def _optional(module: str, func: str, target: str):
    """Import an exporter that another part of the build provides, or say it is absent."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):
            raise ExportError(f"target {target} is not available in this build") from None
        raise
    return getattr(mod, func)


def _opts(pairs: list[str]) -> dict:
    out = {}
    for p in pairs:
        key, sep, val = p.partition("=")
        if not sep or not key:
            raise ExportError(f"--opt {p!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(val)
        except json.JSONDecodeError:
            out[key] = val
    return out


def export(target: str, checkpoint: str, out: str, variant: str = DEFAULT_ONNX_VARIANT,
           opts: dict | None = None, prefill: bool = False):
    """Lower ``checkpoint`` and write ``target`` into ``out``; returns the output path."""
    from goose_neuro.export.lower import lower_checkpoint
    from goose_neuro.fileio import check_writable_dir

    if target not in TARGETS:
        raise ExportError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    check_writable_dir(out)  # fail before the (slow) load when OUT cannot be written
    if target in ("loihi", "loihi2"):
        fn = _optional("goose_neuro.export.loihi", "export_loihi", target)
        graph, _ = lower_checkpoint(checkpoint)
        return fn(graph, out, target, **(opts or {}))
    if target == "nir":
        fn = _optional("goose_neuro.export.nir_export", "export_nir", target)
        graph, _ = lower_checkpoint(checkpoint)
        return fn(graph, out, **(opts or {}))
    from goose_neuro.export.onnx_export import export_onnx

    graph, _ = lower_checkpoint(checkpoint)
    return export_onnx(graph, out, variant=variant, checkpoint_dir=checkpoint, prefill=prefill)


def _body(argv: Sequence[str] | None) -> int:
    p = make_parser("goose-export", "Export a goose-neuro checkpoint (ONNX, Loihi/Loihi 2, NIR).")
    p.add_argument("checkpoint", help="checkpoint directory (config.json + model.safetensors)")
    p.add_argument("--target", required=True, choices=TARGETS, help="what to write")
    p.add_argument("-o", "--out", required=True, help="output directory (replaced atomically)")
    p.add_argument("--variant", choices=("float", "int"), default=DEFAULT_ONNX_VARIANT,
                   help="ONNX only: int = MatMulInteger on spikes (shipped default, faster on CPU), "
                        "float = float MatMuls")
    p.add_argument("--prefill", action="store_true",
                   help="ONNX only: also write prefill.onnx (Scan over a whole prompt)")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="extra option for the loihi/loihi2 exporter (value parsed as JSON if it can be): "
                        "host=float64|q16 (number format of the host-side ops; default float64), "
                        "population=host|core (Loihi 1 neurons: exact on the host (default), or CUBA "
                        "ON/OFF compartments on cores, an approximation), frac_bits=N (threshold "
                        "mantissa bits)")
    a = p.parse_args(argv)
    out = export(a.target, a.checkpoint, a.out, a.variant, _opts(a.opt), a.prefill)
    sys.stdout.write(f"goose-export: wrote {a.target} to {out}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("goose-export", _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
