"""kubectl warnings: at most 120 characters each (the API server truncates or drops longer ones),
at most six of them, the last counting what was left out."""

from __future__ import annotations

import pytest

from webhook.core.wording import bounded_warnings, shorten


def distinct(count: int) -> list[str]:
    return [f"warning number {i}" for i in range(count)]


@pytest.mark.parametrize("count", [0, 1, 5, 6])
def test_up_to_six_warnings_are_all_kept_in_order(count: int) -> None:
    assert bounded_warnings(distinct(count)) == tuple(distinct(count))


@pytest.mark.parametrize(("count", "left_out"), [(7, 2), (8, 3), (20, 15)])
def test_past_six_five_are_kept_and_the_sixth_counts_the_rest(count: int, left_out: int) -> None:
    kept = bounded_warnings(distinct(count))
    assert len(kept) == 6
    assert kept[:5] == tuple(distinct(5))
    assert f"{left_out} more warnings not shown" in kept[5]


def test_repeats_count_once() -> None:
    assert bounded_warnings(["a", "b", "a", "", "b"]) == ("a", "b")


def test_a_warning_of_exactly_120_characters_is_kept_whole() -> None:
    text = "w" * 120
    assert shorten(text) == text
    assert bounded_warnings([text]) == (text,)


def test_a_longer_warning_is_cut_to_120_characters_marked_as_cut() -> None:
    cut = shorten("w" * 121)
    assert len(cut) == 120
    assert cut == "w" * 117 + "..."


def test_a_cut_at_a_space_leaves_no_space_before_the_mark() -> None:
    assert shorten("x" * 110 + " " * 20) == "x" * 110 + "..."


def test_leading_spaces_are_kept() -> None:
    assert shorten("  " + "w" * 200).startswith("  w")


def test_a_custom_limit_is_honoured() -> None:
    assert shorten("abcdefgh", limit=6) == "abc..."
    assert shorten("abcdef", limit=6) == "abcdef"
