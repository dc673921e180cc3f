"""Command line: ``pdejax list | solve | reference`` (parses arguments and calls the library)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
from pathlib import Path

METHODS = ("pinn", "soft", "hc", "hc-moe", "lpinn", "teng")
OPERATOR_METHODS = ("fno", "deeponet", "multionet", "pidm")
PINN_SAMPLERS = ("uniform", "sobol", "lhs")
DIFFUSION_SAMPLERS = ("ddpm", "ddim")
_PIDM_FLAGS = ("samples", "backbone", "schedule", "diffusion_steps", "prediction", "sample_steps", "no_baseline",
               "split_channels", "snr_floor", "low_noise_mix", "combine", "sample_variance")  # fmt: skip
# = pdejax.operators.DATASETS, named here to parse without jax
OPERATOR_DATASETS = ("burgers1d", "darcy", "darcy_lognormal", "diffusion_sorption_operator", "navier_stokes_operator")
# = pdejax.operators.PIHC_METHODS: physics-only operators of _PIHC_DATASETS (PI-HC's own settings)
_PIHC_DATASETS = ("diffusion_sorption_operator", "navier_stokes_operator")
_PIHC_OPERATOR = ("soft", "hc", "hc-moe")
# --split-channels choice -> pidm_settings(split_channels=...)
_SPLIT_CHANNELS = {"cascade": "cascade", "ordered": "ordered", "on": True, "off": False}
_OPERATOR_FLAGS = (
    "data",
    "epochs",
    "n_train",
    "n_test",
    "resolution",
    "modes",
    "batch",
    "labels",
    "physics",
)
HC_METHODS = ("hc", "hc-moe")
MODELS = ("mlp", "fourier", "modified")


class CLIError(Exception):
    """A user error: printed as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise CLIError(f"{message} (see '{self.prog} --help')")


INT_MAX = 2**31 - 1  # step counters are int32 inside the jitted loops


def _bounded_int(lo: int, hi: int, expected: str, bounds: str):
    """An argparse type: an integer in ``[lo, hi]``; ``expected``/``bounds`` word its two errors."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be an integer in {bounds}, got {value}")
        return value

    return parse


_positive_int = _bounded_int(1, INT_MAX, "a positive integer", f"[1, {INT_MAX}]")
_nonneg_int = _bounded_int(0, INT_MAX, "an integer >= 0", f"[0, {INT_MAX}]")
# jax.random.PRNGKey keeps 32 bits: 2**32 would silently be seed 0
_seed = _bounded_int(0, 2**32 - 1, "an integer seed", "[0, 2**32 - 1]")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (value >= 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _text(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _param(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"malformed --param {text!r}: expected key=value")
    return key.strip(), value.strip()


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pdejax", description="Solve benchmark PDEs with pdejax.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("list", help="list problems, their parameters, methods and optimizers")

    s = sub.add_parser("solve", help="train/solve one problem and write metrics, plots and a checkpoint")
    s.add_argument("problem", help="problem name (see 'pdejax list')")
    s.add_argument("--method", type=_text, default=None, help=f"solution method: {', '.join(METHODS)} (default: pinn)")
    s.add_argument(
        "--optimizer",
        type=_text,
        default=None,
        help="adam | config | mconfig | multiadam | lra | pcgrad, each optionally +lbfgs, or lbfgs "
        "(default: adam+lbfgs; adam for soft, hc, hc-moe)",
    )
    s.add_argument("--steps", type=_positive_int, default=None, help="first-phase (Adam) steps")
    s.add_argument("--lbfgs-steps", type=_nonneg_int, default=None, help="L-BFGS iterations after Adam")
    s.add_argument("--seed", type=_seed, default=None)
    s.add_argument(
        "--param",
        type=_param,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="problem parameter, repeatable (e.g. --param beta=50; PI-HC operators: experts, overlap, ramp, schwarz, "
        "passes, order, damping, ridge, grad_clip, warmup)",
    )
    s.add_argument("--model", choices=MODELS, default=None)
    s.add_argument("--width", type=_positive_int, default=None)
    s.add_argument("--depth", type=_positive_int, default=None)
    s.add_argument(
        "--constraints",
        choices=("hard", "soft"),
        default=None,
        help="enforce initial/boundary/periodic conditions exactly (hard) or by loss terms",
    )
    s.add_argument("--lr", type=_positive_float, default=None, help="Adam learning rate")
    s.add_argument(
        "--sampler",
        choices=PINN_SAMPLERS + DIFFUSION_SAMPLERS,
        default=None,
        help="collocation points (pinn: uniform, sobol, lhs) or diffusion sampling (pidm: ddpm, ddim)",
    )
    s.add_argument("--points", type=_positive_int, default=None, help="collocation points per PDE-residual term")
    s.add_argument("--resample-every", type=_nonneg_int, default=None)
    s.add_argument(
        "--adaptive",
        choices=("none", "rad"),
        default=None,
        help="residual-based adaptive resampling of PDE points (with --resample-every)",
    )
    s.add_argument("--basis", type=_positive_int, default=None, help="hc, hc-moe: basis functions N (default 16)")
    s.add_argument(
        "--constraint-points",
        type=_positive_int,
        default=None,
        help="hc, hc-moe: constraint points of each PDE term, divided among the experts (default 1024)",
    )
    s.add_argument("--x64", action="store_true", help="train in float64 (teng: always float64)")
    s.add_argument("--dt", type=_positive_float, default=None, help="teng: time step")
    s.add_argument("--integrator", choices=("euler", "heun", "rk4"), default=None, help="teng: time integrator")
    s.add_argument("--out", type=_text, default=None, help="output directory (default: runs/PROBLEM-METHOD)")
    s.add_argument(
        "--resume", type=_text, default=None, metavar="DIR", help="continue the run whose checkpoint is in DIR"
    )
    s.add_argument("--checkpoint-every", type=_positive_int, default=None, metavar="N",
                   help="pinn, soft, hc, hc-moe, lpinn: write a checkpoint every N steps (default 1000)")  # fmt: skip
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    o = s.add_argument_group("operator learning (problems burgers1d, darcy; methods fno, deeponet, multionet)")
    o.add_argument(
        "--data", type=_text, default=None, metavar="FILE", help="dataset file (pdejax data / PDEBench HDF5)"
    )
    o.add_argument("--epochs", type=_positive_int, default=None)
    o.add_argument("--n-train", type=_positive_int, default=None, help="training samples")
    o.add_argument("--n-test", type=_positive_int, default=None, help="held-out test samples")
    o.add_argument("--resolution", type=_positive_int, default=None, help="grid points per axis of generated data")
    o.add_argument("--modes", type=_positive_int, default=None, help="fno: Fourier modes per axis")
    o.add_argument("--batch", type=_positive_int, default=None, help="samples per step")
    o.add_argument("--labels", type=_positive_float, default=None, help="fraction of training outputs used, (0, 1]")
    o.add_argument("--physics", type=_nonneg_float, default=None, help="weight of the PINO residual loss (darcy)")
    s.add_argument("--devices", type=_positive_int, default=None,
                   help="data parallel over this many devices (pinn, soft, lpinn: collocation points; operators, "
                        "pidm: samples of each batch); all processes' devices under jax.distributed")  # fmt: skip
    m = s.add_argument_group("several processes/hosts (jax.distributed; pinn, soft, lpinn): one command each")
    m.add_argument(
        "--coordinator", type=_text, default=None, metavar="HOST:PORT", help="address of process 0's coordinator"
    )
    m.add_argument("--num-processes", type=_positive_int, default=None, help="processes taking part")
    m.add_argument("--process-id", type=_nonneg_int, default=None, help="this process's index, 0..N-1")
    g = s.add_argument_group("physics-informed diffusion (darcy --method pidm; also --steps, --batch, --physics, ...)")
    g.add_argument("--samples", type=_positive_int, default=None, help="fields to generate after training")
    g.add_argument("--backbone", choices=("unet", "fno"), default=None, help="denoising network (default unet)")
    g.add_argument("--schedule", choices=("cosine", "linear"), default=None, help="noise schedule (default cosine)")
    g.add_argument("--diffusion-steps", type=_positive_int, default=None, help="diffusion steps T (default 100)")
    g.add_argument("--prediction", choices=("x0", "eps", "v"), default=None,
                   help="the network predicts x0, the noise or v (sqrt(abar) eps - sqrt(1-abar) x0)")  # fmt: skip
    g.add_argument("--sample-steps", type=_positive_int, default=None, help="ddim: sampling steps")
    g.add_argument("--sample-variance", choices=("posterior", "data"), default=None,
                   help="ddpm's reverse noise: data (default: betatilde plus the posterior covariance "
                        "estimated from the denoiser's errors on training fields) or posterior (betatilde, as "
                        "Ho et al.)")  # fmt: skip
    g.add_argument("--no-baseline", action="store_true", default=None,
                   help="skip the same model trained without the physics term")  # fmt: skip
    g.add_argument("--split-channels", choices=tuple(_SPLIT_CHANNELS), default=None,
                   help="ordered (default): one backbone per channel, the pressure's also reading the "
                        "permeability's estimate, the permeability's only its own channel; cascade: the same, "
                        "the permeability's reading both; on: one per channel; off: one shared backbone")  # fmt: skip
    g.add_argument("--no-split-channels", dest="split_channels", action="store_const", const="off",
                   help="= --split-channels off")  # fmt: skip
    g.add_argument("--snr-floor", type=float, default=None,
                   help="floor of the x0 loss weight min(SNR, 5) (default 1; 0: none)")  # fmt: skip
    g.add_argument("--low-noise-mix", type=float, default=None,
                   help="share of training steps drawn by the physics term's weight, importance-weighted "
                        "(default 0.5; 0: uniform)")  # fmt: skip
    g.add_argument("--combine", choices=("sum", "config", "config_per_backbone"), default=None,
                   help="sum (default): descend the summed data and physics loss, as the paper; config: "
                        "ConFIG's conflict-free direction of the two terms' gradients; config_per_backbone: "
                        "ConFIG within each channel's network")  # fmt: skip

    c = sub.add_parser("compare", help="run several methods x seeds on one problem; write a table and a plot")
    c.add_argument("problem")
    c.add_argument(
        "--methods",
        type=_text,
        required=True,
        help="comma-separated: PINN optimizers (adam, config, mconfig, multiadam, lra, pcgrad, "
        "each optionally +lbfgs) or methods (pinn = adam+lbfgs; soft = adam with every condition in the loss; "
        "hc, hc-moe: hard constraints by a constraint layer, one or --param experts=K experts; lpinn, Lagrangian "
        "PINN; teng, float64 with its preset); on an operator dataset its methods (fno, deeponet, multionet; "
        "soft, hc, hc-moe on diffusion_sorption_operator and navier_stokes_operator)",
    )
    c.add_argument("--steps", type=_positive_int, default=None, help="first-phase steps, the same for every method")
    c.add_argument("--epochs", type=_positive_int, default=None,
                   help="operator datasets: training epochs, the same for every method")  # fmt: skip
    o = c.add_argument_group("operator datasets (defaults as in pdejax solve DATASET)")
    o.add_argument("--n-train", type=_positive_int, default=None)
    o.add_argument("--n-test", type=_positive_int, default=None)
    o.add_argument("--resolution", type=_positive_int, default=None, help="grid points per axis (in x)")
    o.add_argument("--batch", type=_positive_int, default=None)
    o.add_argument("--modes", type=_positive_int, default=None, help="FNO Fourier modes")
    o.add_argument("--basis", type=_positive_int, default=None, help="hc, hc-moe: basis fields")
    o.add_argument("--constraint-points", type=_positive_int, default=None, help="hc, hc-moe: PDE rows solved")
    c.add_argument("--lbfgs-steps", type=_nonneg_int, default=None, help="L-BFGS iterations for +lbfgs methods")
    c.add_argument("--seeds", type=_positive_int, default=1, help="seeds 0..K-1 per method")
    c.add_argument("--param", type=_param, action="append", default=[], metavar="KEY=VALUE")
    c.add_argument("--model", choices=MODELS, default=None)
    c.add_argument("--width", type=_positive_int, default=None)
    c.add_argument("--depth", type=_positive_int, default=None)
    c.add_argument("--constraints", choices=("hard", "soft"), default=None)
    c.add_argument("--lr", type=_positive_float, default=None)
    c.add_argument("--points", type=_positive_int, default=None, help="collocation points per PDE-residual term")
    c.add_argument("--x64", action="store_true")
    c.add_argument("--out", type=_text, required=True)
    c.add_argument("--no-progress", action="store_true")

    d = sub.add_parser("data", help="generate an operator-learning dataset (burgers1d, darcy) with pdejax.solvers")
    d.add_argument("dataset")
    d.add_argument("--n", type=_positive_int, required=True, help="number of input/output pairs")
    d.add_argument("--out", type=_text, required=True, help="output file (.npz)")
    d.add_argument("--resolution", type=_positive_int, default=None, help="grid points per axis")
    d.add_argument("--seed", type=_seed, default=0)
    d.add_argument("--no-progress", action="store_true")

    r = sub.add_parser("reference", help="write a problem's reference solution on its evaluation grid")
    r.add_argument("problem")
    r.add_argument("--param", type=_param, action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("--out", type=_text, required=True, help="output file (.npz)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pdejax`` console script; returns the exit status."""
    import warnings

    shown = warnings.showwarning

    def show(message, category, *rest, **kw):  # pdejax's own warnings as one line, like its errors
        if category.__module__.startswith("pdejax"):
            print(f"pdejax: warning: {message}", file=sys.stderr)
        else:
            shown(message, category, *rest, **kw)

    warnings.showwarning = show
    try:
        return _main(argv)
    finally:
        warnings.showwarning = shown


def _main(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        commands = {"list": _list, "solve": _solve, "compare": _compare, "reference": _reference, "data": _data}
        return commands[args.command](args)
    except CLIError as e:
        _fail(str(e))
        return 2
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    except Exception as e:  # no tracebacks for users; PDEJAX_DEBUG=1 shows them
        if os.environ.get("PDEJAX_DEBUG"):
            raise
        _fail(f"{type(e).__name__}: {e}".splitlines()[0])
        return 1


def _fail(msg: str) -> None:
    print(f"pdejax: error: {msg}", file=sys.stderr)


def _problem(name: str, params: list[tuple[str, str]]):
    from . import problems

    seen = {}
    for k, v in params:
        if k in seen:
            raise CLIError(f"--param {k} given twice")
        seen[k] = v
    try:
        return problems.get(name, **seen)
    except ValueError as e:
        raise CLIError(str(e)) from None


def _list(args) -> int:
    from . import pinns, problems

    print("problems (pdejax solve PROBLEM --param KEY=VALUE):")
    for name in problems.names():
        defaults = problems.parameters(name).items()
        pars = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in defaults)
        print(f"  {name:20s} {problems.get(name).description}")
        print(f"  {'':20s} parameters: {pars or 'none'}")
    print(f"methods: {', '.join(METHODS)}")
    print(f"operator learning (pdejax solve DATASET): datasets {', '.join(OPERATOR_DATASETS)}; "
          f"methods {', '.join(OPERATOR_METHODS)}; on {' and '.join(_PIHC_DATASETS)} also the physics-only "
          f"{', '.join(_PIHC_OPERATOR)} (PI-HC)")  # fmt: skip
    print(f"optimizers (pinn): {', '.join(pinns.OPTIMIZERS)}")
    print(f"models (pinn): {', '.join(MODELS)}")
    return 0


def _writable_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".pdejax-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise CLIError(f"cannot write to output directory {str(path)!r}: {e.strerror or e}") from None
    return path


_SETTING_FLAGS = {
    "steps": "steps",
    "lbfgs_steps": "lbfgs_steps",
    "model": "model",
    "width": "width",
    "depth": "depth",
    "constraints": "constraints",
    "lr": "learning_rate",
    "sampler": "sampler",
    "resample_every": "resample_every",
    "adaptive": "adaptive",
    "seed": "seed",
    "devices": "devices",
    "checkpoint_every": "checkpoint_every",
}


_DISTRIBUTED_FLAGS = ("coordinator", "num_processes", "process_id")


def _start_distributed(args) -> None:
    """``jax.distributed.initialize`` from ``--coordinator/--num-processes/--process-id`` (all or none)."""
    given = [getattr(args, k) is not None for k in _DISTRIBUTED_FLAGS]
    if not any(given):
        return
    if not all(given):
        raise CLIError("--coordinator, --num-processes and --process-id go together (one command per process)")
    host, sep, port = args.coordinator.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CLIError(f"--coordinator {args.coordinator!r}: expected HOST:PORT")
    if args.process_id >= args.num_processes:
        raise CLIError(f"--process-id {args.process_id} must be < --num-processes {args.num_processes}")
    import jax

    # CPU devices of several processes talk through gloo; GPUs use NCCL whatever this says
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    except Exception as e:  # the coordinator is unreachable, the port is taken, ...
        raise CLIError(f"jax.distributed.initialize failed: {str(e).splitlines()[0]}") from None


def _solve(args) -> int:
    distributed = [f"--{k.replace('_', '-')}" for k in _DISTRIBUTED_FLAGS if getattr(args, k) is not None]
    if distributed and (args.problem in OPERATOR_DATASETS or args.method in HC_METHODS + ("teng",)):
        raise CLIError(f"{', '.join(distributed)}: several processes are supported by --method pinn, soft, lpinn")
    if args.problem in OPERATOR_DATASETS:
        return _solve_operator(args)
    if args.method in OPERATOR_METHODS:
        raise CLIError(f"--method {args.method} learns an operator: use it with {' or '.join(OPERATOR_DATASETS)}")
    given = [f"--{k.replace('_', '-')}" for k in _OPERATOR_FLAGS if getattr(args, k) is not None]
    if given:
        raise CLIError(
            f"{', '.join(given)}: options of operator learning ({', '.join(OPERATOR_DATASETS)}), not of {args.problem}"
        )
    if args.method is not None and args.method not in METHODS:
        raise CLIError(f"unknown method {args.method!r}; choose one of: {', '.join(METHODS + OPERATOR_METHODS)}")
    pidm_given = [f"--{k.replace('_', '-')}" for k in _PIDM_FLAGS if getattr(args, k) is not None]
    if pidm_given:
        raise CLIError(f"{', '.join(pidm_given)}: options of --method pidm (darcy), not of {args.problem}")
    if args.sampler in DIFFUSION_SAMPLERS:
        raise CLIError(f"--sampler {args.sampler} samples a diffusion model (--method pidm); PINN point samplers: "
                       f"{', '.join(PINN_SAMPLERS)}")  # fmt: skip
    run = _read_run(args)
    if run is not None:
        args.method = run.get("method", "pinn")
    args.method = args.method or "pinn"
    if args.method == "teng":
        return _solve_teng(args)
    if args.dt is not None or args.integrator is not None:
        raise CLIError("--dt and --integrator are options of --method teng")
    out = Path(args.out or args.resume or f"runs/{args.problem}-{args.method}")
    _writable_dir(out)
    x64 = args.x64 or bool(run and run.get("x64"))

    import jax

    jax.config.update("jax_enable_x64", x64)
    _start_distributed(args)
    from . import pinns
    from ._io import CheckpointError, atomic_write_text
    from ._plots import plot_losses, plot_solution

    if args.devices is not None:
        if args.method in HC_METHODS:
            raise CLIError(f"--devices is not used by --method {args.method}: its experts are placed one block per "
                           "device on every available device")  # fmt: skip
    _check_devices(args)

    params = args.param if run is None else [tuple(kv) for kv in run["param"]]
    problem_params, experts = _experts(params, args.method)
    problem = _problem(args.problem, problem_params)
    overrides = {v: getattr(args, k) for k, v in _SETTING_FLAGS.items()}
    overrides["n_points"] = _points(problem, args.points)
    hc = args.method in HC_METHODS
    # soft, hc and hc-moe default to Adam alone, as in PI-HC's comparison and in `compare`
    optimizer = args.optimizer or (
        run["settings"]["optimizer"] if run else "adam" if hc or args.method == "soft" else "adam+lbfgs"
    )
    lpinn = args.method == "lpinn"
    try:
        if hc or args.method == "soft":
            _constraint_flags(args)
        hc_flags = {"n_basis": args.basis, "n_constraint": args.constraint_points}
        if not hc and any(v is not None for v in hc_flags.values()):
            raise CLIError(f"--basis and --constraint-points are options of --method hc and hc-moe, not {args.method}")
        if lpinn:
            _lpinn_flags(args, optimizer)
            pinns.lagrangian_form(problem)  # a clear error for problems without a convective velocity
        if run is not None:
            settings = dict(run["settings"])
            # a resumed run may go longer or move to another number of devices; nothing else changes
            keep = ("steps", "lbfgs_steps", "devices", "checkpoint_every")
            settings.update({k: v for k, v in overrides.items() if v is not None and k in keep})
        elif lpinn:
            overrides.pop("constraints")
            overrides.pop("adaptive")
            settings = pinns.lpinn_settings(**overrides)
        elif hc:
            overrides.pop("constraints")
            settings = pinns.hc_settings(problem, optimizer, experts=experts, **overrides, **hc_flags)
        else:
            if args.method == "soft":
                overrides["constraints"] = "soft"
            settings = pinns.settings_for(problem, optimizer, **overrides)
    except ValueError as e:
        raise CLIError(str(e)) from None
    lead = jax.process_index() == 0  # under jax.distributed, process 0 writes the files
    write_text = atomic_write_text if lead else (lambda *a: None)
    write_text(
        out / "run.json",
        json.dumps(
            {
                "problem": args.problem,
                "method": args.method,
                "param": [list(kv) for kv in params],
                "x64": x64,
                "settings": settings,
            },
            indent=2,
        ),
    )
    try:
        run_solve = pinns.solve_lpinn if lpinn else pinns.solve
        sol = run_solve(problem, settings, out_dir=out, resume=run is not None, progress=not args.no_progress)
    except CheckpointError as e:
        raise CLIError(str(e)) from None
    except pinns.TrainingDiverged as e:
        _fail(str(e))
        return 1
    res = sol.result
    metrics = {
        "problem": problem.name,
        "method": args.method,
        "optimizer": settings["optimizer"],
        "steps": res.steps,
        "seed": int(settings["seed"]),
        "rel_l2": res.rel_l2,
        "wall_time_s": res.wall_time_s,
        "params": problem.params,
        "settings": settings,
        "x64": x64,
        "loss_terms": _final_loss(res),
        "rel_l2_history": {"step": res.eval_steps, "rel_l2": res.eval_rel_l2},
        "unconverged_solves": res.unconverged_solves,
        "device": str(jax.devices()[0]),
        "devices": len(jax.devices()[: settings.get("devices") or 1]),
        "processes": jax.process_count(),
        "platform": platform.platform(),
    }
    if sol.reference is not None and problem.output_dim > 1:
        ref = sol.reference.reshape(-1, problem.output_dim)
        pred = sol.prediction.reshape(-1, problem.output_dim)
        metrics["rel_l2_components"] = {
            n: float(pinns.relative_l2(pred[:, j], ref[:, j])) for j, n in enumerate(problem.output_names)
        }
    if not lead:
        return 0
    _require_finite(sol.prediction, "the prediction on the evaluation grid")
    if sol.reference is not None:
        plot_solution(problem, sol.prediction, sol.reference, out / "solution.png")
    plot_losses(res.loss_history, res.term_names, out / "loss.png", res.eval_steps, res.eval_rel_l2)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=float))
    rel = "n/a" if res.rel_l2 is None else f"{res.rel_l2:.3e}"
    print(f"{problem.name}: rel_l2={rel} steps={res.steps} wall_time={res.wall_time_s:.1f}s -> {out}")
    return 0


def _check_devices(args) -> None:
    """``--devices`` must not ask for more devices than JAX sees (after ``jax.distributed`` start-up)."""
    import jax

    if args.devices is not None and args.devices > jax.device_count():
        raise CLIError(f"--devices {args.devices}: only {jax.device_count()} device(s) available")


def _require_finite(values, what: str) -> None:
    """Refuse to write a result that holds NaN/Inf (one clear error instead of a NaN in metrics.json)."""
    import numpy as np

    if not np.all(np.isfinite(np.asarray(values, dtype=float))):
        raise CLIError(f"{what} is not finite (NaN/Inf); no results written (the checkpoint is kept for --resume)")


def _experts(params: list[tuple[str, str]], method: str) -> tuple[list[tuple[str, str]], int]:
    """Split ``--param experts=K`` (a setting of ``--method hc-moe``, default 4) from the problem's parameters."""
    given = [v for k, v in params if k == "experts"]
    rest = [(k, v) for k, v in params if k != "experts"]
    if given and method != "hc-moe":
        raise CLIError(f"--param experts is a setting of --method hc-moe, not of --method {method}")
    if len(given) > 1:
        raise CLIError("--param experts given twice")
    if method != "hc-moe":
        return rest, 1
    try:
        experts = int(given[0]) if given else 4
    except ValueError:
        raise CLIError(f"--param experts must be an integer >= 2, got {given[0]!r}") from None
    if experts < 2:
        raise CLIError(f"--param experts must be an integer >= 2 for --method hc-moe (hc is one expert), got {experts}")
    return rest, experts


def _constraint_flags(args) -> None:
    """``--constraints`` is fixed by the methods soft (all soft) and hc/hc-moe (the constraint layer)."""
    if args.constraints is not None and not (args.method == "soft" and args.constraints == "soft"):
        raise CLIError(
            f"--constraints is not used by --method {args.method} (soft keeps every condition in the loss; "
            "hc and hc-moe enforce every term through the constraint layer)"
        )


def _lpinn_flags(args, optimizer: str) -> None:
    """Reject the PINN flags an LPINN does not use (its constraints are built in, its optimizer fixed)."""
    unsupported = {"--constraints": args.constraints, "--adaptive": args.adaptive}
    given = [k for k, v in unsupported.items() if v is not None]
    if optimizer != "adam+lbfgs":
        given.append("--optimizer")
    if given:
        raise CLIError(
            f"{', '.join(given)} not used by --method lpinn (initial/boundary conditions are exact in its "
            "Lagrangian field; it trains with Adam then L-BFGS)"
        )


def _solve_teng(args) -> int:
    """``pdejax solve PROBLEM --method teng``: TENG in float64, metrics.json, solution.png, error_vs_time.png."""
    unsupported = {
        "--optimizer": args.optimizer,
        "--steps": args.steps,
        "--lbfgs-steps": args.lbfgs_steps,
        "--model": args.model,
        "--constraints": args.constraints,
        "--lr": args.lr,
        "--sampler": args.sampler,
        "--resample-every": args.resample_every,
        "--adaptive": args.adaptive,
        "--resume": args.resume,
        "--devices": args.devices,
        "--checkpoint-every": args.checkpoint_every,
    }
    given = [k for k, v in unsupported.items() if v is not None]
    if given:
        raise CLIError(
            f"{', '.join(given)} not used by --method teng (it takes --dt, --integrator, --width, "
            "--depth, --points (grid points per axis), --seed)"
        )
    out = _writable_dir(Path(args.out or f"runs/{args.problem}-teng"))
    import jax

    jax.config.update("jax_enable_x64", True)
    from . import pinns
    from ._io import atomic_write_text
    from ._plots import plot_error_history, plot_solution

    problem = _problem(args.problem, args.param)
    overrides = {
        "dt": args.dt,
        "integrator": args.integrator,
        "width": args.width,
        "depth": args.depth,
        "n_points": args.points,
        "seed": args.seed,
    }
    try:
        config = pinns.teng_config_for(problem, **{k: v for k, v in overrides.items() if v is not None})
        res = pinns.teng(problem, config, progress=not args.no_progress)
    except (ValueError, FloatingPointError) as e:
        raise CLIError(str(e)) from None
    settings = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    metrics = {
        "problem": problem.name,
        "method": "teng",
        "steps": res.steps,
        "seed": config.seed,
        "rel_l2": res.rel_l2,
        "wall_time_s": res.wall_time_s,
        "params": problem.params,
        "settings": settings,
        "network_params": res.params,
        "x64": True,
        "fit_rel_l2": res.fit_rel_l2,
        "rel_l2_history": {"t": res.history_t.tolist(), "rel_l2": res.history_rel_l2.tolist()},
        "device": str(jax.devices()[0]),
        "platform": platform.platform(),
    }
    _require_finite(res.prediction, "the TENG solution at the final time")
    pts, _ = problem.eval_points()
    plot_solution(problem, res.prediction, problem.reference(pts), out / "solution.png")
    plot_error_history(res.history_t, res.history_rel_l2, out / "error_vs_time.png", f"TENG {problem.name}")
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=float))
    print(f"{problem.name}: rel_l2={res.rel_l2:.3e} steps={res.steps} wall_time={res.wall_time_s:.1f}s -> {out}")
    return 0


def _compare_teng(problem, args, *, x64: bool) -> list[dict]:
    """TENG runs (float64, the problem's preset, seeds 0..K-1) as rows of the ``compare`` table."""
    import jax

    from . import pinns

    runs = []
    jax.config.update("jax_enable_x64", True)
    try:
        for seed in range(args.seeds):
            if not args.no_progress:
                print(f"[teng seed {seed}]", file=sys.stderr)
            try:
                res = pinns.teng(problem, pinns.teng_config_for(problem, seed=seed), progress=not args.no_progress)
            except ValueError as e:
                raise CLIError(f"teng: {e}") from None
            runs.append(
                {
                    "method": "teng",
                    "seed": seed,
                    "rel_l2": res.rel_l2,
                    "wall_time_s": res.wall_time_s,
                    "steps": res.steps,
                    "steps_per_s": res.steps / res.wall_time_s,
                    "eval_times": [res.wall_time_s],
                    "eval_rel_l2": [res.rel_l2],
                }
            )
            _report(runs[-1])
    finally:
        jax.config.update("jax_enable_x64", x64)
    return runs


def _final_loss(res) -> dict[str, float]:
    """``{term: value}`` of a training result's last step (empty when no step ran)."""
    if not len(res.loss_history):
        return {}
    return {name: float(v) for name, v in zip(res.term_names, res.loss_history[-1])}


def _report(run: dict) -> None:
    """One line per finished run on stderr, so long comparisons show progress even without bars."""
    err = "n/a" if run["rel_l2"] is None else f"{run['rel_l2']:.3e}"
    print(f"pdejax: {run['method']} seed {run['seed']}: rel_l2={err} in {run['wall_time_s']:.1f}s", file=sys.stderr)


def _compare(args) -> int:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise CLIError("--methods needs at least one method")
    out = _writable_dir(Path(args.out))
    import jax

    jax.config.update("jax_enable_x64", args.x64)
    from . import pinns

    if args.problem in OPERATOR_DATASETS:
        runs = _compare_operators(args, methods, out)
        _write_compare(out, args.problem, {}, methods, runs, args.seeds, "epochs")
        return 0
    operator_only = [f"--{k.replace('_', '-')}" for k in ("epochs", "n_train", "n_test", "resolution", "batch", "modes")
                     if getattr(args, k) is not None]  # fmt: skip
    if operator_only:
        raise CLIError(f"{', '.join(operator_only)}: options of operator datasets; {args.problem} trains for --steps")
    _hc_flags_need_hc(args, methods)
    given_experts = any(k == "experts" for k, _ in args.param)
    problem_params, experts = _experts(args.param, "hc-moe" if given_experts or "hc-moe" in methods else "compare")
    problem = _problem(args.problem, problem_params)
    optimizers = []
    for m in methods:
        if m in ("teng", "lpinn", "soft", *HC_METHODS):
            optimizers.append(m)
            continue
        opt = "adam+lbfgs" if m == "pinn" else m
        if opt not in pinns.OPTIMIZERS:
            raise CLIError(
                f"unknown method {m!r}; choose from pinn, soft, hc, hc-moe, lpinn, teng, {', '.join(pinns.OPTIMIZERS)}"
            )
        optimizers.append(opt)
    overrides = {
        "steps": args.steps,
        "model": args.model,
        "width": args.width,
        "depth": args.depth,
        "constraints": args.constraints,
        "learning_rate": args.lr,
        "n_points": _points(problem, args.points),
    }
    runs = []
    for method, opt in zip(methods, optimizers):
        if opt == "teng":
            runs.extend(_compare_teng(problem, args, x64=args.x64))
            continue
        for seed in range(args.seeds):
            extra = {"lbfgs_steps": args.lbfgs_steps} if "lbfgs" in opt else {}
            try:
                if opt == "lpinn":
                    pinns.lagrangian_form(problem)
                    lp = {k: v for k, v in overrides.items() if k != "constraints"}
                    settings = pinns.lpinn_settings(seed=seed, lbfgs_steps=args.lbfgs_steps, **lp)
                elif opt in HC_METHODS:
                    hc = {k: v for k, v in overrides.items() if k != "constraints"}
                    k = experts if opt == "hc-moe" else 1
                    settings = pinns.hc_settings(problem, "adam", experts=k, seed=seed, n_basis=args.basis,
                                                 n_constraint=args.constraint_points, **hc)  # fmt: skip
                elif opt == "soft":
                    # Adam only (like hc, hc-moe) unless --lbfgs-steps asks for L-BFGS after it
                    soft = {**overrides, "constraints": "soft"}
                    if args.lbfgs_steps:
                        soft["lbfgs_steps"] = args.lbfgs_steps
                    first = "adam+lbfgs" if args.lbfgs_steps else "adam"
                    settings = pinns.settings_for(problem, first, seed=seed, **soft)
                else:
                    settings = pinns.settings_for(problem, opt, seed=seed, **overrides, **extra)
            except ValueError as e:
                raise CLIError(f"{method}: {e}") from None
            if not args.no_progress:
                print(f"[{method} seed {seed}]", file=sys.stderr)
            try:
                run_solve = pinns.solve_lpinn if opt == "lpinn" else pinns.solve
                sol = run_solve(problem, settings, progress=not args.no_progress)
            except ValueError as e:
                raise CLIError(f"{method}: {e}") from None
            except pinns.TrainingDiverged as e:
                print(f"pdejax: {method} seed {seed}: {e}", file=sys.stderr)
                runs.append(
                    {
                        "method": method,
                        "seed": seed,
                        "rel_l2": float("nan"),
                        "wall_time_s": float("nan"),
                        "steps": 0,
                        "steps_per_s": float("nan"),
                        "eval_times": [],
                        "eval_rel_l2": [],
                    }
                )
                continue
            res = sol.result
            runs.append(
                {
                    "method": method,
                    "seed": seed,
                    "rel_l2": res.rel_l2,
                    "wall_time_s": res.wall_time_s,
                    "steps": res.steps,
                    "steps_per_s": res.steps / res.wall_time_s,
                    "eval_times": res.eval_times,
                    "eval_rel_l2": res.eval_rel_l2,
                    "eval_steps": res.eval_steps,
                    "final_loss": _final_loss(res),
                    "settings": sol.settings,
                }
            )
            _report(runs[-1])
    _write_compare(out, problem.name, problem.params, methods, runs, args.seeds, "steps")
    return 0


def _write_compare(out: Path, name: str, params: dict, methods: list[str], runs: list[dict], seeds: int,
                   unit: str) -> None:  # fmt: skip
    """Write ``compare.json`` (every run's record), ``compare.csv``, ``compare.md`` and ``compare.png``; print
    the table. ``unit``: what a run's ``steps`` count (steps, or epochs of operator training)."""
    import csv
    import io

    from ._io import atomic_write_text
    from ._plots import plot_compare

    # every run's record, loss terms and rel. L2 history included, for looking into a run afterwards
    atomic_write_text(out / "compare.json", json.dumps({"problem": name, "runs": runs}, indent=1))
    fields = ["method", "seed", "rel_l2", "wall_time_s", "steps", "steps_per_s"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(runs)
    atomic_write_text(out / "compare.csv", buf.getvalue())
    lines = [
        f"# {name}{f' {params}' if params else ''}: {seeds} seed(s) per method",
        "",
        f"| method | rel. L2 (mean ± std) | wall time [s] | steps/s | {unit} |",
        "| --- | --- | --- | --- | --- |",
    ]
    for method in methods:
        rs = [r for r in runs if r["method"] == method]
        err = [r["rel_l2"] for r in rs]
        lines.append(
            f"| {method} | {_mean(err):.3e} ± {_std(err):.1e} | {_mean([r['wall_time_s'] for r in rs]):.1f} | "
            f"{_mean([r['steps_per_s'] for r in rs]):.1f} | {rs[0]['steps']} |"
        )
    atomic_write_text(out / "compare.md", "\n".join(lines) + "\n")
    plot_compare(runs, out / "compare.png", name)
    print("\n".join(lines))


def _hc_flags_need_hc(args, methods: list[str]) -> None:
    """``compare``'s ``--basis`` / ``--constraint-points`` set the hc methods: refuse them when none runs."""
    hc_only = [f"--{k.replace('_', '-')}" for k in ("basis", "constraint_points") if getattr(args, k) is not None]
    if hc_only and not set(methods) & set(HC_METHODS):
        raise CLIError(f"{', '.join(hc_only)}: settings of the methods hc, hc-moe, and none is compared")


# --params of the operator PI-HC methods besides experts: name -> (the methods that take it, its parser)
_HC_PARAMS = {
    "overlap": (("hc-moe",), float, "a number of grid cells"),
    "ramp": (("hc-moe",), str, "linear, smooth or smoother"),
    "schwarz": (("hc-moe",), str, "none, lower, upper or both"),
    "passes": (("hc-moe",), int, "a whole number of Schwarz passes"),
    "order": (("hc-moe",), str, "additive or multiplicative"),
    "damping": (("hc", "hc-moe"), float, "a positive number"),
    "ridge": (("hc", "hc-moe"), float, "a number >= 0"),
    "grad_clip": (("soft", "hc", "hc-moe"), float, "a number >= 0 (0: no clipping)"),
    "warmup": (("soft", "hc", "hc-moe"), int, "a whole number of steps"),
}


def _hc_params(rest: list[tuple[str, str]], methods: list[str], what: str) -> dict[str, dict]:
    """``--param overlap=C`` / ``ramp=R`` / ``schwarz=S`` / ``passes=P`` / ``order=O`` (hc-moe) and ``damping=D`` /
    ``ridge=R`` (hc, hc-moe) and ``grad_clip=C`` / ``warmup=W`` (soft, hc, hc-moe)
    of physics-only operators, as settings per method (``{method: {name: value}}``; the last of repeated values
    wins). Refuses other names, values of the wrong type, and names that none of ``methods`` takes."""
    names = ", ".join(("experts", *_HC_PARAMS))
    out = {m: {} for m in methods}
    for key, text in rest:
        if key not in _HC_PARAMS:
            raise CLIError(f"--param {key}: the --params of {what} are {names}")
        takes, parse, kind = _HC_PARAMS[key]
        if not set(takes) & set(methods):
            raise CLIError(f"--param {key} is a setting of --method {' and '.join(takes)}, not of {', '.join(methods)}")
        try:
            value = parse(text)
        except ValueError:
            raise CLIError(f"--param {key} must be {kind}, got {text!r}") from None
        for m in set(takes) & set(methods):
            out[m][key] = value
    return out


def _compare_operators(args, methods: list[str], out: Path) -> list[dict]:
    """``pdejax compare DATASET``: operator methods x seeds at equal epochs, each seed's data generated once
    (``out/data-seed{k}.npz``) and shared by the methods; rows of the ``compare`` table (rel. L2 on the test
    set, steps/s in optimizer steps)."""
    given = [f"--{k.replace('_', '-')}" for k in ("steps", "lbfgs_steps", "model", "constraints", "points")
             if getattr(args, k) is not None]  # fmt: skip
    if given:
        raise CLIError(f"{', '.join(given)}: PINN options; operator datasets train for --epochs")
    _hc_flags_need_hc(args, methods)
    size = {"n_train": args.n_train, "n_test": args.n_test, "resolution": args.resolution,
            "batch_size": args.batch, "modes": args.modes}  # fmt: skip
    allowed = ("fno", "deeponet", "multionet") + (_PIHC_OPERATOR if args.problem in _PIHC_DATASETS else ())
    bad = [m for m in methods if m not in allowed]
    if bad:
        raise CLIError(f"unknown method {bad[0]!r} for {args.problem}; choose from {', '.join(allowed)}")
    rest, experts = _experts(args.param, "hc-moe" if "hc-moe" in methods else methods[0])
    layer = _hc_params(rest, methods, "an operator compare")
    from . import operators

    runs = []
    for seed in range(args.seeds):
        data_path = out / f"data-seed{seed}.npz"
        for method in methods:
            hc = {"basis": args.basis, "constraint_points": args.constraint_points} if method in HC_METHODS else {}
            if method == "hc-moe":
                hc.update(experts=experts)
            hc.update(layer[method])
            try:
                settings = operators.operator_settings(
                    args.problem, method, seed=seed, epochs=args.epochs, learning_rate=args.lr, width=args.width,
                    depth=args.depth, data=str(data_path) if data_path.exists() else None, **size, **hc,
                )  # fmt: skip
            except ValueError as e:
                raise CLIError(f"{method}: {e}") from None
            if not data_path.exists():
                n = settings["n_train"] + settings["n_test"]
                data = operators.generate(args.problem, n, resolution=settings["resolution"], seed=seed,
                                          progress=not args.no_progress)  # fmt: skip
                operators.save_dataset(data_path, data)
                settings["data"] = str(data_path)
            if not args.no_progress:
                print(f"[{method} seed {seed}]", file=sys.stderr)
            try:
                sol = operators.solve_operator(args.problem, settings, progress=not args.no_progress)
            except operators.OperatorTrainingDiverged as e:
                print(f"pdejax: {method} seed {seed}: {e}", file=sys.stderr)
                runs.append({"method": method, "seed": seed, "rel_l2": float("nan"), "wall_time_s": float("nan"),
                             "steps": 0, "steps_per_s": float("nan"), "eval_times": [], "eval_rel_l2": []})  # fmt: skip
                continue
            res = sol.result
            steps = res.epochs * (settings["n_train"] // settings["batch_size"])
            row = {
                "method": method,
                "seed": seed,
                "rel_l2": res.test_rel_l2,
                "wall_time_s": res.wall_time_s,
                "steps": res.epochs,
                "steps_per_s": steps / res.wall_time_s,
                "eval_times": res.eval_times,
                "eval_rel_l2": res.eval_rel_l2,
                "eval_epochs": res.eval_epochs,
                "final_loss": {k: v[-1] for k, v in res.history.items() if v},
                "settings": settings,
            }
            if sol.constraint_solves is not None:
                row["constraint_solves"] = sol.constraint_solves
            runs.append(row)
            _report(runs[-1])
    return runs


def _points(problem, n):
    """``--points N`` as per-term counts for the problem's PDE-residual terms (``None`` when not given)."""
    if n is None:
        return None
    return {name: n for name, t in problem.terms.items() if t.kind == "residual"}


def _mean(xs):
    import numpy as np

    return float(np.mean(xs)) if xs else float("nan")


def _std(xs):
    import numpy as np

    return float(np.std(xs)) if len(xs) > 1 else 0.0


def _reference(args) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np

    problem = _problem(args.problem, args.param)
    if problem.reference_fn is None:
        raise CLIError(f"problem {problem.name!r} has no reference solution")
    out = Path(args.out)
    _writable_dir(out.parent if str(out.parent) else Path("."))
    points, shape = problem.eval_points()
    values = problem.reference(points)
    import io

    from ._io import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(
        buf,
        points=points,
        values=values,
        shape=np.asarray(shape),
        params=json.dumps(problem.params),
        problem=problem.name,
    )
    atomic_write_bytes(out, buf.getvalue())
    print(f"{problem.name}: reference on grid {shape} -> {out}")
    return 0


def _read_run(args) -> dict | None:
    """The run.json of ``--resume DIR`` (checked against the problem and method asked for), or None."""
    if args.resume is None:
        return None
    run_file = Path(args.resume) / "run.json"
    if not run_file.exists():
        raise CLIError(f"--resume {args.resume!r}: no run.json there (not a pdejax run directory)")
    try:
        run = json.loads(run_file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CLIError(f"--resume {args.resume!r}: run.json is unreadable ({e})") from None
    if run.get("problem") != args.problem:
        raise CLIError(f"--resume {args.resume!r} holds a run of {run.get('problem')!r}, not {args.problem!r}")
    if args.method is not None and args.method != run.get("method", "pinn"):
        raise CLIError(f"--resume {args.resume!r} holds a {run.get('method', 'pinn')} run, not {args.method}")
    return run


_PINN_ONLY = ("optimizer", "steps", "lbfgs_steps", "model", "constraints", "sampler", "points", "resample_every",
              "adaptive", "basis", "constraint_points", "dt", "integrator", "checkpoint_every")  # fmt: skip
_OPERATOR_SETTINGS = {"n_train": "n_train", "n_test": "n_test", "resolution": "resolution", "epochs": "epochs",
                      "batch": "batch_size", "lr": "learning_rate", "width": "width", "depth": "depth",
                      "modes": "modes", "labels": "labels", "physics": "physics_weight", "devices": "devices",
                      "seed": "seed", "data": "data"}  # fmt: skip


def _operator_run(args, run: dict | None, method: str) -> tuple[Path, bool]:
    """The output directory and float64 switch of an operator or diffusion run (checked, applied)."""
    out = Path(args.out or args.resume or f"runs/{args.problem}-{method}")
    _writable_dir(out)
    x64 = args.x64 or bool(run and run.get("x64"))
    if args.data is not None and not Path(args.data).exists():
        raise CLIError(f"--data {args.data!r}: no such file")
    import jax

    jax.config.update("jax_enable_x64", x64)
    _check_devices(args)
    return out, x64


def _solve_operator(args) -> int:
    """``pdejax solve burgers1d|darcy --method fno|deeponet|multionet``: learn the dataset's solution operator."""
    given = [f"--{k.replace('_', '-')}" for k in _PINN_ONLY if getattr(args, k) not in (None, False)]
    run = _read_run(args)
    method = args.method or (run["method"] if run else "hc" if args.problem in _PIHC_DATASETS else "fno")
    if method == "pidm":
        given = [g for g in given if g not in ("--steps", "--sampler")]  # pidm's training steps and sampler
    pihc = args.problem in _PIHC_DATASETS and method in _PIHC_OPERATOR
    if pihc and method != "soft":
        given = [g for g in given if g not in ("--basis", "--constraint-points")]
    params = [] if pihc and run is None else args.param
    if given or params:
        flags = ", ".join(given + (["--param"] if params else []))
        raise CLIError(f"{flags}: not options of operator learning ({args.problem}); see pdejax solve --help")
    methods = OPERATOR_METHODS + (_PIHC_OPERATOR if args.problem in _PIHC_DATASETS else ())
    if method not in methods:
        raise CLIError(f"{args.problem} is an operator-learning dataset: --method must be one of {', '.join(methods)}")
    experts, layer = None, {}
    if pihc and run is None:
        rest, k = _experts(args.param, method)
        layer = _hc_params(rest, [method], f"{method} on {args.problem}")[method]
        experts = k if method == "hc-moe" else None
    if method == "pidm":
        return _solve_pidm(args, run)
    pidm_given = [f"--{k.replace('_', '-')}" for k in _PIDM_FLAGS if getattr(args, k) is not None]
    if pidm_given:
        raise CLIError(f"{', '.join(pidm_given)}: options of --method pidm, not of {method}")
    out, x64 = _operator_run(args, run, method)

    import jax
    import numpy as np

    from . import operators
    from ._io import CheckpointError, atomic_write_text
    from ._plots import plot_losses, plot_operator_samples

    try:
        if run is not None:
            settings = dict(run["settings"])
            if args.epochs is not None:
                settings["epochs"] = args.epochs
        else:
            overrides = {v: getattr(args, k) for k, v in _OPERATOR_SETTINGS.items()}
            if pihc:
                overrides.update(experts=experts, basis=args.basis, constraint_points=args.constraint_points, **layer)
            settings = operators.operator_settings(args.problem, method, **overrides)
    except ValueError as e:
        raise CLIError(str(e)) from None
    run_info = {"problem": args.problem, "method": method, "param": [], "x64": x64, "settings": settings}
    atomic_write_text(out / "run.json", json.dumps(run_info, indent=2))
    try:
        sol = operators.solve_operator(args.problem, settings, out_dir=out, resume=run is not None,
                                       progress=not args.no_progress)  # fmt: skip
    except (CheckpointError, operators.DatasetError) as e:
        raise CLIError(str(e)) from None
    except operators.OperatorTrainingDiverged as e:
        _fail(str(e))
        return 1
    res = sol.result
    per_sample = operators.relative_l2_per_sample(sol.prediction, sol.test.outputs)
    metrics = {
        "problem": args.problem,
        "method": method,
        "optimizer": "adam",
        "steps": res.epochs,
        "epochs": res.epochs,
        "seed": int(settings["seed"]),
        "rel_l2": res.test_rel_l2,
        "test_rel_l2": res.test_rel_l2,
        "test_rel_l2_max": float(np.max(per_sample)),
        "wall_time_s": res.wall_time_s,
        "params": {},
        "settings": settings,
        "x64": x64,
        "loss_terms": {k: v[-1] for k, v in res.history.items() if v},
        "rel_l2_history": {"epoch": res.eval_epochs, "rel_l2": res.eval_rel_l2},
        "device": str(jax.devices()[0]),
        "platform": platform.platform(),
    }
    if sol.constraint_solves is not None:
        c = metrics["constraint_solves"] = sol.constraint_solves
        failed = round((1 - c["converged_fraction"]) * c["solves"])
        if failed:
            print(f"warning: {failed} of {c['solves']} constraint solves on the test set did not converge "
                  f"(at most {c['iterations_max']} iterations, residual up to {c['residual_max']:.3e})")  # fmt: skip
    _require_finite(sol.prediction, "the operator's prediction on the test set")
    k = min(3, len(sol.test))
    labels = {"diffusion_sorption_operator": ("x", "t / T"), "navier_stokes_operator": ("x", "y")}.get(args.problem)
    plot_operator_samples(sol.test.inputs[:k], sol.prediction[:k], sol.test.outputs[:k], sol.test.coords,
                          out / "solution.png", labels)  # fmt: skip
    names = ["data", "physics"] if settings["physics_weight"] > 0 else ["data"]
    hist = np.stack([res.history[n] for n in names], axis=1)
    plot_losses(hist, names, out / "loss.png", res.eval_epochs, res.eval_rel_l2, xlabel="epoch")
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=float))
    print(f"{args.problem} {method}: test rel_l2={res.test_rel_l2:.3e} epochs={res.epochs} "
          f"wall_time={res.wall_time_s:.1f}s -> {out}")  # fmt: skip
    return 0


_PIDM_SETTINGS = {"n_train": "n_train", "resolution": "resolution", "steps": "steps", "batch": "batch_size",
                  "lr": "learning_rate", "width": "width", "depth": "depth", "modes": "modes", "backbone": "backbone",
                  "diffusion_steps": "diffusion_steps", "schedule": "schedule", "prediction": "prediction",
                  "physics": "physics_weight", "samples": "samples", "sampler": "sampler",
                  "sample_steps": "sample_steps", "devices": "devices", "seed": "seed", "data": "data",
                  "snr_floor": "snr_floor",
                  "low_noise_mix": "low_noise_mix", "combine": "combine",
                  "sample_variance": "sample_variance"}  # fmt: skip


def _resumed_pidm_settings(saved: dict, steps: int | None) -> dict:
    """The settings a ``--resume`` of a PIDM run trains with: ``saved`` (its run.json's), with the
    settings added after it was written set to the behaviour it had, and ``steps`` (when given) as the
    new budget."""
    settings = {"normalise": "channel", "ema_warmup": False, "split_channels": False, "snr_floor": 0.0,
                "low_noise_mix": 0.0, "clip_per_backbone": False, "combine": "sum",
                "sample_variance": "posterior", **saved}  # fmt: skip
    if steps is not None:
        settings["steps"] = steps
    return settings


def _pidm_overrides(args) -> dict:
    """The ``pidm_settings`` overrides of parsed ``pdejax solve --method pidm`` flags (``None``: not given)."""
    overrides = {v: getattr(args, k) for k, v in _PIDM_SETTINGS.items()}
    if args.split_channels is not None:
        overrides["split_channels"] = _SPLIT_CHANNELS[args.split_channels]
    if args.no_baseline:
        overrides["baseline"] = False
    return overrides


def _solve_pidm(args, run: dict | None) -> int:
    """``pdejax solve darcy --method pidm``: train a physics-informed diffusion model (and the same model
    without the physics term), generate fields, and report their PDE residuals."""
    if args.problem not in ("darcy", "darcy_lognormal"):
        raise CLIError(f"--method pidm generates Darcy flow fields: use it with darcy, not {args.problem}")
    bad = [f"--{k.replace('_', '-')}" for k in ("epochs", "n_test", "labels") if getattr(args, k) is not None]
    if bad:
        raise CLIError(f"{', '.join(bad)}: not options of --method pidm (use --steps, --n-train)")
    out, x64 = _operator_run(args, run, "pidm")

    import time

    import jax
    import numpy as np

    from . import operators
    from ._io import CheckpointError, atomic_write_text
    from ._plots import plot_diffusion_samples, plot_losses, plot_operator_samples

    try:
        if run is not None:
            settings = _resumed_pidm_settings(run["settings"], args.steps)
        else:
            settings = operators.pidm_settings(args.problem, **_pidm_overrides(args))
    except ValueError as e:
        raise CLIError(str(e)) from None
    run_info = {"problem": args.problem, "method": "pidm", "param": [], "x64": x64, "settings": settings}
    atomic_write_text(out / "run.json", json.dumps(run_info, indent=2))
    t0 = time.perf_counter()
    try:
        sol = operators.solve_pidm(args.problem, settings, out_dir=out, resume=run is not None,
                                   progress=not args.no_progress)  # fmt: skip
    except (CheckpointError, operators.DatasetError) as e:
        raise CLIError(str(e)) from None
    except operators.DiffusionTrainingDiverged as e:
        _fail(str(e))
        return 1
    report = operators.pidm_report(sol)
    metrics = {
        "problem": args.problem,
        "method": "pidm",
        "optimizer": "adam",
        "steps": sol.results["pidm"].steps,
        "seed": int(settings["seed"]),
        "rel_l2": report["pressure_rel_l2"]["pidm"],
        "wall_time_s": time.perf_counter() - t0,
        "params": {},
        "settings": settings,
        "x64": x64,
        **report,
        "loss_terms": {v: {k: h[-1] for k, h in r.history.items() if h} for v, r in sol.results.items()},
        "device": str(jax.devices()[0]),
        "platform": platform.platform(),
    }
    k = min(4, int(settings["samples"]))
    plot_diffusion_samples(sol.samples, sol.physics, out / "samples.png", k)
    gen = sol.samples["pidm"][:k]
    solved = operators.solve_generated(sol.settings["dataset"], gen)
    coords = operators.DATASETS[sol.settings["dataset"]].coords(gen.shape[-1])
    plot_operator_samples(gen[:, :1], gen[:, 1:], solved, coords, out / "solution.png")
    names = ["data", "physics"]
    hist = np.stack([sol.results["pidm"].history[n] for n in names], axis=1)
    plot_losses(hist, names, out / "loss.png", xlabel=f"step / {sol.results['pidm'].history['step'][0]:g}")
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=float))
    res = report["residual_mean_abs"]
    line = f"darcy pidm: mean |residual| of {settings['samples']} samples {res['pidm']:.3e}"
    if "ddpm" in res:
        line += f" (no physics term: {res['ddpm']:.3e}, {report['residual_ratio']:.1f}x)"
    prel = report["pressure_rel_l2"]["pidm"]
    prel = "n/a" if prel is None else f"{prel:.3e}"
    print(f"{line}; pressure rel_l2 {prel}; data {res['data']:.1e} -> {out}")
    return 0


def _data(args) -> int:
    """``pdejax data NAME --n N --out FILE``: generate an operator dataset with pdejax.solvers."""
    if args.dataset not in OPERATOR_DATASETS:
        raise CLIError(f"unknown dataset {args.dataset!r}; choose one of: {', '.join(OPERATOR_DATASETS)}")
    out = Path(args.out)
    _writable_dir(out.parent if str(out.parent) else Path("."))
    from . import operators

    try:
        data = operators.generate(args.dataset, args.n, resolution=args.resolution, seed=args.seed,
                                  progress=not args.no_progress)  # fmt: skip
    except ValueError as e:
        raise CLIError(str(e)) from None
    operators.save_dataset(out, data)
    print(f"{args.dataset}: {len(data)} pairs on a {'x'.join(map(str, data.grid))} grid -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
