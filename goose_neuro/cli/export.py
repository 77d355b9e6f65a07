"""goose-export: lower a checkpoint to the deployment IR and write one target.

    goose-export --target onnx CHECKPOINT -o OUT/ [--variant float|int] [--prefill]
    goose-export --target loihi|loihi2|nir CHECKPOINT -o OUT/ [--opt KEY=VALUE ...]

Calls :func:`goose_neuro.export.export_checkpoint`; every target reads the same IR and
is written under a temporary name, renamed at the end, so a failure leaves nothing.
"""

from __future__ import annotations

import json
import sys
from typing import Sequence

from goose_neuro.cli import make_parser, run_cli
from goose_neuro.errors import ExportError
from goose_neuro.export.targets import DEFAULT_ONNX_VARIANT, TARGETS


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


def _body(argv: Sequence[str] | None) -> int:
    from goose_neuro.export import export_checkpoint

    p = make_parser("goose-export", "Export a goose-neuro checkpoint (ONNX, Loihi/Loihi 2, NIR).")
    p.add_argument("checkpoint", help="checkpoint directory (config.json + model.safetensors)")
    p.add_argument("--target", required=True, choices=TARGETS, help="what to write")
    p.add_argument("-o", "--out", required=True, help="output directory (replaced atomically)")
    p.add_argument("--variant", choices=("float", "int"), default=None,
                   help=f"ONNX only (default {DEFAULT_ONNX_VARIANT}): int = MatMulInteger on spikes (faster on "
                        "CPU), float = float MatMuls")
    p.add_argument("--prefill", action="store_true",
                   help="ONNX only: also write prefill.onnx (Scan over a whole prompt)")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="extra exporter option (value parsed as JSON if it can be). loihi/loihi2: "
                        "host=float64|q16 (number format of the host-side ops; default float64), "
                        "population=host|core (Loihi 1 neurons: exact on the host (default), or CUBA "
                        "ON/OFF compartments on cores, an approximation), frac_bits=N (threshold "
                        "mantissa bits of a float-trained student's integer neurons; a student trained "
                        "with --fixed-point brings its own); nir: dt=SECONDS (per token)")
    a = p.parse_args(argv)
    options = _opts(a.opt)
    if a.variant is not None:
        options["variant"] = a.variant
    if a.prefill:
        options["prefill"] = True
    out = export_checkpoint(a.checkpoint, a.target, a.out, **options)
    sys.stdout.write(f"goose-export: wrote {a.target} to {out}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("goose-export", _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
