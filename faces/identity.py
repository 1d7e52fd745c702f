"""Identity distance between a restored face and its HQ reference, with dlib's 128-d face embedding (offline).

Both images are upscaled to :data:`MIN_SIDE`; the face box is found on the HQ image and used for both.
``id_dist`` = ||e(restored) - e(HQ)||_2 and ``id_same`` = [id_dist < 0.6]; both absent without an HQ face.
"""

from __future__ import annotations

from typing import Dict, Optional

import cv2
import numpy as np

from faces.detection import dlib_model
from utils.image_io import to_uint8

SAME_PERSON_THRESHOLD = 0.6
MIN_SIDE = 256
IDENTITY_CONVENTIONS = {
    "id_dist": f"id_dist[dlib_resnet_v1,l2,hq_box,min_side{MIN_SIDE}]",
    "id_same": f"id_same[dlib_resnet_v1,l2<{SAME_PERSON_THRESHOLD}]",
}


def upscale_to(img: np.ndarray, min_side: int = MIN_SIDE) -> np.ndarray:
    """HxWx3 float [0, 1] -> uint8 RGB with the shorter side at least ``min_side`` (bicubic)."""
    h, w = img.shape[:2]
    if min(h, w) < min_side:
        s = min_side / min(h, w)
        img = np.clip(cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
    return to_uint8(img)


class FaceIdentity:
    """dlib's HOG detector, 5-point shape predictor and ResNet face descriptor."""

    def __init__(self):
        import dlib

        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(dlib_model("shape_predictor_5_face_landmarks.dat"))
        self.encoder = dlib.face_recognition_model_v1(dlib_model("dlib_face_recognition_resnet_model_v1.dat"))

    def face_box(self, img_uint8: np.ndarray):
        """The largest face found by the HOG detector (a ``dlib.rectangle``), or None."""
        found = self.detector(img_uint8, 1)
        return max(found, key=lambda r: r.area()) if len(found) else None

    def descriptor(self, img_uint8: np.ndarray, box) -> np.ndarray:
        shape = self.predictor(img_uint8, box)
        return np.asarray(self.encoder.compute_face_descriptor(img_uint8, shape), dtype=np.float64)

    def embed(self, img: np.ndarray) -> Optional[np.ndarray]:
        """128-d descriptor of the largest face of ``img`` (float RGB [0, 1]), or None without a face."""
        img8 = upscale_to(img)
        box = self.face_box(img8)
        return None if box is None else self.descriptor(img8, box)

    def distance(self, restored: np.ndarray, reference: np.ndarray) -> Optional[float]:
        """``id_dist`` of the module docstring; None when the reference shows no face."""
        if restored.shape != reference.shape:
            raise ValueError(f"restored and reference sizes differ: {restored.shape} vs {reference.shape}")
        ref8, res8 = upscale_to(reference), upscale_to(restored)
        box = self.face_box(ref8)
        if box is None:
            return None
        return float(np.linalg.norm(self.descriptor(res8, box) - self.descriptor(ref8, box)))

    def metrics(self, restored: np.ndarray, reference: np.ndarray) -> Dict[str, float]:
        """``{"id_dist", "id_same"}``, or ``{}`` when the reference shows no face."""
        dist = self.distance(restored, reference)
        if dist is None:
            return {}
        return {"id_dist": dist, "id_same": float(dist < SAME_PERSON_THRESHOLD)}
