"""Uploads in the formats people have: Parquet, and columns of their own names mapped by the
``text_field``, ``text_pair_field`` and ``label_field`` form fields."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from tests.integration.test_errors import assert_problem

RTE_COLUMNS = {
    "idx": [0, 1, 2, 3],
    "premise": ["the cat sat", "a dog ran", "it rained", "we ate"],
    "hypothesis": ["a cat sat", "nobody ran", "it was wet", "we starved"],
    "entailment": [1, 0, 1, 0],
}
RTE_MAPPING = {
    "text_field": "premise",
    "text_pair_field": "hypothesis",
    "label_field": "entailment",
}


def parquet_bytes(tmp_path: Path, columns: dict[str, list]) -> bytes:
    path = tmp_path / "rte.parquet"
    pq.write_table(pa.table(columns), path)
    return path.read_bytes()


def test_parquet_with_mapped_columns_is_stored_under_our_names(
    alice: httpx.Client, service_env: dict[str, str], tmp_path: Path
) -> None:
    upload = {"file": ("rte.parquet", parquet_bytes(tmp_path, RTE_COLUMNS))}
    response = alice.post("/datasets", files=upload, data=RTE_MAPPING)
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert (dataset["name"], dataset["rows"], dataset["pair"]) == ("rte.parquet", 4, True)
    assert dataset["label_counts"] == {"0": 2, "1": 2}
    stored = Path(service_env["LPFT_ARTIFACTS_DIR"]) / "datasets" / f"{dataset['id']}.jsonl"
    rows = [json.loads(line) for line in stored.read_text(encoding="utf-8").splitlines()]
    assert rows[0] == {"text": "the cat sat", "text_pair": "a cat sat", "label": 1}
    assert all(set(row) == {"text", "text_pair", "label"} for row in rows)


def test_bad_mappings_and_bad_parquet_name_the_form_field(
    alice: httpx.Client, tmp_path: Path
) -> None:
    upload = {"file": ("rte.parquet", parquet_bytes(tmp_path, RTE_COLUMNS))}
    absent = {**RTE_MAPPING, "text_field": "sentence"}
    body = assert_problem(alice.post("/datasets", files=upload, data=absent), 422, "text_field")
    assert "'sentence'" in body["detail"]
    assert "['idx', 'premise', 'hypothesis', 'entailment']" in body["detail"]
    too_long = {**RTE_MAPPING, "label_field": "x" * 201}
    assert_problem(alice.post("/datasets", files=upload, data=too_long), 422, "label_field")
    rows = b'{"sentence": "a", "label": "x"}\n{"sentence": "", "label": "y"}\n'
    body = assert_problem(
        alice.post("/datasets", files={"file": ("d.jsonl", rows)}, data={"text_field": "sentence"}),
        422,
        "sentence",
    )
    assert (
        "line 2" in body["detail"] and "column 'sentence' (text_field) is empty" in body["detail"]
    )
    not_parquet = {"file": ("d.parquet", b'{"text": "a", "label": "x"}\n')}
    body = assert_problem(alice.post("/datasets", files=not_parquet), 422, "file")
    assert "not a readable Parquet file" in body["detail"]


def test_a_bad_row_is_named_by_its_line_and_field(alice: httpx.Client) -> None:
    """Beside the message, the error gives the row's line on its own, for a client (the
    console) to point at: the file's line in JSONL and CSV (the header is line 1)."""
    jsonl = b'{"text": "fine", "label": "a"}\n{"text": "ok", "label": "b"}\n{"text": "x"}\n'
    body = assert_problem(alice.post("/datasets", files={"file": ("d.jsonl", jsonl)}), 422)
    assert body["errors"] == [{"field": "label", "message": body["detail"], "line": 3}]
    csv = b"text,label\nfine,a\n,b\n"
    body = assert_problem(alice.post("/datasets", files={"file": ("d.csv", csv)}), 422)
    assert body["errors"] == [{"field": "text", "message": body["detail"], "line": 3}]
    # An error about the file as a whole has no line.
    body = assert_problem(alice.post("/datasets", files={"file": ("d.jsonl", b"\n")}), 422)
    assert body["errors"] == [{"field": "file", "message": body["detail"]}]


def test_the_preview_is_the_first_rows_as_stored(
    alice: httpx.Client, bob: httpx.Client, tmp_path: Path
) -> None:
    upload = {"file": ("rte.parquet", parquet_bytes(tmp_path, RTE_COLUMNS))}
    dataset = alice.post("/datasets", files=upload, data=RTE_MAPPING).json()
    preview = alice.get(f"/datasets/{dataset['id']}/preview", params={"limit": 3})
    assert preview.status_code == 200, preview.text
    assert preview.json() == {
        "object": "dataset_preview",
        "id": dataset["id"],
        "rows": [
            {"text": premise, "text_pair": hypothesis, "label": label}
            for premise, hypothesis, label in zip(
                RTE_COLUMNS["premise"][:3],
                RTE_COLUMNS["hypothesis"][:3],
                RTE_COLUMNS["entailment"][:3],
                strict=True,
            )
        ],
        "has_more": True,
    }
    whole = alice.get(f"/datasets/{dataset['id']}/preview").json()
    assert len(whole["rows"]) == 4 and whole["has_more"] is False
    for limit in (0, 51):
        refused = alice.get(f"/datasets/{dataset['id']}/preview", params={"limit": limit})
        assert_problem(refused, 422, "query.limit")
    assert_problem(bob.get(f"/datasets/{dataset['id']}/preview"), 404, "dataset_id")
