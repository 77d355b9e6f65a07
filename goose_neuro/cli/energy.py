"""goose-energy: activity profile, operation counts and energy per token of a checkpoint,
or the energy of any NIR graph with given firing rates or input spike trains.

    goose-energy --checkpoint DIR --text FILE [--tokens N] --profile loihi2 [--profile ...]
                 [--package PKG_DIR ...] [--baseline cmos45-fp32] [--teacher DIR_OR_NAME] -o REPORT/
    goose-energy --nir FILE.nir --rates RATES.yaml --profile loihi [--profile ...] -o REPORT/

A Loihi profile prices the package goose-export writes for the checkpoint (``--profile
loihi:population=core`` gives goose-export's ``--opt`` options); ``--package`` prices an exported
package instead, on the profile named as its target.
"""

from __future__ import annotations

from typing import Sequence

from goose_neuro.cli import make_parser, run_cli

PROG = "goose-energy"


def _parser():
    from goose_neuro.hardware_profiles import builtin_profiles

    p = make_parser(PROG, "Profile a checkpoint's spiking activity on real text and estimate its energy per "
                          "token on hardware profiles, against a GPT-2-style teacher, its int8 twin and the "
                          "student's dense twin; or price any NIR graph (--nir) with given rates.")
    p.add_argument("--checkpoint", default=None, help="student checkpoint directory")
    p.add_argument("--text", default=None, help="UTF-8 text file to profile on")
    p.add_argument("--nir", default=None, metavar="FILE",
                   help="price a NIR graph (.nir) instead of a checkpoint; needs --rates")
    p.add_argument("--rates", default=None, metavar="YAML_OR_JSON",
                   help="with --nir: time_steps, per-node rates (spikes per neuron per step) and/or input_spikes")
    p.add_argument("--tokens", type=int, default=2048, help="number of tokens to profile")
    p.add_argument("--profile", action="append", default=None, metavar="NAME_OR_YAML",
                   help=f"hardware profile, repeatable (built-in: {', '.join(builtin_profiles())}; or a .yaml path)")
    p.add_argument("--package", action="append", default=[], metavar="PKG_DIR",
                   help="an exported Loihi package (goose-export --target loihi|loihi2) to price, on the --profile "
                        "named as its target; repeatable. Without it a Loihi profile prices goose-export's default "
                        "package, or the one its options describe (--profile loihi:population=core,host=q16)")
    p.add_argument("--baseline", default="cmos45-fp32", help="profile the teacher comparison is made on")
    p.add_argument("--teacher", default=None, help="teacher: HF model directory (its config.json) or gpt2-124m")
    p.add_argument("--contexts", default="128,512,1024", help="teacher contexts, comma separated")
    p.add_argument("--label", default="", help="what the checkpoint is, shown in the report (e.g. 'briefly trained')")
    p.add_argument("-o", "--out", required=True, help="report directory (written atomically)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _body(argv: Sequence[str] | None) -> int:
    import logging
    import sys

    from goose_neuro.energy.api import energy_report
    from goose_neuro.errors import GooseError
    from goose_neuro.fileio import check_writable_dir

    args = _parser().parse_args(argv)
    if args.nir is not None:
        return _nir_body(args)
    if args.checkpoint is None or args.text is None:
        raise GooseError("give --checkpoint and --text (a student), or --nir and --rates (a NIR graph)")
    if args.rates is not None:
        raise GooseError("--rates goes with --nir; a checkpoint's activity is measured on --text")
    if args.tokens < 1:
        raise GooseError(f"--tokens must be >= 1, got {args.tokens}")
    try:
        contexts = [int(c) for c in args.contexts.split(",") if c.strip()]
    except ValueError:
        raise GooseError(f"--contexts must be comma-separated integers, got {args.contexts!r}") from None
    if not contexts or min(contexts) < 1:
        raise GooseError("--contexts needs at least one positive integer")
    check_writable_dir(args.out)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.package and args.nir is None and not args.profile:
        args.profile = []
        from goose_neuro.export.loihi import load_package

        for pdir in args.package:  # no --profile: each package on its own target's profile
            args.profile.append(load_package(pdir).target)
    rep = energy_report(args.checkpoint, args.text, args.tokens, args.profile or ["loihi2"], args.baseline,
                        args.teacher, contexts, args.out, progress=not args.no_progress, plots=not args.no_plots,
                        label=args.label, packages=args.package)
    from goose_neuro.energy.report import fmt_rate

    L = "512" if "512" in rep["comparison"] else str(contexts[0])
    fair = rep["fair_baseline"]
    for n, b in rep["profiles"].items():
        r, be = fair["ratios"][n], fair["break_even"][n]
        twin = f", / dense twin {r['student_over_dense_twin']:.3g}" if "student_over_dense_twin" in r else ""
        sys.stdout.write(f"{n:16s} student {b['student']['energy_pj_per_token']:.4g} pJ/token, "
                         f"teacher@{L} {b['teacher'][L]['energy_pj_per_token']:.4g} pJ/token, "
                         f"ratio {b['student_over_teacher'][L]:.3g} (vs teacher on {rep['baseline']}: "
                         f"{rep['comparison'][L][n]:.3g}); / int8 teacher {r['student_over_teacher_int8'][L]:.3g}"
                         f"{twin}; break-even rate vs int8 teacher {fmt_rate(be['teacher_int8'][L])}\n")
        w = b["student"].get("by_where")
        if w:
            parts = ", ".join(f"{k} {w[k]['energy_pj']:.4g}" for k in ("core", "host", "host_neuron", "host_chip",
                                                                       "spike_hops", "static") if k in w)
            sys.stdout.write(f"{'':16s} package: {parts} pJ/token; host-chip share "
                             f"{100 * b['student']['host_chip_share']:.1f}%\n")
    a = rep["activity"]
    sys.stdout.write(f"sparsity {a['activation_sparsity']:.4f}, {a['tokens_per_s']:.0f} tokens/s; report in {args.out}\n")
    return 0


def _nir_body(args) -> int:
    import sys

    from goose_neuro.energy.nir_cost import nir_energy, write_nir_report
    from goose_neuro.errors import GooseError
    from goose_neuro.fileio import check_writable_dir
    from goose_neuro.hardware_profiles import load_profile

    if args.checkpoint is not None or args.text is not None or args.package:
        raise GooseError("--nir prices a NIR graph: leave out --checkpoint, --text and --package")
    if args.rates is None:
        raise GooseError("--nir needs --rates (a YAML or JSON file with rates and/or input_spikes)")
    check_writable_dir(args.out)
    profs = [load_profile(p) for p in (args.profile or ["loihi"])]
    rep = nir_energy(args.nir, args.rates, profs, source=args.nir)
    write_nir_report(rep, args.out, plots=not args.no_plots)
    T = rep["activity"]["time_steps"]
    for n, b in rep["profiles"].items():
        sys.stdout.write(f"{n:16s} {b['energy_pj_per_step']:.4g} pJ per time step, "
                         f"{b['energy_pj_per_inference']:.4g} pJ per inference ({T} steps)\n")
    sys.stdout.write(f"report in {args.out}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(PROG, _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
