"""Auto resources: concurrency and GPUs per child picked for the cluster the search runs on."""

import pytest

from nas.config import config_from_dict, load_config
from nas.search.driver import AUTO_GPUS_PER_TRIAL, SearchError, plan_resources


def test_auto_concurrency_fills_the_cpus_with_one_child_per_cpus_per_trial():
    cfg = config_from_dict({})
    assert cfg.concurrency is None and cfg.gpus_per_trial is None  # the defaults are "auto"
    plan = plan_resources(cfg, {"CPU": 2.0})
    assert (plan.concurrency, plan.cpus_per_trial, plan.gpus_per_trial) == (2, 1.0, 0.0)
    assert plan_resources(config_from_dict({"cpus_per_trial": 2}), {"CPU": 5.0}).concurrency == 2
    assert plan_resources(config_from_dict({"cpus_per_trial": 0.5}), {"CPU": 2.0}).concurrency == 4


def test_auto_uses_gpus_when_the_cluster_has_them_and_packs_several_children_per_gpu():
    plan = plan_resources(config_from_dict({}), {"CPU": 32.0, "GPU": 2.0})
    assert plan.gpus_per_trial == AUTO_GPUS_PER_TRIAL
    assert plan.concurrency == int(2 / AUTO_GPUS_PER_TRIAL)
    # CPUs bound the concurrency too: 4 CPUs, one per child
    assert plan_resources(config_from_dict({}), {"CPU": 4.0, "GPU": 2.0}).concurrency == 4


def test_explicit_settings_win_over_auto():
    plan = plan_resources(config_from_dict({"concurrency": 3, "gpus_per_trial": 0}), {"CPU": 16.0, "GPU": 2.0})
    assert (plan.concurrency, plan.gpus_per_trial) == (3, 0.0)


def test_auto_in_toml_and_the_address_auto_stays_a_string(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('concurrency = "auto"\ngpus_per_trial = "auto"\naddress = "auto"\n')
    cfg = load_config(path)
    assert cfg.concurrency is None and cfg.gpus_per_trial is None and cfg.address == "auto"
    with pytest.raises(ValueError, match="cpus_per_trial"):
        config_from_dict({"cpus_per_trial": "auto"})


def test_a_child_that_does_not_fit_the_cluster_is_one_clear_error():
    with pytest.raises(SearchError, match="lower --cpus-per-trial"):
        plan_resources(config_from_dict({"cpus_per_trial": 4}), {"CPU": 2.0})
    with pytest.raises(SearchError, match="add GPU nodes"):
        plan_resources(config_from_dict({"gpus_per_trial": 1}), {"CPU": 2.0})


def test_config_json_records_the_resolved_auto_settings(tmp_path):
    import json

    from test_faults import search_on_local_ray, tiny_config

    cfg = tiny_config(tmp_path, trials=1, concurrency="auto")
    assert cfg.concurrency is None
    lines = []
    outcome, _ = search_on_local_ray(cfg, out=lines.append)
    saved = json.loads((outcome.run_dir / "config.json").read_text())
    assert (saved["concurrency"], saved["gpus_per_trial"]) == (2, 0.0)  # what a --resume will run with
    assert "2 at a time (1 CPU each)" in lines[0]
