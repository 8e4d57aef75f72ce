"""The layer names of a model: what the ``layers:`` option of a model instance accepts.

Names come from the network's own ``named_modules()``, built cheaply on the meta device.
Run ``python -m dimcollapse.models.layers <method> [--arch A | --builder M:F | --checkpoint DIR]``
to print them, one a line (``--checkpoint`` for ``transformers``: a folder or ``hf://`` id).
How a layer's output becomes a feature space is
:mod:`dimcollapse.models.hooks`.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from dimcollapse.models import zoo
from dimcollapse.models.archs import arch_info
from dimcollapse.models.dpc import DPCContext
from dimcollapse.models.registry import METHODS, canonical_method
from dimcollapse.models.slow_r50 import SlowR50SSL, SlowR50Supervised


@functools.lru_cache(maxsize=64)
def _module_names(method: str, arch: str | None, builder: str | None, builder_options: str) -> tuple[str, ...]:
    info = METHODS[method]
    if info.family in ("torchvision", "pytorchvideo"):
        spec = arch_info(info.family, arch)
        factory: Callable[[], nn.Module] = lambda: zoo.library_net(spec, spec.frames, spec.crop_size)  # noqa: E731
    elif info.family == "transformers":
        raise ValueError(
            "method transformers: its layer names come from the checkpoint "
            "(dimcollapse.models.hf.module_names, or --checkpoint on the command line)"
        )
    elif info.family == "custom":
        if builder is None:
            raise ValueError(
                "method custom needs the builder option ('package.module:function' returning an nn.Module)"
            )
        factory = lambda: zoo.custom_net(builder, json.loads(builder_options))  # noqa: E731
    elif info.name == "supervised":
        factory = SlowR50Supervised
    elif info.family == "slow_r50":
        head = info.default_head
        assert head is not None  # every Slow R50 SSL method has its released checkpoints' head
        factory = lambda: SlowR50SSL(info.name, head, info.normalize_embedding)  # noqa: E731
    else:
        factory = lambda: DPCContext(arch or "resnet34")  # noqa: E731
    try:
        with torch.device("meta"):
            net = factory()
    except (RuntimeError, NotImplementedError):  # constructors that read tensor values (PyTorchVideo MViT)
        net = factory()
    return tuple(name for name, _ in net.named_modules() if name)


def module_names(method: str, options: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """Names of every submodule of ``method``'s network (what ``layers`` accepts), cheaply.

    The network is built on the meta device (no memory, no initialisation) where its
    constructor allows; results are cached per (method, arch, builder).
    """
    options = options or {}
    builder_options = json.dumps(dict(options.get("builder_options") or {}), sort_keys=True)
    return _module_names(canonical_method(method), options.get("arch"), options.get("builder"), builder_options)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the layer names of a model, one a line (the names ``layers:`` accepts)."""
    parser = argparse.ArgumentParser(prog="python -m dimcollapse.models.layers", description=main.__doc__)
    parser.add_argument("method")
    parser.add_argument("--arch")
    parser.add_argument("--builder")
    parser.add_argument("--checkpoint", help="method transformers: a save_pretrained folder or hf://<org>/<name>")
    args = parser.parse_args(argv)
    if canonical_method(args.method) == "transformers":
        if args.checkpoint is None:
            parser.error("method transformers needs --checkpoint")
        from dimcollapse.models.hf import module_names as transformers_module_names

        names, _ = transformers_module_names(args.checkpoint)
    else:
        options = {k: v for k, v in (("arch", args.arch), ("builder", args.builder)) if v is not None}
        names = list(module_names(args.method, options))
    for name in names:
        print(name)


if __name__ == "__main__":
    main()
