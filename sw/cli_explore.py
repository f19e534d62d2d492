"""``vitforge explore``: a design space for a model and a board, and its Pareto front."""

import importlib.util
import time

from vitforge.errors import EXIT_INTERRUPTED, EXIT_OK, ConfigError, ToolchainError

from .cli_support import (add_data_options, data_files, log, progress, seed_argument,
                          shell_config)
from .processes import stop_descendants

__all__ = ["add_explore_parser", "explore_command", "Progress"]


class Progress:
    """:func:`~.cli_support.progress` for long runs: at most one line every ``interval``
    seconds, and always the last (``vitforge: [#####.....] 250/500 points evaluated``)."""

    def __init__(self, interval=2.0):
        self._interval, self._shown = interval, None

    def __call__(self, done, total, what):
        now = time.monotonic()
        if done < total and self._shown is not None and now - self._shown < self._interval:
            return
        self._shown = now
        progress(done, total, what)


def add_explore_parser(commands):
    from vitforge.sw.generate import BOARDS

    from .explore.backends import BACKENDS

    parser = commands.add_parser(
        "explore", help="evaluate a design space for a model: cycles, FPS, resources, "
                        "Pareto front")
    parser.add_argument("--model", default="tiny",
                        help="tiny, deit-tiny, deit-small, deit-base or a weights file, as "
                             "simulate takes it (default tiny)")
    parser.add_argument("--board", default="zcu102", choices=BOARDS, help="target board")
    parser.add_argument("--preset", help="base config whose fields the space does not name "
                                         "(default: the board's preset)")
    parser.add_argument("--config", metavar="FILE", help="base config as JSON instead")
    parser.add_argument("--space", required=True, metavar="FILE",
                        help="TOML or JSON: config field -> list of values; the points are "
                             "their product")
    parser.add_argument("--fidelity", choices=("model", "sim"), default="model",
                        help="model: the cycle and resource models only; sim: then "
                             "co-verify the Pareto points cycle-accurately (default model)")
    parser.add_argument("--backend", choices=BACKENDS, default="local",
                        help="local: processes on this machine; ray: ray.init(--address) "
                             "(default local)")
    parser.add_argument("--address", help="Ray cluster address (default: a local instance)")
    parser.add_argument("--workers", type=int,
                        help="parallel workers (default: this machine's CPUs)")
    parser.add_argument("--seed", type=seed_argument, default=0,
                        help="random seed of a preset model")
    parser.add_argument("--prune", default="default", metavar="{default,FILE}",
                        help="the token selectors a space's keep ratios run (top-k): default "
                             "(tiny's trained ones, random ones for a preset) or a selector "
                             ".npz (default default)")
    add_data_options(parser)
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="results folder; running again resumes it")


def _check_backend(args):
    """``--backend``, ``--address`` and ``--workers``, before any work (``run_tasks`` checks
    them only when the tasks start)."""
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"workers must be a positive integer, not {args.workers}")
    if args.address is not None and args.backend != "ray":
        raise ConfigError(f"address needs the ray backend, not {args.backend}")
    if args.backend == "ray" and importlib.util.find_spec("ray") is None:
        raise ToolchainError("the ray backend needs Ray: pip install 'vitforge[ray]' "
                             "(or pip install ray)")


def explore_command(args):
    from .explore import workload
    from .explore.run import explore, open_folder
    from .explore.space import load_space

    _check_backend(args)
    space = load_space(args.space)
    base, _ = shell_config(args.preset, args.config)
    study = workload.Study(model=args.model, board=args.board, base=base, seed=args.seed,
                           data=data_files(args), observer=args.observer, prune=args.prune)
    open_folder(study, args.out, create=False)      # before the model is loaded
    workload.loaded_model(study, log=log)   # a bad model or data file: one line, no folder
    workload.accuracy(study)          # once here: the forked workers inherit it
    try:
        result = explore(study, space, args.out, fidelity=args.fidelity, backend=args.backend,
                         workers=args.workers, address=args.address, progress=Progress(),
                         log=log)
    except KeyboardInterrupt:
        stop_descendants()
        log(f"interrupted; the finished points are in {args.out}, and the same command "
            f"resumes")
        return EXIT_INTERRUPTED
    _print_summary(args, result)
    return EXIT_OK


def _print_summary(args, result):
    total = len(result.rows)
    print(f"explore: {args.model} on {args.board}, {total} points "
          f"({result.evaluated} evaluated, {result.reused} from {args.out})")
    counts = ", ".join(f"{result.count(status)} {status}"
                       for status in ("ok", "invalid", "no-fit", "failed")
                       if result.count(status))
    print(f"  points               {counts}")
    fitting = [row for row in result.rows if row["status"] == "ok" and row["fits"]]
    print(f"  fit the device       {len(fitting)}; Pareto front {len(result.front)}")
    best = next((row for row in result.front if row["headroom"]), None) or (
        result.front[0] if result.front else None)
    if best is not None:
        print(f"  best                 array {best['array']}, {best['clock_mhz']} MHz: "
              f"{best['fps']:.1f} FPS, {best['cycles']:,} cycles, LUT {best['lut_util']:.1%},"
              f" DSP {best['dsp_util']:.1%}, BRAM36 {best['bram36_util']:.1%}")
        if best.get("simulated_cycles") is not None:
            print(f"  co-verified          {best['simulated_cycles']:,} cycles simulated, "
                  f"RTL == golden: {best['bit_exact']}")
        print(f"  next                 vitforge generate --config {args.out}/best.json "
              f"--out DIR")
    else:
        print("  best                 no point fits the device")
    print(f"  files                {args.out}/points.csv, points.json, pareto.png"
          + (", best.json" if best is not None else ""))


def add_farm_options(parser):
    """``verify``'s regression-farm options."""
    from .explore.backends import BACKENDS

    farm = parser.add_argument_group(
        "regression farm", "with --seeds or --configs, co-verify every seed on every config "
                           "in parallel instead (--images per job) and print a summary")
    farm.add_argument("--seeds", metavar="A..B", help="seeds A to B (inclusive), or one seed")
    farm.add_argument("--configs", metavar="FILE",
                      help="a space file (as explore takes) of configs, from --preset/--config "
                           "or the zcu102 preset (default: that config alone)")
    farm.add_argument("--backend", choices=BACKENDS, default="local",
                      help="local processes or ray (default local)")
    farm.add_argument("--address", help="Ray cluster address (default: a local instance)")
    farm.add_argument("--workers", type=int, help="parallel jobs (default: this machine's CPUs)")
    farm.add_argument("--out", default="build/verify-farm", metavar="DIR",
                      help="results.json, and the first mismatch's config and VCD "
                           "(default build/verify-farm)")


def verify_farm(args):
    """``verify --seeds A..B --configs FILE``: every seed on every config, then a summary."""
    from vitforge.errors import EXIT_MISMATCH
    from vitforge.sw.files import check_replaceable

    from .explore.workload import Study, model_sized
    from .explore.farm import FarmJob, parse_seeds, run_farm
    from .explore.space import check_space, load_space, point_config, space_points

    if args.prune != "none" or args.waves or args.json:
        raise ConfigError("the regression farm takes no --prune, --waves or --json (its "
                          "results go to --out)")
    _check_backend(args)
    seeds = parse_seeds(args.seeds if args.seeds is not None else args.seed)
    check_replaceable(args.out)                 # before any work
    base, _ = shell_config(args.preset, args.config)
    space = load_space(args.configs) if args.configs else check_space({})
    data = data_files(args)
    sized = model_sized(Study(model=args.model, board="zcu102", base=base, seed=seeds[0],
                              data=data, observer=args.observer))
    configs = []
    for point in space_points(space):
        try:
            configs.append(point_config(base, point, sized))
        except (ValueError, TypeError) as error:
            raise ConfigError(f"configs {args.configs}: point {point}: {error}") from None
    if args.images < 1:
        raise ConfigError(f"images must be a positive integer, not {args.images}")
    jobs = [FarmJob(model=args.model, seed=seed, config=config, images=args.images,
                    data=data, observer=args.observer)
            for seed in seeds for config in configs]
    log(f"{len(jobs)} jobs: {len(seeds)} seeds x {len(configs)} configs, {args.images} "
        f"image(s) each, backend {args.backend}")
    try:
        summary = run_farm(jobs, args.out, backend=args.backend, workers=args.workers,
                           address=args.address, progress=Progress(), log=log)
    except KeyboardInterrupt:
        stop_descendants()
        log("interrupted; no summary written")
        return EXIT_INTERRUPTED
    print(f"verify farm: {args.model}, {summary['jobs']} jobs: {summary['pass']} pass, "
          f"{summary['mismatch']} mismatch, {summary['no-fit']} do not fit")
    first = summary["first_mismatch"]
    if first is not None:
        print(f"  first mismatch       seed {first['seed']}, config {first['config_hash']}: "
              f"{first['mismatch']}")
        print(f"  reproduce            {first['reproducer']}")
        if first["vcd"]:
            print(f"  waves                {first['vcd']}")
    print(f"  results              {args.out}/results.json")
    return EXIT_MISMATCH if summary["mismatch"] else EXIT_OK
