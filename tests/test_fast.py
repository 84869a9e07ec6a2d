"""The fast-path switches: optimiser kernels, channels-last, torch.compile and its fallback, CUDA graphs off-GPU."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch
from conftest import cli

import kaizen
from kaizen.training import fast
from kaizen.training.optim import build_optimizer

SMALL_CNN = ["model.preset=simple_cnn", "model.norm=batch"]


def final_weights(run: kaizen.Run) -> dict[str, torch.Tensor]:
    return torch.load(run.path / "checkpoints" / "last.pt", weights_only=True)["model"]


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adagrad", "adam", "adamw"])
def test_optimizer_kernels_compute_the_same_update(name):
    """Five steps on the same gradients: fused, foreach and per-tensor move the weights alike."""
    torch.manual_seed(0)
    template = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    cfg = kaizen.Config().override([f"optim.name={name}", "optim.lr=0.05", "optim.weight_decay=0.01"]).optim
    weights = {}
    for kernel in ("auto", "foreach", "per_tensor"):
        model = copy.deepcopy(template)
        optimizer = build_optimizer(model, cfg.model_copy(update={"kernel": kernel}))
        for _ in range(5):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        weights[kernel] = model.state_dict()
    for kernel in ("foreach", "per_tensor"):
        for key, weight in weights["auto"].items():
            torch.testing.assert_close(
                weights[kernel][key], weight, atol=1e-6, rtol=1e-5, msg=f"{kernel} {key}"
            )
    assert not torch.equal(weights["auto"]["0.weight"], template.state_dict()["0.weight"])  # it did train


@pytest.mark.skipif(
    "fused" in inspect.signature(torch.optim.RMSprop.__init__).parameters,
    reason="this torch has a fused RMSprop",
)
def test_fused_kernel_where_torch_has_none_is_one_line(monkeypatch, capsys, tmp_path):
    code, out, err = cli(
        monkeypatch,
        capsys,
        "train",
        "--quiet",
        "--set", "model.preset=mlp", "--set", "model.hidden=[8]", "--set", "train.epochs=1",
        "--set", f"log.runs_dir={tmp_path}", "--set", "optim.name=rmsprop", "--set", "optim.kernel=fused",
    )  # fmt: skip
    assert code == 2
    assert err.count("\n") == 1 and "optim.kernel = 'fused' is not available for rmsprop" in err
    assert not any(tmp_path.iterdir())  # nothing was created


def test_channels_last_trains_the_same_network(make_config):
    plain = kaizen.train(make_config(*SMALL_CNN, "train.channels_last=false"))
    model, _ = plain.model()
    last = kaizen.train(make_config(*SMALL_CNN, "train.channels_last=true"))
    model_cl, _ = last.model()  # its checkpoint loads into a plain (contiguous) model
    assert model_cl.state_dict().keys() == model.state_dict().keys()
    assert last.summary["speed"]["channels_last"] and not plain.summary["speed"]["channels_last"]
    # the same seeded run; only the convolution kernels' summation order differs
    assert abs(last.summary["test"]["loss"] - plain.summary["test"]["loss"]) < 1e-3
    assert abs(last.summary["test"]["acc"] - plain.summary["test"]["acc"]) <= 2 / last.summary["test"]["n"]


def test_prepare_puts_conv_weights_in_channels_last():
    cfg = kaizen.Config().override(["train.channels_last=true"]).train
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
    forward = fast.prepare(conv, cfg, torch.device("cpu"), say=pytest.fail)
    assert conv[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv[0].weight.is_contiguous()
    assert forward is conv  # no compilation asked for: the module itself runs the step
    mlp = torch.nn.Linear(4, 2)
    fast.prepare(mlp, cfg, torch.device("cpu"), say=pytest.fail)  # no conv: nothing to convert
    assert mlp.weight.is_contiguous()


@pytest.mark.skipif(fast.compile_unavailable(torch.device("cpu")) is not None, reason="no torch.compile here")
def test_compile_trains_and_saves_plain_weights(make_config):
    plain = kaizen.train(make_config("train.epochs=1"))
    compiled = kaizen.train(make_config("train.epochs=1", "train.compile=true"))
    weights = final_weights(compiled)
    assert not any("_orig_mod" in key for key in weights)  # checkpoints never carry the compile wrapper
    assert compiled.summary["speed"]["compile"] and not plain.summary["speed"]["compile"]
    assert weights.keys() == final_weights(plain).keys()
    # the same seeded run; fused kernels round differently, so the two runs drift apart only slightly
    assert abs(compiled.summary["test"]["acc"] - plain.summary["test"]["acc"]) < 0.03
    assert abs(compiled.summary["test"]["loss"] - plain.summary["test"]["loss"]) < 0.05


def test_compile_falls_back_with_one_line_where_unavailable(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(fast, "compile_unavailable", lambda device: "torch.compile needs a C++ compiler")
    code, out, err = cli(
        monkeypatch,
        capsys,
        "train",
        "--set", "model.preset=mlp", "--set", "model.hidden=[8]", "--set", "train.epochs=1",
        "--set", f"log.runs_dir={tmp_path}", "--set", "train.compile=true",
    )  # fmt: skip
    assert code == 0
    assert "train.compile: torch.compile needs a C++ compiler; training without compilation" in err
    (run_dir,) = tmp_path.iterdir()
    assert kaizen.load_run(run_dir).summary["speed"]["compile"] is False  # the record says what really ran


def test_cuda_graphs_off_cuda_say_so(make_config):
    lines = []
    fast.prepare(
        torch.nn.Linear(2, 2), make_config("train.cuda_graphs=true").train, torch.device("cpu"), lines.append
    )
    assert lines == ["train.cuda_graphs applies only on CUDA; training without CUDA graphs"]


@pytest.mark.parametrize("native", [True, False])
def test_bf16_auto_is_on_only_for_big_models_on_bf16_hardware(monkeypatch, native):
    monkeypatch.setattr(fast, "native_bf16", lambda device: native)
    auto = kaizen.Config().train
    assert auto.bf16 == "auto"  # the default
    cpu = torch.device("cpu")
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 64, 3, padding=1), torch.nn.Conv2d(64, 64, 3, padding=1))
    big = torch.nn.Sequential(*conv, torch.nn.Flatten(), torch.nn.Linear(64 * 64, 10))  # 2.4M MACs
    small = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))  # 640 MACs
    assert fast.use_bf16(auto, big, (1, 8, 8), cpu) is native
    assert fast.use_bf16(auto, small, (1, 8, 8), cpu) is False
    # true and false are obeyed whatever the hardware
    assert fast.use_bf16(auto.model_copy(update={"bf16": True}), small, (1, 8, 8), cpu) is True
    assert fast.use_bf16(auto.model_copy(update={"bf16": False}), big, (1, 8, 8), cpu) is False


def test_the_run_records_the_precision_it_trained_in(make_config):
    assert kaizen.train(make_config("train.epochs=1", "train.bf16=true")).summary["speed"]["bf16"] is True
    assert kaizen.train(make_config("train.epochs=1")).summary["speed"]["bf16"] is False  # auto: a tiny MLP


def test_host_reads_do_not_grow_with_the_steps_of_an_epoch(monkeypatch, make_config):
    """The step never waits on the host: reads of tensor values happen per logging point, not per step."""
    reads = {"count": 0}
    for method in ("item", "tolist", "__bool__", "numpy", "cpu", "__float__", "__int__"):
        original = getattr(torch.Tensor, method)

        def counted(self, *args, _original=original, **kwargs):
            reads["count"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counted)

    def host_reads(batch_size: int) -> int:
        reads["count"] = 0
        kaizen.train(make_config("train.epochs=1", f"train.batch_size={batch_size}", "log.stats=false"))
        return reads["count"]

    few, many = host_reads(128), host_reads(8)  # 9 and 144 steps in the epoch
    assert many - few <= 2, (few, many)  # 10 logging points either way (plus a partial-batch difference)
