"""Face detectors for whole photos: boxes and the 5 landmarks the FFHQ aligner needs (docs/method.md section 10).

A detector maps an HxWx3 float RGB image to boxes (N, 5) (x1, y1, x2, y2, score) and landmarks (N, 5, 2) in the
order of ``faces.align.FFHQ_TEMPLATE_512``, best score first. ``retinaface`` (facexlib, needs
``--detection_weights``), ``mtcnn``, ``dlib``, ``mtcnn_dlib``; ``auto``: retinaface when its weights exist, else
:data:`OFFLINE_DEFAULT` (docs/face_detection.md). Overlaps above :data:`DUPLICATE_IOU` are merged.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
import torch

from utils.image_io import to_uint8

DETECTORS = ("auto", "retinaface", "mtcnn_dlib", "mtcnn", "dlib")
OFFLINE_DEFAULT = "mtcnn_dlib"
DEFAULT_MIN_FACE_SIZE = 20
DUPLICATE_IOU = 0.3
Detections = Tuple[np.ndarray, np.ndarray]
RETINAFACE_WEIGHTS_NAME = "detection_Resnet50_Final.pth"
RETINAFACE_WEIGHTS_URL = "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth"
RETINAFACE_WEIGHTS_HINT = f"weights/facexlib/{RETINAFACE_WEIGHTS_NAME}"


def face_models_dir() -> Path:
    """Folder of the dlib model files shipped by ``face-recognition-models`` (found without importing the
    package, whose ``__init__`` needs the deprecated ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the dlib model files are missing: install face-recognition-models==0.3.0 "
            "(scripts/setup_env.sh does, from requirements-nodeps.txt)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def dlib_model(name: str) -> str:
    """Path of one dlib model file of ``face-recognition-models`` (FileNotFoundError naming it if absent)."""
    path = face_models_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"dlib model file missing: {path} (reinstall face-recognition-models==0.3.0)")
    return str(path)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def merge_duplicates(boxes: np.ndarray, landmarks: np.ndarray, iou: float = DUPLICATE_IOU) -> Detections:
    """Greedy non-maximum suppression by score: of boxes overlapping by more than ``iou``, keep the best."""
    order = np.argsort(-boxes[:, 4], kind="stable")
    keep = []
    for i in order:
        if all(box_iou(boxes[i], boxes[k]) <= iou for k in keep):
            keep.append(i)
    return boxes[keep], landmarks[keep]


class Detector:
    """Base: ``detect`` converts the image once, runs :meth:`find` and applies the size threshold and the
    ordering of the module docstring."""

    name = "base"

    def __init__(self, min_face_size: int = DEFAULT_MIN_FACE_SIZE):
        if min_face_size < 1:
            raise ValueError(f"min_face_size must be at least 1 pixel, got {min_face_size}")
        self.min_face_size = int(min_face_size)

    def find(self, img_uint8: np.ndarray) -> Detections:
        """Boxes (N, 5) and 5-point landmarks (N, 5, 2) of an HxWx3 uint8 RGB image, in any order."""
        raise NotImplementedError

    def detect(self, img: np.ndarray) -> Detections:
        boxes, lms = self.find(to_uint8(img))
        keep = box_sides(boxes) >= self.min_face_size
        return merge_duplicates(boxes[keep], lms[keep])


def box_sides(boxes: np.ndarray) -> np.ndarray:
    """The shorter side of each (x1, y1, x2, y2, ...) box: what ``min_face_size`` is compared with."""
    return np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])


def mmod_face_detector():
    """dlib's MMOD CNN face detector (model file of face-recognition-models)."""
    import dlib

    return dlib.cnn_face_detection_model_v1(dlib_model("mmod_human_face_detector.dat"))


def mmod_boxes(detector, img_uint8: np.ndarray) -> np.ndarray:
    """(N, 5) boxes (x1, y1, x2, y2, confidence) of an MMOD detector, no pyramid upsampling."""
    return np.array(
        [[d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), d.confidence] for d in detector(img_uint8, 0)],
        dtype=np.float64,
    ).reshape(-1, 5)


def _empty() -> Detections:
    return np.zeros((0, 5)), np.zeros((0, 5, 2))


class MTCNNDetector(Detector):
    """facenet-pytorch's MTCNN with its packaged weights (P-, R- and O-Net)."""

    name = "mtcnn"

    def __init__(self, device: Union[str, torch.device] = "cpu", **kwargs):
        super().__init__(**kwargs)
        from facenet_pytorch import MTCNN

        # the smallest face MTCNN searches for: below our threshold there is nothing to keep
        self.model = MTCNN(
            keep_all=True,
            device=torch.device(device),
            min_face_size=max(12, self.min_face_size),
            select_largest=False,
            post_process=False,
        )

    @torch.no_grad()
    def find(self, img_uint8: np.ndarray) -> Detections:
        if min(img_uint8.shape[:2]) < self.model.min_face_size:  # no pyramid scale: facenet's torch.cat([]) fails
            return _empty()
        boxes, probs, points = self.model.detect(img_uint8, landmarks=True)
        if boxes is None:
            return _empty()
        boxes = np.concatenate([np.asarray(boxes, np.float64), np.asarray(probs, np.float64)[:, None]], axis=1)
        return boxes, np.asarray(points, np.float64).reshape(-1, 5, 2)


def five_from_68(points68: np.ndarray) -> np.ndarray:
    """The FFHQ template's 5 points from the 68 iBUG 300-W points (0-based): eye centres (36-41, 42-47),
    nose tip (30), mouth corners (48, 54)."""
    p = np.asarray(points68, dtype=np.float64).reshape(68, 2)
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


class Landmarks68:
    """dlib's 68-point shape predictor reduced to the template's 5 points, for given boxes."""

    def __init__(self):
        import dlib

        self._dlib = dlib
        self.predictor = dlib.shape_predictor(dlib_model("shape_predictor_68_face_landmarks.dat"))

    def __call__(self, img_uint8: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        out = np.zeros((len(boxes), 5, 2))
        for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes)[:, :4]):
            shape = self.predictor(
                img_uint8, self._dlib.rectangle(int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2)))
            )
            out[i] = five_from_68([[shape.part(k).x, shape.part(k).y] for k in range(68)])
        return out


class DlibDetector(Detector):
    """dlib's MMOD CNN detector + 68-point shape predictor (model files of face-recognition-models)."""

    name = "dlib"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.detector = mmod_face_detector()
        self.landmarks = Landmarks68()

    def find(self, img_uint8: np.ndarray) -> Detections:
        boxes = mmod_boxes(self.detector, img_uint8)
        return boxes, self.landmarks(img_uint8, boxes)


class MTCNNDlibDetector(MTCNNDetector):
    """MTCNN's boxes with dlib's 68-point landmarks reduced to 5, unless dlib's points stray from MTCNN's:
    a mean distance over :data:`MAX_DISAGREEMENT` times MTCNN's eye distance (dlib's predictor starts from
    an upright mean shape and can fail on strongly rotated faces) keeps MTCNN's own 5 points."""

    name = "mtcnn_dlib"
    MAX_DISAGREEMENT = 0.3

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.landmarks = Landmarks68()

    def find(self, img_uint8: np.ndarray) -> Detections:
        boxes, own = super().find(img_uint8)
        dlib5 = self.landmarks(img_uint8, boxes)
        eye_distance = np.linalg.norm(own[:, 1] - own[:, 0], axis=1)
        disagreement = np.linalg.norm(dlib5 - own, axis=2).mean(axis=1)
        use_dlib = disagreement <= self.MAX_DISAGREEMENT * eye_distance
        return boxes, np.where(use_dlib[:, None, None], dlib5, own)


class RetinaFaceDetector(Detector):
    """facexlib's RetinaFace-ResNet50, loaded from a local weights file (no download)."""

    name = "retinaface"

    def __init__(
        self,
        weights_path: Optional[Union[str, os.PathLike]],
        device: Union[str, torch.device] = "cpu",
        conf_threshold: float = 0.8,
        nms_threshold: float = 0.4,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if weights_path is None or not Path(weights_path).is_file():
            where = "no path given" if weights_path is None else f"not found: {weights_path}"
            raise FileNotFoundError(
                f"face detection weights {RETINAFACE_WEIGHTS_NAME} missing ({where}). Download it from "
                f"{RETINAFACE_WEIGHTS_URL}, put it at e.g. {RETINAFACE_WEIGHTS_HINT} and pass "
                f"--detection_weights {RETINAFACE_WEIGHTS_HINT}, or use an offline detector (--detector auto)"
            )
        from facexlib.detection.retinaface import RetinaFace

        self.device = torch.device(device)
        self.conf_threshold, self.nms_threshold = conf_threshold, nms_threshold
        with warnings.catch_warnings():  # facexlib passes torchvision's deprecated ``pretrained=False``
            warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
            model = RetinaFace(network_name="resnet50", half=False, device=self.device)
        try:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
            model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()}, strict=True)
        except Exception as err:  # noqa: BLE001 - any failure means "not the RetinaFace-ResNet50 file"
            raise ValueError(
                f"{weights_path} is not a RetinaFace-ResNet50 state dict ({RETINAFACE_WEIGHTS_NAME}): {err}"
            ) from err
        self.model = model.to(self.device).eval()

    @torch.no_grad()
    def find(self, img_uint8: np.ndarray) -> Detections:
        bgr = np.ascontiguousarray(img_uint8[:, :, ::-1].astype(np.float32))
        dets = self.model.detect_faces(
            bgr, conf_threshold=self.conf_threshold, nms_threshold=self.nms_threshold, use_origin_size=True
        )
        dets = np.asarray(dets, dtype=np.float64).reshape(-1, 15)
        return dets[:, :5], dets[:, 5:].reshape(-1, 5, 2)


def resolve_detector_name(name: Optional[str], weights: Optional[Union[str, os.PathLike]]) -> str:
    """``auto``/None -> ``retinaface`` when ``weights`` is an existing file, else :data:`OFFLINE_DEFAULT`."""
    name = name or "auto"
    if name not in DETECTORS:
        raise ValueError(f"unknown detector '{name}': choose one of {', '.join(DETECTORS)}")
    if name == "auto":
        return "retinaface" if weights is not None and Path(weights).is_file() else OFFLINE_DEFAULT
    return name


def build_detector(
    name: Optional[str] = None,
    weights: Optional[Union[str, os.PathLike]] = None,
    device: Union[str, torch.device] = "cpu",
    min_face_size: int = DEFAULT_MIN_FACE_SIZE,
) -> Detector:
    """The detector ``name`` (see the module docstring); ``weights`` is RetinaFace's file."""
    resolved = resolve_detector_name(name, weights)
    if resolved == "retinaface":
        return RetinaFaceDetector(weights, device=device, min_face_size=min_face_size)
    if resolved == "mtcnn":
        return MTCNNDetector(device=device, min_face_size=min_face_size)
    if resolved == "mtcnn_dlib":
        return MTCNNDlibDetector(device=device, min_face_size=min_face_size)
    return DlibDetector(min_face_size=min_face_size)
