"""What a model and predict/evaluate take as images: a batch of at least one image in the model's dtype.

An empty batch is a ValueError (not an empty output); images of another dtype than the model's are a
TypeError naming both, as torch's "expected ... Float but found Double", never a silent float64
forward pass of a float32 model. predict normalises uint8 images itself, into the model's dtype."""
import numpy as np
import pytest

import minit2t as mt
from minit2t import evaluation
from minit2t.reduction import reduce_tokens

TINY = dict(embed_dim=16, depth=1, num_heads=2, token_dim=4)
CIFAR_MODELS = [n for n in mt.list_models() if "cifar" in n]      # every T2T module kind and attention


def _images(n, dtype=np.float32):
    return np.random.default_rng(0).standard_normal((n, 3, 32, 32)).astype(dtype)   # (B, 3, H, W)


def _one_line(info, *words):
    msg = str(info.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_every_kind_of_t2t_module_is_covered():
    kinds = {mt.create_model(n, **TINY).tokens_to_token.tokens_type for n in CIFAR_MODELS}
    assert kinds == {"transformer", "performer", "convolution", "hard"}


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_an_empty_batch_is_a_value_error(name):
    model = mt.create_model(name, **TINY).eval()
    assert model(mt.tensor(_images(1))).shape == (1, 10)
    with pytest.raises(ValueError) as info:
        model(mt.tensor(_images(0)))
    _one_line(info, "a batch needs at least one image", "(0, 3, 32, 32)")


def test_an_empty_batch_into_a_reduced_model_is_the_same_error():
    model = reduce_tokens(mt.create_model("t2t_vit_cifar", **dict(TINY, depth=2)), "tome:r=4").eval()
    with pytest.raises(ValueError) as info:
        model(mt.tensor(_images(0)))
    _one_line(info, "a batch needs at least one image")


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_float64_images_into_a_float32_model_are_a_type_error(name):
    model = mt.create_model(name, **TINY).eval()
    with pytest.raises(TypeError) as info:
        model(mt.tensor(_images(2, np.float64)))
    _one_line(info, "model is float32", "images are float64", "x.astype(np.float32)", "model.to(np.float64)")


def test_the_dtype_must_be_the_models_either_way():
    model = mt.create_model("t2t_vit_cifar", **TINY).eval()
    want = model(mt.tensor(_images(2))).data
    model.to(np.float64)
    with pytest.raises(TypeError) as info:
        model(mt.tensor(_images(2)))
    _one_line(info, "model is float64", "images are float32", "x.astype(np.float64)")
    got = model(mt.tensor(_images(2).astype(np.float64))).data
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    with pytest.raises(TypeError) as info:
        model(mt.tensor(np.zeros((2, 3, 32, 32), np.uint8)))
    _one_line(info, "images are uint8", "x.astype(np.float64)")


def test_predict_takes_uint8_images_only_and_names_what_to_do_with_others():
    model = mt.create_model("t2t_vit_cifar", **TINY)
    for images, got in ((_images(2, np.float64), "float64"), (_images(2), "float32"), ([[0]], "list")):
        with pytest.raises(TypeError) as info:
            evaluation.predict(model, images)
        _one_line(info, "predict expects uint8 images", got, "model(mt.tensor(x.astype(np.float32)))")


def test_predict_computes_in_the_models_dtype():
    """A float64 model gets float64 inputs from predict (its normalisation cast), and gives what the model
    gives on them."""
    model = mt.create_model("t2t_vit_cifar", **TINY).to(np.float64).eval()
    images = np.random.default_rng(1).integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    logits = evaluation.predict(model, images, tta="flip")
    assert logits.dtype == np.float64 and logits.shape == (3, 10)
    x = mt.data.normalize(images).astype(np.float64)
    with mt.no_grad():
        want = 0.5 * (model(mt.tensor(x)).data + model(mt.tensor(np.ascontiguousarray(x[..., ::-1]))).data)
    np.testing.assert_array_equal(logits, want)
    assert evaluation.predict(model, images[:0]).shape == (0, 10)      # no images: no logits, no error
    assert evaluation.predict(model, images[:0]).dtype == np.float64


def test_evaluate_needs_a_label_per_image():
    model = mt.create_model("t2t_vit_cifar", **TINY)
    images = np.zeros((3, 3, 32, 32), np.uint8)
    with pytest.raises(ValueError) as info:
        evaluation.evaluate(model, images, np.zeros(2, np.int64))
    _one_line(info, "3 images but 2 labels")
