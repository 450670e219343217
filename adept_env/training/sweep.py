"""``adept-env sweep``: a grid of TASK-DATASET x algorithm x seed (x settings) as Ray Tune trials.

Each trial is one ``train()`` run (the code behind ``adept-env train``), called inside the trial's
Ray worker, with its own resumable run folder ``OUT/DATASET/ALGO-sSEED[-key=value...]``. In-process
rather than a subprocess per trial: any ``TrainConfig`` field can be swept (``adept-env train``
exposes only some as options), each evaluation reaches Tune as it happens (``on_eval``), and a
failure reaches Tune as the exception itself; Ray already gives each trial its own process.

The steps, in order:

1. ``plan``: every grid point is checked before anything starts, and before Ray starts (names
   with close-match suggestions, grid keys and value types, one ``TrainConfig`` per trial);
   ``check_address`` tries a TCP connection to ``--address`` (a few seconds at most).
2. One Ray task per dataset (``prepare_dataset``) makes the dataset file when it is missing and
   fits the world model of every profile a trial needs (``load_or_train``, cached under
   ``$ADEPT_HOME/models``); all of them finish before the first trial starts, so a model is
   fitted once per dataset and profile, never per trial (a trial's ``train()`` finds it in the
   cache, see ``adept_env.training.run.world_model_core``).
3. The trials run as Tune trials with ``--cpus-per-trial`` CPUs and as many torch threads. A
   failing trial does not stop the others (no retries: its run folder keeps its last checkpoint).
   A trial whose run folder already holds the finished run with the same settings is read back
   without calling ``train()``; an unfinished one resumes from its checkpoint.
4. The driver writes ``OUT/results.md`` (mean ± std over seeds per dataset x algorithm x grid
   point, one ``failed: ...`` row per failed trial), ``OUT/results.json`` and ``OUT/curves.png``,
   from what the trials reported to Tune (so they need no shared folder).

On a multi-node cluster ``$ADEPT_HOME`` (datasets and world models) and ``--out`` (run folders)
must be on a filesystem every node mounts at the same path: the driver passes its
``$ADEPT_HOME`` (and ``$ADEPT_D4RL_DIR``, ``CI``) to every task, and a trial that finds the
prepared dataset or model missing on its node fails with a message saying so, instead of
generating or fitting its own.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import json
import logging
import os
import socket
import time
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from adept_env.agents.iql_config import IQLConfig
from adept_env.diffusion.config import PROFILES
from adept_env.tasks import parse_dataset_name, unknown_name
from adept_env.training.config import ALGOS, TrainConfig

RAY_MISSING = "adept-env sweep needs Ray Tune: pip install 'adept-env[ray]'"
ADDRESS_TIMEOUT_S = 5.0
"""How long ``check_address`` waits for the Ray cluster to accept a connection."""
FORWARDED_ENV = ("ADEPT_HOME", "ADEPT_D4RL_DIR", "CI")
"""Environment variables of the driver that every Ray task and trial gets (when they are set)."""
NOT_GRID = {"algo": "--algos/-a", "seed": "--seeds/-s", "iql": "iql.NAME keys (e.g. iql.expectile)",
            "iql.max_steps": "--budget (IQL's schedule spans the run's updates)", "iql.seed": "--seeds/-s"}
"""Fields a grid cannot set, and what sets them instead."""
GRID_ALIASES = {"budget": "updates", "critics": "sac_critics", "select_episodes": "selection_episodes"}
"""``adept-env train`` option names that differ from their TrainConfig field."""


class SweepError(ValueError):
    """A sweep that cannot start: the message says what to change."""


# --------------------------------------------------------------------------------------------
# The plan: every trial, checked before anything starts


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of the sweep: its label (the run folders' parent) and where it comes from."""

    label: str
    """``task-quality`` for a name, the file's dataset name (or stem) for a path."""
    source: str
    """The name, or the file's absolute path."""
    is_path: bool = False


@dataclass(frozen=True)
class Trial:
    """One run of the sweep."""

    dataset: DatasetSpec
    config: TrainConfig
    grid: tuple[tuple[str, Any], ...]
    """The grid point: (key, value) in the order of the ``--grid`` options (empty: no grid)."""
    run_dir: Path

    @property
    def name(self) -> str:
        return f"{self.dataset.label}/{self.run_dir.name}"


@dataclass
class SweepPlan:
    """What ``run_sweep`` runs: the trials and the settings they share."""

    datasets: list[DatasetSpec]
    trials: list[Trial]
    out: Path
    dataset_steps: int | None = None
    cpus_per_trial: int = 1
    grid: dict[str, list[Any]] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)
    """The TrainConfig settings every trial shares (before the grid), for the table's header."""

    def profiles(self, dataset: DatasetSpec) -> list[str]:
        """The world-model profiles that ``dataset``'s trials train against (none for iql/sac)."""
        return sorted({t.config.profile for t in self.trials if t.dataset == dataset and t.config.uses_model})


def _field_types() -> dict[str, Any]:
    """Grid key -> type: TrainConfig's fields and ``iql.NAME`` for IQLConfig's."""
    types = {k: v for k, v in typing.get_type_hints(TrainConfig).items()}
    types.update({f"iql.{k}": v for k, v in typing.get_type_hints(IQLConfig).items()})
    return {k: v for k, v in types.items() if k not in NOT_GRID}


def grid_key(key: str) -> str:
    """The canonical grid key of ``key``: a TrainConfig field (``real_ratio``, also ``real-ratio`` and
    ``adept-env train``'s option names: ``budget``, ``critics``, ``select-episodes``) or ``iql.NAME``
    (also bare, e.g. ``expectile``). Raises SweepError for a key that is none of them."""
    name = key.strip().removeprefix("--").replace("-", "_")
    name = GRID_ALIASES.get(name, name)
    if name in NOT_GRID:
        raise SweepError(f"--grid {key}: {name} is not a grid key; use {NOT_GRID[name]}")
    types = _field_types()
    if name in types:
        return name
    if f"iql.{name}" in types and name not in TrainConfig.__dataclass_fields__:
        return f"iql.{name}"
    raise SweepError(f"--grid: {unknown_name('grid key', key, sorted(types))}")


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", str(kind))


def parse_value(key: str, text: str) -> Any:
    """One value of grid key ``key`` (canonical) from its text, of the field's type."""
    kind = _field_types()[key]
    args = typing.get_args(kind)
    text = text.strip()
    if type(None) in args:  # X | None
        if text.lower() in ("none", "null"):
            return None
        kind = next(a for a in args if a is not type(None))
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered in ("true", "yes", "on", "1"):
                return True
            if lowered in ("false", "no", "off", "0"):
                return False
            raise ValueError
        if kind in (int, float):
            return kind(text)
        if kind is str:
            if not text or "/" in text:
                raise ValueError
            return text
    except ValueError:
        raise SweepError(f"--grid {key}: {text!r} is not a{'n' if _type_name(kind)[0] in 'aeiou' else ''} "
                         f"{_type_name(kind)}") from None
    raise SweepError(f"--grid {key}: a {_type_name(kind)} field cannot be swept")  # pragma: no cover


def parse_grid(items: Iterable[str]) -> dict[str, list[Any]]:
    """``["penalty=0,1", "real_ratio=0.25,0.5"]`` -> ``{"penalty": [0.0, 1.0], "real_ratio": [...]}``
    (canonical keys, typed values, in the order given). Raises SweepError naming the bad item."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise SweepError(f"--grid {item!r}: expected KEY=V1,V2,... (e.g. --grid penalty=0,1)")
        name = grid_key(key)
        if name in grid:
            raise SweepError(f"--grid {name} is given twice; put all its values in one: {name}=V1,V2")
        parsed = [parse_value(name, v) for v in values.split(",")]
        if len(set(map(repr, parsed))) != len(parsed):
            raise SweepError(f"--grid {item!r} repeats a value")
        grid[name] = parsed
    return grid


def format_value(value: Any) -> str:
    """A grid value as it appears in run folder names and the table (``0.25``, ``1e-05``, ``true``)."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def grid_label(grid: Sequence[tuple[str, Any]]) -> str:
    """``penalty=0, real_ratio=0.25`` (``iql.`` left out of the keys)."""
    return ", ".join(f"{k.removeprefix('iql.')}={format_value(v)}" for k, v in grid)


def _is_path(text: str) -> bool:
    return text.endswith((".hdf5", ".h5")) or os.sep in text


def resolve_dataset(text: str, dataset_steps: int | None) -> DatasetSpec:
    """Check a ``--datasets`` entry without loading it: a known TASK-DATASET name (a quality other
    than random must be available locally unless --dataset-steps makes it), or an HDF5 file."""
    from adept_env.data.dataset import d4rl_path, default_path

    if _is_path(text) or Path(text).exists():
        path = Path(text).expanduser().resolve()
        if dataset_steps is not None:
            raise SweepError(f"--dataset-steps makes a named dataset; {text} is a file")
        if not path.is_file():
            raise SweepError(f"dataset file {text!r} does not exist")
        import h5py

        try:
            with h5py.File(path, "r") as f:
                name = f.attrs.get("dataset", "")
        except OSError as exc:
            raise SweepError(f"{text!r} is not a readable HDF5 file: {exc}") from None
        name = name.decode() if isinstance(name, bytes) else str(name)
        return DatasetSpec(name or path.stem, str(path), is_path=True)
    task, quality = parse_dataset_name(text)  # UnknownNameError (a SweepError's sibling) lists the valid ones
    label = f"{task.name}-{quality}"
    if dataset_steps is None and quality != "random" and d4rl_path(label) is None and not default_path(label).exists():
        raise SweepError(f"dataset {label!r} is not in {str(default_path(label).parent)!r} yet; make it with: "
                         f"adept-env data make {label}")
    return DatasetSpec(label, label)


def _dedupe(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def plan(datasets: Sequence[str], algos: Sequence[str], seeds: Sequence[int], grid: Mapping[str, list[Any]],
         train: Mapping[str, Any], iql: Mapping[str, Any], out: Path, dataset_steps: int | None = None,
         cpus_per_trial: int = 1) -> SweepPlan:
    """Every trial of the sweep, each checked by building its TrainConfig (an error names the grid
    point). ``train``/``iql``: the TrainConfig/IQLConfig settings every trial shares (``iql`` only
    for the IQL variants, as ``adept-env train`` refuses them for SAC); ``grid``: ``parse_grid``'s.
    Raises SweepError or UnknownNameError; starts nothing."""
    from adept_env.tasks import UnknownNameError

    if not datasets or not algos or not seeds:
        raise SweepError("a sweep needs at least one --datasets, one --algos and one --seeds")
    for algo in algos:
        if algo not in ALGOS:
            raise unknown_name("algorithm", algo, ALGOS)
    if cpus_per_trial < 1:
        raise SweepError(f"--cpus-per-trial must be >= 1, got {cpus_per_trial}")
    specs = _dedupe(resolve_dataset(d, dataset_steps) for d in datasets)
    labels = [s.label for s in specs]
    twice = [label for label in labels if labels.count(label) > 1]
    if twice:
        raise SweepError(f"two of --datasets {', '.join(datasets)} would share the run folders {out / twice[0]}")
    out = Path(out).expanduser().resolve()  # trials run in other working directories (and nodes)
    trials = []
    for spec in specs:
        for algo in _dedupe(algos):
            keys = [k for k in grid if algo.endswith("iql") or not k.startswith("iql.")]  # SAC has no IQL settings
            for values in itertools.product(*(grid[k] for k in keys)):
                point = tuple(zip(keys, values, strict=True))
                for seed in _dedupe(seeds):
                    settings = {**train, **{k: v for k, v in point if not k.startswith("iql.")}}
                    settings["eval_every"] = min(settings.get("eval_every", TrainConfig.eval_every),
                                                 settings.get("updates", TrainConfig.updates))
                    iql_settings = {**(iql if algo.endswith("iql") else {}),
                                    **{k.removeprefix("iql."): v for k, v in point if k.startswith("iql.")}}
                    where = f"{spec.label} {algo} seed {seed}" + (f" ({grid_label(point)})" if point else "")
                    try:
                        config = TrainConfig(**settings, algo=algo, seed=seed, iql=IQLConfig(**iql_settings))
                    except UnknownNameError:
                        raise
                    except (TypeError, ValueError) as exc:
                        raise SweepError(f"{where}: {exc}") from None
                    if config.profile not in PROFILES:
                        raise unknown_name("profile", config.profile, PROFILES)
                    name = f"{algo}-s{seed}" + "".join(f"-{k.removeprefix('iql.')}={format_value(v)}"
                                                       for k, v in point)
                    trials.append(Trial(spec, config, point, out / spec.label / name))
    return SweepPlan(specs, trials, out, dataset_steps, cpus_per_trial, dict(grid), dict(train))


def check_address(address: str, timeout: float = ADDRESS_TIMEOUT_S) -> str:
    """Check that a Ray cluster answers at ``address`` before anything is submitted; return it.

    ``host:port`` (the GCS address ``ray start --head`` prints; port 6379 when left out) and
    ``ray://host:port`` (Ray Client; port 10001) are checked by opening a TCP connection with a
    ``timeout``-second limit; ``auto`` is resolved as Ray resolves it (``RAY_ADDRESS``, else the
    cluster last started on this machine). Raises SweepError when nothing answers.
    """
    address = address.strip()
    target = address
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address_or_die

            target = canonicalize_bootstrap_address_or_die("auto")
        except ImportError:
            raise SweepError(RAY_MISSING) from None
        except Exception as exc:  # ConnectionError: none or several clusters on this machine
            raise SweepError(f"--address auto: no Ray cluster found ({exc})") from None
    scheme, _, rest = target.rpartition("://")
    default_port = 10001 if scheme == "ray" else 6379
    host, _, port_text = rest.rpartition(":") if ":" in rest else (rest, "", str(default_port))
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise SweepError(f"--address {address!r}: expected HOST:PORT (e.g. 10.0.0.5:6379) or ray://HOST:PORT") from None
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise SweepError(f"no Ray cluster answers at --address {address} ({host}:{port}: {exc or 'timed out'}; "
                         f"waited at most {timeout:g} s); start one with `ray start --head`, or leave --address out "
                         "to run on a local Ray") from None
    return address


# --------------------------------------------------------------------------------------------
# What runs in Ray: the dataset preparation tasks and the trials


def _apply_env(env: Mapping[str, str]) -> None:
    os.environ.update(env)


def open_dataset(spec: DatasetSpec, dataset_steps: int | None) -> Any:
    """The dataset of ``spec``, made first when missing (with --dataset-steps: the file of that size
    beside the cached dataset, as ``adept-env train --dataset-steps`` makes and names it)."""
    from adept_env.data.dataset import load_dataset, load_sized_dataset

    if spec.is_path or dataset_steps is None:
        dataset = load_dataset(spec.source, progress=False)
    else:
        dataset = load_sized_dataset(spec.label, dataset_steps, progress=False)
    dataset.name = spec.label
    return dataset


def prepare_dataset(spec: DatasetSpec, dataset_steps: int | None, profiles: Sequence[str], env: Mapping[str, str],
                    threads: int) -> dict[str, Any]:
    """A Ray task: make the dataset if missing and fit (or find) its world model of each profile in
    the cache; return where they are. Seed 0 fits the model, as ``adept-env train --seed 0`` would."""
    _apply_env(env)
    import torch

    from adept_env.envs.model_store import load_or_train, model_dir

    torch.set_num_threads(threads)
    started = time.perf_counter()
    dataset = open_dataset(spec, dataset_steps)
    models = {}
    for profile in profiles:
        path = model_dir(dataset, profile)
        if not path.exists():
            load_or_train(dataset, profile, progress=False, seed=0)
        models[profile] = str(path)
    return {"path": str(Path(dataset.source).resolve()), "models": models, "node": socket.gethostname(),
            "seconds": time.perf_counter() - started}


def config_from_dict(values: Mapping[str, Any]) -> TrainConfig:
    """A TrainConfig from its ``asdict`` (as run folders' config.json hold it)."""
    return TrainConfig(**{**values, "iql": IQLConfig(**values["iql"])})


def finished_record(run_dir: Path, config: TrainConfig) -> dict[str, Any] | None:
    """The result of a run folder that already holds this run, finished with exactly these settings
    (read back without training or evaluating again: its last curve row is the final evaluation,
    made with the seed a resumed ``train()`` would use), or None when ``train()`` has work to do."""
    try:
        saved = json.loads((run_dir / "config.json").read_text())
        progress = json.loads((run_dir / "progress.json").read_text())
    except (OSError, ValueError):
        return None
    curve = progress.get("curve") or []
    if saved != json.loads(json.dumps(asdict(config))) or not curve or curve[-1].get("update") != config.updates:
        return None
    if config.uses_model and config.selection_episodes and "selected" not in progress:
        return None  # the kept checkpoint's real score is computed at the end of train()
    last = curve[-1]
    return {"final_score": last["score_mean"], "final_std": last["score_std"], "curve": curve,
            "selected": progress.get("selected"), "updates_this_call": 0}


def run_trial(params: Mapping[str, Any], specs: Mapping[str, Mapping[str, Any]]) -> None:
    """The Tune trainable: one ``train()`` run, resumed from its run folder; reports every
    evaluation to Tune, then the run's record (JSON, under ``record``)."""
    import ray
    from ray import tune

    spec = specs[params["trial"]]
    _apply_env(spec["env"])
    import torch

    torch.set_num_threads(spec["threads"])
    started = time.perf_counter()
    config = config_from_dict(spec["config"])
    run_dir = Path(spec["run_dir"])
    record = finished_record(run_dir, config)
    if record is None:
        from adept_env.envs.model_store import model_dir
        from adept_env.training.loop import train

        host = socket.gethostname()
        shared = "on a multi-node cluster $ADEPT_HOME must be a filesystem every node mounts at the same path"
        if not Path(spec["dataset_path"]).exists():
            raise FileNotFoundError(f"the prepared dataset {spec['dataset_path']} is not on node {host}: {shared}")
        from adept_env.data.dataset import load_dataset

        dataset = load_dataset(spec["dataset_path"], progress=False)
        dataset.name = spec["dataset"]["label"]
        model = model_dir(dataset, config.profile)
        if config.uses_model and not (run_dir / "world_model").exists() and not model.exists():
            raise FileNotFoundError(f"the prepared world model {model} is not on node {host}: {shared}")
        try:
            start = int(json.loads((run_dir / "progress.json").read_text())["update"])
        except (OSError, ValueError, KeyError):
            start = 0
        result = train(dataset, config, run_dir, progress=False,
                       on_eval=lambda row: tune.report({"update": row["update"], "score_mean": row["score_mean"]}))
        record = {"final_score": result.final.score_mean, "final_std": result.final.score_std, "curve": result.curve,
                  "selected": result.selected, "updates_this_call": max(config.updates - start, 0)}
    record.update(node=f"{socket.gethostname()} {ray.get_runtime_context().get_node_id()[:12]}",
                  trial_seconds=time.perf_counter() - started)
    tune.report({"update": config.updates, "score_mean": record["final_score"], "record": json.dumps(record)})


# --------------------------------------------------------------------------------------------
# The driver


@contextlib.contextmanager
def _quiet_tune(quiet: bool) -> Iterator[None]:
    """Silence Tune's tables and its log lines about failed trials (they are in our table)."""
    if not quiet:
        yield
        return
    previous = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # the legacy reporter, silent at verbose=0
    loggers = [logging.getLogger(name) for name in ("ray.tune", "ray.train", "ray.air")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        if previous is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = previous


def _forwarded_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
    for key in ("ADEPT_HOME", "ADEPT_D4RL_DIR"):  # trials run in other working directories
        if key in env:
            env[key] = str(Path(env[key]).expanduser().resolve())
    return env


def _error_text(error: BaseException | None) -> str:
    """``ValueError: the message`` of a trial's or task's error (the cause of Ray's wrapper)."""
    if error is None:
        return "did not finish (stopped before its end)"
    cause = error
    while getattr(cause, "cause", None) is not None and cause.cause is not cause:  # RayTaskError -> the original
        cause = cause.cause
    text = str(cause).strip().splitlines()
    message = text[-1] if text and "Traceback" in text[0] else (text[0] if text else "")
    return f"{type(cause).__name__}: {message}"[:300]


def _record(trial: Trial) -> dict[str, Any]:
    return {"dataset": trial.dataset.label, "algo": trial.config.algo, "seed": trial.config.seed,
            "grid": {k: v for k, v in trial.grid}, "run_dir": str(trial.run_dir), "status": "failed",
            "error": "did not run", "final_score": None, "final_std": None, "curve": [], "selected": None}


def run_sweep(sweep: SweepPlan, address: str | None = None, num_cpus: int | None = None, progress: bool = True,
              name: str | None = None) -> str:
    """Run every trial of ``sweep`` on Ray Tune; write ``results.md``, ``results.json`` and
    ``curves.png`` into ``sweep.out`` and return the table.

    Trials whose run folder already holds their finished run (``finished_record``) are read back
    here; when none is left, Ray is not started. ``address``: an existing Ray cluster
    (``check_address`` it first); else a local Ray with ``num_cpus`` CPUs (default: the
    machine's) is started, and stopped at the end. ``progress``: Tune's trial status (never in CI);
    ``name``: Tune's experiment folder under ``OUT/tune`` (default: sweep-DATE_TIME).
    """
    from adept_env.benchmarks.offline_rl import wall_seconds

    started = time.perf_counter()
    records = {t.name: _record(t) for t in sweep.trials}
    todo = []
    for trial in sweep.trials:
        done = finished_record(trial.run_dir, trial.config)
        if done is None:
            todo.append(trial)
        else:
            records[trial.name].update(done, status="finished", node=None, trial_seconds=0.0)
    where = "no trial left to run: all read back from their run folders"
    prepared: dict[str, dict[str, Any]] = {}
    if todo:
        where = _run_on_ray(sweep, todo, records, prepared, address, num_cpus, progress, name)
    wall = time.perf_counter() - started
    for record in records.values():
        record["train_wall_seconds"] = wall_seconds(record["curve"]) if record["curve"] else None
    failed = sum(r["status"] != "finished" for r in records.values())
    if prepared:
        where += "; dataset and world models ready after " + ", ".join(
            f"{info['seconds']:.0f} s ({label})" for label, info in prepared.items())
    header = _header(sweep, wall, failed, where)
    return write_results(list(records.values()), sweep.out, header, grid_keys=list(sweep.grid),
                         extra={"wall_seconds": wall, "prepared": prepared})


def _run_on_ray(sweep: SweepPlan, trials: list[Trial], records: dict[str, dict[str, Any]],
                prepared_info: dict[str, dict[str, Any]], address: str | None, num_cpus: int | None, progress: bool,
                name: str | None) -> str:
    """Prepare the datasets (``prepared_info``: what each preparation task returned, by dataset),
    then run ``trials`` as Tune trials; fill in their ``records``; return where they ran."""
    try:
        import ray
        from ray import tune
    except ImportError as exc:
        raise SweepError(f"{RAY_MISSING} ({exc})") from None
    from adept_env.progress import show_progress

    verbose = show_progress(progress)
    env = _forwarded_env()
    init: dict[str, Any] = {"logging_level": logging.WARNING if verbose else logging.ERROR, "log_to_driver": verbose}
    if address:
        try:
            ray.init(address=address, **init)
        except Exception as exc:  # it answered check_address, but is not a Ray cluster we can join
            raise SweepError(f"could not join the Ray cluster at --address {address}: {exc}") from None
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **init)
    try:
        cpus = ray.cluster_resources().get("CPU", 0)
        if cpus < sweep.cpus_per_trial:
            raise SweepError(f"--cpus-per-trial {sweep.cpus_per_trial} is more than the {cpus:g} CPUs of the Ray "
                             "cluster: no trial could start")
        prepare = ray.remote(num_cpus=sweep.cpus_per_trial, max_retries=0)(prepare_dataset)
        datasets = list(dict.fromkeys(t.dataset for t in trials))
        refs = {spec: prepare.remote(spec, sweep.dataset_steps, sweep.profiles(spec), env, sweep.cpus_per_trial)
                for spec in datasets}
        prepared: dict[DatasetSpec, dict[str, Any]] = {}
        for spec, ref in refs.items():  # every dataset and model is ready before the first trial starts
            try:
                prepared[spec] = prepared_info[spec.label] = ray.get(ref)
            except Exception as exc:  # this dataset's trials fail; the others run
                for trial in trials:
                    if trial.dataset == spec:
                        records[trial.name]["error"] = f"preparing {spec.label} failed: {_error_text(exc)}"
        specs = {t.name: {"config": asdict(t.config), "run_dir": str(t.run_dir), "dataset": asdict(t.dataset),
                          "dataset_path": prepared[t.dataset]["path"], "env": env, "threads": sweep.cpus_per_trial}
                 for t in trials if t.dataset in prepared}
        if specs:
            trainable = tune.with_resources(tune.with_parameters(run_trial, specs=specs), {"cpu": sweep.cpus_per_trial})
            trainable._progress_metrics = ["update", "score_mean"]  # Tune's result tables: not the record's JSON
            tuner = tune.Tuner(
                trainable,
                param_space={"trial": tune.grid_search(list(specs))},
                tune_config=tune.TuneConfig(trial_name_creator=lambda t: t.config["trial"],
                                            trial_dirname_creator=lambda t: t.config["trial"].replace("/", "_")),
                run_config=tune.RunConfig(
                    name=name or f"sweep-{_dt.datetime.now():%Y-%m-%d_%H-%M-%S}",
                    storage_path=str(sweep.out / "tune"), verbose=1 if verbose else 0,
                    failure_config=tune.FailureConfig(max_failures=0)))  # a failed run resumes on the next sweep
            with _quiet_tune(not verbose):
                results = tuner.fit()
            for result in results:
                record = records[result.config["trial"]]
                payload = (result.metrics or {}).get("record")
                if result.error is None and payload:
                    record.update(json.loads(payload), status="finished")
                else:
                    record["error"] = _error_text(result.error)
    finally:
        ray.shutdown()
    nodes = len({r.get("node") for r in records.values() if r.get("node")})
    ran = f"{len(trials)} trial(s) run on " + (f"the Ray cluster at {address}" if address else "a local Ray")
    return f"{ran} ({cpus:g} CPUs" + (f", {nodes} node(s) used" if address else "") + ")"


def _header(sweep: SweepPlan, wall: float, failed: int, where: str) -> str:
    from adept_env.benchmarks.system import cpu_model

    shared = {**asdict(TrainConfig()), **sweep.shared}  # what every trial has unless the grid sets it
    failed_note = f" ({failed} failed)" if failed else ""
    return (f"{len(sweep.trials)} trials{failed_note}, {shared['updates']} agent updates, evaluation every "
            f"{min(shared['eval_every'], shared['updates'])}, profile {shared['profile']}"
            + (f", {sweep.dataset_steps}-step datasets" if sweep.dataset_steps else "")
            + f", {sweep.cpus_per_trial} CPU(s) and torch thread(s) per trial; {where}; CPU {cpu_model()}; "
            f"sweep wall time {wall / 60:.1f} min; {_dt.date.today()}")


# --------------------------------------------------------------------------------------------
# The results: the side-by-side table and curves (as benchmarks/offline_rl.py draws them)


def _group_key(record: Mapping[str, Any]) -> tuple[str, str, str]:
    return record["dataset"], record["algo"], grid_label(list(record["grid"].items()))


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def results_table(records: Sequence[Mapping[str, Any]], header: str = "", grid_keys: Sequence[str] = ()) -> str:
    """Markdown: one row per dataset x algorithm (x grid point) with the final normalised score's mean
    ± std over the seeds that finished, each seed's, the mean of the last three evaluations and the
    wall minutes per seed; one ``failed: ...`` row per failed trial."""
    import numpy as np

    settings = bool(grid_keys)
    columns = ["dataset", "algorithm", *(["settings"] if settings else []),
               "final normalised score (mean over seeds ± std)", "per seed", "mean of the last 3 evaluations",
               "wall minutes per seed (all resumes)"]
    lines = [header, ""] if header else []
    lines += ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for record in records:
        groups.setdefault(_group_key(record), []).append(record)
    for (dataset, algo, label), rows in groups.items():
        lead = [dataset, algo, *([label or "-"] if settings else [])]
        done = sorted((r for r in rows if r["status"] == "finished"), key=lambda r: r["seed"])
        if done:
            finals = np.array([r["final_score"] for r in done])
            per_seed = ", ".join(f"{v:.1f}" for v in finals)
            last3 = np.mean([np.mean([c["score_mean"] for c in r["curve"][-3:]]) for r in done])
            minutes = ", ".join(f"{(r.get('train_wall_seconds') or 0.0) / 60:.1f}" for r in done)
            lines.append("| " + " | ".join([*lead, f"{finals.mean():.1f} ± {finals.std():.1f}", per_seed,
                                             f"{last3:.1f}", minutes]) + " |")
        for r in sorted((r for r in rows if r["status"] != "finished"), key=lambda r: r["seed"]):
            lines.append("| " + " | ".join([*lead, _cell(f"failed: {r['error']}"), f"seed {r['seed']}", "", ""]) + " |")
    return "\n".join(lines)


def plot_curves(records: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """One panel per dataset: each algorithm (x grid point)'s score over updates, the mean over its
    seeds (on the evaluations every seed has) with each seed faintly behind it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from adept_env.atomic import atomic_path

    datasets = list(dict.fromkeys(r["dataset"] for r in records)) or [""]
    fig, axes = plt.subplots(1, len(datasets), figsize=(7 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
        for r in records:
            if r["dataset"] == dataset and r["status"] == "finished" and r["curve"]:
                groups.setdefault(_group_key(r), []).append(r)
        for (_, algo, label), rows in groups.items():
            common = sorted(set.intersection(*({c["update"] for c in r["curve"]} for r in rows)))
            scores = [[{c["update"]: c["score_mean"] for c in r["curve"]}[u] for u in common] for r in rows]
            name = algo + (f" {label}" if label else "")
            (line,) = ax.plot(common, np.mean(scores, axis=0), marker="o",
                              label=name if len(rows) == 1 else f"{name} (mean of {len(rows)} seeds)")
            if len(rows) > 1:  # each seed faintly behind the mean: the mean alone hides swings
                for r in rows:
                    ax.plot([c["update"] for c in r["curve"]], [c["score_mean"] for c in r["curve"]],
                            color=line.get_color(), alpha=0.3, lw=1)
        ax.set_xlabel("agent updates")
        ax.set_ylabel("D4RL-normalised score (real MuJoCo)")
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
        if groups:
            ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def write_results(records: Sequence[Mapping[str, Any]], out: Path, header: str = "", grid_keys: Sequence[str] = (),
                  extra: Mapping[str, Any] | None = None) -> str:
    """Write ``out/results.md``, ``out/results.json`` (the header, ``extra`` and every trial's record)
    and ``out/curves.png``; print and return the table."""
    from adept_env.atomic import atomic_path

    out.mkdir(parents=True, exist_ok=True)
    table = results_table(records, header, grid_keys)
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(table + "\n")
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps({"header": header, **(extra or {}), "trials": list(records)}, indent=2))
    plot_curves(records, out / "curves.png")
    print(table)
    print(f"curves: {out / 'curves.png'}")
    return table


