"""Every option of ``leanfit train``, declared once: default, flag, help and limits.

An option is a dataclass field made by :func:`option`; its :class:`Spec` holds the
help text and the allowed values. Everything else is made from these declarations:
:meth:`Options.check` (the Python API's validation), the click options of the command
line (``leanfit.cli``) and the ``_parameter_constraints`` of
:class:`~leanfit.estimator.StreamingClassifier`. Values planned from the memory
budget (rows per chunk, XGBoost pages) are not options: they live in a
:class:`Plan`, and the user's options are never rewritten.

>>> TrainOptions(epochs=3).epochs
3
>>> TrainOptions(holdout=1.5).check()
Traceback (most recent call last):
...
leanfit.errors.ConfigError: --holdout must be in [0, 1). Got 1.5.
>>> Plan(batch_rows=4096).rows(TrainOptions())
4096
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from leanfit.errors import ConfigError

MODELS = ("sgd", "hinge", "passive-aggressive", "perceptron", "nb", "mlp", "logistic", "xgboost")
INCREMENTAL = MODELS[:6]
SGD_FAMILY = MODELS[:4]  # scikit-learn's SGDClassifier and Perceptron
SGD_LOSSES = (
    "log_loss",
    "hinge",
    "modified_huber",
    "squared_hinge",
    "perceptron",
    "squared_error",
    "huber",
    "epsilon_insensitive",
    "squared_epsilon_insensitive",
)
BAD_ROWS = ("error", "skip", "quarantine")
DEFAULT_BATCH_ROWS = 131_072
LOSSY_TOLERANCE = 1e-3
STOPPING_ROUNDS = 10  # xgboost's early stopping with a holdout, unless told otherwise
CLASS_WEIGHT = re.compile(
    r"balanced|[^=,]+=[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?(?:,[^=,]+=[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)*"
)
THRESHOLD = re.compile(
    r"f1|(?:precision|recall)@(?:0?\.[0-9]+|1(?:\.0*)?)|0?\.[0-9]+|[01](?:\.0*)?"
)


@dataclass(frozen=True)
class Spec:
    """What may be given for one option, and its help text.

    ``low``/``high`` bound numbers (``open`` excludes the bound); ``choices`` lists
    the allowed values; ``multiple`` takes the option more than once (a tuple);
    ``flag`` is the command-line name (default: ``--`` and the name with dashes).
    """

    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | None = None
    multiple: bool = False
    flag: str | None = None
    short: str | None = None
    pattern: re.Pattern | None = None  # the whole text must match (``shape`` says how)
    shape: str = ""

    def check(self, name: str, value: Any) -> None:
        """Raise :class:`ConfigError` naming the flag when ``value`` is not allowed."""
        flag = self.flag_for(name)
        if value is None or self.multiple:
            return
        if self.pattern is not None:
            text = value if isinstance(value, str) else repr(value)
            if isinstance(value, bool) or not self.pattern.fullmatch(text):
                raise ConfigError(f"{flag} must be {self.shape}. Got {value!r}.")
            return
        if self.choices is not None and value not in self.choices:
            raise ConfigError(
                f"{flag} must be one of {', '.join(map(str, self.choices))}. Got {value!r}."
            )
        if self.low is None and self.high is None:
            return
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise ConfigError(f"{flag} must be a number. Got {value!r}.")
        if not self.allows(value):
            raise ConfigError(f"{flag} must be {self.describe()}. Got {value}.")

    def allows(self, value: float) -> bool:
        low_ok = self.low is None or (value > self.low if self.low_open else value >= self.low)
        high = self.high
        return low_ok and (high is None or (value < high if self.high_open else value <= high))

    def describe(self) -> str:
        if self.high is None:
            return f"{'above' if self.low_open else 'at least'} {_number(self.low)}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{_number(self.low)}, {_number(self.high)}{right}"

    def flag_for(self, name: str) -> str:
        return self.flag or "--" + name.replace("_", "-")


def _number(value: float | None) -> str:
    return "-inf" if value is None else f"{value:g}"


def option(default: Any, help: str, **limits: Any) -> Any:
    """A dataclass field declaring one option (see :class:`Spec`)."""
    return field(default=default, metadata={"spec": Spec(help=help, **limits)})


class Options:
    """Base of the option groups: validation and the table, from the field declarations."""

    @classmethod
    def table(cls) -> list[tuple[str, Any, type | str, Spec]]:
        """``(name, default, annotation, spec)`` of every option, in declaration order."""
        return [(f.name, f.default, f.type, f.metadata["spec"]) for f in dataclasses.fields(cls)]

    def check(self) -> None:
        """Raise :class:`ConfigError` for the first value its option does not allow."""
        for name, _, _, spec in self.table():
            spec.check(name, getattr(self, name))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LossyOptions(Options):
    """Lossy storage of float columns, only on request (``leanfit inspect``, ``shrink``,
    ``train``): the inspect pass measures each float column's error as float16 and the
    rules store it so where that error is within the tolerance (leanfit.schema.lossy)."""

    lossy_floats: str | None = option(
        None,
        "Store a float column as float16 where its measured error over every value is within "
        "--lossy-tolerance (and no value is beyond float16's range, 65504); each column's "
        "error is reported. [default: every value kept exactly]",
        choices=("float16",),
    )
    lossy_tolerance: float = option(
        LOSSY_TOLERANCE,
        "With --lossy-floats: the largest relative error |x - float16(x)| / |x| allowed "
        "over a column's values.",
        low=0,
        high=1,
        low_open=True,
    )

    def check(self) -> None:
        """Each option's limits, and a tolerance is only given with ``--lossy-floats``."""
        super().check()
        if self.lossy_floats is None and self.lossy_tolerance != LOSSY_TOLERANCE:
            raise ConfigError("--lossy-tolerance applies to --lossy-floats float16; give both.")


def same_as(group: type[Options], name: str) -> Any:
    """A field declaring the option ``name`` of ``group`` again: same default and spec."""
    found = next(f for f in dataclasses.fields(group) if f.name == name)
    return field(default=found.default, metadata=found.metadata)


@dataclass(frozen=True)
class TrainOptions(Options):
    """How to train; each field is a ``leanfit train`` option."""

    model: str = option("sgd", "The model kind.", choices=MODELS, short="-m")
    epochs: int = option(1, "Passes over the training rows (incremental models).", low=1)
    holdout: float = option(
        0.2, "Share of rows held out for evaluation (0: none).", low=0, high=1, high_open=True
    )
    class_weight: str | None = option(
        None,
        "balanced: weight classes inversely to their counts in the schema; or a weight per "
        "class by its label value, 0=1,1=5 (classes not named weigh 1; Python: also a dict).",
        pattern=CLASS_WEIGHT,
        shape="balanced or CLASS=WEIGHT,... (e.g. 0=1,1=5)",
    )
    seed: int = option(0, "Random seed (holdout split, shuffling, the model).")
    split_by: str | None = option(
        None, "Hash this key column for the holdout split [default: row number]."
    )
    drop: tuple[str, ...] = option((), "Leave this column out (repeatable).", multiple=True)
    batch_rows: int | None = option(
        None, "Rows per chunk; memory grows with it. [default: planned from --memory-limit]", low=1
    )
    C: float = option(
        1.0, "Inverse L2 strength of --model logistic.", low=0, low_open=True, flag="--C"
    )
    tol: float = option(
        1e-4,
        "Gradient tolerance of --model logistic, as scikit-learn's; each L-BFGS step is one "
        "pass over the cached data.",
        low=0,
        low_open=True,
    )
    patience: int = option(
        2, "Epochs without a better holdout loss before training stops early.", low=1
    )
    hash_width: int = option(
        1024,
        "Hashed slots of a high-cardinality text column for the levels past the model's "
        "memory budget (mlp: all its levels).",
        low=1,
    )
    missing_indicators: bool = option(
        False, "Add a 0/1 column per numeric column with missing values.", choices=(False, True)
    )
    alpha: float | None = option(
        None,
        "Regularisation strength of the sgd family (sgd, hinge, passive-aggressive, "
        "perceptron), scikit-learn's alpha. [default: 1e-5; perceptron 1e-4]",
        low=0,
    )
    penalty: str | None = option(
        None,
        "Regularisation of the sgd family. [default: l2; none for passive-aggressive and "
        "perceptron]",
        choices=("l2", "l1", "elasticnet"),
    )
    l1_ratio: float | None = option(
        None,
        "Share of L1 in --penalty elasticnet (0: L2 only, 1: L1 only). [default: 0.15]",
        low=0,
        high=1,
    )
    loss: str | None = option(
        None,
        "Loss of scikit-learn's SGDClassifier (sgd, hinge, passive-aggressive); only "
        "log_loss and modified_huber give probabilities. [default: log_loss for sgd, hinge "
        "for hinge and passive-aggressive]",
        choices=SGD_LOSSES,
    )
    threshold: str | float | None = option(
        None,
        "Binary targets: the probability of the second class above which it is predicted "
        "(0.3), or tuned on the holdout: f1, precision@0.9 (the lowest cut reaching that "
        "precision), recall@0.8 (the highest cut keeping that recall). Stored in the bundle; "
        "predict and evaluate use it. [default: 0.5]",
        pattern=THRESHOLD,
        shape="a probability, f1, precision@P or recall@R (e.g. 0.3, recall@0.8)",
    )
    lossy_floats: str | None = same_as(LossyOptions, "lossy_floats")
    lossy_tolerance: float = same_as(LossyOptions, "lossy_tolerance")

    def check(self) -> None:
        """Each option's limits, and a threshold to tune needs a holdout."""
        super().check()
        self.lossy.check()
        if isinstance(self.threshold, str) and self.threshold[0].isalpha() and not self.holdout:
            raise ConfigError(
                f"--threshold {self.threshold} is tuned on the holdout; give --holdout above 0."
            )

    @property
    def lossy(self) -> LossyOptions:
        return LossyOptions(self.lossy_floats, self.lossy_tolerance)

    def __post_init__(self) -> None:
        """A ``class_weight`` dict (Python) becomes the flag's text: {0: 1, 1: 5} -> 0=1,1=5."""
        if isinstance(self.class_weight, dict):
            text = ",".join(f"{k}={v}" for k, v in self.class_weight.items())
            object.__setattr__(self, "class_weight", text)


@dataclass(frozen=True)
class BoostOptions(Options):
    """XGBoost settings of ``--model xgboost``."""

    rounds: int = option(100, "xgboost: boosting rounds.", low=1)
    max_depth: int = option(6, "xgboost: tree depth.", low=1)
    learning_rate: float = option(0.3, "xgboost: shrinkage per round.", low=0, low_open=True)
    max_bin: int = option(
        256, "xgboost: histogram bins per feature (memory: ~1 byte per value).", low=2
    )
    early_stopping_rounds: int | None = option(
        None,
        "xgboost: stop when the holdout loss has not improved for N rounds and keep the best "
        f"round (0: off). [default: {STOPPING_ROUNDS} with a holdout, else off]",
        low=0,
    )
    nthread: int | None = option(None, "xgboost: threads [default: all cores].", low=1)

    def effective(self, holdout: float) -> BoostOptions:
        """These options as they run: early stopping's default filled in from ``holdout``.

        >>> BoostOptions().effective(0.2).early_stopping_rounds, BoostOptions().effective(0)
        (10, BoostOptions(rounds=100, max_depth=6, learning_rate=0.3, max_bin=256, early_stopping_rounds=0, nthread=None))
        """
        rounds = self.early_stopping_rounds
        if rounds and not holdout:
            raise ConfigError("--early-stopping-rounds needs a holdout (--holdout > 0).")
        if rounds is None:
            rounds = STOPPING_ROUNDS if holdout else 0
        return dataclasses.replace(self, early_stopping_rounds=rounds)


@dataclass(frozen=True)
class RunOptions(Options):
    """What every command takes besides its own options: the budget, temp files, bad
    rows, the engine, overwriting. The command line's ``--memory-limit`` ... and the
    Python API's ``memory_limit=`` ... are made from these."""

    memory_limit: str | int | None = option(
        None,
        "Memory budget: 512MB, 2GiB, 30% of the machine (Python: also an int of bytes). The "
        "run plans its chunks to stay under it, or refuses at once. [default: a quarter of "
        "the memory available at start]",
    )
    memory_trace: str | None = option(None, "Write the RSS samples over time (CSV) to this file.")
    tmp_dir: str | None = option(
        None,
        "Folder for temporary files (block caches, XGBoost pages); leanfit folders there whose "
        "run is gone are removed. [default: the system temp dir]",
    )
    bad_rows: str = option(
        "error",
        "A row that cannot be parsed or holds a value its column cannot (ragged, not UTF-8, "
        "text in a number column, inf): error stops at it, naming the line; skip leaves it "
        "out; quarantine also writes it to --quarantine. Rows left out are counted.",
        choices=BAD_ROWS,
    )
    quarantine: str | None = option(
        None,
        "With --bad-rows quarantine: the file of bad rows (file, line, reason, then the line "
        "as it was). [default: beside the output, else beside DATA: NAME.quarantine.csv]",
    )
    engine: str = option(
        "local",
        "local: this process; dask: partitions on Dask workers (docs/cluster.md).",
        choices=("local", "dask"),
    )
    scheduler: str | None = option(
        None,
        "With --engine dask: a running Dask scheduler (tcp://host:8786); the workers read DATA "
        "themselves. [default: start a local cluster for this command]",
    )
    force: bool = option(
        False,
        "Replace outputs that exist (else an existing output is an error).",
        choices=(False, True),
    )


@dataclass(frozen=True)
class UpdateOptions(Options):
    """How ``leanfit update`` continues a model on new data; the split, seed and model
    settings are the ones the model was trained with."""

    epochs: int = same_as(TrainOptions, "epochs")
    rounds: int = option(20, "xgboost: boosting rounds to add.", low=1)
    batch_rows: int | None = same_as(TrainOptions, "batch_rows")
    extend_categories: bool = option(
        False,
        "Give levels the model has not seen their own slot (linear models: new "
        "coefficients start at 0) instead of the unknown slot.",
        choices=(False, True),
    )


@dataclass(frozen=True)
class CheckpointOptions(Options):
    """Checkpoints of ``leanfit train`` (leanfit.engines.checkpoint)."""

    checkpoint: str | None = option(
        None,
        "Save the run's state in this folder as it trains, so that --resume can continue "
        "it after a crash. [default: .OUT.checkpoint beside --out when the run is planned "
        "to take over a minute]",
    )
    checkpoint_every: float = option(
        30.0,
        "Seconds between checkpoints (one is also saved after the first pass, every epoch, "
        "L-BFGS pass and 10 boosting rounds).",
        low=0,
        low_open=True,
    )
    resume: bool = option(
        False,
        "Continue the interrupted run of this same command from its checkpoint.",
        choices=(False, True),
    )


@dataclass(frozen=True)
class Plan:
    """What a run planned from its memory budget, beside the user's options.

    ``batch_rows``: rows per chunk (the user's ``--batch-rows`` when given);
    ``memory_limit``: the budget in bytes (XGBoost may page its matrix to disk under
    it); ``page_rows``: rows per XGBoost page when it does.
    """

    batch_rows: int | None = None
    memory_limit: int | None = None
    page_rows: int | None = None

    def rows(self, opts: TrainOptions) -> int:
        """Rows per chunk: the user's choice, else the planned one, else the default."""
        return opts.batch_rows or self.batch_rows or DEFAULT_BATCH_ROWS

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
