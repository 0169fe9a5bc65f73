"""Reading a search's settings (nas/config.py): a table that sets some settings of a section keeps the search's
defaults for the others."""

from nas.config import SearchConfig, config_from_dict, load_config


def test_a_partial_table_keeps_the_search_defaults_of_its_section(tmp_path):
    defaults = SearchConfig()
    cfg = config_from_dict({"train": {"precision": "bfloat16"}, "budget": {"epochs": 2}, "model": {"dropout": 0.0}})
    assert cfg.train.precision == "bfloat16"
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.eval_batch_size) == (5.0, 32, 32) == (
        defaults.train.lr, defaults.train.batch_size, defaults.train.eval_batch_size)
    assert (cfg.budget.epochs, cfg.budget.max_batches, cfg.budget.max_eval_tokens) == (2, 200, 20000)
    assert (cfg.model.num_layers, cfg.model.hidden_size, cfg.model.dropout) == (2, 128, 0.0)
    path = tmp_path / "s.toml"
    path.write_text('[train]\ncell_kernels = "torch"\n[budget]\nmax_eval_tokens = "none"\n')
    cfg = load_config(path)
    assert cfg.train.cell_kernels == "torch" and cfg.train.lr == 5.0
    assert cfg.budget.max_eval_tokens is None and cfg.budget.max_batches == 200
