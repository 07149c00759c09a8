import pytest

from icl_mech import ConfigError, RunConfig, TaskConfig, preset
from icl_mech.config import parse_value


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"K": 1}, "K"),
        ({"K": 63}, "K=63"),
        ({"N": 1}, "N"),
        ({"K": 8, "N": 20}, "K=8"),
        ({"L": 1}, "L"),
        ({"burstiness": "sometimes"}, "burstiness"),
        ({"equalized": True, "N": 20}, "equalized"),
        ({"epsilon": -0.1}, "epsilon"),
    ],
)
def test_invalid_task_fields_are_refused_naming_the_value(fields, named):
    with pytest.raises(ConfigError, match=named):
        TaskConfig(**fields)


def test_unknown_preset_and_unknown_field_name_what_is_expected():
    with pytest.raises(ConfigError, match="unknown preset 'gpt'.*cpu.*paper"):
        preset("gpt")
    with pytest.raises(ConfigError, match="unknown config field 'learning_rate'"):
        RunConfig().override(learning_rate=0.1)
    with pytest.raises(ConfigError, match="unknown TaskConfig field"):
        RunConfig.from_dict({"task": {"K": 64, "colour": "red"}})


def test_config_round_trips_through_its_dict():
    config = preset("paper").override(K=None, frozen=["mlp"], equalized=True, N=101)
    assert RunConfig.from_dict(config.to_dict()) == config
    assert config.train.frozen == ("mlp",)


def test_override_reaches_every_section_by_bare_name():
    config = RunConfig().override(K=128, d_mlp=64, lr=0.5, weight_decay_attn=3e-3)
    assert (config.task.K, config.model.d_mlp, config.train.lr) == (128, 64, 0.5)
    assert config.train.weight_decay_attn == 3e-3


def test_paper_preset_holds_the_papers_settings():
    config = preset("paper")
    assert (config.task.N, config.task.D, config.task.L, config.task.K) == (100, 63, 2, 20000)
    assert (config.train.optimizer, config.train.lr, config.train.batch_size) == ("sgd", 0.01, 128)
    assert config.train.weight_decay == 1e-10 and config.model.attn_scale == 1.0
    assert (config.model.n_layers, config.model.n_heads, config.model.d_mlp) == (1, 1, 512)


def test_cpu_sgd_preset_is_the_cpu_preset_under_plain_sgd_at_the_papers_batch():
    cpu, sgd = preset("cpu"), preset("cpu-sgd")
    assert (sgd.train.optimizer, sgd.train.lr, sgd.train.batch_size) == ("sgd", 0.1, 128)
    assert sgd.override(optimizer="adam", lr=cpu.train.lr) == cpu


def test_command_line_values_parse_to_config_types():
    assert parse_value("inf") is None
    assert parse_value("64") == 64 and parse_value("3e-3") == 3e-3
    assert parse_value("true") is True and parse_value("adam") == "adam"
