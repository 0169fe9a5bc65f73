"""The child record: one typed value, one reader, one writer, the last record of a trial winning."""

import dataclasses
import json
import math

import pandas as pd
import pytest

from nas.runs.records import ChildRecord, append_child, latest_per_trial, read_children
from nas.runs.results import CELLS_CSV, children_table, write_tables
from workers.outcome import ChildOutcome

# A children.jsonl line as the searcher wrote it at 93a8f63 (before ChildRecord): old folders must still read.
OLD_LINE = (
    '{"trial_id":"a1b2c_00003","index":3,"status":"completed","val_ppl":12.63,"params":543041,"train_seconds":16.4,'
    '"epochs":2,"error":"","fidelity":200,"rung_ppl":{},"kernels":"torch","cuda_graphs":"off","reward":0.5015,'
    '"reused_from":null,"seed":3000012,"formula":"n0 = x0 + h0","spec":{"cell":{"version":1},"hparams":{}},'
    '"started_at":1.5,"finished_at":2.5,"node_ip":"10.0.0.1","node_id":"abc","gpus":null}'
)


def test_a_record_written_before_child_record_reads_and_writes_back_the_same(tmp_path):
    (tmp_path / "children.jsonl").write_text(OLD_LINE + "\n")
    [record] = read_children(tmp_path)
    assert record.trial_id == "a1b2c_00003" and record.index == 3 and record.reused_from is None
    assert record.outcome == ChildOutcome("completed", 12.63, 543041, 16.4, 2, "", 200, {}, "torch", "off")
    # written back: the same, plus the fields added since, at their defaults (resumed_from 0: trained from the start)
    old, written = json.loads(OLD_LINE), record.to_dict()
    added = {k: v for k, v in written.items() if k not in old}
    assert written == {**old, **added} and "resumed_from" in added
    assert added == {k: getattr(ChildOutcome("completed"), k) for k in added}


def test_missing_fields_take_their_defaults_and_null_reads_as_nan(tmp_path):
    record = ChildRecord.from_dict({"trial_id": "t0", "index": 0, "status": "diverged", "val_ppl": None})
    assert math.isnan(record.outcome.val_ppl) and math.isnan(record.reward) and record.formula == ""


@pytest.mark.parametrize("bad, message", [
    ({"index": 0, "status": "completed"}, "record without 'trial_id'"),
    ({"trial_id": "t0", "status": "completed"}, "record without 'index'"),
    ({"trial_id": "t0", "index": 0, "status": "bogus"}, "trial 't0': status: 'bogus' is not one of"),
])
def test_a_bad_record_is_an_error_naming_it(bad, message):
    with pytest.raises(ValueError, match=message):
        ChildRecord.from_dict(bad)


def test_writer_and_reader_round_trip_and_the_last_record_of_a_trial_wins_in_its_place(tmp_path):
    first = ChildRecord("t0", 0, ChildOutcome("failed", error="lost node"))
    other = ChildRecord("t1", 1, ChildOutcome("completed", 9.5), reward=0.4)
    again = ChildRecord("t0", 0, ChildOutcome("completed", 8.0), reward=0.6)
    for r in (first, other, again):
        append_child(tmp_path, r)
    assert read_children(tmp_path) == [first, other, again]
    assert latest_per_trial(read_children(tmp_path)) == [other, again]


def test_every_scalar_outcome_field_is_a_column_of_the_cells_table_with_its_value(tmp_path):
    # The bar of one module per field: a field added to ChildOutcome reaches children.jsonl, the reader and the
    # cells table (CSV included) without an edit elsewhere.
    outcome = ChildOutcome("completed", 9.5, params=10, train_seconds=1.5, epochs=1, fidelity=60, kernels="native",
                           cuda_graphs="off", resumed_from=30)
    append_child(tmp_path, ChildRecord("t0", 0, outcome, reward=0.5, seed=1, formula="n0 = x0", spec=None))
    table = children_table(read_children(tmp_path))
    write_tables(tmp_path)
    csv = pd.read_csv(tmp_path / CELLS_CSV, keep_default_na=False)
    for f in dataclasses.fields(ChildOutcome):
        if f.name == "rung_ppl":  # a dict: not a column
            continue
        assert table.loc[0, f.name] == getattr(outcome, f.name), f.name
        assert str(csv.loc[0, f.name]) == str(getattr(outcome, f.name)), f.name
