"""Import torchvision's pure-Python model code where its only wheel is CUDA-linked.

Used only to put ``torchvision:lraspp_mobilenet_v3_large`` into the README's CamVid
comparison on the project's CPU machine, where the one torchvision wheel available (0.28.0)
links ``libtorch_cuda.so`` and so cannot load its compiled operators (``nms``,
``roi_align``, ...) into the CPU build of torch. torchvision then fails at import, in the
module that registers fake kernels for those operators. The segmentation models never call
them, so that one module is replaced by an empty one; the model code itself is torchvision's,
unchanged. Not part of edgeseg, not needed where torchvision imports normally.

Usage (Python runs ``sitecustomize`` at start-up, in the comparison's bench subprocesses too)::

    PYTHONPATH=benchmarks/torchvision_shim edgeseg compare --models ...,torchvision:NAME ...
"""

import sys
import types

sys.modules.setdefault(
    "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
)
