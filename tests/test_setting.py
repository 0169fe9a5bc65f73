"""One declaration per setting (workers.setting): every setting of every settings class is declared with its checks
and documented, its errors come from that declaration, and the command's flags (type, choices, help, default) too."""

import dataclasses

import pytest

from nas.cli import build_parser, main
from nas.config import RetrainSettings, SchedulerConfig, SearchConfig, SpaceConfig, config_from_dict
from nas.search.controller_config import ControllerConfig
from nas.search.evolution import EvolutionConfig
from workers import setting
from workers.child_settings import Budget, ModelConfig, TrainConfig
from workers.corpora import DataConfig

CLASSES = [SearchConfig, DataConfig, ModelConfig, TrainConfig, Budget, ControllerConfig, SchedulerConfig,
           EvolutionConfig, RetrainSettings]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_setting_is_declared_and_documented(cls):
    docs = setting.docs(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.type) or f.name in ("data", "space", "model", "train", "budget", "controller",
                                                          "scheduler", "evolution", "retrain"):
            continue  # a table: its own class declares its settings
        if f.metadata.get("derived"):
            continue  # set by the search, not a setting (Budget.report_at)
        assert "flag" in f.metadata, f"{cls.__name__}.{f.name} is not declared with setting()"
        assert docs.get(f.name), f"{cls.__name__}.{f.name} has no docstring"
        assert setting.summary(cls, f.name).endswith("."), (f.name, setting.summary(cls, f.name))


def test_space_layers_is_documented():
    assert setting.docs(SpaceConfig)["layers"].startswith("Name -> allowed values")


@pytest.mark.parametrize(("make", "message"), [
    (lambda: ModelConfig(hidden_size=0), "model.hidden_size: 0 is not allowed; use a whole number >= 1"),
    (lambda: ModelConfig(hidden_size=True), "model.hidden_size: True is not allowed; use a whole number >= 1"),
    (lambda: ModelConfig(dropout=1.0), "model.dropout: 1.0 is not allowed; use a number in [0, 1)"),
    (lambda: ModelConfig(rnn="rwkv"), "model.rnn: 'rwkv' is not one of cell, torch-lstm, torch-gru"),
    (lambda: ModelConfig(init_range=-1.0),
     "model.init_range: -1.0 is not allowed; use a positive number, or none for the default initialisation"),
    (lambda: TrainConfig(lr=float("inf")), "train.lr: inf is not allowed; use a positive number"),
    (lambda: TrainConfig(optimizer=3), "train.optimizer: 3 is not allowed; use one of sgd, adam"),
    (lambda: Budget(checkpoint_every=0), "budget.checkpoint_every: 0 is not allowed; use a positive number, or none "
                                         "to never checkpoint"),
    (lambda: Budget(keep_checkpoints="yes"), "budget.keep_checkpoints: 'yes' is not allowed; use true or false"),
    (lambda: ControllerConfig(baseline_decay=1), "controller.baseline_decay: 1 is not allowed; use a number in [0, 1)"),
    (lambda: ControllerConfig(entropy_weight=-0.1),
     "controller.entropy_weight: -0.1 is not allowed; use a number >= 0"),
    (lambda: SchedulerConfig(reduction_factor=1),
     "scheduler.reduction_factor: 1 is not allowed; use a whole number >= 2"),
    (lambda: RetrainSettings(patience=-1),
     "retrain.patience: -1 is not allowed; use a whole number >= 0 (0: never stop early)"),
    (lambda: SearchConfig(concurrency=0), "concurrency: 0 is not allowed; use a whole number >= 1, or auto"),
    (lambda: DataConfig(data_dir=3), "data.data_dir: 3 is not allowed; use text, or none"),
])
def test_a_bad_value_is_one_line_from_its_declaration(make, message):
    with pytest.raises(ValueError) as e:
        make()
    assert str(e.value) == message


def test_a_whole_number_for_a_float_setting_is_stored_as_a_float():
    assert type(TrainConfig(lr=5).lr) is float and TrainConfig(lr=5).lr == 5.0
    assert type(config_from_dict({"train": {"clip": 1}}).train.clip) is float


def test_toml_spells_none_as_none_and_machine_picks_as_auto():
    cfg = config_from_dict({"concurrency": "auto", "gpus_per_trial": "none", "budget": {"max_batches": "none"}})
    assert cfg.concurrency is None and cfg.gpus_per_trial is None and cfg.budget.max_batches is None
    with pytest.raises(ValueError, match=r"budget.epochs: 'auto' is not allowed; use a whole number >= 1$"):
        config_from_dict({"budget": {"epochs": "auto"}})
    with pytest.raises(ValueError, match="budget.patience: 'auto' is not allowed"):
        config_from_dict({"budget": {"patience": "auto"}})  # "auto" is only for settings the machine picks


def test_flags_come_from_the_declarations():
    parser = build_parser()
    search = parser._subparsers._group_actions[0].choices["search"]
    actions = {a.dest: a for a in search._actions}
    declared = setting.flags(SearchConfig) + ["data." + n for n in setting.flags(DataConfig)]
    assert set(declared) <= set(actions)
    assert actions["trials"].help == "Children in total; with --resume, a larger number extends the search. " \
                                     "(default: 16)"
    assert actions["algo"].choices == ["reinforce", "random", "evolution"]
    assert actions["data.level"].option_strings == ["--level"]
    assert "(default: auto)" in actions["concurrency"].help
    args = parser.parse_args(["search", "--trials", "8", "--concurrency", "auto", "--level", "char", "--seed", "3"])
    assert (vars(args)["trials"], vars(args)["concurrency"], vars(args)["data.level"], args.seed) == (8, "auto",
                                                                                                      "char", 3)
    train = parser._subparsers._group_actions[0].choices["train"]
    epochs = next(a for a in train._actions if a.dest == "retrain.epochs")
    assert epochs.option_strings == ["--epochs"] and epochs.help.endswith("(default: the config's [retrain], 40)")


def test_a_bad_flag_value_is_the_declarations_error(capsys, tmp_path):
    assert main(["search", "--trials", "0", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == "nas: error: trials: 0 is not allowed; use a whole number >= 1\n"
    assert main(["search", "--cpus-per-trial", "-1", "--results-dir", str(tmp_path)]) == 2
    assert "cpus_per_trial: -1.0 is not allowed; use a positive number" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written
