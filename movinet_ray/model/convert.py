"""Load official MoViNet TensorFlow weights into :class:`MoViNet`.

Sources: a ``.npz`` of variables keyed by checkpoint name, or a TF2 checkpoint (folder, prefix
or ``.index``) as in the released ``movinet_aX_{base,stream}.tar.gz`` archives, saved either as
``tf.train.Checkpoint(model=...)`` (keys ``model/layer_with_weights-0/...``) or with the
backbone as its own object (keys ``backbone/...``).

Keys are object-graph paths: the classifier's ``layer_with_weights-0`` is the backbone, whose
``layer_with_weights-N`` are the stem (0), the blocks in order (1..L) and the head (L+1);
``layer_with_weights-1`` is the classifier head. Inside, Python attribute names identify the
tensor. Kernels are transposed to PyTorch layout by their target's shape, so '3d', '2plus1d'
and '3d_2plus1d' checkpoints all load.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from .movinet import MoViNet
from .tf_checkpoint import read_checkpoint

_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
       "moving_variance": "running_var"}


class WeightConversionError(ValueError):
    """The TF variables and the PyTorch model do not correspond one to one."""


def read_tf_variables(path: str | Path) -> dict[str, np.ndarray]:
    """Variables from a ``.npz`` (keys = checkpoint names), a TF checkpoint, or a released
    ``movinet_*.tar.gz`` archive holding one."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    if path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return _read_archive(path)
    return read_checkpoint(path)


def _read_archive(path: Path) -> dict[str, np.ndarray]:
    """Unpack a checkpoint archive to a temporary folder and read the checkpoint inside."""
    import tarfile
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, tarfile.open(path) as tar:
        tar.extractall(tmp, filter="data")
        markers = sorted(Path(tmp).rglob("checkpoint"))
        indexes = sorted(Path(tmp).rglob("*.index"))
        if markers:
            return read_checkpoint(markers[0].parent)
        if len(indexes) == 1:
            return read_checkpoint(indexes[0])
        raise WeightConversionError(f"{path}: no TF checkpoint inside the archive "
                                    f"({len(indexes)} .index files)")


def load_tf_weights(model: MoViNet, path: str | Path | dict[str, np.ndarray]) -> MoViNet:
    """Fill every parameter and BN statistic of ``model`` from official TF weights.

    Raises:
        WeightConversionError: a checkpoint variable has no place in the model, a model tensor
            has no checkpoint variable, or shapes disagree - naming the tensors.
    """
    variables = path if isinstance(path, dict) else read_tf_variables(path)
    targets = dict(model.named_parameters())
    targets.update((n, b) for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    blocks = [block for stage in model.blocks for block in stage]
    loaded: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    for key, value in variables.items():
        name = _torch_name(key, blocks, model)
        if name is None:
            continue  # not a model variable (counters, optimizer slots, object graph)
        if name == "":
            unused.append(key)
            continue
        if name not in targets:
            unused.append(f"{key} (-> {name}, not in this model)")
            continue
        target = targets[name]
        tensor = _to_torch_layout(np.asarray(value), tuple(target.shape), key, name)
        if name in loaded:
            raise WeightConversionError(f"two checkpoint variables map to {name} (one is {key})")
        loaded[name] = tensor
    missing = sorted(set(targets) - set(loaded))
    if unused or missing:
        raise WeightConversionError(
            "checkpoint and model do not match (is it the right variant and mode?): "
            f"{len(unused)} unused checkpoint variable(s) {unused[:6]}; "
            f"{len(missing)} model tensor(s) without a value {missing[:6]}")
    with torch.no_grad():
        for name, tensor in loaded.items():
            targets[name].copy_(tensor.to(targets[name].dtype))
    return model


def _torch_name(key: str, blocks: list, model: MoViNet) -> str | None:
    """Map a checkpoint key to a model tensor name; None = skip, "" = unrecognised."""
    key = key.removesuffix(_SUFFIX)
    if key in ("save_counter", "_CHECKPOINTABLE_OBJECT_GRAPH") or ".OPTIMIZER_SLOT" in key \
            or key.startswith(("optimizer/", "global_step")):
        return None
    if key.startswith("backbone/"):
        key = "model/layer_with_weights-0/" + key[len("backbone/"):]
    m = re.match(r"model/layer_with_weights-(\d)/(.*)$", key)
    if not m:
        return ""
    # Nested Keras wrappers repeat '_conv' ('2plus1d' MobileConv2D around a Conv2D).
    rest = re.sub(r"(_conv(?:_temporal)?)/_conv/", r"\1/", m.group(2))
    if m.group(1) == "1":
        return _map(rest, {"_head/_conv/": "classifier.hidden.", "_classifier/_conv/": "classifier.fc."})
    m2 = re.match(r"layer_with_weights-(\d+)/(.*)$", rest)
    if not m2:
        return ""
    index, rest = int(m2.group(1)), m2.group(2)
    if index == 0:
        return _map(rest, {"_stem/_conv/": "stem.conv.", "_stem/_batch_norm/": "stem.bn."})
    if index == len(blocks) + 1:
        return _map(rest, {"_project/_conv/": "head.project.conv.",
                           "_project/_batch_norm/": "head.project.bn."})
    if not 1 <= index <= len(blocks):
        return ""
    block = blocks[index - 1]
    prefix = _block_prefix(model, index - 1)
    feature = "feature.conv3d." if block.feature.conv3d is not None else "feature.spatial.conv."
    feature_bn = "feature.conv3d.bn." if block.feature.conv3d is not None else "feature.spatial.bn."
    if rest == "_mobile_bottleneck/_rezero/scale":
        return prefix + "rezero"
    if rest == "_attention/_pos_encoding/_rezero/scale":
        return prefix + "se.pos_scale"
    name = _map(rest, {
        "_expansion/_conv/": "expansion.conv.", "_expansion/_batch_norm/": "expansion.bn.",
        "_feature/_conv/": feature, "_feature/_batch_norm/": feature_bn,
        "_feature/_conv_temporal/": "feature.temporal.",
        "_feature/_batch_norm_temporal/": "feature.temporal.bn.",
        "_attention/_se_reduce/_conv/": "se.reduce.", "_attention/_se_expand/_conv/": "se.expand.",
        "_projection/_conv/": "projection.conv.", "_projection/_batch_norm/": "projection.bn.",
        "_skip/_projection/_conv/": "skip.projection.conv.",
        "_skip/_projection/_batch_norm/": "skip.projection.bn.",
    })
    return prefix + name if name else ""


def _block_prefix(model: MoViNet, flat_index: int) -> str:
    for i, stage in enumerate(model.blocks):
        if flat_index < len(stage):
            return f"blocks.{i}.{flat_index}."
        flat_index -= len(stage)
    raise IndexError(flat_index)


def _map(rest: str, table: dict[str, str]) -> str:
    for tf_prefix, torch_prefix in table.items():
        if rest.startswith(tf_prefix):
            leaf = rest[len(tf_prefix):]
            if leaf in ("kernel", "depthwise_kernel"):
                return torch_prefix + "weight"
            if leaf == "bias":
                return torch_prefix + "bias"
            if leaf in _BN:
                return torch_prefix + _BN[leaf]
            return ""
    return ""


def _to_torch_layout(value: np.ndarray, shape: tuple[int, ...], key: str, name: str) -> torch.Tensor:
    """Transpose a TF (channels-last) kernel to the target PyTorch shape."""
    v = value
    if v.ndim == 5 and len(shape) == 5:          # Conv3D (kt,kh,kw,1,C) -> (C,1,kt,kh,kw);
        # also the '3d_2plus1d' temporal kernel (kt,1,1,1,C) -> (C,1,kt,1,1)
        v = v.transpose(4, 3, 0, 1, 2)
    elif v.ndim == 5 and len(shape) == 4:        # Conv3D with kt=1 -> Conv2d
        if v.shape[0] != 1:
            raise WeightConversionError(f"{key}: 3D kernel {v.shape} has a temporal extent but "
                                        f"{name} is spatial {shape}")
        v = v[0].transpose(3, 2, 0, 1)
    elif v.ndim == 4 and len(shape) == 4:        # Conv2D (kh,kw,Cin,Cout) / Depthwise (kh,kw,C,1)
        depthwise = key.removesuffix(_SUFFIX).endswith("depthwise_kernel")
        v = v.transpose(2, 3, 0, 1) if depthwise else v.transpose(3, 2, 0, 1)
    elif len(shape) == 2 and v.ndim in (4, 5):   # 1x1 conv -> Linear [out, in]
        v = v.reshape(v.shape[-2], v.shape[-1]).T
    elif len(shape) == 5 and v.ndim == 4:        # temporal depthwise (kt,1,C,1) -> (C,1,kt,1,1)
        v = v[:, 0, :, 0].T.reshape(shape)
    if tuple(v.shape) != shape:
        raise WeightConversionError(
            f"shape mismatch: checkpoint {key} {value.shape} -> {tuple(v.shape)}, "
            f"model {name} {shape}")
    return torch.from_numpy(v.copy())  # copy(): C-contiguous, keeps 0-d scalars
