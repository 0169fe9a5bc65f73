"""The shared console formatting: fixed-width tables, mean ± std, durations."""

import math

from nas.console import column_table, duration, format_mean_std, mean_std, text_table


def test_text_table_aligns_left_columns_and_strips_trailing_spaces():
    rows = [("name", "n", "note"), ("a", "10", "x"), ("long", "2", "")]
    assert text_table(rows, left={0, 2}) == ["name   n  note", "a     10  x", "long   2"]
    assert text_table(rows) == ["name   n  note", "   a  10     x", "long   2"]


def test_column_table_is_text_table_by_columns():
    columns = {"run": ["a", "bb"], "best": ["1.00", "10.00"]}
    assert column_table(columns, left={"run"}) == text_table([("run", "best"), ("a", "1.00"), ("bb", "10.00")], {0})
    assert column_table({"run": [], "best": []}) == ["run  best"]


def test_mean_std_and_its_format():
    assert mean_std([1.0, 3.0]) == (2.0, math.sqrt(2.0))
    assert format_mean_std(*mean_std([12.0])) == "12.00"
    assert format_mean_std(*mean_std([])) == "-"
    assert format_mean_std(12.344, 0.555) == "12.34 ± 0.56"


def test_duration():
    assert [duration(s) for s in (0.4, 59.6, 193.4, 7520.0)] == ["0m00s", "1m00s", "3m13s", "2h05m20s"]
    assert duration(7520.0, seconds_past_hour=False) == "2h05m"
