"""Value lists of the comparison grid: numbers, X/Y/Z-plot ranges, weights, epochs."""

from __future__ import annotations

import pytest

from lora_trainer.webui.grid_values import (
    FINAL,
    GridError,
    Weight,
    format_number,
    join_list,
    parse_epochs,
    parse_numbers,
    parse_weights,
    split_list,
)


def test_default_weights_and_labels():
    weights = parse_weights("0, 0.25, 0.5, 0.75, 1")
    assert [w.unet for w in weights] == [0, 0.25, 0.5, 0.75, 1]
    assert all(w.te == w.unet for w in weights)
    assert [w.label for w in weights] == ["0 (off)", "0.25", "0.5", "0.75", "1"]
    assert weights[0].off and not weights[1].off


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0-1 [5]", [0, 0.25, 0.5, 0.75, 1]),
        ("0-1 (+0.25)", [0, 0.25, 0.5, 0.75, 1]),
        ("1-0 (-0.5)", [1, 0.5, 0]),
        ("0-1", [0, 1]),
        ("0-1 (+0.1)", [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]),
        ("-1-1 [3]", [-1, 0, 1]),
        ("0.5, 0-1 [2]", [0.5, 0, 1]),
        ("2-2 [1]", [2]),
    ],
)
def test_weight_ranges(text, expected):
    assert [w.unet for w in parse_weights(text)] == expected


def test_te_unet_pairs():
    weights = parse_weights("1:0, 0.5:1, 0:0")
    assert weights == [Weight(1, 0), Weight(0.5, 1), Weight(0, 0)]
    assert [w.label for w in weights] == ["1:0", "0.5:1", "0 (off)"]
    assert weights[0].split and not weights[0].off and weights[2].off


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1-", "`1-` is not a number or a range"),
        ("", "Weights is empty"),
        (" , ", "Weights is empty"),
        ("abc", "`abc` is not a number"),
        ("0-1 (5)", "needs its sign"),
        ("0-1 [0]", "is not a count"),
        ("0-1 [x]", "is not a count"),
        ("0-1 (-0.5)", "never reaches 1"),
        ("0-1 (+0)", "never reaches"),
        ("0-1 [5000]", "asks for 5000 values"),
        ("0-100 (+0.01)", "makes 10001 values"),
        ("1:x", "not a weight pair"),
        ("nan", "not a number or a range"),
    ],
)
def test_bad_weights_are_explained(text, message):
    with pytest.raises(GridError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_weights(text)


def test_integer_lists():
    assert parse_numbers("15, 25, 35", integer=True, what="Steps") == [15, 25, 35]
    assert parse_numbers("15-35 [3]", integer=True, what="Steps") == [15, 25, 35]
    assert parse_numbers("10-30 (+10)", integer=True, what="Steps") == [10, 20, 30]
    assert parse_numbers("18-20", integer=True, what="Steps") == [18, 19, 20]
    with pytest.raises(GridError, match="whole number"):
        parse_numbers("20.5", integer=True, what="Steps")
    with pytest.raises(GridError, match=r"step .* whole number"):
        parse_numbers("10-20 (+2.5)", integer=True, what="Steps")


def test_epochs():
    assert parse_epochs("") == []
    assert parse_epochs("2, 4, final") == [2, 4, FINAL]
    assert parse_epochs("2-6 (+2), Last") == [2, 4, 6, FINAL]
    with pytest.raises(GridError, match="epochs start at 1"):
        parse_epochs("0")


def test_lists_and_numbers():
    assert split_list('Euler, "DPM++ 2M, odd", , Heun') == ["Euler", "DPM++ 2M, odd", "Heun"]
    assert [format_number(v) for v in (1.0, 0.25, -0.5, 0.1 + 0.2, -0.0)] == [
        "1",
        "0.25",
        "-0.5",
        "0.3",
        "0",
    ]


def test_join_list_round_trips():
    for items in (["a", "b, c"], ["x"], [], ['q"uote', "d"]):
        assert split_list(join_list(items)) == items
