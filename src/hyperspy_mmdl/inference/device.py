"""Which torch device a model runs on."""

from __future__ import annotations

__all__ = ["select_device", "available_devices"]


def select_device(device="auto"):
    """Pick the torch device to run on.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` (CUDA if available, then Apple MPS, then CPU), or an explicit
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        The requested device is not available on this machine.

    Examples
    --------
    >>> select_device("cpu")
    device(type='cpu')
    """
    import torch

    if isinstance(device, torch.device):
        dev = device
    else:
        name = "auto" if device is None else str(device).strip().lower()
        if name == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda")
            mps = getattr(torch.backends, "mps", None)
            if mps is not None and mps.is_available():
                return torch.device("mps")
            return torch.device("cpu")
        try:
            dev = torch.device(name)
        except RuntimeError as err:
            raise ValueError(f"device={device!r} is not a torch device ({err}); "
                             "use 'auto', 'cpu', 'cuda' or 'mps'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available here "
                         "(torch.cuda.is_available() is False); use device='auto' or 'cpu'")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"device={device!r} requested but Apple MPS is not available here; "
                             "use device='auto' or 'cpu'")
    return dev



def available_devices() -> list[str]:
    """The device names that work on this machine: ``"auto"``, ``"cpu"``, then ``"cuda"``/``"cuda:N"`` and ``"mps"`` when present.

    Returns
    -------
    list of str
        Every entry is accepted by :func:`select_device`.

    Examples
    --------
    >>> available_devices()[:2]
    ['auto', 'cpu']
    """
    import torch

    out = ["auto", "cpu"]
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        out += ["cuda"] + ([f"cuda:{i}" for i in range(n)] if n > 1 else [])
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out
