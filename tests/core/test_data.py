"""Dataset reading and validation: every rejected row names file, line, field and fix."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from lpft_core.data.datasets import (
    Example,
    SplitShape,
    build_splits,
    check_split_shapes,
    parse_records,
    read_examples,
)
from lpft_core.data.fields import MAX_FIELD_NAME_CHARS, FieldMap
from lpft_core.errors import ConfigError, DataError
from tests.conftest import toy_rows, write_jsonl


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("content", "line", "field", "fragment"),
    [
        ('{"text": "ok", "label": "a"}\n{"text": "  ", "label": "b"}\n', 2, "text", "empty"),
        ('{"text": "ok", "label": "a"}\n{"label": "b"}\n', 2, "text", "missing 'text'"),
        ('{"text": "ok", "label": "a"}\n{"text": "x"}\n', 2, "label", "missing label"),
        ('{"text": "ok", "label": "a"}\n{"text": "x", "label": null}\n', 2, "label", "missing"),
        ('{"text": "ok", "label": "a"}\n{"text": "x", "label": 1.5}\n', 2, "label", "string or"),
        ('{"text": "ok", "label": "a"}\n{"text": "x", "label": 1}\n', 2, "label", "one type"),
        ('{"text": "ok", "label": "a"}\n{"text": 3, "label": "a"}\n', 2, "text", "string"),
        ('{"text": "ok", "label": "a"}\n\n{"text": "x", "label": "a"\n', 3, None, "invalid JSON"),
        ('{"text": "ok", "label": "a"}\n["x", "a"]\n', 2, None, "JSON object"),
        (
            '{"text": "ok", "label": "a"}\n{"text": "x", "text_pair": "y", "label": "a"}\n',
            2,
            "text_pair",
            "all single texts or all pairs",
        ),
        ('{"text": "ok", "text_pair": "", "label": "a"}\n', 1, "text_pair", "empty"),
        (
            '{"text": "ok", "label": "a"}\n{"text": "x\\ud800", "label": "a"}\n',
            2,
            "text",
            "surrogate",
        ),
        ('{"text": "ok", "label": "a"}\n{"text": "x\\u0000y", "label": "a"}\n', 2, "text", "NUL"),
        ('{"text": "ok", "label": "\\udfff"}\n', 1, "label", "surrogate"),
        (
            '{"text": "ok", "label": "a"}\n' + "[" * 100_000 + "]" * 100_000 + "\n",
            2,
            None,
            "deeply",
        ),
    ],
)
def test_bad_jsonl_rows_name_line_and_field(
    tmp_path: Path, content: str, line: int, field: str | None, fragment: str
) -> None:
    path = write(tmp_path, "train.jsonl", content)
    with pytest.raises(DataError) as info:
        read_examples(path)
    error = info.value
    assert error.source == "train.jsonl"
    assert error.line == line
    assert error.field == field
    assert fragment in str(error)
    assert f"train.jsonl, line {line}" in str(error)


def test_rows_over_the_limit_are_rejected() -> None:
    records = enumerate([{"text": "t", "label": "a"}] * 4, start=1)
    with pytest.raises(DataError, match="more than 3 rows") as info:
        parse_records(records, source="d.jsonl", max_rows=3)
    assert info.value.line == 4


def test_text_over_the_size_limit_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "t.jsonl", '{"text": "' + "a" * 51 + '", "label": "x"}\n')
    with pytest.raises(DataError, match="51 characters, over the limit of 50") as info:
        read_examples(path, max_text_chars=50)
    assert info.value.field == "text"


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    content = b'{"text": "ok", "label": "a"}\n{"text": "caf\xe9", "label": "a"}\n'
    with pytest.raises(DataError, match="not valid UTF-8") as info:
        read_examples(write(tmp_path, "t.jsonl", content))
    assert info.value.line == 2


def test_empty_file_and_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no rows"):
        read_examples(write(tmp_path, "t.jsonl", "\n\n"))
    with pytest.raises(DataError, match="unsupported file type '.txt'"):
        read_examples(write(tmp_path, "t.txt", "hello"))
    with pytest.raises(DataError, match="file not found"):
        read_examples(tmp_path / "missing.jsonl")


def test_csv_reads_pairs_and_reports_physical_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "d.csv",
        'text,text_pair,label\n"a ""quoted""\nmultiline",b,yes\nc,d,no\n',
    )
    examples = read_examples(path)
    assert [e.label for e in examples] == ["yes", "no"]
    assert examples[0].text == 'a "quoted"\nmultiline'
    assert examples[1].text_pair == "d"
    bad = write(tmp_path, "bad.csv", "text,label\nfine,yes\n,no\n")
    with pytest.raises(DataError, match="bad.csv, line 3, field 'text'"):
        read_examples(bad)
    with pytest.raises(DataError, match="no 'label' column"):
        read_examples(write(tmp_path, "nolabel.csv", "text,category\na,b\n"))


MNLI_FIELDS = FieldMap(text="premise", text_pair="hypothesis", label="gold")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        (
            "d.jsonl",
            '{"premise": "a", "hypothesis": "b", "gold": "yes", "id": 7}\n'
            '{"premise": "c", "hypothesis": "d", "gold": "no", "id": 8}\n',
        ),
        ("d.csv", "id,premise,hypothesis,gold\n7,a,b,yes\n8,c,d,no\n"),
    ],
)
def test_mapped_columns_read_as_the_default_names_would(
    tmp_path: Path, name: str, content: str
) -> None:
    examples = read_examples(write(tmp_path, name, content), fields=MNLI_FIELDS)
    renamed = parse_records(
        [
            (1, {"text": "a", "text_pair": "b", "label": "yes"}),
            (2, {"text": "c", "text_pair": "d", "label": "no"}),
        ],
        source=name,
    )
    assert examples == renamed


@pytest.mark.parametrize(
    ("name", "content", "line", "field", "fragment"),
    [
        (
            "d.jsonl",
            '{"premise": "a", "hypothesis": "b", "gold": "x"}\n'
            '{"premise": " ", "hypothesis": "b", "gold": "x"}\n',
            2,
            "premise",
            "column 'premise' (text_field) is empty",
        ),
        (
            "d.csv",
            "premise,hypothesis,gold\na,b,x\nc,d,\n",
            3,
            "gold",
            "missing column 'gold' (label_field)",
        ),
        (
            "d.jsonl",
            '{"premise": "a", "hypothesis": "b", "gold": "x"}\n{"premise": "a", "gold": "x"}\n',
            2,
            "hypothesis",
            "this row has no column 'hypothesis' (text_pair_field)",
        ),
        (
            "d.csv",
            "premise,hypothesis,label\na,b,x\n",
            1,
            "label_field",
            "label_field names column 'gold', which the file does not have; its columns are "
            "['premise', 'hypothesis', 'label']",
        ),
        (
            "d.jsonl",
            '{"premise": "a", "label": "x"}\n',
            1,
            "text_pair_field",
            "text_pair_field names column 'hypothesis'",
        ),
    ],
)
def test_errors_name_the_mapped_column_and_its_option(
    tmp_path: Path, name: str, content: str, line: int, field: str, fragment: str
) -> None:
    with pytest.raises(DataError) as info:
        read_examples(write(tmp_path, name, content), fields=MNLI_FIELDS)
    assert (info.value.line, info.value.field) == (line, field)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("columns", "option", "fragment"),
    [
        ({"text": ""}, "text_field", "non-empty"),
        ({"label": "x" * (MAX_FIELD_NAME_CHARS + 1)}, "label_field", "characters; the most"),
        ({"text_pair": "a\nb"}, "text_pair_field", "control"),
        ({"text": "sentence", "label": "sentence"}, "text_field", "two roles"),
    ],
)
def test_bad_field_maps_name_the_option(columns: dict, option: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        FieldMap(**columns)
    assert info.value.field == option


def test_single_class_and_rare_class_are_rejected() -> None:
    one = parse_records([(i, {"text": "x", "label": "a"}) for i in range(1, 4)], source="s")
    with pytest.raises(DataError, match="single class"):
        build_splits(one)
    rare = parse_records(
        [
            (1, {"text": "x", "label": "a"}),
            (2, {"text": "y", "label": "a"}),
            (3, {"text": "z", "label": "b"}),
        ],
        source="s",
    )
    with pytest.raises(DataError, match="class 'b' has 1 example"):
        build_splits(rare)


def test_unseen_validation_label_names_file_and_line(tmp_path: Path) -> None:
    train = read_examples(write_jsonl(tmp_path / "train.jsonl", toy_rows(12, seed=0, classes=2)))
    validation = read_examples(
        write(
            tmp_path,
            "val.jsonl",
            '{"text": "a", "label": "pos"}\n\n{"text": "b", "label": "meh"}\n',
        )
    )
    with pytest.raises(DataError) as info:
        build_splits(train, validation, names={"validation": "val.jsonl"})
    assert "label 'meh' does not occur in train" in str(info.value)
    assert info.value.line == 3 and info.value.source == "val.jsonl"


def test_holdouts_are_stratified_seeded_disjoint_and_add_up() -> None:
    rows = toy_rows(100, seed=0, classes=2)
    train = parse_records(list(enumerate(rows, start=1)), source="t")
    first = build_splits(train, seed=7)
    again = build_splits(train, seed=7)
    other = build_splits(train, seed=8)
    assert (first.validation_source, first.test_source) == ("holdout", "held_out")
    assert first.evaluation == ("held_out", first.test)
    assert (len(first.train), len(first.validation), len(first.test)) == (81, 9, 10)
    assert sorted(e.label for e in first.test).count("pos") == 5
    assert (first.validation, first.test) == (again.validation, again.test)
    assert first.test != other.test
    ids = [set(map(id, split)) for split in (first.train, first.validation, first.test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(map(len, ids)) == len(train)
    with_test = build_splits(train, test=train[:4], seed=7)
    assert with_test.evaluation == ("test", train[:4]) and len(with_test.validation) == 10


def test_a_class_too_small_for_a_held_out_test_is_refused() -> None:
    rows = [{"text": f"t{i}", "label": "a" if i < 20 else "b"} for i in range(24)]
    train = parse_records(list(enumerate(rows, start=1)), source="t.jsonl")
    with pytest.raises(DataError, match="class 'b' has 4 rows, too few to hold out a test"):
        build_splits(train)
    assert build_splits(train, test=train[:2]).test_source == "file"


def rows_of(counts: dict[str, int], pair: bool = False) -> list[Example]:
    records = [
        {"text": f"{label} {i}", "label": label, **({"text_pair": "p"} if pair else {})}
        for label, n in counts.items()
        for i in range(n)
    ]
    return parse_records(list(enumerate(records, start=1)), source="s")


def recorded_shape(rows: list[Example]) -> SplitShape:
    """A split's shape as the service records it at upload: counts by ``str(label)`` and the
    pair flag, no lines and no label type."""
    return SplitShape(dict(Counter(str(e.label) for e in rows)), rows[0].text_pair is not None)


def outcome(call: Callable[[], object]) -> tuple[str | None, str | None, str] | None:
    """Where and why ``call`` refused the splits (its line left out), or None."""
    try:
        call()
    except DataError as error:
        return error.source, error.field, str(error).replace(f", line {error.line}", "")
    return None


BIG = {"a": 20, "b": 20}
SPLIT_CASES = {
    "every split given": (BIG, {"a": 3, "b": 3}, {"a": 3, "b": 3}, {}, None),
    "validation and test held out": (BIG, None, None, {}, None),
    "an eval set": (BIG, None, {"a": 2}, {"ood": {"b": 4}}, None),
    "single class": ({"a": 9}, None, None, {}, "single class"),
    "rare class": ({"a": 9, "b": 1}, None, {"a": 2}, {}, "class 'b' has 1 example"),
    "no room for both hold-outs": ({"a": 20, "b": 4}, None, None, {}, "at least 5 a class"),
    "room for a held-out test only": ({"a": 20, "b": 4}, {"a": 2, "b": 2}, None, {}, None),
    "no room for the held-out test": ({"a": 20, "b": 3}, {"a": 2}, None, {}, "at least 4"),
    "unseen label in validation": (BIG, {"a": 2, "c": 1}, None, {}, "'c' does not occur"),
    "unseen label in test": (BIG, None, {"c": 2}, {}, "'c' does not occur"),
    "unseen label in an eval set": (BIG, None, None, {"ood": {"a": 1, "z": 1}}, "'z' does"),
}


@pytest.mark.parametrize("case", SPLIT_CASES)
def test_recorded_shapes_and_build_splits_refuse_the_same_splits(case: str) -> None:
    train_counts, validation_counts, test_counts, eval_counts, fragment = SPLIT_CASES[case]
    train = rows_of(train_counts)
    validation = rows_of(validation_counts) if validation_counts else None
    test = rows_of(test_counts) if test_counts else None
    eval_sets = {name: rows_of(counts) for name, counts in eval_counts.items()}
    names = {"train": "t.jsonl", "validation": "v.jsonl", "ood": "eval_sets.ood"}
    built = outcome(lambda: build_splits(train, validation, test, names=names, eval_sets=eval_sets))
    checked = outcome(
        lambda: check_split_shapes(
            recorded_shape(train),
            recorded_shape(validation) if validation else None,
            recorded_shape(test) if test else None,
            eval_sets={name: recorded_shape(rows) for name, rows in eval_sets.items()},
            names=names,
        )
    )
    assert built == checked
    if fragment is None:
        assert built is None
    else:
        assert built is not None and fragment in built[2]


def test_a_pair_split_beside_single_texts_is_refused_by_both() -> None:
    train, validation = rows_of(BIG), rows_of({"a": 2}, pair=True)
    for call in (
        lambda: build_splits(train, validation),
        lambda: check_split_shapes(recorded_shape(train), recorded_shape(validation)),
    ):
        with pytest.raises(DataError, match="train holds single texts") as info:
            call()
        assert (info.value.source, info.value.field) == ("validation", "text_pair")


def test_integer_and_string_labels_do_not_mix_across_splits() -> None:
    records = [(i, {"text": f"t{i}", "label": i % 2}) for i in range(1, 41)]
    train = parse_records(records, source="t")
    test = parse_records([(4, {"text": "x", "label": "1"})], source="s")
    with pytest.raises(DataError, match="labels are strs here but ints in train") as info:
        build_splits(train, test=test, names={"test": "s.csv"})
    assert (info.value.source, info.value.line, info.value.field) == ("s.csv", 4, "label")


def test_summary_counts_labels_and_token_lengths(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    rows = toy_rows(20, seed=0, classes=2, pair=True)
    splits = build_splits(parse_records(list(enumerate(rows, 1)), source="t"), seed=0)
    summary = splits.summary(AutoTokenizer.from_pretrained(tiny_model_dir))
    assert summary.pair and summary.labels == ["neg", "pos"]
    assert [summary.splits[name].rows for name in ("train", "validation", "test")] == [14, 2, 4]
    assert summary.splits["train"].label_counts == {"neg": 7, "pos": 7}
    # 6 + 3 words, [CLS] and two [SEP]: 12 tokens per row.
    assert summary.splits["train"].token_length_mean == pytest.approx(12.0)
