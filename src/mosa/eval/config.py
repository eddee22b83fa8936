"""What an evaluation runs: `EvalConfig`, read from YAML with command-line overrides and checked in
full before any model is loaded or any file written.

    config = load_config("organism", overrides=["limit=20", "sampler.steps=16"])

The target is the model loaded in process, or, with `endpoint` (openai:NAME@URL), the model that
`mosa serve` serves at URL under NAME (mosa.attacks.served); `model` then names it in records and
tables and defaults to NAME.

Precedence: a shipped config (EVAL_CONFIGS: `paper-llada8b`, the organism's `organism`) or a YAML
file < `--set KEY=VALUE` (dotted keys reach into `sampler`) < `--model` / `--adapter`. Strings may
hold `${NAME}` or `${NAME:-default}`, read from the environment, so that a judge endpoint can come
from it; a variable that holds a secret (its name contains KEY, TOKEN, SECRET or PASSWORD) is
refused, because the resolved config is written to the run directory: backends read keys from the
environment themselves.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from mosa.errors import MosaError
from mosa.models import FAMILIES, check_adapter
from mosa.registry import Registry
from mosa.sampling import SamplerConfig
from mosa.yamlio import layered_settings

# `mosa eval --config NAME`: a YAML file each, of mosa's own (the paper's evaluation of LLaDA-8B) or a
# plug-in's (the organism's).
EVAL_CONFIGS: Registry[Path] = Registry("eval config")
EVAL_CONFIGS.add("paper-llada8b", Path(__file__).parent / "configs" / "paper-llada8b.yaml")
EVAL_CONFIGS.add("canvas-llada8b", Path(__file__).parent / "configs" / "canvas-llada8b.yaml")
DTYPES = ("auto", "float32", "bfloat16", "float16")
# Sampler settings a config may give; special ids come from the model, the seed from `seed`.
SAMPLER_KEYS = (
    "gen_length",
    "steps",
    "block_length",
    "temperature",
    "cfg_scale",
    "remasking",
    "logits_eos_inf",
    "confidence_eos_eot_inf",
    "decoding",
    "threshold",
    "defences",
)
# Options of mosa.data.load_dataset that a benchmark given as a mapping may set.
BENCHMARK_OPTIONS = ("column", "target_column", "id_column", "functional")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)


@dataclass
class EvalConfig:
    model: str  # a checkpoint directory, a hub id, or "organism" (the shipped model organism)
    benchmarks: list  # prompt specs (mosa.data.resolve_prompts), or {dataset: SPEC, label: ..., column: ...}
    attacks: list = field(default_factory=lambda: [{"name": "none"}])  # {name, label?, **options}
    judges: list = field(default_factory=lambda: [{"name": "keyword-long"}])  # {name, **options}
    adapter: str | None = None  # a peft adapter directory, merged into the model after loading
    trust_remote_code: bool = False
    family: str | None = None  # override the family detected from the checkpoint
    dtype: str = "float32"
    device: str = "cpu"
    limit: int | None = None  # the first `limit` behaviours of each benchmark
    sampler: dict = field(default_factory=dict)  # SamplerConfig settings (SAMPLER_KEYS)
    batch_size: int = 16  # responses sampled together; also the behaviours per work unit
    seed: int = 0  # the sampler's seed (matters at temperature > 0)
    # Evaluate benchmarks that share prompts with the adapter's recorded training prompts (refused otherwise).
    allow_train_overlap: bool = False
    # A `mosa serve` endpoint to sample instead of loading the model: openai:NAME@URL, or a mapping
    # {type: openai, model: NAME, base_url: URL, ...} with any option of the OpenAI backend.
    endpoint: str | dict | None = None

    @classmethod
    def from_dict(cls, settings: dict, where: str = "config") -> EvalConfig:
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise MosaError(f"{where}: unknown settings {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
        if settings.get("model") in (None, "") and settings.get("endpoint") is not None:  # named after the served model
            settings = {**settings, "model": _endpoint_backend(settings["endpoint"]).model}
        missing = [name for name in ("model", "benchmarks") if settings.get(name) in (None, "", [])]
        if missing:
            raise MosaError(
                f"{where}: {' and '.join(missing)} must be given (e.g. model: organism, benchmarks: [organism-held-out])"
            )
        config = cls(**settings)
        config.benchmarks = [_benchmark_spec(spec) for spec in _as_list(config.benchmarks)]
        config.attacks = [_plugin_spec("attack", spec) for spec in _as_list(config.attacks)]
        config.judges = [_plugin_spec("judge", spec) for spec in _as_list(config.judges)]
        config.validate()
        return config

    def validate(self) -> None:
        """Every value's type and range; attack and judge names and options are checked when they
        are built (`mosa.eval.runner.build_attacks`, `build_judges`), still before any model loads."""
        if not isinstance(self.model, str) or not self.model.strip():
            raise MosaError(f"model={self.model!r} must be a checkpoint directory, a hub id or 'organism'")
        if self.endpoint is not None:
            self.endpoint_backend()  # a malformed endpoint fails here
            if self.adapter is not None:
                raise MosaError(
                    f"adapter={self.adapter!r} cannot be merged into a served model; serve it with its adapter "
                    "(mosa serve --adapter DIR) and leave adapter out"
                )
        if self.adapter is not None:
            check_adapter(self.adapter)
        for name in ("trust_remote_code", "allow_train_overlap"):
            if not isinstance(getattr(self, name), bool):
                raise MosaError(f"{name}={getattr(self, name)!r} must be true or false")
        if self.family is not None and self.family not in FAMILIES:
            raise MosaError(f"family={self.family!r} must be one of {', '.join(sorted(FAMILIES))}, or left out to detect it")
        if self.dtype not in DTYPES:
            raise MosaError(f"dtype={self.dtype!r} must be one of {', '.join(DTYPES)}")
        if not isinstance(self.device, str) or not self.device:
            raise MosaError(f"device={self.device!r} must be cpu, cuda, cuda:1, ...")
        if self.limit is not None and (not _is_int(self.limit) or self.limit < 0):
            raise MosaError(f"limit={self.limit!r} must be a whole number >= 1, or left out for every behaviour")
        if self.limit == 0:
            raise MosaError("limit=0 leaves no behaviours to evaluate; give a positive limit or leave it out")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise MosaError(f"batch_size={self.batch_size!r} must be a whole number >= 1")
        if not _is_int(self.seed):
            raise MosaError(f"seed={self.seed!r} must be a whole number")
        if not isinstance(self.sampler, dict):
            raise MosaError(f"sampler must be a mapping of sampler settings, not {self.sampler!r}")
        unknown = sorted(set(self.sampler) - set(SAMPLER_KEYS))
        if unknown:
            hint = "; the seed is the top-level seed" if "seed" in unknown else ""
            raise MosaError(f"sampler: unknown settings {', '.join(unknown)}; known: {', '.join(SAMPLER_KEYS)}{hint}")
        try:
            SamplerConfig(**self.sampler, seed=self.seed).validate(require_ids=False)
        except MosaError as error:
            raise MosaError(f"sampler: {error}") from None
        labels = [spec["label"] for spec in self.benchmarks]
        _refuse_repeats("benchmark", labels, "give one a label: {dataset: ..., label: ...}")
        _refuse_repeats("attack", [attack_label(spec) for spec in self.attacks], "give one a label: {name: ..., label: ...}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def endpoint_backend(self):
        """The OpenAI backend that reaches `endpoint` (None without one); building it sends nothing."""
        return None if self.endpoint is None else _endpoint_backend(self.endpoint)

    @property
    def model_label(self) -> str:
        return self.model if self.adapter is None else f"{self.model} + {self.adapter}"


SETTINGS = tuple(f.name for f in dataclasses.fields(EvalConfig))  # what a config file or --set KEY may set


def attack_label(spec: dict) -> str:
    """The name an attack has in records and tables: its `label`, else its attack name."""
    return spec.get("label") or spec["name"]


def attack_options(spec: dict) -> dict:
    return {key: value for key, value in spec.items() if key not in ("name", "label")}


def load_config(
    source: str | Path | None = None,
    overrides: list[str] = (),
    *,
    base: dict | None = None,
    model: str | None = None,
    adapter: str | None = None,
) -> EvalConfig:
    """A config from a shipped name (EVAL_CONFIGS) or a YAML file (`source`), or from `base` (a run's stored
    config, when resuming without --config), then `--set` overrides and the --model/--adapter flags."""
    settings, where = layered_settings(
        source, base, overrides, EVAL_CONFIGS, SETTINGS, "limit=20 or sampler.steps=64", model=model, adapter=adapter
    )
    return EvalConfig.from_dict(expand_environment(settings), where=where)


def expand_environment(value):
    """${NAME} and ${NAME:-default} in every string, from the environment."""
    if isinstance(value, dict):
        return {key: expand_environment(item) for key, item in value.items()}
    if isinstance(value, list):
        return [expand_environment(item) for item in value]
    if isinstance(value, str):
        return _VARIABLE.sub(_environment_value, value)
    return value


def _environment_value(match: re.Match) -> str:
    name, default = match.group(1), match.group(2)
    if _SECRET.search(name):
        raise MosaError(
            f"${{{name}}} looks like a secret and the resolved config is saved with the run; "
            "backends read API keys from the environment themselves (api_key_env)"
        )
    if name in os.environ:
        return os.environ[name]
    if default is None:
        raise MosaError(f"${{{name}}} is used in the config but not set; set it, or write ${{{name}:-DEFAULT}}")
    return default


def differences(stored: dict, given: dict) -> list[str]:
    """The settings that differ between two config dicts, as 'key: stored -> given' (dotted inside mappings)."""
    found = []
    for key in sorted(set(stored) | set(given)):
        old, new = stored.get(key), given.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            found += [f"{key}.{item}" for item in differences(old, new)]
        else:
            found.append(f"{key}: {_short(old)} -> {_short(new)}")
    return found


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _endpoint_backend(spec):
    """The OpenAI backend of an endpoint spec, which must give the server's URL (openai:NAME@URL)."""
    from mosa.backends import make_backend

    gives_url = (isinstance(spec, str) and re.match(r"^openai:.+@https?://", spec.strip()) is not None) or (
        isinstance(spec, dict) and spec.get("type") == "openai" and "base_url" in spec
    )
    if not gives_url:
        raise MosaError(
            f"endpoint={spec!r} must name a served model and its server as openai:NAME@URL, e.g. "
            "openai:organism@http://127.0.0.1:8000/v1 (mosa serve), or {type: openai, model: NAME, base_url: URL}"
        )
    return make_backend(spec)


def _benchmark_spec(spec) -> dict:
    """A benchmark as {dataset, label, **loader options}; the label names it in records and tables."""
    if isinstance(spec, str) and spec.strip():
        spec = {"dataset": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("dataset"), str) or not spec["dataset"].strip():
        raise MosaError(
            f"benchmark {spec!r} must be a prompt spec (advbench, harmbench:eval, a file path, ...) or a mapping "
            "with dataset: SPEC"
        )
    unknown = sorted(set(spec) - {"dataset", "label", *BENCHMARK_OPTIONS})
    if unknown:
        raise MosaError(
            f"benchmark {spec['dataset']!r}: unknown keys {', '.join(unknown)}; known: dataset, label, "
            f"{', '.join(BENCHMARK_OPTIONS)}"
        )
    dataset = spec["dataset"]
    default_label = dataset if "/" not in dataset and "." not in dataset else Path(dataset).name.split(".")[0]
    return {**spec, "label": spec.get("label") or default_label}


def _plugin_spec(kind: str, spec) -> dict:
    """An attack or judge as {name, **options}: a bare name is a mapping without options."""
    if isinstance(spec, str) and spec.strip():
        return {"name": spec}
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        return dict(spec)
    raise MosaError(
        f"{kind} {spec!r} must be a name or a mapping with a name and its options, e.g. {{name: prefill, position: 0}}"
    )


def _refuse_repeats(kind: str, labels: list[str], fix: str) -> None:
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise MosaError(f"{kind} {repeated[0]!r} is given twice; {fix}")
