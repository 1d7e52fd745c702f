"""How often face detectors find a face in a set of images: a measured companion to looking at a prior's
samples from pure noise (are they faces?).

Three offline detectors of different design vote per image:

* ``hog``: dlib's frontal face detector (HOG features, linear SVM), one pyramid upsampling, as in the
  identity metric (``faces.identity``);
* ``mtcnn``: facenet-pytorch's MTCNN (cascaded CNNs, ``faces.detection.MTCNNDetector``);
* ``mmod``: dlib's MMOD CNN detector (``faces.detection.mmod_boxes``, as in ``DlibDetector`` but its
  boxes only: no landmarks are predicted).

Each image is first upscaled (bicubic) so its shorter side is :data:`faces.identity.MIN_SIDE` px, the
footing of the identity metric: a 64 px face is below every detector's smallest face. A face counts when
a box of at least ``min_face_size`` px is found. :meth:`FacePresence.rates` gives, per detector, the
fraction of images with a face, and ``all``, the fraction found by all three. The first 64 validation
faces of celeba128 at 64 px score 1.0 on each detector and the sampler's starting noise 0.0
(``scripts/sample_prior.py --detect``, docs/evaluation.md), so the rate of a sample set says how many of
its images pass as faces; it does not say they look natural.
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
        return {"hog": self._hog_found(big),
                "mtcnn": len(self.mtcnn.detect(big_float)[0]) > 0,
                "mmod": bool((box_sides(mmod_boxes(self.mmod, big)) >= self.min_face_size).any())}

    def rates(self, images: Sequence[np.ndarray]) -> Dict[str, float]:
        """Fraction of ``images`` with a face, per detector and for all three together (``all``)."""
        if len(images) == 0:
            raise ValueError("face presence rates need at least one image")
        votes = [self.found(img) for img in images]
        rates = {name: float(np.mean([v[name] for v in votes])) for name in DETECTOR_NAMES}
        rates["all"] = float(np.mean([all(v.values()) for v in votes]))
        return rates
