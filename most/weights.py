"""HF model folders loaded in the checkpoint's own dtype, with host memory bounded by one copy.

transformers maps each safetensors file with ``mmap`` and, for MoE checkpoints, stacks the
per-expert tensors of the file into new ``(E, ...)`` tensors: the mapped pages it read stay resident
beside the stacked copies until the file is closed, and the process peaks at about twice the
checkpoint. :func:`load_causal_lm` hands transformers the same tensors read with ``pread`` instead
(each read into a buffer of its own, freed once stacked) and loads them one after the other
(``HF_DEACTIVATE_ASYNC_LOAD``), so the peak is the model itself plus the tensors of one weight being
converted. The model is built on the ``meta`` device first (transformers' own loading), so no
randomly initialised copy exists either. ``empty=True`` stops there: shapes and dtypes only, for
the ranks of a sharded strategy that receive their shards from rank 0.
"""

from __future__ import annotations

import ctypes
import json
import os
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch

#: ``source.dtype`` / ``load_model`` choices besides a torch dtype name.
AUTO = "auto"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_ST_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def weight_files(folder: Path) -> list[Path]:
    """The folder's safetensors files (all shards), sorted."""
    return sorted(Path(folder).glob("*.safetensors"))


def checkpoint_bytes(folder: Path) -> int:
    """Bytes of the folder's safetensors files (0 when it has none)."""
    return sum(f.stat().st_size for f in weight_files(folder))


def _header(file: Path) -> dict:
    with open(file, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n))


def folder_dtype(folder: Path, config=None) -> torch.dtype:
    """The checkpoint's dtype: the config's ``dtype`` / ``torch_dtype``, else the most common
    floating dtype in the safetensors headers, else float32."""
    if config is None:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(folder))
    named = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(named, torch.dtype):
        return named
    if isinstance(named, str) and named in DTYPES:
        return DTYPES[named]
    sizes: dict[torch.dtype, int] = {}
    for file in weight_files(folder)[:1]:
        for key, info in _header(file).items():
            if key != "__metadata__" and info["dtype"] in _ST_DTYPES:
                dt = _ST_DTYPES[info["dtype"]]
                sizes[dt] = sizes.get(dt, 0) + info["data_offsets"][1] - info["data_offsets"][0]
    return max(sizes, key=sizes.get) if sizes else torch.float32


def resolve_dtype(dtype: str | torch.dtype, folder: Path, config=None) -> torch.dtype:
    """``"auto"`` -> :func:`folder_dtype`; a name from :data:`DTYPES` or a torch dtype as given."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == AUTO:
        return folder_dtype(folder, config)
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not 'auto' or one of {sorted(DTYPES)}")
    return DTYPES[dtype]


@contextmanager
def _sequential_loading():
    """transformers reads tensors in a thread pool ahead of converting them unless this is set."""
    old = os.environ.get("HF_DEACTIVATE_ASYNC_LOAD")
    os.environ["HF_DEACTIVATE_ASYNC_LOAD"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_DEACTIVATE_ASYNC_LOAD", None)
        else:
            os.environ["HF_DEACTIVATE_ASYNC_LOAD"] = old


#: glibc ``mallopt`` parameter: allocations of at least this many bytes get a mapping of their own.
_M_MMAP_THRESHOLD = -3
_heap_depth = 0  # nested bounded_heap blocks: only the outermost sets and restores


@contextmanager
def bounded_heap(threshold: int = 1 << 20, after: int = 32 << 20):
    """Inside, every allocation of ``threshold`` bytes or more is its own memory mapping, returned
    to the OS when freed; on exit the threshold becomes ``after`` (glibc's own ceiling).

    Loading and converting free many mid-sized tensors (per-expert weights before stacking, each
    old expert block once its successor is filled) between long-lived ones. glibc serves
    mid-sized blocks from its heap, where the freed ones stay resident between the live ones: about
    1.5x the checkpoint. A no-op where the C library is not glibc.
    """
    global _heap_depth
    try:
        libc = ctypes.CDLL("libc.so.6")
        if _heap_depth == 0:
            libc.mallopt(_M_MMAP_THRESHOLD, threshold)
    except (OSError, AttributeError):
        yield
        return
    _heap_depth += 1
    try:
        yield
    finally:
        _heap_depth -= 1
        if _heap_depth == 0:
            libc.mallopt(_M_MMAP_THRESHOLD, after)
            libc.malloc_trim(0)


def _open(safe_open, file: Path):
    try:
        return safe_open(str(file), framework="pt", device="cpu", backend="pread")
    except TypeError:  # safetensors < 0.8 has only mmap
        return safe_open(str(file), framework="pt", device="cpu")


@contextmanager
def default_dtype(dtype: torch.dtype):
    """Floating tensors created inside are ``dtype`` (new modules start in the weights' dtype)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def load_causal_lm(folder: Path, dtype: str | torch.dtype = AUTO, empty: bool = False):
    """The folder's causal LM (any Auto-registered class, the adapted one included) in ``dtype``.

    ``dtype``: ``"auto"`` (the checkpoint's, :func:`folder_dtype`) or an explicit dtype.
    ``empty``: build it on the ``meta`` device from the config alone (no weight is read); the
    caller materialises it (``to_empty``) and fills it, e.g. by a broadcast from rank 0.
    """
    from safetensors import safe_open
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    folder = Path(folder)
    config = AutoConfig.from_pretrained(str(folder))
    dt = resolve_dtype(dtype, folder, config)
    cls = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    if empty:
        with torch.device("meta"):
            return cls._from_config(config, dtype=dt)
    files = weight_files(folder)
    if not files:  # legacy .bin checkpoints: transformers' own loading
        return cls.from_pretrained(str(folder), config=config, dtype=dt)
    with ExitStack() as stack, _sequential_loading(), bounded_heap():
        handles = [stack.enter_context(_open(safe_open, f)) for f in files]
        lazy = {k: h.get_slice(k) for h in handles for k in h.keys()}  # noqa: SIM118
        model = cls.from_pretrained(None, config=config, state_dict=lazy, dtype=dt)
    if (folder / "generation_config.json").is_file():
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(str(folder))
    return model
