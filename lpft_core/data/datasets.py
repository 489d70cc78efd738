"""Reading and validating text-classification datasets.

A record has ``text``, an optional ``text_pair`` (sentence-pair tasks such as RTE are
first-class) and a ``label`` (string or integer); a ``FieldMap`` reads columns of other names
into those roles. Files are JSONL, CSV or Parquet. Every rejected row raises a ``DataError``
naming the file, the line (a Parquet file's row number), the field and the fix, because users
meet these messages through the HTTP service and must be able to correct their file without
reading our code.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from sklearn.model_selection import train_test_split

from lpft_core.data.fields import DEFAULT_FIELDS, ROLES, FieldMap, Role
from lpft_core.data.parquet import parquet_records
from lpft_core.errors import DataError

Label = str | int

#: Share of train held out for validation when no validation file is given (the paper's 9:1).
HOLDOUT_FRACTION = 0.1
#: Share of the uploaded rows held out for testing when no test file is given, and the fewest
#: test rows of each class: metrics are never reported on rows that picked the epoch or T.
TEST_FRACTION = 0.1
MIN_TEST_PER_CLASS = 2


@dataclass(frozen=True)
class Example:
    """One labelled input. ``text_pair`` is ``None`` for single-sentence tasks."""

    text: str
    label: Label
    text_pair: str | None = None
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class SplitSummary:
    """Row and label counts of one split, and token lengths when a tokenizer was given."""

    rows: int
    label_counts: dict[str, int]
    token_length_mean: float | None = None
    token_length_p95: float | None = None


@dataclass(frozen=True)
class DatasetSummary:
    """What a user checks before paying for a job: sizes, balance, pair or single, lengths."""

    labels: list[Label]
    pair: bool
    validation_source: str
    splits: dict[str, SplitSummary]


@dataclass(frozen=True)
class DatasetSplits:
    """Train, validation and (optional) test examples over one label set taken from train.

    Attributes:
        labels: the sorted label set of train; class index ``i`` is ``labels[i]``.
        validation_source: ``"file"`` or ``"holdout"`` (stratified, seeded 10 % of train).
        test_source: ``"file"`` or ``"held_out"`` (stratified, seeded 10 % of the uploaded
            train rows, at least 2 a class, set aside before the validation hold-out).
        eval_sets: extra labelled sets (out-of-distribution data, say) by name, each evaluated
            in full beside the evaluation split.
    """

    train: list[Example]
    validation: list[Example]
    test: list[Example]
    labels: list[Label]
    validation_source: str
    test_source: str = "file"
    eval_sets: dict[str, list[Example]] = field(default_factory=dict)

    @property
    def pair(self) -> bool:
        """Whether this is a sentence-pair task."""
        return self.train[0].text_pair is not None

    def label_ids(self, examples: Sequence[Example]) -> np.ndarray:
        """Class indices of ``examples`` as an int64 array of shape (n,)."""
        index = {label: i for i, label in enumerate(self.labels)}
        return np.array([index[e.label] for e in examples], dtype=np.int64)

    @property
    def evaluation(self) -> tuple[str, list[Example]]:
        """The split final metrics are reported on, and its name: ``test`` (a file) or
        ``held_out``; never validation, which selected the epoch and fitted T."""
        return ("test" if self.test_source == "file" else "held_out"), self.test

    def summary(self, tokenizer: Any = None, max_length: int | None = None) -> DatasetSummary:
        """Per-split counts; token lengths (mean, p95) when a tokenizer is given."""
        splits = {"train": self.train, "validation": self.validation, "test": self.test}
        return DatasetSummary(
            labels=list(self.labels),
            pair=self.pair,
            validation_source=self.validation_source,
            splits={
                name: summarize_split(rows, tokenizer, max_length) for name, rows in splits.items()
            },
        )


def summarize_split(
    examples: Sequence[Example], tokenizer: Any = None, max_length: int | None = None
) -> SplitSummary:
    """Counts per label and, with a tokenizer, the mean and 95th percentile of token lengths
    (before truncation, so users see how much ``max_length`` cuts)."""
    counts = Counter(str(e.label) for e in examples)
    mean = p95 = None
    if tokenizer is not None and examples:
        texts = [e.text for e in examples]
        pairs = [e.text_pair for e in examples] if examples[0].text_pair is not None else None
        encoded = tokenizer(texts, pairs, truncation=False, verbose=False)["input_ids"]
        lengths = np.array([len(ids) for ids in encoded], dtype=np.float64)
        mean, p95 = float(lengths.mean()), float(np.percentile(lengths, 95))
    return SplitSummary(
        rows=len(examples),
        label_counts=dict(sorted(counts.items())),
        token_length_mean=mean,
        token_length_p95=p95,
    )


def read_examples(
    path: str | Path, *, max_text_chars: int = 20_000, fields: FieldMap = DEFAULT_FIELDS
) -> list[Example]:
    """Read a JSONL (``.jsonl``/``.json``/``.ndjson``), CSV (``.csv``) or Parquet
    (``.parquet``) file of records, its columns named by ``fields``.

    Raises:
        DataError: the file is missing, unreadable, empty, lacks a column ``fields`` needs,
            or a row is invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path.name}", source=path.name)
    with path.open("rb") as handle:
        return examples_from_file(handle, path.name, max_text_chars=max_text_chars, fields=fields)


def examples_from_file(
    handle: BinaryIO,
    filename: str,
    *,
    max_text_chars: int = 20_000,
    max_rows: int | None = None,
    fields: FieldMap = DEFAULT_FIELDS,
    max_decoded_bytes: int | None = None,
) -> list[Example]:
    """Parse a JSONL, CSV or Parquet file named ``filename`` (the extension decides) from a
    binary, seekable ``handle``. Parquet is read a batch at a time; JSONL and CSV whole.

    Args:
        fields: which columns hold the text, the text pair and the label.
        max_decoded_bytes: Parquet only: the most bytes of text its rows may decode to (a
            compressed file can hold far more than its size suggests).

    Raises:
        DataError: not UTF-8 (JSONL, CSV) or not Parquet, empty, an unknown extension, a
            column ``fields`` needs is absent (``field`` names the option that mapped it), or
            an invalid row (``field`` names the file's column).
    """
    suffix = Path(filename).suffix.lower()
    records: Iterable[tuple[int, Any]]
    if suffix in (".jsonl", ".json", ".ndjson"):
        records = _jsonl_records(handle.read(), filename)
        if records and any(fields.is_mapped(role) for role in ROLES):
            line, first = records[0]
            if isinstance(first, Mapping):
                fields.check_columns(list(first), filename, line)
    elif suffix == ".csv":
        records = _csv_records(handle.read(), filename, fields)
    elif suffix == ".parquet":
        records = parquet_records(
            handle,
            filename,
            fields,
            max_text_chars=max_text_chars,
            max_rows=max_rows,
            max_decoded_bytes=max_decoded_bytes,
        )
    else:
        raise DataError(
            f"unsupported file type {suffix!r}; use .jsonl (one JSON object per line), .csv "
            "or .parquet",
            source=filename,
        )
    return parse_records(
        records, source=filename, max_text_chars=max_text_chars, max_rows=max_rows, fields=fields
    )


def parse_records(
    records: Iterable[tuple[int, Mapping[str, Any]]],
    *,
    source: str,
    max_text_chars: int = 20_000,
    max_rows: int | None = None,
    fields: FieldMap = DEFAULT_FIELDS,
) -> list[Example]:
    """Validate ``(line_number, record)`` pairs into examples, reading each role from the
    column ``fields`` names.

    A dataset is all-single or all-pair, and all its labels are strings or all integers, so
    that a stray row cannot silently change the task. ``max_rows`` bounds the rows.
    """
    examples: list[Example] = []
    for line, record in records:
        if max_rows is not None and len(examples) >= max_rows:
            raise DataError(
                f"more than {max_rows} rows, the limit per dataset; split the data or sample it",
                source=source,
                line=line,
            )
        example = _parse_record(record, fields, source, line, max_text_chars)
        if examples:
            first = examples[0]
            if (example.text_pair is None) != (first.text_pair is None):
                has = "has" if example.text_pair is not None else "has no"
                raise DataError(
                    f"this row {has} {fields.describe('text_pair')} but the first row does not "
                    "agree; a dataset must be all single texts or all pairs",
                    source=source,
                    line=line,
                    field=fields.text_pair,
                )
            if type(example.label) is not type(first.label):
                raise DataError(
                    f"{fields.describe('label')} {example.label!r} is a "
                    f"{type(example.label).__name__} but earlier labels are "
                    f"{type(first.label).__name__}s; use one type for all labels",
                    source=source,
                    line=line,
                    field=fields.label,
                )
        examples.append(example)
    if not examples:
        raise DataError("no rows; the file must hold at least one record", source=source)
    return examples


@dataclass(frozen=True)
class SplitShape:
    """What the split rules read of a split: its rows per label and whether it holds pairs.

    The service records exactly this when a dataset is uploaded, so it can refuse a job whose
    splits do not fit together without reading the files again; ``build_splits`` takes it
    from the rows (``of``), and both apply the rules of ``check_split_shapes``.

    Attributes:
        label_counts: rows per label, keyed by ``str(label)``.
        pair: whether the rows are sentence pairs (they have a ``text_pair``).
        first_lines: the line each label first occurs on, where known, for the errors.
        label_type: ``str`` or ``int`` where known: ``1`` and ``"1"`` are different labels,
            but their counts share a key.
    """

    label_counts: Mapping[str, int]
    pair: bool
    first_lines: Mapping[str, int] = field(default_factory=dict)
    label_type: type | None = None

    @classmethod
    def of(cls, examples: Sequence[Example]) -> SplitShape:
        """The shape of parsed rows (all of one label type and all single or all pairs)."""
        first_lines: dict[str, int] = {}
        for row, example in enumerate(examples, start=1):
            first_lines.setdefault(str(example.label), example.line or row)
        return cls(
            label_counts=dict(Counter(str(e.label) for e in examples)),
            pair=bool(examples) and examples[0].text_pair is not None,
            first_lines=first_lines,
            label_type=type(examples[0].label) if examples else None,
        )


def check_split_shapes(
    train: SplitShape,
    validation: SplitShape | None = None,
    test: SplitShape | None = None,
    *,
    eval_sets: Mapping[str, SplitShape] | None = None,
    names: Mapping[str, str] | None = None,
) -> None:
    """Check that splits of these shapes can be built into a job's splits (``build_splits``).

    Train needs at least 2 classes and 2 rows of each. Without a test split each class must
    also leave ``MIN_TEST_PER_CLASS`` rows for the held-out test and 2 for train (3 when
    validation is held out too). Validation, test and eval sets must be single texts or pairs
    as train is, and hold only labels train has (of train's type, where both are known).

    Args:
        names: display names of the sources (``{"train": "train.jsonl", ...}``) for errors.

    Raises:
        DataError: the first rule broken, naming the source and the field (``label`` or
            ``text_pair``).
    """
    names = dict(names or {})
    train_name = names.get("train", "train")
    _check_train_classes(train.label_counts, train_name)
    others = [("validation", validation), ("test", test), *(eval_sets or {}).items()]
    for split_name, split in others:
        if split is not None:
            _check_against_train(split, train, names.get(split_name, split_name))
    if test is None:
        _check_room_for_test(train.label_counts, validation is None, train_name)


def build_splits(
    train: list[Example],
    validation: list[Example] | None = None,
    test: list[Example] | None = None,
    *,
    seed: int = 0,
    names: Mapping[str, str] | None = None,
    eval_sets: Mapping[str, list[Example]] | None = None,
) -> DatasetSplits:
    """Check the splits against each other and hold out validation data when none is given.

    Args:
        names: display names of the sources (``{"train": "train.jsonl", ...}``) for errors.
        eval_sets: extra labelled sets by name, checked like test.

    Without a test file, a stratified, seeded test split is held out of train first
    (``TEST_FRACTION``, at least ``MIN_TEST_PER_CLASS`` rows a class), then validation when
    no validation file is given, so the three are disjoint and add up to the uploaded rows.

    Raises:
        DataError: as ``check_split_shapes`` says: train has one class or a class with fewer
            than 2 examples, a class is too small for the splits to hold out, the splits mix
            single and pair inputs, or validation/test has a label that train lacks (or labels
            of another type).
    """
    eval_sets = dict(eval_sets or {})
    check_split_shapes(
        SplitShape.of(train),
        SplitShape.of(validation) if validation is not None else None,
        SplitShape.of(test) if test is not None else None,
        eval_sets={name: SplitShape.of(rows) for name, rows in eval_sets.items()},
        names=names,
    )
    labels = sorted({e.label for e in train})
    test_source = "file"
    if test is None:
        train, test = _held_out_test(train, seed)
        test_source = "held_out"
    validation_source = "file"
    if validation is None:
        train, validation = _stratified_holdout(train, seed)
        validation_source = "holdout"
    return DatasetSplits(train, validation, test, labels, validation_source, test_source, eval_sets)


def _check_train_classes(counts: Mapping[str, int], source: str) -> None:
    if len(counts) < 2:
        found = f"a single class ({next(iter(counts))!r})" if counts else "no rows"
        raise DataError(
            f"train has {found}; a classifier needs at least 2 classes",
            source=source,
            field="label",
        )
    rare = sorted((n, label) for label, n in counts.items() if n < 2)
    if rare:
        n, label = rare[0]
        raise DataError(
            f"class {label!r} has {n} example; every class needs at least 2 examples in train "
            "(for the stratified validation hold-out and the probe's cross-validation)",
            source=source,
            field="label",
        )


def _test_rows(class_rows: int) -> int:
    """Rows of a class of ``class_rows`` that go to the held-out test split."""
    return max(MIN_TEST_PER_CLASS, round(TEST_FRACTION * class_rows))


def _check_room_for_test(counts: Mapping[str, int], validation_too: bool, source: str) -> None:
    """What remains of each class after the held-out test must still give train 2 rows a
    class (and validation 1)."""
    needed_after = 3 if validation_too else 2
    for label in sorted(counts):
        if counts[label] - _test_rows(counts[label]) < needed_after:
            raise DataError(
                f"class {label!r} has {counts[label]} rows, too few to hold out a test split "
                f"(at least {MIN_TEST_PER_CLASS + needed_after} a class without a test file); "
                "add rows or upload a test file",
                source=source,
                field="label",
            )


def _check_against_train(split: SplitShape, train: SplitShape, name: str) -> None:
    if split.pair != train.pair:
        kind = "pairs" if train.pair else "single texts"
        raise DataError(
            f"train holds {kind} but this split does not; give every split the same fields",
            source=name,
            field="text_pair",
        )
    unseen = [label for label in split.label_counts if label not in train.label_counts]
    if unseen:
        label = min(unseen, key=lambda seen: (split.first_lines.get(seen, 0), seen))
        raise DataError(
            f"label {label!r} does not occur in train (labels: {sorted(train.label_counts)}); "
            "fix the label or add examples of it to train",
            source=name,
            line=split.first_lines.get(label),
            field="label",
        )
    if split.label_type and train.label_type and split.label_type is not train.label_type:
        raise DataError(
            f"labels are {split.label_type.__name__}s here but {train.label_type.__name__}s "
            "in train; use one type for the labels of every split",
            source=name,
            line=min(split.first_lines.values(), default=None),
            field="label",
        )


def _held_out_test(train: list[Example], seed: int) -> tuple[list[Example], list[Example]]:
    """Per class, ``_test_rows`` of its rows drawn with ``seed`` (``check_split_shapes`` has
    made sure enough remain)."""
    rng = np.random.default_rng([seed, 7919])  # a stream of its own, apart from validation's
    by_class: dict[str, list[int]] = {}
    for i, example in enumerate(train):
        by_class.setdefault(str(example.label), []).append(i)
    held: list[int] = []
    for label in sorted(by_class):
        rows = by_class[label]
        held += rng.choice(rows, size=_test_rows(len(rows)), replace=False).tolist()
    chosen = set(held)
    return (
        [e for i, e in enumerate(train) if i not in chosen],
        [train[i] for i in sorted(chosen)],
    )


def _stratified_holdout(train: list[Example], seed: int) -> tuple[list[Example], list[Example]]:
    n_classes = len({e.label for e in train})
    n_holdout = max(math.ceil(HOLDOUT_FRACTION * len(train)), n_classes)
    index = np.arange(len(train))
    keep, hold = train_test_split(
        index,
        test_size=n_holdout,
        random_state=seed,
        stratify=[str(e.label) for e in train],
    )
    return [train[i] for i in sorted(keep)], [train[i] for i in sorted(hold)]


def _parse_record(
    record: Any, fields: FieldMap, source: str, line: int, max_text_chars: int
) -> Example:
    if not isinstance(record, Mapping):
        raise DataError(
            'each row must be a JSON object like {"text": "...", "label": "..."}',
            source=source,
            line=line,
        )
    text = _parse_text(record, fields, "text", source, line, max_text_chars)
    pair = _parse_text(record, fields, "text_pair", source, line, max_text_chars)
    label = _parse_label(record, fields, source, line)
    return Example(text=text, label=label, text_pair=pair, line=line)


def _parse_text(
    record: Mapping[str, Any],
    fields: FieldMap,
    role: Role,
    source: str,
    line: int,
    max_chars: int,
) -> Any:
    """The text in ``role``'s column; ``text_pair`` alone may be absent (``None``)."""
    column, name = fields.column(role), fields.describe(role)
    value = record.get(column)
    if value is None:
        if role == "text":
            raise DataError(
                f"missing {fields.describe(role, quote=True)}; every row needs a non-empty {role}",
                source=source,
                line=line,
                field=column,
            )
        return None
    if not isinstance(value, str):
        raise DataError(
            f"{name} must be a string, got {type(value).__name__}",
            source=source,
            line=line,
            field=column,
        )
    if not value.strip():
        raise DataError(
            f"{name} is empty; remove the row or fill in the {role}",
            source=source,
            line=line,
            field=column,
        )
    if len(value) > max_chars:
        raise DataError(
            f"{name} has {len(value)} characters, over the limit of {max_chars}; shorten it "
            "or raise max_text_chars",
            source=source,
            line=line,
            field=column,
        )
    problem = text_problem(value)
    if problem:
        raise DataError(f"{name} holds {problem}", source=source, line=line, field=column)
    return value


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be tokenised or stored, or None. JSON's ``\\ud800`` escapes decode
    to lone surrogates that only fail later, inside the tokenizer or when a response is
    encoded; a NUL is a truncation waiting to happen in every C library downstream."""
    nul = value.find("\x00")
    if nul >= 0:
        return f"a NUL character at position {nul}; remove it"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"a lone surrogate (\\u{ord(value[exc.start]):04x}) at position {exc.start}, which "
            "is not valid Unicode; encode the text as UTF-8 without unpaired \\ud800-\\udfff "
            "escapes"
        )
    return None


def _parse_label(record: Mapping[str, Any], fields: FieldMap, source: str, line: int) -> Label:
    column, name = fields.label, fields.describe("label")
    label = record.get(column)
    if label is None or (isinstance(label, str) and not label.strip()):
        raise DataError(
            f"missing {name}; every row needs a label (a string or an integer)",
            source=source,
            line=line,
            field=column,
        )
    if isinstance(label, bool) or not isinstance(label, str | int):
        raise DataError(
            f"{name} must be a string or an integer, got {label!r}",
            source=source,
            line=line,
            field=column,
        )
    if isinstance(label, str) and (problem := text_problem(label)):
        raise DataError(f"{name} holds {problem}", source=source, line=line, field=column)
    return label.strip() if isinstance(label, str) else label


def _decode(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x}); re-save the file as UTF-8",
            source=source,
            line=line,
        ) from None


def _jsonl_records(raw: bytes, source: str) -> list[tuple[int, Any]]:
    records = []
    for line, text in enumerate(_decode(raw, source).splitlines(), start=1):
        if not text.strip():
            continue
        try:
            records.append((line, json.loads(text)))
        except json.JSONDecodeError as exc:
            raise DataError(
                f"invalid JSON ({exc.msg} at column {exc.colno}); each line must be one "
                "JSON object",
                source=source,
                line=line,
            ) from None
        except RecursionError:
            raise DataError(
                "JSON nested too deeply to parse; each line must be one flat JSON object "
                'like {"text": "...", "label": "..."}',
                source=source,
                line=line,
            ) from None
    return records


def _csv_records(raw: bytes, source: str, fields: FieldMap) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(_decode(raw, source), newline=""))
    fields.check_columns(reader.fieldnames or [], source, line=1)
    records = []
    try:
        for row in reader:
            # CSV has no null: an empty text_pair cell means "no pair".
            clean = {k: v for k, v in row.items() if k is not None}
            if clean.get(fields.text_pair) == "":
                clean[fields.text_pair] = None
            records.append((reader.line_num, clean))
    except csv.Error as exc:
        raise DataError(f"malformed CSV ({exc})", source=source, line=reader.line_num) from None
    return records
