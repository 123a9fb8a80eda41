"""``fral run`` on a user's data set file and on the paper's data sets (presets, --data-dir)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import fral.cli
from fral.cli import main
from fral.datasets import DATASETS, FairDataset
from fral.presets import PAPER_PRESETS
from fral.training import PRESETS
from tests.utils import ONE_EPOCH_RUN

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = [
    "--strategy",
    "RAND",
    *ONE_EPOCH_RUN,
    "--attack-steps",
    "1",
    "--batch-size",
    "32",
    "--no-progress",
]


def write_tabular(path, **extra) -> None:
    rng = np.random.default_rng(0)
    y = np.arange(160) % 2
    x = rng.normal(size=(160, 4)) + y[:, None]
    np.savez(path, x=x, y=y, group=(np.arange(160) // 2) % 2, **extra)


def write_images(path, **extra) -> None:
    rng = np.random.default_rng(1)
    y = np.arange(160) % 2
    x = rng.integers(0, 128, size=(160, 3, 8, 8), dtype=np.uint8) + 100 * y[:, None, None, None]
    np.savez(path, x=x.astype(np.uint8), y=y, group=(np.arange(160) // 2) % 2, **extra)


def run_settings(out) -> dict:
    return json.loads((out / "seed0" / "RAND" / "settings.json").read_text())


def sources(out) -> dict:
    return json.loads((out / "settings.json").read_text())["options"]


def test_a_tabular_file_runs_end_to_end_with_its_own_threat_model(tmp_path, capsys) -> None:
    data = tmp_path / "loans.npz"
    write_tabular(data, eps=0.3, bounds=[np.nan, np.nan], group_names=np.array(["a", "b"]))
    out = tmp_path / "out"
    assert main(["run", "--dataset", str(data), *TINY, "--out", str(out)]) == 0
    settings = run_settings(out)
    assert settings["dataset"] == "loans"
    for phase in ("train", "finetune", "standard"):
        assert settings[phase]["eps"] == 0.3 and settings[phase]["alpha"] == 0.15
        assert settings[phase]["bounds"] is None
    recorded = sources(out)
    assert recorded["eps"] == {"value": 0.3, "from": "data set"}
    assert recorded["bounds"] == {"value": None, "from": "data set"}
    assert recorded["model"] == {"value": "mlp", "from": "default"}
    assert recorded["metric"] == {"value": "accuracy", "from": "data set"}
    assert recorded["epochs"] == {"value": 1, "from": "command line"}
    assert json.loads((out / "results.json").read_text())[0]["strategy"] == "RAND"


def test_an_image_file_runs_end_to_end_with_its_own_threat_model(tmp_path, capsys) -> None:
    data = tmp_path / "faces.npz"
    write_images(data, eps=8 / 255, class_names=np.array(["cat", "dog"]))
    out = tmp_path / "out"
    assert main(["run", "--dataset", str(data), *TINY, "--out", str(out)]) == 0
    settings = run_settings(out)
    assert settings["dataset"] == "faces" and settings["model"] == "SmallCNN"
    for phase in ("train", "finetune", "standard"):
        assert settings[phase]["eps"] == pytest.approx(8 / 255)
        assert settings[phase]["alpha"] == pytest.approx(4 / 255)
        assert settings[phase]["bounds"] == [0.0, 1.0]
    assert sources(out)["eps"] == {"value": pytest.approx(8 / 255), "from": "data set"}


def test_a_threat_model_on_the_command_line_wins_and_is_recorded(captured, tmp_path, capsys):
    data = tmp_path / "faces.npz"
    write_images(data, eps=8 / 255, alpha=0.003)
    out = tmp_path / "out"
    argv = ["run", "--dataset", str(data), "--out", str(out), "--eps", "0.02"]
    assert main([*argv, "--bounds", "none"]) == 0
    dataset, configs = captured["dataset"], captured["configs"]
    assert (dataset.eps, dataset.alpha, dataset.bounds) == (0.02, 0.01, None)
    assert (configs["train"].eps, configs["train"].alpha, configs["train"].bounds) == (
        0.02,
        0.01,
        None,
    )
    recorded = sources(out)
    assert recorded["eps"] == {"value": 0.02, "from": "command line"}
    assert recorded["alpha"] == {"value": 0.01, "from": "eps / 2"}
    assert recorded["bounds"] == {"value": None, "from": "command line"}
    printed = capsys.readouterr().out
    assert "  command line: eps 0.02, bounds None\n" in printed
    assert "  eps / 2: alpha 0.01\n" in printed


def test_a_malformed_file_is_one_line_naming_it_and_leaves_no_run(tmp_path, capsys) -> None:
    data = tmp_path / "broken.npz"
    write_tabular(data)  # no bounds: [0, 1], which the features leave
    out = tmp_path / "out"
    argv = ["run", "--dataset", str(data), *TINY, "--rounds", "0", "--out", str(out)]
    assert main(argv) == 1
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"fral: error: {data}: x lies in") and "\n" not in line
    assert "bounds=[nan, nan] for unbounded features" in line
    write_tabular(data, bounds=[np.nan, np.nan])
    assert main(argv) == 0  # no --resume needed: the failed command recorded nothing


def fake_loader(name: str, calls: list):
    """A stand-in for a paper data set's loader (keyword data_dir, required)."""

    def load(*, data_dir, seed=0, validation_fraction=0.1, test_fraction=0.3) -> FairDataset:
        calls.append({"data_dir": data_dir, "seed": seed})
        rng = np.random.default_rng(seed)
        y = np.arange(200) % 2
        return FairDataset.from_arrays(
            rng.integers(0, 256, size=(200, 3, 8, 8), dtype=np.uint8),
            y,
            (np.arange(200) // 2) % 2,
            name=name,
            seed=seed,
            metric="f1" if name == "ham10000" else "accuracy",
            oversample=name == "ham10000",
        )

    return load


@pytest.fixture
def captured(monkeypatch) -> dict:
    """``fral run`` up to its training: the data set, options and configs it would train with."""
    captured: dict = {}

    def compare(dataset, strategies, seeds, args, out, sources=None):
        captured.update(
            dataset=dataset, args=args, configs=fral.cli._configs(args, dataset, sources)
        )
        return []

    monkeypatch.setattr(fral.cli, "_compare", compare)
    monkeypatch.setattr(fral.cli, "_write_outputs", lambda *a: None)
    return captured


@pytest.fixture
def paper_data(monkeypatch, captured):
    """utkface and ham10000 registered with fake loaders; the run itself is captured."""
    calls: list = []
    for name in ("utkface", "ham10000"):
        monkeypatch.setitem(DATASETS, name, fake_loader(name, calls))
    return calls, captured


def test_the_paper_preset_applies_to_its_data_set(paper_data, tmp_path, capsys) -> None:
    calls, captured = paper_data
    out = tmp_path / "out"
    argv = ["run", "--dataset", "utkface", "--data-dir", str(tmp_path), "--out", str(out)]
    assert main(argv) == 0
    assert calls == [{"data_dir": str(tmp_path), "seed": 0}]
    args, configs = captured["args"], captured["configs"]
    assert (args.model, args.width, args.rounds, args.standard_mode) == (
        "mobilenetv2",
        1.0,
        5,
        "scratch",
    )
    assert (args.initial_fraction, args.budget_fraction, args.attack_steps) == (0.2, 0.02, 5)
    paper = PRESETS["utkface"]
    for phase in ("train", "finetune", "standard"):
        config = configs[phase]
        assert (config.epochs, config.lr, config.warmup_epochs, config.batch_size) == (
            70,
            0.1,
            10,
            32,
        )
        assert (config.momentum, config.weight_decay) == (0.9, 2e-4)
        assert (config.eps, config.alpha, config.bounds) == (paper.eps, paper.alpha, (0, 1))
    assert configs["train"].adversarial and not configs["standard"].adversarial
    recorded = sources(out)
    assert recorded["lr"] == {"value": 0.1, "from": "preset utkface"}
    assert recorded["metric"] == {"value": "accuracy", "from": "preset utkface"}
    assert "  preset utkface: rounds 5, " in capsys.readouterr().out


def test_flags_override_the_preset_and_a_shorter_phase_shrinks_its_warmup(
    paper_data, tmp_path
) -> None:
    _, captured = paper_data
    out = tmp_path / "out"
    argv = ["run", "--dataset", "ham10000", "--data-dir", str(tmp_path), "--out", str(out)]
    assert main([*argv, "--epochs", "7", "--lr", "0.05", "--no-oversample"]) == 0
    args, configs = captured["args"], captured["configs"]
    assert (configs["train"].epochs, configs["train"].lr) == (7, 0.05)
    assert configs["train"].warmup_epochs == pytest.approx(5 * 7 / 50)
    assert (configs["finetune"].epochs, configs["finetune"].lr) == (50, 0.02)
    assert configs["finetune"].warmup_epochs == 5
    assert not any(config.oversample for config in configs.values())
    assert args.metric == "f1"  # HAM-10000's macro-F1
    recorded = sources(out)
    assert recorded["epochs"]["from"] == "command line"
    assert recorded["oversample"] == {"value": False, "from": "command line"}
    assert recorded["finetune_lr"] == {"value": 0.02, "from": "preset ham10000"}


def test_ham10000_preset_oversamples(paper_data, tmp_path) -> None:
    _, captured = paper_data
    argv = ["run", "--dataset", "ham10000", "--data-dir", str(tmp_path), "--out", str(tmp_path)]
    assert main(argv) == 0
    assert all(config.oversample for config in captured["configs"].values())
    assert captured["configs"]["train"].lr == 0.02 and captured["args"].metric == "f1"


def test_a_warmup_longer_than_a_phase_is_refused_naming_both(paper_data, tmp_path, capsys):
    argv = ["run", "--dataset", "utkface", "--data-dir", str(tmp_path), "--out", str(tmp_path)]
    assert main([*argv, "--warmup-epochs", "20", "--finetune-epochs", "10"]) == 1
    line = capsys.readouterr().err.strip()
    assert "--warmup-epochs 20 is longer than --finetune-epochs 10" in line
    assert not (tmp_path / "command.json").exists()


def test_every_preset_is_the_supplementary_s() -> None:
    table = {"utkface": (0.1, 70, 10, 32), "cinic10": (0.1, 100, 10, 64)}
    table["ham10000"] = (0.02, 50, 5, 32)
    for name, (lr, epochs, warmup, batch) in table.items():
        options = PAPER_PRESETS[name].options()
        assert (options["lr"], options["epochs"], options["warmup_epochs"]) == (lr, epochs, warmup)
        assert (options["batch_size"], options["momentum"], options["weight_decay"]) == (
            batch,
            0.9,
            2e-4,
        )
        assert options["finetune_epochs"] == options["standard_epochs"] == epochs
        assert options["eps"] == pytest.approx(4 / 255) and options["alpha"] == pytest.approx(
            2 / 255
        )
        assert options["model"] == "mobilenetv2" and options["width"] == 1.0
        assert options["oversample"] == (name == "ham10000")
        assert options["metric"] == ("f1" if name == "ham10000" else "accuracy")


@pytest.mark.parametrize(
    ("dataset", "data_dir", "needle"),
    [
        ("utkface", None, "utkface is read from a local copy (fral never downloads it): give "),
        ("digits_domains", "somewhere", "digits_domains comes with fral: drop --data-dir"),
        ("FILE", "somewhere", "holds its data itself: drop --data-dir"),
    ],
)
def test_data_dir_errors(paper_data, tmp_path, capsys, dataset, data_dir, needle) -> None:
    if dataset == "FILE":
        dataset = str(tmp_path / "mine.npz")
        write_tabular(dataset)
    out = tmp_path / "out"
    argv = ["run", "--dataset", dataset, "--out", str(out)]
    assert main(argv + (["--data-dir", data_dir] if data_dir else [])) == 1
    line = capsys.readouterr().err.strip()
    assert needle in line and "\n" not in line
    if dataset == "utkface":
        assert "age_gender_race_datetime.jpg" in line and "docs/paper-datasets.md" in line
    assert not (out / "command.json").exists()


def test_a_paper_data_set_trains_with_its_preset_where_no_flag_overrides(
    monkeypatch, tmp_path
) -> None:
    monkeypatch.setitem(DATASETS, "utkface", fake_loader("utkface", []))
    out = tmp_path / "out"
    argv = ["run", "--dataset", "utkface", "--data-dir", str(tmp_path), *TINY]
    assert main([*argv, "--model", "smallcnn", "--out", str(out)]) == 0
    settings = run_settings(out)
    assert settings["standard_mode"] == "scratch" and settings["attack_steps"] == 1
    for phase in ("train", "finetune", "standard"):
        assert settings[phase]["lr"] == 0.1 and settings[phase]["epochs"] == 1
        assert settings[phase]["warmup_epochs"] == pytest.approx(10 / 70)
        assert settings[phase]["weight_decay"] == 2e-4 and settings[phase]["momentum"] == 0.9


def test_model_resnet18_reaches_the_run(captured, tmp_path) -> None:
    data = tmp_path / "faces.npz"
    write_images(data)
    out = tmp_path / "out"
    assert main(["run", "--dataset", str(data), "--model", "resnet18", "--out", str(out)]) == 0
    args = captured["args"]
    model = fral.cli.default_model_fn(captured["dataset"], args.model, width=args.width)()
    assert type(model).__name__ == "ResNet18" and model.stem == "cifar"
    assert sources(out)["model"] == {"value": "resnet18", "from": "command line"}


def test_utkface_from_a_local_folder_runs_with_its_preset(tmp_path, monkeypatch) -> None:
    """The real UTKFace loader on a tiny folder of real JPEGs named as UTKFace names them."""
    from PIL import Image

    folder = tmp_path / "UTKFace"
    folder.mkdir()
    for number in range(120):
        race, age = number % 4, (20 if number % 8 < 4 else 40)
        colour = (race * 60, 200 if age >= 30 else 40, number)
        name = f"{age}_{number % 2}_{race}_{20170116174525125 + number}.jpg.chip.jpg"
        Image.new("RGB", (10, 10), colour).save(folder / name, quality=95)
    monkeypatch.setenv("FRAL_DATA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    argv = ["run", "--dataset", "utkface", "--data-dir", str(folder), *TINY, "--limit", "40"]
    assert main([*argv, "--model", "smallcnn", "--out", str(out)]) == 0
    settings = run_settings(out)
    assert settings["dataset"] == "utkface" and settings["standard_mode"] == "scratch"
    assert settings["train"]["lr"] == 0.1 and settings["train"]["eps"] == pytest.approx(4 / 255)
    recorded = json.loads((out / "settings.json").read_text())
    assert recorded["data_dir"] == str(folder)
    assert recorded["options"]["lr"] == {"value": 0.1, "from": "preset utkface"}
