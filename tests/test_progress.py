"""Progress bars only on a terminal; in a log, a line per epoch (or per exported model)."""

import logging
import subprocess
import sys

import pytest

from lora_router.progress import progress


def test_off_a_terminal_a_line_every_log_every_steps(caplog):
    caplog.set_level(logging.INFO, logger="lora_router.progress")
    bar = progress(120, "train scene", unit="step", log_every=40, tty=False)
    for step in range(120):
        bar.set_postfix(epoch=step // 40 + 1, loss=f"{1 / (step + 1):.4f}")
        bar.update(1)
    bar.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[0].startswith("train scene: 40/120 steps (epoch=1, loss=")
    assert lines[2].startswith("train scene: 120/120 steps (epoch=3, ")


def test_a_run_stopped_early_says_how_far_it_got(caplog):
    caplog.set_level(logging.INFO, logger="lora_router.progress")
    bar = progress(5, "export", unit="model", tty=False)
    bar.set_postfix_str("question_classifier")
    bar.update()
    bar.close()
    bar = progress(8, "bench base", unit="phase", log_every=4, tty=False)
    bar.update()
    bar.close()
    assert [r.getMessage().rsplit(",", 1)[0] for r in caplog.records] == [
        "export: 1/5 models (question_classifier)", "bench base: 1/8 phases"]


def test_quiet_shows_nothing_and_a_terminal_gets_a_tqdm_bar(caplog, capsys):
    caplog.set_level(logging.INFO, logger="lora_router.progress")
    bar = progress(10, "train scene", enabled=False, tty=False)
    bar.set_postfix(epoch=1)
    bar.update(10)
    bar.close()
    assert caplog.records == [] and capsys.readouterr().err == ""
    from tqdm.auto import tqdm

    bar = progress(10, "train scene", tty=True)
    assert isinstance(bar, tqdm)
    bar.close()


@pytest.mark.slow
def test_training_into_a_log_file_writes_a_line_per_epoch_not_per_step(tmp_path, tiny_base, scene_file):
    epochs, rows = 3, 9  # batch size 1: 27 steps
    log = tmp_path / "train.log"
    with log.open("w") as err:
        done = subprocess.run(
            [sys.executable, "-c", "from lora_router.cli import run; run()", "train", "--task", "question_classifier",
             "--data", str(scene_file), "--test-data", str(scene_file), "--base-model", tiny_base,
             "--hub", str(tmp_path / "hub"), "--epochs", str(epochs), "--batch-size", "1", "--lr", "1e-2",
             "--warmup-steps", "2"],
            stdout=subprocess.PIPE, stderr=err, text=True, timeout=600)
    assert done.returncode == 0, log.read_text()
    text = log.read_text()
    assert "\r" not in text
    lines = text.splitlines()
    per_epoch = [line for line in lines if line.startswith("INFO: train question_classifier: ")]
    assert [line.split(":")[2].split()[0] for line in per_epoch] == [f"{rows * e}/{rows * epochs}"
                                                                      for e in range(1, epochs + 1)]
    assert len(lines) <= epochs + 3 < rows * epochs, text
