import pytest

from lora_router.config import LoraSettings, TaskSpec, TrainSettings
from lora_router.errors import ConfigError


def test_settings_round_trip_through_json(tmp_path):
    lora = LoraSettings(r=8, alpha=16, dropout=0.05, target_modules="query, key,value")
    assert lora.target_modules == ("query", "key", "value")
    lora.save(tmp_path / "lora.json")
    assert LoraSettings.load(tmp_path / "lora.json") == lora
    train = TrainSettings(epochs=3, dynamic_padding=False)
    assert TrainSettings.from_dict(train.to_dict()) == train


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: LoraSettings(r=0), "lora r"),
        (lambda: LoraSettings(dropout=1.5), "dropout"),
        (lambda: LoraSettings(target_modules=""), "target modules"),
        (lambda: TrainSettings(epochs=0), "epochs"),
        (lambda: TrainSettings(max_length=4096), "max length"),
        (lambda: TrainSettings(patience=-1), "patience"),
        (lambda: TaskSpec("Bad Name", "x", "sequence_classification", ("a", "b")), "not valid"),
        (lambda: TaskSpec("type", "x", "sequence_classification", ("a", "b")), "reserved"),
        (lambda: TaskSpec("my_task", "x", "regression", ("a", "b")), "kind"),
        (lambda: TaskSpec("my_task", "x", "sequence_classification", ("a",)), "at least 2"),
    ],
)
def test_invalid_settings_say_what_is_wrong(make, words):
    with pytest.raises(ConfigError, match=words):
        make()


def test_unknown_field_is_named():
    with pytest.raises(ConfigError, match="epoch_count"):
        TrainSettings.from_dict({"epoch_count": 3})
