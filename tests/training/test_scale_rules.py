"""The scale study's training: the note's batch and learning-rate rules, Muon's split of a ViT, the
classifier loop (a 2-epoch tiny run on digits beats chance), divergence reported, checkpoints placed."""
from __future__ import annotations

import pytest
import torch

from scaleflow.data.images import load_digits_splits
from scaleflow.evaluation.classification import classification_scores
from scaleflow.nets import create_model
from scaleflow.training.classifier import ClassifierSettings, checkpoint_steps, make_classifier_optimizer, train_classifier
from scaleflow.training.optim import muon_split
from scaleflow.training.scale_rules import batch_size_for, scaled_lr


@pytest.mark.parametrize("params, rows, batch", [
    (2_693_578, 45_000, 4096), (9_999_999, 45_000, 4096), (10_000_000, 45_000, 2048), (25_284_106, 45_000, 2048),
    (50_000_000, 45_000, 1024), (100_899_850, 45_000, 1024), (2_693_578, 1_259, 1_259), (56_800_522, 500, 500)])
def test_batch_size_by_parameter_count_capped_by_the_training_set(params, rows, batch):
    assert batch_size_for(params, rows) == batch


def test_learning_rates_scale_linearly_with_the_batch():
    assert scaled_lr("sgd", 4096) == pytest.approx(0.1)
    assert scaled_lr("adamw", 2048) == pytest.approx(5e-4)
    assert scaled_lr("muon", 1024) == pytest.approx(2.5e-3)
    assert scaled_lr("adamw", 128, reference_batch=128) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="lion"):
        scaled_lr("lion", 128)


@pytest.mark.parametrize("scale", ["tiny", "medium"])
def test_muon_split_covers_every_vit_parameter_once(scale):
    with torch.device("meta"):
        model = create_model("vit", scale)
    muon, adamw = muon_split(model)
    names = [n for n, _ in model.named_parameters()]
    assert sorted(muon + adamw) == sorted(names) and not set(muon) & set(adamw)
    for name in ("cls_token", "pos_embed", "patch_embed.weight", "patch_embed.bias", "head.weight", "head.bias"):
        assert name in adamw, name
    depth = model.config["depth"]
    hidden = {f"blocks.{i}.{part}.weight" for i in range(depth)
              for part in ("attn.q", "attn.k", "attn.v", "attn.out", "mlp.fc_in", "mlp.fc_out")}
    assert set(muon) == hidden  # every hidden matrix, nothing else


def _settings(optimizer="adamw", **kw):
    base = {"epochs": 2, "batch_size": 128, "lr": {"sgd": 0.1, "adamw": 1e-3, "muon": 1e-2}[optimizer], "aux_lr": 1e-3,
            "weight_decay": 0.05, "seed": 0}
    return ClassifierSettings(optimizer, **{**base, **kw})


def test_parameter_groups_record_their_rates():
    model = create_model("vit", "tiny", image_size=8, patch_size=4, channels=1)
    _, groups = make_classifier_optimizer(model, _settings("muon", lr=0.02, aux_lr=0.003))
    assert [g["group"] for g in groups] == ["muon hidden matrices", "adamw other matrices", "adamw vectors"]
    assert [g["lr"] for g in groups] == [0.02, 0.003, 0.003]
    assert groups[0]["lr_by_shape"] == {"192x192": 0.02, "192x768": 0.02, "768x192": pytest.approx(0.04)}  # x max(1, r/c)^0.5
    assert sum(g["values"] for g in groups) == sum(p.numel() for p in model.parameters())
    _, sgd = make_classifier_optimizer(model, _settings("sgd", weight_decay=5e-4))
    assert [(g["lr"], g["weight_decay"]) for g in sgd] == [(0.1, 5e-4), (0.1, 0.0)]


def test_two_epochs_of_tiny_on_digits_beat_chance():
    data = load_digits_splits(seed=0)
    torch.manual_seed(0)
    model = create_model("vit", "tiny", image_size=8, patch_size=4, channels=1, num_classes=10)
    seen = []
    history = train_classifier(model, data, _settings(), torch.device("cpu"), analyse_at=[10, 20],
                               analyse=lambda step: seen.append(step) or {"columns": {}})
    assert history["steps"] == 20 and history["steps_per_epoch"] == 10 and not history["diverged"]
    assert seen == [10, 20] and [c["epoch"] for c in history["checkpoints"]] == [1.0, 2.0]
    assert history["epoch_train_loss"][1] < history["epoch_train_loss"][0]
    assert classification_scores(model, *data.test)["accuracy"] > 0.5  # chance: 0.1


def test_divergence_is_reported_not_raised():
    data = load_digits_splits(seed=0)
    torch.manual_seed(0)
    model = create_model("vit", "tiny", image_size=8, patch_size=4, channels=1)
    history = train_classifier(model, data, _settings("sgd", lr=1e6, grad_clip=0.0, warmup_fraction=0.0),
                               torch.device("cpu"))
    assert history["diverged"] and history["diverged_at_step"] is not None
    assert history["steps"] == history["diverged_at_step"] < 20


def test_checkpoints_are_evenly_spaced_and_end_at_the_end():
    assert checkpoint_steps(150, 5) == [30, 60, 90, 120, 150]
    assert checkpoint_steps(3, 5) == [1, 2, 3]
    assert checkpoint_steps(100, 0) == []


def test_a_stopped_training_resumes_to_the_same_weights():
    import signal

    from scaleflow.training.signals import StopRequest, TrainingInterrupted

    data = load_digits_splits(seed=0)
    settings = _settings("muon", batch_size=256)  # 5 steps per epoch, 10 in all; Muon + AdamW states

    def fresh():
        torch.manual_seed(0)
        return create_model("vit", "tiny", image_size=8, patch_size=4, channels=1)

    whole = fresh()
    expected = train_classifier(whole, data, settings, torch.device("cpu"), analyse_at=[7],
                                analyse=lambda step: {"columns": {"step": step}})
    saved, stop = [], StopRequest()

    def analyse(step):  # a SIGTERM arrives during step 7's analysis, mid-epoch
        stop.signum = signal.SIGTERM
        return {"columns": {"step": step}}

    first = fresh()
    with pytest.raises(TrainingInterrupted, match="SIGTERM received: stopped at step 7 of 10"):
        train_classifier(first, data, settings, torch.device("cpu"), analyse_at=[7], analyse=analyse,
                         save_state=saved.append, save_every=1e9, stop=stop)
    (state,) = saved
    assert (state["step"], state["epoch"], state["batch"]) == (7, 1, 2)
    second = fresh()  # a new process: new weights, the state brings the trained ones
    resumed = train_classifier(second, data, settings, torch.device("cpu"), analyse_at=[7],
                               analyse=lambda step: {"columns": {"step": step}}, state=state)
    assert resumed["resumed_at_step"] == 7 and resumed["steps"] == 10
    assert resumed["epoch_train_loss"] == expected["epoch_train_loss"]
    assert resumed["checkpoints"] == expected["checkpoints"]
    for (name, a), (_, b) in zip(whole.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
