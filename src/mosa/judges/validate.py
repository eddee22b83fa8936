"""How well a judge tells refusals from compliance, measured against human labels.

The labels are PyRIT's refusal-scorer set (refusal_labels/refusal.csv in the data folder): columns
objective, assistant_response, human_score (1 = the response refuses). A judge predicts a refusal
when its label is "refusal", compliance when it decides anything else, and nothing when its verdict
is undecidable (EMPTY, UNPARSEABLE). Refusal is the positive class of precision and recall;
undecided rows count as wrong in the accuracy and are left out of precision and recall.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from pathlib import Path

from mosa.data.registry import find_data_file
from mosa.errors import MosaError
from mosa.judges.base import judge_recording_errors, make_judge

LABELS_FILE = "refusal_labels/refusal.csv"
COLUMNS = ("objective", "assistant_response", "human_score")


@dataclass(frozen=True)
class LabelledResponse:
    prompt: str
    response: str
    refusal: bool


@dataclass(frozen=True)
class RefusalValidation:
    judge: str
    version: str
    labels: str  # the labels file
    rows: int
    true_refusal: int  # human: refusal, judge: refusal
    missed_refusal: int  # human: refusal, judge: compliant
    false_refusal: int  # human: compliant, judge: refusal
    true_compliant: int  # human: compliant, judge: compliant
    undecided: int  # the judge gave no decision (EMPTY, UNPARSEABLE)

    @property
    def accuracy(self) -> float:
        return (self.true_refusal + self.true_compliant) / self.rows

    @property
    def precision(self) -> float | None:
        predicted = self.true_refusal + self.false_refusal
        return self.true_refusal / predicted if predicted else None

    @property
    def recall(self) -> float | None:
        actual = self.true_refusal + self.missed_refusal
        return self.true_refusal / actual if actual else None

    def to_dict(self) -> dict:
        return {**asdict(self), "accuracy": self.accuracy, "precision": self.precision, "recall": self.recall}


def read_refusal_labels(path: str | Path) -> list[LabelledResponse]:
    """The rows of a labels file; its leading '#' lines (PyRIT's dataset_version) are skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MosaError(f"labels file {path} does not exist; give --labels PATH or run `mosa data pull`") from None
    except (OSError, UnicodeDecodeError) as error:
        raise MosaError(f"labels file {path} cannot be read as UTF-8 text ({error})") from None
    lines = text.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):  # only leading ones: a quoted response may hold a line starting with '#'
        lines.pop(0)
    reader = csv.DictReader(io.StringIO("".join(lines)))
    try:
        records = list(reader)
    except csv.Error as error:
        raise MosaError(f"labels file {path} is not valid CSV ({error})") from None
    missing = [column for column in COLUMNS if column not in (reader.fieldnames or [])]
    if missing:
        raise MosaError(f"labels file {path} lacks the column(s) {', '.join(missing)}; expected a CSV with {', '.join(COLUMNS)}")
    if not records:
        raise MosaError(f"labels file {path} holds a header but no rows")
    labelled = []
    for number, record in enumerate(records, start=2):  # row 1 is the header
        score = (record["human_score"] or "").strip()
        if score not in ("0", "1"):
            raise MosaError(f"labels file {path}, row {number}: human_score {score!r} must be 1 (refusal) or 0 (not a refusal)")
        labelled.append(LabelledResponse(record["objective"] or "", record["assistant_response"] or "", score == "1"))
    return labelled


def validate_refusal_judge(judge, labels: str | Path | None = None, *, data_dir: str | Path | None = None) -> RefusalValidation:
    """Score `judge` (a judge, a name, or a mapping for make_judge) against the labels file
    (default: refusal_labels/refusal.csv in the data folder)."""
    judge = make_judge(judge)
    path = Path(labels) if labels is not None else find_data_file(LABELS_FILE, data_dir, what="the refusal labels")[1]
    rows = read_refusal_labels(path)
    # A response the judge's server rejects is undecided, like an empty one, and the others are still scored.
    verdicts = judge_recording_errors(judge, [row.prompt for row in rows], [row.response for row in rows])
    counts = dict(true_refusal=0, missed_refusal=0, false_refusal=0, true_compliant=0, undecided=0)
    for row, verdict in zip(rows, verdicts):
        if verdict.harmful is None:
            counts["undecided"] += 1
        elif verdict.label == "refusal":
            counts["true_refusal" if row.refusal else "false_refusal"] += 1
        else:
            counts["missed_refusal" if row.refusal else "true_compliant"] += 1
    return RefusalValidation(judge=judge.name, version=judge.version, labels=str(path), rows=len(rows), **counts)
