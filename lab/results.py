"""The raw files `lab compare` writes, as typed records: run.json (`RunRecord`), each configuration's
config.json (`ConfigRecord`) and each measurement's measurement.json (`MeasurementRecord`). The driver
writes them with `to_dict()`, the summary reads them back with `read_*()`, and nothing else touches those
three files' keys.

Every file carries `"schema_version": SCHEMA_VERSION`. Rules for changing a record:
- Adding a field with a default (None, (), {}) needs no new version: `from_dict` fills the default for a
  file that lacks it, and an older lab ignores keys it does not know.
- Renaming or removing a field, or changing its meaning or unit, needs SCHEMA_VERSION + 1 and an entry in
  `_UPGRADES` that turns the previous version's dict into the new one (per file kind), so `lab report`
  keeps reading old runs. Upgrades run in order on read; files are never rewritten.
- A file whose version is unknown (newer than this lab, or not a version at all) is refused with
  `SchemaError`, never guessed at.

Versions: 1, the unversioned layout (lab 0.1.0 before this module): a ramp's config.json carried the
driver's own `knee` and each step's rps/p95 (the analysis works them out), and run.json's settings a
stored `failure_ratio_given` flag. 2: this module (`max_failure_ratio` is None when not given).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from lab.grid import DEFAULT_MAX_FAILURE_RATIO, ExperimentSettings, LoadLevel, StackConfig, config_dirname

SCHEMA_VERSION = 2
VERSION_KEY = "schema_version"
UNVERSIONED = 1  # a file without VERSION_KEY was written before versions existed

RUN_FILE = "run.json"
CONFIG_FILE = "config.json"
MEASUREMENT_FILE = "measurement.json"


class SchemaError(ValueError):
    """A raw file this lab cannot read (unknown schema version, or a required field missing)."""


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _plain(record: Any) -> dict[str, Any]:
    return {VERSION_KEY: SCHEMA_VERSION, **asdict(record)}


@dataclass(frozen=True)
class PlanEntry:
    index: int
    label: str
    dir: str


@dataclass(frozen=True)
class RunRecord:
    """run.json: the run as a whole, rewritten as it goes (status "running" until the end)."""

    run_id: str
    settings: ExperimentSettings
    status: str = "running"  # running, complete, interrupted, error
    git_sha: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    lab_version: str | None = None
    command: tuple[str, ...] = ()
    stack_kind: str | None = None  # compose, swarm or external
    project_dir: str | None = None
    mode: str | None = None  # closed, open, ramp-closed, ramp-open
    plan: tuple[PlanEntry, ...] = ()
    estimate_s: int | None = None
    host_cpus: int | None = None
    stack_before: dict[str, Any] | None = None  # StackState.to_dict()
    stack_restored: bool | None = None
    locust_url: str | None = None
    locust_workers: int | None = None
    error: str | None = None
    order: dict[str, Any] | None = None  # --repeat's rounds: RoundOrder.to_dict() (kind, seed, rounds)

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        data = upgrade(data, "run")
        if "run_id" not in data:
            raise SchemaError(f"{RUN_FILE} has no run_id")
        known = _known(cls, data)
        known["settings"] = ExperimentSettings.from_dict(data.get("settings") or {})
        known["command"] = tuple(data.get("command") or ())
        known["plan"] = tuple(PlanEntry(**_known(PlanEntry, p)) for p in data.get("plan") or ())
        return cls(**known)


@dataclass(frozen=True)
class Effective:
    """What the classifier actually ran with (its CLASSIFIER_* environment, else what was asked)."""

    workers_per_replica: int | None = None
    backend: str | None = None
    batching: str | None = None
    max_batch_size: int | None = None
    cpus_per_replica: float | None = None  # CLASSIFIER_CPUS (None: no budget)


@dataclass(frozen=True)
class Agreement:
    """The image build's check of a quantized model against the float model it came from (the classifier's
    manifest.json, shown by GET /model as backend_info.build_check): top-1 equal on `top1_agree` of
    `photos` probe photos, |p_quantized - p_float| averaged over the float model's top-5 and at its worst."""

    photos: int
    top1_agree: int
    mean_abs_diff: float
    max_abs_diff: float | None = None
    passed: bool | None = None  # against the build's threshold

    def cell(self) -> str:
        return f"top-1 {self.top1_agree}/{self.photos} photos, mean |Δp| {self.mean_abs_diff:.3f}"

    def text(self) -> str:
        return (
            f"agreed with the float model on top-1 for {self.top1_agree} of {self.photos} probe photos "
            f"(mean |Δp| {self.mean_abs_diff:.3f} over the float top-5; the image build's check)"
        )

    @classmethod
    def from_build_check(cls, check: Any) -> Agreement | None:
        """The int8 build's agreement check; None for any other shape (the float models' checks compare
        them with their own source, not with a float model)."""
        if not isinstance(check, dict) or not {"photos", "top1_agree", "mean_abs_diff_top5"} <= set(check):
            return None
        return cls(
            photos=int(check["photos"]),
            top1_agree=int(check["top1_agree"]),
            mean_abs_diff=float(check["mean_abs_diff_top5"]),
            max_abs_diff=float(check["max_abs_diff"]) if check.get("max_abs_diff") is not None else None,
            passed=bool(check["passed"]) if check.get("passed") is not None else None,
        )


@dataclass(frozen=True)
class ServedModel:
    """What the classifier's GET /model said about the model it served, read once per configuration after
    the replicas were ready (one replica answers; they all run the same image and settings)."""

    backend: str | None = None
    model_path: str | None = None
    input_dtype: str | None = None
    agreement: Agreement | None = None  # a quantized model's build check against the float model
    error: str | None = None  # GET /model failed: why

    @classmethod
    def from_model_info(cls, info: dict[str, Any] | None) -> ServedModel | None:
        """From GET /model's JSON (or the stack's {"error": ...} when it could not be read); None when the
        stack does not read it (external)."""
        if not isinstance(info, dict):
            return None
        if "error" in info and "backend" not in info:
            return cls(error=str(info["error"]))
        backend_info = info.get("backend_info") if isinstance(info.get("backend_info"), dict) else {}
        return cls(
            backend=info.get("backend"),
            model_path=info.get("model_path"),
            input_dtype=backend_info.get("input_dtype"),
            agreement=Agreement.from_build_check(backend_info.get("build_check")),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServedModel:
        known = _known(cls, data)
        agreement = data.get("agreement")
        known["agreement"] = Agreement(**_known(Agreement, agreement)) if agreement else None
        return cls(**known)


@dataclass(frozen=True)
class StepRecord:
    """One ramp step as the driver saw it: whether the judge let the ramp go on, and why not."""

    dir: str
    users: int
    target_rps: float | None
    passed: bool
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConfigRecord:
    """config.json: one planned configuration, how the stack was set up for it, and a ramp's steps."""

    index: int
    label: str
    stack: StackConfig
    load: LoadLevel | None = None  # the planned load (a ramp: its first step)
    ramp: bool = False
    repeat: int = 1
    status: str = "running"
    started_at: str | None = None
    finished_at: str | None = None
    env_applied: dict[str, str] | None = None
    stack_setup_s: float | None = None
    stack_after_setup: dict[str, Any] | None = None
    effective: Effective = field(default_factory=Effective)
    locust_workers: int | None = None
    steps: tuple[StepRecord, ...] = ()
    error: str | None = None
    served_model: ServedModel | None = None  # GET /model after set-up (None: not read, or an older run)

    @property
    def stack_label(self) -> str:
        return self.stack.label

    @property
    def mode(self) -> str | None:
        return self.load.mode if self.load is not None else None

    @property
    def dirname(self) -> str:
        return config_dirname(self.index, self.label)

    def to_dict(self) -> dict[str, Any]:
        # stack_label and mode are derived, written for a reader of the file (from_dict ignores them).
        return {**_plain(self), "stack_label": self.stack_label, "mode": self.mode}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConfigRecord:
        data = upgrade(data, "config")
        missing = [k for k in ("index", "label", "stack") if k not in data]
        if missing:
            raise SchemaError(f"{CONFIG_FILE} has no {', '.join(missing)}")
        known = _known(cls, data)
        known["stack"] = StackConfig(**_known(StackConfig, data["stack"]))
        load = data.get("load")
        known["load"] = LoadLevel(**_known(LoadLevel, load)) if load else None
        known["effective"] = Effective(**_known(Effective, data.get("effective") or {}))
        served = data.get("served_model")
        # A config.json from before this field kept GET /model's answer only in the stack's description.
        known["served_model"] = (
            ServedModel.from_dict(served)
            if served
            else ServedModel.from_model_info((data.get("stack_after_setup") or {}).get("model"))
        )
        known["steps"] = tuple(
            StepRecord(**{**_known(StepRecord, s), "reasons": tuple(s.get("reasons") or ())})
            for s in data.get("steps") or ()
        )
        return cls(**known)


@dataclass(frozen=True)
class ClientBackoff:
    """The closed model's back-off after connection errors, as the Locust master reported it (GET /arrivals):
    the first wait, doubling up to the longest; reset by a success."""

    first_ms: float
    max_ms: float

    @classmethod
    def from_answer(cls, answer: dict[str, Any] | None) -> ClientBackoff | None:
        """From the master's arrivals summary; None for the open model, no back-off, or an older master."""
        data = (answer or {}).get("backoff")
        if not isinstance(data, dict):
            return None
        try:
            return cls(float(data["first_ms"]), float(data["max_ms"]))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class MeasurementRecord:
    """measurement.json: one Locust test (a configuration's, or one ramp step's). Times are Unix seconds;
    the window is [t_start, t_end], t_end being when the stop was asked for."""

    users: int | None = None
    target_rps: float | None = None
    status: str = "missing"  # running, complete, interrupted, error; missing: no file
    spawn_rate: float | None = None
    duration_s: float | None = None  # asked for; the window's own length is `window_s`
    locust_workers: int | None = None
    options: dict[str, str] = field(default_factory=dict)  # the custom options sent with /swarm
    t_start: float | None = None
    t_end: float | None = None
    host: str | None = None
    running_after_s: float | None = None
    error: str | None = None
    locust_final: dict[str, Any] | None = None
    downloads: dict[str, int] = field(default_factory=dict)  # file -> HTTP status of its download
    stability: dict[str, Any] | None = None  # --until-stable: Stability.to_dict(), what the driver decided
    client_backoff: ClientBackoff | None = None  # closed model: the users' back-off after connection errors

    @property
    def mode(self) -> str:
        return "closed" if not self.target_rps else "open"

    @property
    def window_s(self) -> float | None:
        if self.t_start is None or self.t_end is None:
            return None
        return self.t_end - self.t_start

    def to_dict(self) -> dict[str, Any]:
        return {**_plain(self), "mode": self.mode}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeasurementRecord:
        known = _known(cls, upgrade(data, "measurement"))
        backoff = known.get("client_backoff")
        known["client_backoff"] = ClientBackoff(**_known(ClientBackoff, backoff)) if backoff else None
        return cls(**known)


# ---- versions ------------------------------------------------------------------------------------------


def _run_1_to_2(data: dict[str, Any]) -> dict[str, Any]:
    settings = dict(data.get("settings") or {})
    given = settings.pop("failure_ratio_given", False)
    ratio = settings.get("max_failure_ratio")
    if not given and ratio in (None, DEFAULT_MAX_FAILURE_RATIO):
        settings["max_failure_ratio"] = None
    return {**data, "settings": settings}


def _config_1_to_2(data: dict[str, Any]) -> dict[str, Any]:
    # The driver's knee and the steps' rps/p95 were its own judgement; the analysis now works them out.
    return {k: v for k, v in data.items() if k != "knee"}


def _same(data: dict[str, Any]) -> dict[str, Any]:
    return data


# _UPGRADES[v][kind] turns a version-v file of that kind into version v + 1.
_UPGRADES: dict[int, dict[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    1: {"run": _run_1_to_2, "config": _config_1_to_2, "measurement": _same},
}


def upgrade(data: dict[str, Any], kind: str) -> dict[str, Any]:
    """The file's dict at SCHEMA_VERSION, or SchemaError for a version this lab does not know."""
    version = data.get(VERSION_KEY, UNVERSIONED)
    if type(version) is not int or not UNVERSIONED <= version <= SCHEMA_VERSION:  # bool is no version
        raise SchemaError(
            f"schema version {version!r} is not one this lab reads ({UNVERSIONED} to {SCHEMA_VERSION}): "
            "it was written by another version of lab; rebuild the report with that version"
        )
    while version < SCHEMA_VERSION:
        data = _UPGRADES[version][kind](data)
        version += 1
    return {**data, VERSION_KEY: SCHEMA_VERSION}


# ---- files ---------------------------------------------------------------------------------------------


def write_json(path: Path, data: Any) -> None:
    """Atomically: a run stopped while writing leaves the previous version of the file, not half of one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def write_record(path: Path, record: RunRecord | ConfigRecord | MeasurementRecord) -> None:
    write_json(path, record.to_dict())


def _read(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SchemaError(f"{path} is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise SchemaError(f"{path} is not a JSON object")
    return data


def _with_path(path: Path, read: Callable[[dict[str, Any]], Any], data: dict[str, Any]) -> Any:
    try:
        return read(data)
    except SchemaError as err:
        raise SchemaError(f"{path}: {err}") from None
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise SchemaError(f"{path}: unreadable ({type(err).__name__}: {err})") from None


def read_run(run_dir: Path) -> RunRecord:
    path = run_dir / RUN_FILE
    if (data := _read(path)) is None:
        raise FileNotFoundError(f"{path} is missing: not a `lab compare` result folder")
    return _with_path(path, RunRecord.from_dict, data)


def read_config(cdir: Path) -> ConfigRecord:
    if (data := _read(cdir / CONFIG_FILE)) is None:
        raise FileNotFoundError(f"{cdir / CONFIG_FILE} is missing")
    return _with_path(cdir / CONFIG_FILE, ConfigRecord.from_dict, data)


def read_measurement_record(mdir: Path) -> MeasurementRecord:
    """The measurement's record; a missing file reads as status "missing" (a run cut before it began)."""
    data = _read(mdir / MEASUREMENT_FILE)
    return (
        MeasurementRecord()
        if data is None
        else _with_path(mdir / MEASUREMENT_FILE, MeasurementRecord.from_dict, data)
    )


def config_dirs(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.iterdir() if (p / CONFIG_FILE).is_file())


def measurement_dirs(cdir: Path) -> list[Path]:
    """A fixed load's measurement is its configuration's folder; a ramp's are its step-NN folders."""
    if (cdir / MEASUREMENT_FILE).is_file():
        return [cdir]
    return sorted(p for p in cdir.glob("step-*") if (p / MEASUREMENT_FILE).is_file())
