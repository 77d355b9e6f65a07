"""Calibration on silicon: a published Loihi energy measurement against this project's estimate.

    .venv/bin/python benchmarks/energy_calibration.py [--record blouw2019_kws] [--profile loihi] \
        [--out /tmp/goose_calibration]

Builds the paper's network as a NIR graph from the calibration record, prices it on the profile at
the record's stated activity (upper bound: every neuron spiking every step) and at a range of rates,
prints estimate / measured with where each number comes from, and writes the NIR graph, a rates file
and the goose-energy --nir report to --out (so `goose-energy --nir OUT/network.nir --rates
OUT/rates.yaml --profile loihi -o REPORT` reproduces the estimate). Takes a few seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record", default="blouw2019_kws")
    ap.add_argument("--profile", default="loihi")
    ap.add_argument("--out", default="/tmp/goose_calibration")
    args = ap.parse_args()

    import nir
    import yaml

    from goose_neuro.energy.calibration import (calibrate, calibration_markdown, feedforward_nir, load_record,
                                                uniform_rates)
    from goose_neuro.energy.nir_cost import write_nir_report

    c = calibrate(args.record, args.profile)
    print(calibration_markdown(c))
    print("per-operation estimate / measured at other firing rates (every layer, spikes per neuron per step):")
    for r in (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0):
        x = calibrate(args.record, args.profile, rate=r)
        print(f"  rate {r:<5g} estimate {x['estimate_pj_per_inference'] / 1e6:8.3f} uJ  ratio {x['ratio']:.4f}  "
              f"with embedded CPU {x['reconciled_ratio']:.3f}")
    print("energy by class at the upper bound (uJ per inference): " + ", ".join(
        f"{k} {v / 1e6:.3g}" for k, v in c["estimate_by_class_pj_per_inference"].items() if v))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rec = load_record(args.record)
    g = feedforward_nir(rec["network"]["layers"])
    nir.write(str(out / "network.nir"), g)
    (out / "rates.yaml").write_text(yaml.safe_dump(uniform_rates(g, c["rate"], c["time_steps"])))
    write_nir_report(c["nir_report"], out / "report")
    (out / "calibration.md").write_text(calibration_markdown(c))
    print(f"wrote {out}/network.nir, rates.yaml, report/ and calibration.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
