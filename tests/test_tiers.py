"""The tiering rules of tests/tiers.py: a test gets exactly one tier, or the collection fails."""

from __future__ import annotations

import pytest

from tests.tiers import TESTS, TIERS, UntieredTest, tier_of


def test_a_directory_gives_its_tier_and_a_fixture_raises_it() -> None:
    assert tier_of(TESTS / "test_x.py", [], []) == "unit"
    assert tier_of(TESTS / "core" / "test_x.py", ["tmp_path"], []) == "unit"
    assert tier_of(TESTS / "api" / "test_x.py", ["redis_db"], []) == "redis"
    assert tier_of(TESTS / "worker" / "test_x.py", ["service_env"], []) == "integration"
    assert tier_of(TESTS / "core" / "test_x.py", [], ["slow"]) == "slow"


def test_a_test_in_a_directory_without_a_tier_fails() -> None:
    with pytest.raises(UntieredTest, match="tests/newdir has no tier"):
        tier_of(TESTS / "newdir" / "test_x.py", [], [])


def test_a_test_may_claim_one_tier_and_no_less_than_it_needs() -> None:
    with pytest.raises(UntieredTest, match="several tiers"):
        tier_of(TESTS / "core" / "test_x.py", [], ["unit", "slow"])
    with pytest.raises(UntieredTest, match="marked unit, but"):
        tier_of(TESTS / "api" / "test_x.py", ["redis_db"], ["unit"])


def test_the_collection_marks_this_test_with_its_one_tier(request: pytest.FixtureRequest) -> None:
    assert [mark.name for mark in request.node.iter_markers() if mark.name in TIERS] == ["unit"]
