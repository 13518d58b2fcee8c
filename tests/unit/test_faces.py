"""Face detectors: MTCNN on real photos, RetinaFace and ParseNet architectures against their checkpoints."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision

from worker.errors import ModelFileError
from worker.faces import detect as faces
from worker.models import mtcnn, parsenet, retinaface

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture(scope="module")
def detector() -> faces.MTCNNDetector:
    if mtcnn.weights_dir() is None:
        pytest.skip("facenet-pytorch (MTCNN weights) not installed; run make install")
    return faces.MTCNNDetector(mtcnn.mtcnn())


def _keys(path: Path) -> dict[str, tuple[int, ...]]:
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    return {k: tuple(int(s) for s in shape.split("x")) if shape != "-" else () for k, shape in rows}


def test_mtcnn_finds_the_astronaut_with_landmarks_in_template_order(detector, astronaut):
    (face,) = detector.detect([astronaut])[0]
    assert face.score > 0.99
    x0, y0, x1, y1 = face.box
    assert 150 < x0 < 200 and 40 < y0 < 90 and 240 < x1 < 300 and 150 < y1 < 200
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
    assert lx < nx < rx and mlx < mrx  # left/right as seen in the image
    assert max(ly, ry) < ny < min(mly, mry)  # eyes above the nose above the mouth
    assert all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in face.landmarks)


def test_no_faces_in_a_cup_of_coffee_and_a_batch_keeps_order(detector, astronaut, coffee):
    found = detector.detect([coffee, astronaut, coffee])
    assert [len(f) for f in found] == [0, 1, 0]


def test_detection_runs_at_bounded_size_and_maps_back_to_full_resolution(detector, astronaut):
    (small,) = detector.detect([astronaut])[0]
    big = cv2.resize(astronaut, (1536, 1536), interpolation=cv2.INTER_CUBIC)
    bounded = faces.MTCNNDetector(detector.model, max_side=512)  # detects on a 512² copy
    (face,) = bounded.detect([big])[0]
    np.testing.assert_allclose(face.box, np.array(small.box) * 3, atol=12)
    np.testing.assert_allclose(face.landmarks, np.array(small.landmarks) * 3, atol=9)


def test_a_read_only_photo_is_fine(detector, astronaut):
    frozen = astronaut.copy()
    frozen.setflags(write=False)
    assert len(detector.detect([frozen])[0]) == 1


def test_load_detector_falls_back_to_mtcnn_and_says_why(tmp_path, detector):
    found, note = faces.load_detector(tmp_path)
    assert isinstance(found, faces.MTCNNDetector)
    assert "MTCNN" in note and "RetinaFace weights absent" in note
    (tmp_path / "detection_Resnet50_Final.pth").write_bytes(b"<html>not a checkpoint</html>")
    found, note = faces.load_detector(tmp_path)
    assert isinstance(found, faces.MTCNNDetector)
    assert "RetinaFace unusable" in note


def test_no_detector_at_all_is_a_note_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.setattr(mtcnn, "weights_dir", lambda: None)
    found, note = faces.load_detector(tmp_path)
    assert found is None
    assert "face detection off" in note and "facenet-pytorch" in note
    with pytest.raises(ModelFileError):
        mtcnn.mtcnn()


# --------------------------------------------------------------------------- RetinaFace


def test_retinaface_has_the_checkpoint_keys_and_drops_the_dataparallel_prefix():
    model = retinaface.retinaface()
    expected = _keys(DATA / "retinaface_r50_state_dict.tsv")
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    prefixed = {f"module.{k}": v for k, v in model.state_dict().items()}
    retinaface.retinaface(retinaface.checkpoint_filter(prefixed))  # loads strictly
    with pytest.raises(ModelFileError):
        retinaface.retinaface({"body.conv1.weight": torch.zeros(1)})


class _OneFace(torch.nn.Module):
    """Stands in for RetinaFace: a confident face at one anchor, offsets zero → the anchor's own box."""

    def __init__(self, anchor: int) -> None:
        super().__init__()
        self.anchor = anchor

    def forward(self, x: torch.Tensor):
        n = retinaface.anchors(x.shape[2], x.shape[3]).shape[0]
        prob = torch.zeros(x.shape[0], n)
        prob[:, self.anchor] = 0.99
        return torch.zeros(x.shape[0], n, 4), prob, torch.zeros(x.shape[0], n, 10)


def test_retinaface_detector_letterboxes_a_batch_and_maps_boxes_back():
    # Anchor 0 of the stride-8 level: centre (4, 4), 16 px square → box (-4, -4, 12, 12).
    det = faces.RetinaFaceDetector(_OneFace(0), "cpu", max_side=640)  # type: ignore[arg-type]
    photos = [np.zeros((480, 640, 3), np.uint8), np.zeros((2000, 1000, 3), np.uint8)]
    found = det.detect(photos)
    assert [len(f) for f in found] == [1, 1]
    np.testing.assert_allclose(found[0][0].box, (-4, -4, 12, 12), atol=1e-4)
    np.testing.assert_allclose(found[1][0].box, np.array((-4, -4, 12, 12)) * 2000 / 640, atol=1e-3)
    assert found[1][0].landmarks[0] == pytest.approx((4 * 2000 / 640, 4 * 2000 / 640))


def test_retinaface_decoding_matches_the_anchor_layout():
    priors = retinaface.anchors(64, 96)
    # Level sizes: (8×12 + 4×6 + 2×3) positions × 2 anchors.
    assert priors.shape == ((8 * 12 + 4 * 6 + 2 * 3) * 2, 4)
    np.testing.assert_allclose(priors[:2].numpy(), [[4, 4, 16, 16], [4, 4, 32, 32]])
    boxes, points = retinaface.decode(torch.zeros(len(priors), 4), torch.zeros(len(priors), 10), priors)
    np.testing.assert_allclose(boxes[1].numpy(), [-12, -12, 20, 20])
    np.testing.assert_allclose(points[1].numpy(), [[4, 4]] * 5)


def test_retinaface_matches_facexlib_numerically():
    pytest.importorskip("facexlib", reason="facexlib (the reference) not installed")
    import warnings

    from facexlib.detection.retinaface import RetinaFace as Reference

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = Reference(network_name="resnet50", half=False, device="cpu").eval()
    torch.manual_seed(0)
    for m in reference.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    mine = retinaface.retinaface(reference.state_dict())
    x = torch.randn(1, 3, 96, 128) * 50
    with torch.inference_mode():
        loc, conf, marks = reference(x)
        my_loc, my_prob, my_marks = mine(x)
    torch.testing.assert_close(my_loc, loc)
    torch.testing.assert_close(my_prob, conf[..., 1])
    torch.testing.assert_close(my_marks, marks)


# --------------------------------------------------------------------------- ParseNet


def test_parsenet_has_the_checkpoint_keys():
    expected = _keys(DATA / "parsenet_state_dict.tsv")
    assert {k: tuple(v.shape) for k, v in parsenet.ParseNet().state_dict().items()} == expected


def test_face_parser_gives_labels_and_a_face_mask():
    parser = parsenet.FaceParser(parsenet.parsenet())
    # Fully convolutional: a small crop exercises the same code as a 512² one, 60× faster on a CPU.
    crops = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    labels = parser.parse(crops)
    assert labels.shape == (2, 64, 64) and labels.max() < len(parsenet.LABELS)
    mask = parser.face_mask(crops)
    assert mask.dtype == np.float32 and set(np.unique(mask)) <= {0.0, 1.0}


def test_parsenet_matches_facexlib_numerically():
    pytest.importorskip("facexlib", reason="facexlib (the reference) not installed")
    from facexlib.parsing.parsenet import ParseNet as Reference

    torch.manual_seed(0)
    reference = Reference(in_size=512, out_size=512, parsing_ch=19).eval()
    mine = parsenet.parsenet(reference.state_dict())
    x = torch.rand(1, 3, 128, 128) * 2 - 1  # fully convolutional: any multiple of 16
    with torch.inference_mode():
        expected, mine_out = reference(x)[0], mine(x)[0]
    torch.testing.assert_close(mine_out, expected)


def same_size_photos(real_photos: list[tuple[str, bytes]]) -> list[np.ndarray]:
    """The wheel photos at 640×480, and the first of them (the astronaut's face) a second time."""
    import io

    from PIL import Image

    images = []
    for _, data in real_photos:
        rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        images.append(np.ascontiguousarray(cv2.resize(rgb, (640, 480), interpolation=cv2.INTER_AREA)))
    return [*images, images[0].copy()]  # the same face at the same place twice: NMS must not mix photos


def assert_same_faces(a: list[list[mtcnn.Detection]], b: list[list[mtcnn.Detection]], px: float, score: float) -> None:
    assert [len(found) for found in a] == [len(found) for found in b]
    for one, other in zip(a, b, strict=True):
        for x, y in zip(sorted(one, key=lambda d: -d.score), sorted(other, key=lambda d: -d.score), strict=True):
            np.testing.assert_allclose(x.box, y.box, atol=px)
            np.testing.assert_allclose(x.landmarks, y.landmarks, atol=px)
            assert x.score == pytest.approx(y.score, abs=score)


def test_mtcnn_on_many_photos_at_once_finds_what_it_finds_one_by_one(detector, real_photos) -> None:
    """The GPU path: photos of one size through the cascade together (NMS kept within each photo),
    mixed with a photo of another size; the same faces, boxes, landmarks and scores as one by one."""
    images = same_size_photos(real_photos)
    images.append(np.ascontiguousarray(images[0][:400, :300]))  # another size: a group of its own
    model = detector.model
    one_by_one = [model.detect(image) for image in images]
    together = model.detect_many(images)
    assert len(one_by_one[0]) >= 1 and len(together[-2]) == len(one_by_one[0])  # both copies keep the face
    assert_same_faces(one_by_one, together, px=0.05, score=1e-4)


@pytest.mark.gpu
def test_mtcnn_batched_on_cuda_finds_what_the_cpu_finds(detector, real_photos) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    images = same_size_photos(real_photos)
    on_cpu = [detector.model.detect(image) for image in images]
    assert sum(map(len, on_cpu)) >= 2
    assert_same_faces(on_cpu, mtcnn.mtcnn("cuda").detect_many(images), px=1.0, score=1e-3)


def test_mtcnn_nms_keeps_each_photos_boxes_apart_even_left_of_the_frame() -> None:
    """Boxes may start outside the photo (squared candidates near an edge): shifting photos apart by
    the largest coordinate alone would let a box of one photo suppress a box of the next."""
    boxes = torch.tensor([[500.0, 500.0, 600.0, 600.0], [-96.0, -96.0, 4.0, 4.0], [-90.0, -90.0, 8.0, 8.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    keep = mtcnn._nms_within(boxes, scores, torch.tensor([0, 1, 1]), 0.5)
    assert sorted(keep.tolist()) == [0, 1]  # the third overlaps the second, in the same photo
    single = mtcnn._nms_within(boxes, scores, torch.tensor([0, 0, 0]), 0.5)
    assert torch.equal(single, torchvision.ops.nms(boxes, scores, 0.5))  # one photo: exactly nms
