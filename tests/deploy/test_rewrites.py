from __future__ import annotations

import pytest
import torch
from torch import nn

from edgeseg.deploy.rewrites import fold_batchnorm, fuse_folding, inference_graph
from edgeseg.deploy.tuning import tune_malloc
from edgeseg.layers import ConvNormAct, ConvTransposeNormAct
from edgeseg.models import create_model


def _randomise_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            if m.affine:  # L3U-Net's BatchNorms have none
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-1, 1)


@pytest.mark.parametrize(
    "block",
    [
        ConvNormAct(4, 6, 3),
        ConvNormAct(6, 6, 3, groups=3),
        ConvTransposeNormAct(4, 6, 2, stride=2),
        ConvTransposeNormAct(6, 6, 3, stride=2, padding=1, output_padding=1, groups=6),
        ConvTransposeNormAct(6, 4, 3, stride=2, padding=1, output_padding=1, groups=2),
    ],
)
def test_fold_is_exact_for_every_conv_kind(block: nn.Module) -> None:
    _randomise_bn(block)
    block.eval()
    folded = fold_batchnorm(block)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, block[0].in_channels, 9, 11)
    torch.testing.assert_close(folded(x), block(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["squeeze_unet", "unet"])
def test_fold_whole_model(name: str) -> None:
    model = create_model(name, num_classes=4)
    _randomise_bn(model)
    model.eval()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # not in place
    x = torch.randn(1, 3, 37, 45)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)


def test_fuse_folding_is_exact_and_removes_the_fold() -> None:
    from edgeseg.layers.fold import Fold

    model = create_model("l3unet", num_classes=5)
    _randomise_bn(model)
    model.eval()
    fused = fuse_folding(model)
    assert not any(isinstance(m, Fold) for m in fused.modules())
    assert any(isinstance(m, Fold) for m in model.modules())  # not in place
    strided = [m for m in fused.modules() if isinstance(m, nn.Conv2d) and m.stride == (4, 4)]
    assert len(strided) == 1 and strided[0].kernel_size == (4, 4)
    x = torch.randn(2, 3, 67, 93)  # padded to the stride inside
    with torch.no_grad():
        ref = model(x)
        torch.testing.assert_close(fused(x), ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(inference_graph(model)(x), ref, rtol=1e-4, atol=1e-4)


def test_fuse_folding_leaves_folds_without_a_pointwise_conv() -> None:
    from edgeseg.layers.fold import Fold, Unfold

    seq = nn.Sequential(Fold(2), nn.Conv2d(12, 8, 3, padding=1), nn.Conv2d(8, 8, 3), Unfold(2))
    fused = fuse_folding(seq)
    assert isinstance(fused[0], Fold) and isinstance(fused[3], Unfold)


def test_fold_needs_eval_mode() -> None:
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(ConvNormAct(3, 3).train())


def test_tune_malloc_is_idempotent() -> None:
    assert tune_malloc() == tune_malloc()


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated")
@pytest.mark.slow
def test_compile_for_inference_matches_eager() -> None:
    from edgeseg.deploy.tuning import compile_for_inference

    model = torch.nn.Sequential(ConvNormAct(3, 8, 3), torch.nn.Conv2d(8, 2, 1))
    _randomise_bn(model)
    model.eval()
    x = torch.randn(1, 3, 16, 20)
    compiled = compile_for_inference(model, x)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="eval mode"):
        compile_for_inference(model.train(), x)


def test_erfnet_downsampler_folds_its_batchnorm() -> None:
    from edgeseg.layers.erfnet_blocks import Downsampler, FoldedDownsampler

    torch.manual_seed(0)
    block = Downsampler(16, 64)
    _randomise_bn(block)
    block.eval()
    folded = fold_batchnorm(nn.Sequential(block).eval())[0]
    assert isinstance(folded, FoldedDownsampler)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 16, 18, 22)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), block(x), rtol=1e-5, atol=1e-5)
    model = create_model("erfnet", num_classes=5)
    _randomise_bn(model)
    model.eval()
    fused = fold_batchnorm(model)
    assert sum(isinstance(m, FoldedDownsampler) for m in fused.modules()) == 3
    x = torch.randn(1, 3, 37, 45)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-4)
