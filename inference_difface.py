"""Blind face restoration over image folders with DynFaceRestore or DifFace (docs/method.md section 11).

    torchrun --nproc_per_node=8 inference_difface.py -i [folder/image] -i_hq [folder/image] --bs [N] \
        -o [result folder] --task restoration --eta 0.5 --aligned --use_fp16

Also runs as plain ``python inference_difface.py ...``; behaviour: ``inference/runner.py``.
"""

import sys

from inference.runner import main

if __name__ == "__main__":
    sys.exit(main())
