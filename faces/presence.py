"""Fraction of images in which face detectors (dlib HOG, MTCNN, dlib MMOD) find a face of ``min_face_size`` px.

Images are first upscaled to :data:`faces.identity.MIN_SIDE`. :meth:`FacePresence.rates` gives the rate per
detector and ``all`` (found by all three).
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from faces.detection import DEFAULT_MIN_FACE_SIZE, MTCNNDetector, box_sides, mmod_boxes, mmod_face_detector
from faces.identity import MIN_SIDE, upscale_to

DETECTOR_NAMES = ("hog", "mtcnn", "mmod")


class FacePresence:
    """The three detectors of the module docstring, built once."""

    def __init__(self, min_face_size: int = DEFAULT_MIN_FACE_SIZE):
        import dlib

        self.min_face_size = int(min_face_size)
        self.hog = dlib.get_frontal_face_detector()
        self.mtcnn = MTCNNDetector(min_face_size=min_face_size)
        self.mmod = mmod_face_detector()

    def _hog_found(self, img_uint8: np.ndarray) -> bool:
        return any(min(r.width(), r.height()) >= self.min_face_size for r in self.hog(img_uint8, 1))

    def found(self, img: np.ndarray) -> Dict[str, bool]:
        """Whether each detector finds a face in one HxWx3 float RGB [0, 1] image."""
        big = upscale_to(img, MIN_SIDE)  # uint8, for dlib
        big_float = big.astype(np.float32) / 255.0  # what Detector.detect takes (it rounds back exactly)
        return {
            "hog": self._hog_found(big),
            "mtcnn": len(self.mtcnn.detect(big_float)[0]) > 0,
            "mmod": bool((box_sides(mmod_boxes(self.mmod, big)) >= self.min_face_size).any()),
        }

    def rates(self, images: Sequence[np.ndarray]) -> Dict[str, float]:
        """Fraction of ``images`` with a face, per detector and for all three together (``all``)."""
        if len(images) == 0:
            raise ValueError("face presence rates need at least one image")
        votes = [self.found(img) for img in images]
        rates = {name: float(np.mean([v[name] for v in votes])) for name in DETECTOR_NAMES}
        rates["all"] = float(np.mean([all(v.values()) for v in votes]))
        return rates
