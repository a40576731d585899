"""EfficientNet-Lite0 and -Lite2 with their real ImageNet weights imported without torch; the starter model, the
previous default, kept as the speed reference of `make bench` and rebuilt byte for byte."""

from __future__ import annotations

import hashlib
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest

from lambda_function.datapath.inference import Classifier
from lambda_function.datapath.model_contract import load_sidecar
from lambda_function.datapath.preprocessing import DecodeLimits, prepare_image
from tests.conftest import CAT_PHOTOS, DOG_PHOTOS, REPO_DIR
from training.starter_head import STARTER_LABELS, StarterHead
from training.torch_checkpoint import CheckpointError, load_legacy_state_dict

COMMITTED = REPO_DIR / "models" / "starter.tflite"
LIMITS = DecodeLimits(max_pixels=50_000_000)


@pytest.fixture(scope="module")
def lite0_state() -> dict[str, np.ndarray]:
    from training.efficientnet_lite import VARIANTS

    return load_legacy_state_dict(VARIANTS["lite0"].checkpoint_path())


def test_checkpoint_is_read_without_torch(lite0_state):
    assert len(lite0_state) == 296
    assert (
        sum(v.size for k, v in lite0_state.items() if not k.endswith("num_batches_tracked")) == 4_694_024
    )  # 4.69 M parameters, as the package states
    assert lite0_state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert lite0_state["_fc.weight"].shape == (1000, 1280)


def test_checkpoint_reader_refuses_code_in_the_pickle(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    hostile = tmp_path / "hostile.pth"
    hostile.write_bytes(
        pickle.dumps(0x1950A86A20F9469CFC6C) + pickle.dumps(1001) + pickle.dumps({}) + pickle.dumps(Exploit())
    )

    with pytest.raises(CheckpointError, match=r"builtins\.print"):
        load_legacy_state_dict(hostile)


def test_checkpoint_reader_refuses_other_files(tmp_path):
    other = tmp_path / "zip.pth"
    other.write_bytes(b"PK\x03\x04 not a legacy checkpoint")

    with pytest.raises(CheckpointError):
        load_legacy_state_dict(other)


@pytest.mark.parametrize("variant", ["lite0", "lite2"])
def test_importer_fills_every_layer_and_imagenet_recognises_the_cats(variant):
    from training.efficientnet_lite import VARIANTS, pretrained_lite

    model = pretrained_lite(variant)  # raises if a tensor is missing, unused or of the wrong shape
    size_px = VARIANTS[variant].native_input_px
    cats = np.stack([prepare_image(p.read_bytes(), (size_px, size_px), LIMITS) for p in CAT_PHOTOS])
    logits = model.predict(cats.astype(np.float32), verbose=0)

    top1 = logits.argmax(axis=1)
    assert model.input_shape == (None, size_px, size_px, 3)
    assert np.mean((top1 >= 281) & (top1 <= 285)) >= 0.8  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_importer_refuses_a_checkpoint_that_does_not_fit(lite0_state):
    from training.efficientnet_lite import build_lite, import_pytorch_weights

    incomplete = {k: v for k, v in lite0_state.items() if not k.startswith("_blocks.3.")}
    with pytest.raises(ValueError, match=r"lacks _blocks\.3\."):
        import_pytorch_weights(build_lite("lite0"), incomplete)
    with pytest.raises(ValueError):  # Lite0's weights in Lite2's shapes
        import_pytorch_weights(build_lite("lite2"), lite0_state)


def test_head_outputs_probabilities_over_the_six_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=1, size=(16, 1000)).astype(np.float32)
    logits[:8, 283] += 12  # half of them very sure of "Persian cat"

    output = np.asarray(StarterHead(cat_weight=1.7, cat_bias=6.2)(logits))

    assert output.shape == (16, 6)
    assert np.allclose(output.sum(axis=1), 1, atol=1e-5)
    assert (output[:8].argmax(axis=1) == STARTER_LABELS.index("Persian")).all()
    assert (output[8:].argmax(axis=1) == STARTER_LABELS.index("No cat")).all()


@pytest.fixture(scope="module")
def starter() -> Classifier:
    return Classifier(COMMITTED, num_threads=2)


def test_starter_sidecar_says_what_it_is(starter):
    card = starter.card

    assert card.labels == STARTER_LABELS
    assert "covers 5 of the 67 breeds" in card.provenance["scope"]
    assert "replaced by a model trained" in card.provenance["scope"]
    assert card.provenance["conversion"]["parity"]["top1_agreement"] == 1.0
    assert card.provenance["conversion"]["parity"]["images"] == len(CAT_PHOTOS) + len(DOG_PHOTOS)


def test_starter_classifies_the_shared_photos_as_promised(starter):
    def top2(path: Path) -> list[str]:
        probabilities = starter.probabilities(prepare_image(path.read_bytes(), starter.input_size_px, LIMITS))
        return [STARTER_LABELS[i] for i in np.argsort(-probabilities)[:2]]

    cats = {p.name: top2(p) for p in CAT_PHOTOS}
    dogs = [top2(p)[0] for p in DOG_PHOTOS]

    assert np.mean([answer[0] != "No cat" for answer in cats.values()]) >= 0.9
    assert np.mean([answer == "No cat" for answer in dogs]) >= 0.9
    for breed in ("Persian", "Siamese"):
        own = [answer for name, answer in cats.items() if name.startswith(f"{breed}_")]
        assert sum(breed in answer for answer in own) > len(own) / 2


def test_committed_starter_is_exactly_what_the_builder_makes(tmp_path):
    from conversion.starter_model import build

    rebuilt = tmp_path / "starter.tflite"
    build(rebuilt, REPO_DIR.parent / "shared" / "photos")

    # Byte for byte on the machine that built it; elsewhere the converter's folding of BatchNorm into the
    # convolutions can round differently (measured: at most 1e-3 on one CPU, on weights of magnitude about 1), so
    # the check is every tensor's name, shape and values within float rounding.
    if hashlib.sha256(rebuilt.read_bytes()).digest() != hashlib.sha256(COMMITTED.read_bytes()).digest():
        fresh_tensors, committed_tensors = _constant_tensors(rebuilt), _constant_tensors(COMMITTED)
        assert fresh_tensors.keys() == committed_tensors.keys()
        for name, values in committed_tensors.items():
            assert fresh_tensors[name].shape == values.shape, name
            scale = max(1.0, float(np.abs(values).max()))
            assert np.abs(fresh_tensors[name] - values).max() <= 2e-3 * scale, name
    committed, fresh = load_sidecar(COMMITTED), load_sidecar(rebuilt)
    # The fitted calibration can differ in its 7th digit between CPUs (oneDNN kernels with or without AVX-512).
    fresh_figures, committed_figures = fresh.metrics["shared_photos"], committed.metrics["shared_photos"]
    fitted, expected = fresh_figures.pop("calibration"), committed_figures.pop("calibration")
    assert fresh_figures == committed_figures
    assert fitted == pytest.approx(expected, abs=1e-5)


def _constant_tensors(model: Path) -> dict[str, np.ndarray]:
    """The model's weights by tensor name, as float64 (tensors without data, the activations, are left out)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model))
    tensors = {}
    for detail in interpreter.get_tensor_details():
        try:
            tensors[detail["name"]] = interpreter.get_tensor(detail["index"]).astype(np.float64)
        except ValueError:  # no data: an activation, filled only when the model runs
            continue
    return tensors


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("efficientnet_lite_pytorch") is None,
    reason="optional: `make verify-lite0` installs torch==2.13.0 and efficientnet-lite-pytorch",
)
def test_keras_lite0_gives_the_pytorch_logits(lite0_state):
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    from training.efficientnet_lite import INPUT_NORMALISATION, VARIANTS, build_lite, import_pytorch_weights

    checkpoint = str(VARIANTS["lite0"].checkpoint_path())
    reference = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=checkpoint).eval()
    keras_model = build_lite("lite0")
    import_pytorch_weights(keras_model, lite0_state)
    pixels = np.stack([prepare_image(p.read_bytes(), (224, 224), LIMITS) for p in CAT_PHOTOS[:8] + DOG_PHOTOS[:8]])
    normalised = (pixels.astype(np.float32) - np.array(INPUT_NORMALISATION["mean"])) / np.array(
        INPUT_NORMALISATION["std"]
    )
    with torch.no_grad():
        torch_logits = reference(torch.from_numpy(normalised.transpose(0, 3, 1, 2).astype(np.float32))).numpy()
    keras_logits = keras_model.predict(pixels.astype(np.float32), verbose=0)

    print(f"largest logit difference Keras vs PyTorch: {np.abs(keras_logits - torch_logits).max():.2e}")
    assert np.abs(keras_logits - torch_logits).max() < 1e-3
    assert (keras_logits.argmax(axis=1) == torch_logits.argmax(axis=1)).all()
