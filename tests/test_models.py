"""Model zoo: SPEC Appendix A invariants, FLOPs vs [CER] tables, forward/backward, attention dicts."""

import math

import pytest
import torch

from hyperspy_mmdl import models  # noqa: E402
from hyperspy_mmdl.models.attention import (  # noqa: E402
    CBAM,
    ChannelChunkingAttention,
    CrossScaleCoordinateAttention,
    ExternalAttention,
    LearnableMomentum,
    SpatialChunkingAttention,
)
from hyperspy_mmdl.models.cost import count_flops, count_parameters  # noqa: E402


def meta(name, **kw):
    with torch.device("meta"):
        return models.create(name, **kw)


def n_params(module):
    return count_parameters(module)


# --------------------------------------------------------------------------- registry
def test_registry_lists_every_family():
    assert {"psc_fusion", "psc_encoder", "vgg_grain", "eanet", "vit", "vgg16_bn", "vgg16_bn_cbam",
            "resnet50", "msfb_resnet50"} <= set(models.list_models())


def test_unknown_model_and_bad_channels():
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        models.create("nope")
    with pytest.raises(ValueError, match="in_chans must be 1 or 3"):
        models.create("psc_encoder", in_chans=2)


def test_default_cfg_rebuilds_identical_architecture():
    m = models.create("msfb_resnet50", num_classes=5, in_chans=1, attention="pca_serial", version="D")
    cfg = m.default_cfg
    assert cfg["name"] == "msfb_resnet50" and cfg["input_size"] == (1, 224, 224) and cfg["num_classes"] == 5
    again = models.create(cfg["name"], **cfg["config"])
    assert [(k, v.shape) for k, v in m.state_dict().items()] == [(k, v.shape) for k, v in again.state_dict().items()]
    again.load_state_dict(m.state_dict())


# --------------------------------------------------------------------------- exact parameter counts
@pytest.mark.parametrize("name, kw, expected", [
    ("resnet50", {}, 23_557_208),
    ("msfb_resnet50", {}, 36_099_684),
    ("msfb_resnet50", {"stem": "7x7"}, 36_080_452),
    ("msfb_resnet50", {"attention": "pca_parallel"}, 76_093_932),
    ("msfb_resnet50", {"attention": "pca_serial"}, 76_093_932),
    ("msfb_resnet50", {"attention": "pa"}, 36_099_684 + 13_585_590),
    ("msfb_resnet50", {"attention": "ca"}, 36_099_684 + 26_408_658),
    ("msfb_resnet50", {"attention": "pca_parallel", "version": "D"}, 36_099_684 + 39_389_778),
    ("msfb_resnet50", {"attention": "pca_parallel", "version": "A"}, 36_099_684 + 62_567_904),
])
def test_cer_exact_params(name, kw, expected):
    assert n_params(meta(name, num_classes=24, in_chans=3, **kw)) == expected


@pytest.mark.parametrize("name, attention, version, millions", [
    ("resnet50", "pa", "B", 37.143), ("resnet50", "ca", "B", 49.966),
    ("resnet50", "pca_serial", "A", 86.125), ("resnet50", "pca_serial", "B", 63.551),
    ("resnet50", "pca_parallel", "C", 85.521), ("resnet50", "pca_parallel", "D", 62.947),
    ("msfb_resnet50", None, "B", 36.100), ("msfb_resnet50", "pa", "B", 49.685),
    ("msfb_resnet50", "ca", "B", 62.508), ("msfb_resnet50", "pca_parallel", "B", 76.094),
    ("msfb_resnet50", "pca_serial", "A", 98.668), ("msfb_resnet50", "pca_parallel", "C", 98.063),
    ("msfb_resnet50", "pca_serial", "D", 75.489),
])
def test_cer_table_rows_to_three_decimals(name, attention, version, millions):
    m = meta(name, num_classes=24, in_chans=3, attention=attention, version=version)
    assert round(n_params(m) / 1e6, 3) == millions


@pytest.mark.parametrize("c, pa, ca", [(256, 69_905, 131_585), (512, 279_073, 542_738),
                                       (1024, 1_115_201, 2_099_201), (2048, 4_458_625, 8_671_301)])
def test_chunking_module_params(c, pa, ca):
    with torch.device("meta"):
        assert n_params(SpatialChunkingAttention(c)) == pa
        assert n_params(ChannelChunkingAttention(c)) == ca
        assert n_params(ChannelChunkingAttention(c, separate_qkv=True)) == ca + 2 * c * math.ceil(c ** 0.5) ** 2 + \
            2 * math.ceil(c ** 0.5) ** 2


@pytest.mark.parametrize("w, expected", [(26, 700), (52, 1_376), (104, 2_728), (208, 5_432)])
def test_phi_params(w, expected):
    assert n_params(CrossScaleCoordinateAttention(w)) == expected


def test_small_model_params():
    assert n_params(models.create("psc_encoder")) == 79_442  # SPEC: ≈79.4 k (r=4, 1 channel)
    assert n_params(models.create("psc_encoder", reduction=16)) == 79_346  # ≈79.3 k with r=16
    assert n_params(models.create("vgg_grain")) == 6_761_347  # ≈6.76 M
    assert n_params(models.create("eanet")) == 379_523  # ≈0.38 M
    assert n_params(models.create("vit")) == 628_739  # ≈0.63 M


# --------------------------------------------------------------------------- FLOPs vs [CER]
@pytest.mark.parametrize("name, attention, table_g", [
    ("resnet50", None, 4.109), ("msfb_resnet50", None, 6.535),
    ("resnet50", "pa", 6.06), ("resnet50", "ca", 6.677), ("resnet50", "pca_parallel", 8.627),
    ("msfb_resnet50", "pa", 8.485), ("msfb_resnet50", "ca", 9.102), ("msfb_resnet50", "pca_parallel", 11.052),
])
def test_flops_within_two_percent_of_cer_tables(name, attention, table_g):
    g = count_flops(meta(name, num_classes=24, in_chans=3, attention=attention), (3, 224, 224)) / 1e9
    assert abs(g - table_g) / table_g < 0.02, g


def test_flops_counter_convention():
    # ResNet50 at 224²: thop with BatchNorm at 2 ops/element gives 4.1095 G (SPEC §0)
    assert abs(count_flops(meta("resnet50"), (3, 224, 224)) / 1e9 - 4.1095) < 0.0005
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    assert count_flops(conv, (3, 10, 10), device="cpu") == 8 * 100 * 27
    bn = torch.nn.Sequential(torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Linear(5, 7))
    assert count_flops(bn, (4, 3, 5), device="cpu") == 2 * 60 + 4 * 3 * 7 * 5


# --------------------------------------------------------------------------- shapes
def test_psc_encoder_shapes():
    enc = models.create("psc_encoder").eval()
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
             for m in (enc.attn, enc.pool, enc.compress)]  # the pool runs after stages 2, 3, 4
    with torch.no_grad():
        out, att = enc(torch.zeros(1, 1, 224, 224), return_attention=True)
    for h in hooks:
        h.remove()
    assert out.shape == (1, 32)
    assert shapes == [(16, 112, 112), (16, 56, 56), (32, 28, 28), (64, 14, 14), (32, 14, 14)]
    assert att["cbam_spatial"].shape == (1, 112, 112)


def test_psc_encoder_head():
    m = models.create("psc_encoder", num_classes=3, head=True)
    assert m(torch.zeros(2, 1, 32, 32)).shape == (2, 3)
    with pytest.raises(ValueError, match="head=True"):
        models.create("psc_encoder", num_classes=3)


def test_vgg_grain_head_and_size_error():
    m = models.create("vgg_grain")
    assert [(l.in_features, l.out_features) for l in m.classifier if isinstance(l, torch.nn.Linear)] == \
        [(12544, 512), (512, 512), (512, 3)]
    with pytest.raises(ValueError, match="224×224"):
        m(torch.zeros(1, 1, 128, 128))


def test_transformer_size_error():
    m = models.create("eanet", img_size=32, patch_size=8)
    with pytest.raises(ValueError, match="img_size=32"):
        m(torch.zeros(1, 1, 64, 64))


@pytest.mark.parametrize("hw, padded", [(56, 64), (28, 36), (14, 16), (7, 9)])
def test_pa_keeps_shape(hw, padded):
    torch.manual_seed(0)
    pa = SpatialChunkingAttention(64)
    x = torch.randn(2, 64, hw, hw)
    y = pa(x)
    assert y.shape == x.shape
    assert pa.last_map.shape == (2, math.isqrt(padded), math.isqrt(padded))
    assert not torch.allclose(y, x)


@pytest.mark.parametrize("c, g", [(256, 16), (512, 23), (100, 10)])
def test_ca_keeps_shape(c, g):
    ca = ChannelChunkingAttention(c)
    assert ca.sc == g * g
    x = torch.randn(1, c, 7, 5)
    assert ca(x).shape == x.shape and ca.last_map.shape == (1, g, g)
    assert ChannelChunkingAttention(c, separate_qkv=True)(x).shape == x.shape


def test_phi_reweights_first_input():
    torch.manual_seed(0)
    phi = CrossScaleCoordinateAttention(26).eval()
    a, b = torch.randn(2, 26, 9, 11), torch.randn(2, 26, 9, 11)
    y = phi(a, b)
    assert y.shape == a.shape
    ratio = y / a  # gates in (0, 1)
    assert ratio.min() > 0 and ratio.max() < 1
    assert not torch.allclose(phi(a, b), phi(a, torch.randn_like(b)))


def test_psc_fusion_vectors_are_32d_and_gates():
    torch.manual_seed(0)
    m = models.create("psc_fusion", composition_dim=10, process_sizes=[3, 4]).eval()
    x, c, p = torch.randn(4, 1, 64, 64), torch.rand(4, 10), torch.randint(0, 3, (4, 2))
    out, att = m(x, c, p, return_attention=True)
    assert out.shape == (4,)
    w = att["fusion_weights"]
    assert w.shape == (4, 3, 32) and (w > 0).all() and (w < 1).all()
    scalar = models.create("psc_fusion", composition_dim=10, process_sizes=[3, 4], gate="scalar").eval()
    assert scalar(x, c, p, return_attention=True)[1]["fusion_weights"].shape == (4, 3, 1)


def test_psc_fusion_masking_runs_without_image():
    torch.manual_seed(0)
    m = models.create("psc_fusion", composition_dim=10, process_sizes=[3, 4],
                      modalities=("composition", "process")).eval()
    c, p = torch.rand(4, 10), torch.randint(0, 3, (4, 2))
    out, att = m(None, c, p, return_attention=True)
    assert out.shape == (4,) and torch.isfinite(out).all()
    assert (att["fusion_weights"][:, 0] == 0).all() and (att["fusion_weights"][:, 1:] > 0).all()
    m.set_modality_mask([])
    with pytest.raises(ValueError, match="image is None"):
        m(None, c, p)
    # masking the process branch changes the prediction; masked input values no longer matter
    full = m(torch.randn(4, 1, 32, 32), c, p)
    m.set_modality_mask(["process"])
    x = torch.randn(4, 1, 32, 32)
    assert torch.equal(m(x, c, p), m(x, c, torch.zeros_like(p)))
    with pytest.raises(ValueError, match="unknown modality"):
        m.set_modality_mask(["sound"])
    assert full.shape == (4,)


@pytest.mark.parametrize("kind, key", [("cbam", "cbam_spatial"), ("fca", "fca_channel"),
                                       ("self", "self_attention"), ("none", None)])
def test_psc_attention_slot(kind, key):
    m = models.create("psc_encoder", attention=kind).eval()
    out, att = m(torch.randn(2, 1, 64, 64), return_attention=True)
    assert out.shape == (2, 32)
    assert list(att) == ([key] if key else [])


# --------------------------------------------------------------------------- attention invariants
def test_external_attention_double_normalisation():
    torch.manual_seed(0)
    ea = ExternalAttention(64).eval()
    x = torch.randn(2, 49, 64)
    y = ea(x)
    a = ea.last_map
    assert y.shape == x.shape and a.shape == (2, 16, 49, 64)
    torch.testing.assert_close(a.sum(-1), torch.ones(2, 16, 49), atol=1e-6, rtol=0)
    # before the L1 step the softmax ran over tokens: rescaling the rows does not change it
    raw = torch.softmax(ea.mk(ea.trans(x).reshape(2, 49, 16, 16).transpose(1, 2)), dim=2)
    torch.testing.assert_close(a, raw / (1e-9 + raw.sum(-1, keepdim=True)))


def test_momentum_range():
    m = LearnableMomentum()
    assert m.value.item() == 0.5
    for g in (-1e6, -3.0, 0.7, 1e6):
        m.gamma.data.fill_(g)
        assert 0 < m.value.item() < 1
    m.gamma.data.fill_(1.0)
    assert m.value.item() == pytest.approx(0.75)
    x, y = torch.zeros(3), torch.ones(3)
    torch.testing.assert_close(m(y, x), torch.full((3,), 0.75))


def test_cbam_map_range():
    cb = CBAM(16)
    y = cb(torch.randn(2, 16, 12, 10))
    assert y.shape == (2, 16, 12, 10) and cb.last_map.shape == (2, 12, 10)
    assert (cb.last_map > 0).all() and (cb.last_map < 1).all()


# --------------------------------------------------------------------------- forward / backward
SMALL = {
    "psc_encoder": ({}, 32), "psc_fusion": ({}, 32), "vgg_grain": ({}, 224),
    "eanet": ({"img_size": 32, "patch_size": 8}, 32), "vit": ({"img_size": 32, "patch_size": 8}, 32),
    "vgg16_bn": ({}, 32), "vgg16_bn_cbam": ({}, 32), "resnet50": ({}, 32), "msfb_resnet50": ({}, 32),
    "unet_boundary": ({}, 32),
}


def _run(name, cfg, size, in_chans, seed=0, num_classes=None):
    torch.manual_seed(seed)
    kw = {} if name in ("psc_fusion", "unet_boundary", "psc_encoder") else {"num_classes": num_classes or 4}
    m = models.create(name, in_chans=in_chans, **kw, **cfg)
    x = torch.randn(2, in_chans, size, size)
    if name == "psc_fusion":
        out = m(x, torch.rand(2, 36), torch.randint(0, 3, (2, 4)))
    else:
        out = m(x)
    return m, out


@pytest.mark.parametrize("name", sorted(SMALL))
def test_forward_backward_every_model(name):
    assert name in models.list_models()
    cfg, size = SMALL[name]
    for in_chans in (1, 3) if name == "psc_encoder" else (3 if "vgg16" in name else 1,):
        m, out = _run(name, cfg, size, in_chans)
        out.float().sum().backward()
        grads = [p.grad for p in m.parameters() if p.requires_grad]
        assert all(g is not None for g in grads) or name == "psc_fusion"
        assert torch.isfinite(out).all()
    if name not in ("psc_fusion", "psc_encoder", "unet_boundary"):
        assert out.shape == (2, 4)


@pytest.mark.parametrize("attention", ["pa", "ca", "pca_serial", "pca_parallel"])
def test_forward_backward_chunking_variants(attention):
    # one block per stage keeps it cheap; the full models' wiring is checked by the parameter counts
    from hyperspy_mmdl.models.resnet import ResNet

    torch.manual_seed(0)
    m = ResNet("msfb", num_classes=3, in_chans=1, stem="deep", attention=attention, version="A", layers=(1, 1, 1, 1))
    out, att = m(torch.randn(2, 1, 32, 32), return_attention=True)
    out.sum().backward()
    assert out.shape == (2, 3)
    assert all(p.grad is not None for p in m.parameters())
    if "pa" in attention or "pca" in attention:
        assert att["pa.layer1.0"].shape == (2, 3, 3) and att["pa.layer4.0"].shape == (2, 1, 1)
    if attention != "pa":
        assert att["ca.layer4.0"].shape == (2, 46, 46)


def test_eanet_attention_dict():
    m = models.create("eanet", img_size=32, patch_size=8).eval()
    _, att = m(torch.randn(1, 1, 32, 32), return_attention=True)
    assert sorted(att) == [f"external.{i}" for i in range(8)]
    assert att["external.7"].shape == (1, 16, 16, 64)


@pytest.mark.parametrize("name", ["psc_fusion", "eanet"])
def test_deterministic_under_seed(name):
    cfg, size = SMALL[name]
    _, a = _run(name, cfg, size, 1, seed=3)
    _, b = _run(name, cfg, size, 1, seed=3)
    _, c = _run(name, cfg, size, 1, seed=4)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


def test_cli_models_prints_params_and_flops(capsys):
    from hyperspy_mmdl.cli import main

    assert main(["models", "psc_encoder", "resnet50"]) == 0
    out = capsys.readouterr().out
    assert "79,442" in out and "23,557,208" in out
    assert " 4.110" in out  # resnet50 GMACs at 3×224×224
