"""napari-mmdl's models: the source papers' architectures in plain PyTorch (SPEC §1).

``create(name, num_classes=..., in_chans=1|3, **config)`` builds a registered
model; :func:`list_models` names them. Families: :mod:`.psc` (``psc_fusion``,
``psc_encoder``), :mod:`.vgg` (``vgg_grain``, ``vgg16_bn``, ``vgg16_bn_cbam``),
:mod:`.transformer` (``eanet``, ``vit``), :mod:`.resnet` (``resnet50``,
``msfb_resnet50``), :mod:`.unet` (``unet_boundary``), :mod:`.micronet` (``micronet``,
napari-mmdl's small pre-trained micrograph backbone),
:mod:`.restoration` (``srcnn``, ``rcan_lite``, ``n2v_unet``: super-resolution and denoising). Reusable blocks are in
:mod:`.attention`; parameter and FLOP counts in :mod:`.cost`.

``model(x, return_attention=True)`` returns ``(output, dict[str, Tensor])``
with the model's own attention maps:

* ``"cbam_spatial"`` / ``"cbam_spatial.<i>"``: CBAM spatial maps ``(B, h, w)``;
* ``"fca_channel"``: FcaNet channel weights ``(B, C)``; ``"self_attention"``: ``(B, h, w)``;
* ``"external.<i>"``: EANet block i, ``(B, heads, N, S)``, sums to 1 over S;
* ``"self_attention.<i>"``: ViT block i, ``(B, heads, N, N)``;
* ``"pa.layer<i>.<j>"``: PA, mean attention per key patch ``(B, √H', √W')``;
  ``"ca.layer<i>.<j>"``: CA chunk attention ``(B, g, g)``;
* ``"fusion_weights"``: PSC-Fusion gates ``(B, 3, 32)`` (or ``(B, 3, 1)``),
  order image, composition, process; 0 for masked modalities.
"""

from . import (
    micronet,  # noqa: F401  (napari-mmdl's small backbone)
    psc,  # noqa: F401
    resnet,  # noqa: F401  (registers)
    restoration,  # noqa: F401  (srcnn, rcan_lite, n2v_unet)
    transformer,  # noqa: F401
    vgg,  # noqa: F401
)
from . import unet as _unet
from .pretrained import list_pretrained
from .registry import create, list_models, model_entry, register_model
from .unet import unet_boundary as _unet_boundary

register_model("unet_boundary", input_size=(1, 256, 256), num_classes=1)(_unet_boundary)

__all__ = ["create", "list_models", "list_pretrained", "model_entry", "register_model"]
