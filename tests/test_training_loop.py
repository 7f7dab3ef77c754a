"""The training loop and the checkpoint layout every model of midiarr shares."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from midiarr.checkpoint import (
    SCHEDULER_FILE,
    load_pretrained,
    load_scheduler,
    read_pretrained,
    save_pretrained,
)
from midiarr.errors import InputError, OptionError
from midiarr.training import LoopSettings, budget, fit, to_device

TABLE = {
    "max_steps": 10,
    "max_minutes": 5,
    "eval_every": 4,
    "learning_rate": 0.1,
    "min_learning_rate": 0.01,
    "warmup_steps": 2,
    "weight_decay": 0.0,
    "ema_decay": 0.9,
    "batch_size": 8,  # a trainer's own key: the loop leaves it
}


def _regression(seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    return torch.nn.Linear(3, 1), x, y


def _fit(tmp_path: Path, settings: LoopSettings, **kwargs: object) -> tuple[object, list[dict], list[dict]]:
    model, x, y = _regression()
    saved: list[dict] = []
    draws = iter(range(10**6))

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        i = next(draws) % 8
        return x[i * 8 : (i + 1) * 8], y[i * 8 : (i + 1) * 8]

    result = fit(
        model,
        next_batch,
        lambda m, b: torch.nn.functional.mse_loss(m(b[0]), b[1]),
        lambda m: {"valid_loss": float(torch.nn.functional.mse_loss(m(x), y))},
        lambda m, facts: saved.append({**facts, "weight": m.weight.detach().clone()}),
        settings,
        tmp_path,
        log=lambda line: None,
        **kwargs,
    )
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    return result, log, saved


def test_fit_runs_the_step_budget_validates_on_schedule_and_keeps_the_best(tmp_path: Path) -> None:
    settings = LoopSettings.from_table(TABLE)
    result, log, saved = _fit(tmp_path, settings)
    assert result.steps == 10
    assert [e["step"] for e in log] == [4, 8, 10]  # every eval_every steps, and the last
    assert set(log[0]) == {"step", "minutes", "train_loss", "valid_loss", "lr"}
    losses = [e["valid_loss"] for e in log]
    assert log[-1]["valid_loss"] < log[0]["valid_loss"]  # it learns
    # a checkpoint is written each time validation improves, never when it does not
    improved = [e["step"] for i, e in enumerate(log) if e["valid_loss"] <= min(losses[: i + 1])]
    assert [s["step"] for s in saved] == improved
    assert result.best_step == saved[-1]["step"] and result.best["valid_loss"] == saved[-1]["valid_loss"]


def test_fit_stops_on_the_time_budget_and_still_saves(tmp_path: Path) -> None:
    settings = LoopSettings.from_table(budget(TABLE, max_minutes=1e-9, max_steps=1000))
    result, log, saved = _fit(tmp_path, settings)
    assert result.steps < 1000 and log == []  # no validation was due
    assert len(saved) == 1 and saved[0]["step"] == result.steps  # judged and saved once at the end


def test_fit_judges_and_saves_the_moving_average_when_asked(tmp_path: Path) -> None:
    plain = LoopSettings.from_table({**TABLE, "max_steps": 4}, ema=False)
    averaged = LoopSettings.from_table({**TABLE, "max_steps": 4}, ema=True)
    assert plain.ema_decay is None and averaged.ema_decay == 0.9
    _, _, saved_plain = _fit(tmp_path / "plain", plain)
    _, _, saved_ema = _fit(tmp_path / "ema", averaged)
    # the same training steps; the average lags the weights it follows
    assert not torch.equal(saved_plain[-1]["weight"], saved_ema[-1]["weight"])
    start = _regression()[0].weight.detach()
    lag = (saved_ema[-1]["weight"] - start).norm()
    assert 0 < lag < (saved_plain[-1]["weight"] - start).norm()


def test_fit_logs_the_trainer_metric_and_progress(tmp_path: Path) -> None:
    model, x, y = _regression()
    fit(
        model,
        lambda: (x, y),
        lambda m, b: (torch.nn.functional.mse_loss(m(b[0]), b[1]), (m(b[0]) - b[1]).abs().mean()),
        lambda m: {"valid_l1": float((m(x) - y).abs().mean()), "valid_extra": 1.0},
        lambda m, facts: None,
        LoopSettings.from_table({**TABLE, "max_steps": 4}),
        tmp_path,
        metric="l1",
        progress=lambda step: {"seen": step * 64},
        log=lambda line: None,
    )
    entry = json.loads((tmp_path / "train_log.jsonl").read_text().splitlines()[0])
    assert list(entry) == ["step", "minutes", "seen", "train_l1", "valid_l1", "valid_extra", "lr"]
    assert entry["seen"] == 256


def test_learning_rate_warms_up_then_decays_to_the_floor() -> None:
    s = LoopSettings.from_table(TABLE)
    assert s.learning_rate_at(0, 0) == pytest.approx(0.05)
    assert s.learning_rate_at(1, 0) == pytest.approx(0.1)
    assert s.learning_rate_at(10, 0) == pytest.approx(0.01)
    # whichever budget is further spent sets the progress: half the minutes, half the decay
    assert s.learning_rate_at(2, 2.5) == pytest.approx(0.01 + 0.5 * 0.09 * (1 + math.cos(math.pi * 0.5)))


@pytest.mark.parametrize(
    "change",
    [{"mixed_precision": "fp8"}, {"max_steps": 0}, {"eval_every": 0}, {"max_minutes": 0}],
)
def test_loop_settings_refuse_what_cannot_run(change: dict) -> None:
    with pytest.raises(OptionError):
        LoopSettings.from_table({**TABLE, **change})


def test_to_device_moves_nested_batches() -> None:
    from dataclasses import dataclass

    @dataclass
    class Pair:
        a: torch.Tensor
        b: list

    batch = {"x": torch.zeros(2), "pair": Pair(torch.ones(1), [torch.zeros(1), 3])}
    moved = to_device(batch, torch.device("cpu"))
    assert isinstance(moved["pair"], Pair) and moved["pair"].b[1] == 3
    assert torch.equal(moved["pair"].a, torch.ones(1))


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_with_config_and_noise_schedule(tmp_path: Path) -> None:
    from diffusers import DDPMScheduler

    model = torch.nn.Linear(3, 2)
    schedule = DDPMScheduler(num_train_timesteps=50, beta_schedule="squaredcos_cap_v2", prediction_type="sample")
    save_pretrained(model, tmp_path, {"network": {"inputs": 3, "outputs": 2}, "step": 7}, scheduler=schedule)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors", SCHEDULER_FILE]
    back, config = load_pretrained(
        tmp_path, "a test model", lambda c: torch.nn.Linear(c["network"]["inputs"], c["network"]["outputs"])
    )
    assert config["step"] == 7 and not back.training
    assert torch.equal(back.weight, model.weight)
    loaded = load_scheduler(tmp_path, DDPMScheduler)
    assert torch.equal(loaded.alphas_cumprod, schedule.alphas_cumprod)
    assert loaded.config.prediction_type == "sample"
    assert load_scheduler(tmp_path / "nothing", DDPMScheduler) is None


def test_checkpoint_skips_tied_tensors_and_names_its_files(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    save_pretrained(model, tmp_path, {}, skip=("1.weight",), weights_file="head.safetensors", config_file="head.json")
    state, _ = read_pretrained(tmp_path, "a head", weights_file="head.safetensors", config_file="head.json")
    assert sorted(state) == ["0.bias", "0.weight", "1.bias"]


def test_checkpoint_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a test model"):
        read_pretrained(tmp_path, "a test model")
    save_pretrained(torch.nn.Linear(2, 2), tmp_path, {"kind": "mel-vae"})
    with pytest.raises(InputError, match="'mel-vae' checkpoint, expected 'gmsdi'"):
        read_pretrained(tmp_path, "an audio model checkpoint", kind="gmsdi")
    with pytest.raises(InputError, match="do not match the network"):
        load_pretrained(tmp_path, "a test model", lambda c: torch.nn.Linear(3, 2))
    with pytest.raises(InputError, match="does not describe"):
        load_pretrained(tmp_path, "a test model", lambda c: torch.nn.Linear(c["missing"], 2))
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(InputError, match="cannot read the checkpoint") as info:
        read_pretrained(tmp_path, "a test model")
    assert "\n" not in str(info.value)


def test_a_trained_diffusion_checkpoint_carries_its_noise_schedule(tiny_diffusion: Path) -> None:
    from diffusers import DDPMScheduler

    from midiarr.diffusion.model import load_noise_schedule, noise_schedule

    config = json.loads((tiny_diffusion / "config.json").read_text())
    schedule = load_noise_schedule(tiny_diffusion, {})
    assert isinstance(schedule, DDPMScheduler) and (tiny_diffusion / SCHEDULER_FILE).is_file()
    assert torch.equal(schedule.alphas_cumprod, noise_schedule(config["config"]["schedule"]).alphas_cumprod)
    log = [json.loads(line) for line in (tiny_diffusion / "train_log.jsonl").read_text().splitlines()]
    assert log and {"step", "train_loss", "valid_loss", "lr", "windows_seen"} <= set(log[-1])


def test_the_bundled_diffusion_models_carry_their_noise_schedules() -> None:
    from midiarr.audio import ldm
    from midiarr.diffusion import model
    from midiarr.engines.diffusion import bundled_checkpoint

    weights = bundled_checkpoint().parent
    cases = [(bundled_checkpoint(), model.load_noise_schedule, model.noise_schedule, lambda c: c["schedule"])]
    cases += [
        (weights / name, ldm.load_noise_schedule, ldm.noise_schedule, lambda c: c)
        for name in ("audio-ldm", "audio-gmsdi")
    ]
    for folder, load, build, table in cases:
        config = json.loads((folder / "config.json").read_text())["config"]
        assert (folder / SCHEDULER_FILE).is_file(), folder
        saved = load(folder, table(config))
        assert torch.equal(saved.alphas_cumprod, build(table(config)).alphas_cumprod), folder


@pytest.mark.parametrize("text", ["[1]", '{"config": 5}', '{"config": {"sample": 5}}', "{oops"])
def test_an_engine_refuses_a_damaged_checkpoint_config_in_one_line(tmp_path: Path, text: str) -> None:
    from midiarr.engines.base import engine_settings

    (tmp_path / "config.json").write_text(text)
    with pytest.raises(InputError) as info:
        engine_settings("transformer", checkpoint=tmp_path)
    assert "\n" not in str(info.value) and "config.json" in str(info.value)
