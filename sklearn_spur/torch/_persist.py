"""Persistence of the extractor's model: pickle (trusted files only), never skops.

In the extractor's state the model stands behind a :class:`ModelRef`:

- pickle, joblib and cloudpickle (hence loky workers) pickle the model by the
  ordinary protocol, so a class defined in ``__main__`` or a notebook travels
  by value. A model on an accelerator is pickled as a CPU copy with a record
  of its devices, and goes back to them on unpickling only where they exist:
  a pickle made on a GPU loads on a CPU-only machine. Nothing here unpickles a
  byte string or calls ``torch.load``.
- skops, whose point is to load without running code, refuses the model: an
  ``nn.Module`` cannot be rebuilt without its class's code.
"""

from __future__ import annotations

import copy

import torch

SKOPS_MESSAGE = (
    "TorchFeatureExtractor: skops cannot store the torch model: rebuilding an "
    "nn.Module needs its class's code, which skops's safe format does not run. "
    "Persist the weights and rebuild instead: torch.save(model.state_dict(), "
    "'weights.pt'); later model = MyNet(); model.load_state_dict(torch.load("
    "'weights.pt', weights_only=True)); TorchFeatureExtractor(model, ...). The "
    "estimators after the extractor (pipe[-1]) can be stored with skops on their "
    "own; pickle or joblib store the whole pipeline, for files you trust."
)


class ModelRef:
    """Holds the model in a pickled extractor's state (see the module docstring)."""

    __slots__ = ("model",)

    def __init__(self, model):
        self.model = model

    def __reduce_ex__(self, protocol):
        model, devices = host_copy(self.model)
        return restore_model, (model, devices)

    def __reduce__(self):  # what skops calls, and pickle never does here
        raise TypeError(SKOPS_MESSAGE)

    def __deepcopy__(self, memo):
        return copy.deepcopy(self.model, memo)


def devices_by_name(model):
    """``{name: device}`` of every parameter and buffer not on the CPU."""
    return {name: str(t.device)
            for name, t in (*model.named_parameters(remove_duplicate=False),
                            *model.named_buffers(remove_duplicate=False))
            if t.device.type != "cpu"}


def host_copy(model):
    """(the model, or a CPU copy of it when some of it is elsewhere; devices)."""
    if not isinstance(model, torch.nn.Module):
        return model, None  # a skorch net maps its own devices
    devices = devices_by_name(model)
    if not devices:
        return model, None
    memo = {}
    for p in model.parameters():
        memo[id(p)] = torch.nn.Parameter(p.detach().to("cpu", copy=True),
                                         requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = b.detach().to("cpu", copy=True)
    return copy.deepcopy(model, memo), devices


def _available(device):
    """Whether ``device`` exists in this process (False when that cannot be told)."""
    device = torch.device(device)
    try:
        if device.type == "mps":
            return torch.backends.mps.is_available()
        backend = getattr(torch, device.type)
        return backend.is_available() and (device.index is None
                                           or device.index < backend.device_count())
    except (AttributeError, RuntimeError):
        return False


def restore_model(model, devices):
    """The unpickled model, moved back to its devices where they all exist."""
    if devices and all(_available(d) for d in set(devices.values())):
        for name, device in devices.items():
            owner, _, leaf = name.rpartition(".")
            module = model.get_submodule(owner)
            if leaf in module._parameters:
                module._parameters[leaf].data = module._parameters[leaf].data.to(device)
            else:
                module._buffers[leaf] = module._buffers[leaf].to(device)
    return model
