"""BinPlay's binary latent autoencoder (thesis §8.3.1, §8.4; reference architecture).

Reference code (the BinPlay authors' `vae_experiments/models_definition.py`): `d` = 32 base filters;
encoder: three 3×3 stride-2 convolutions (d, 2d, 4d filters, batch norm, leaky ReLU) and a linear map
to the n-bit latent; decoder: the code concatenated with the 10-bit task code → linear 1.5n → linear
64d, reshaped to d×8×8, then transposed convolutions to 4d, 6d, 5d filters (batch norm, leaky ReLU) and
to the image channels; its output is a logit map, sigmoid gives pixels in [0, 1]. The 28×28 and 32×32
stacks are the reference's; the 8×8 one (the embedded digits) is ours: the same filters, stride 1.
With n = 200 the 28×28 decoder holds 1.21M parameters = 4.6 MiB (Table 8.4.2: 4.6 MB), with n = 1000
the 32×32×3 one 5.5M = 21.0 MiB (Table 8.4.2: 21.0 MB).

The reference feeds the encoder's real-valued output to the decoder while it trains the autoencoder;
`straight_through=True` (our default) binarises it instead, sign(z) forward with the identity gradient
(straight-through estimator), so that the decoder sees {−1, +1} inputs from the start, as it does
afterwards from the codes.
"""

from __future__ import annotations

import torch
from torch import nn

from genrep.continual.codes import task_code
from genrep.errors import InputError

# side → (kernel, stride, padding) of the three hidden transposed convolutions and of the output one
_DECONVS = {
    8: ((3, 1, 1), (3, 1, 1), (3, 1, 1), (3, 1, 1)),
    28: ((3, 2, 2), (3, 2, 0), (3, 1, 0), (4, 1, 2)),
    32: ((3, 2, 2), (4, 2, 0), (4, 1, 0), (4, 1, 1)),
}


def binarize(z: torch.Tensor) -> torch.Tensor:
    """sign(z) ∈ {−1, +1} (0 ↦ +1) in the forward pass, identity gradient (straight-through)."""
    return z + (torch.where(z >= 0, 1.0, -1.0).to(z) - z).detach()


def _check_shape(image_shape: tuple[int, int, int]) -> tuple[int, int]:
    channels, height, width = (int(s) for s in image_shape)
    if height != width or height not in _DECONVS or channels < 1:
        raise InputError(f"the BinPlay autoencoder supports square images of side {sorted(_DECONVS)}, got "
                         f"{tuple(image_shape)}")
    return channels, height


class BinaryEncoder(nn.Module):
    """images N×C×H×W in [0, 1] → real-valued embeddings z N×n_bits (pulled to codes by Alg. 2)."""

    def __init__(self, image_shape: tuple[int, int, int], n_bits: int = 200, *, width: int = 32):
        super().__init__()
        channels, side = _check_shape(image_shape)
        layers, c_in = [], channels
        for c_out in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.LeakyReLU()]
            c_in = c_out
        reduced = -(-side // 8)
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(4 * width * reduced * reduced, n_bits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BinaryDecoder(nn.Module):
    """codes N×n_bits in {−1, +1} and task indices → logits N×C×H×W (sigmoid → pixels in [0, 1]).
    The task enters as its `task_bits`-bit code (`genrep.continual.codes.task_code`)."""

    def __init__(self, image_shape: tuple[int, int, int], n_bits: int = 200, *, width: int = 32,
                 task_bits: int = 10):
        super().__init__()
        channels, side = _check_shape(image_shape)
        self.image_shape, self.n_bits, self.task_bits, self.width = (channels, side, side), n_bits, task_bits, width
        hidden = int(1.5 * n_bits)
        self.fc = nn.Sequential(nn.Linear(n_bits + task_bits, hidden), nn.LeakyReLU(),
                                nn.Linear(hidden, 64 * width), nn.LeakyReLU())
        layers, c_in = [], width
        *hidden_convs, (kernel, stride, padding) = _DECONVS[side]
        for c_out, (k, s, p) in zip((4 * width, 6 * width, 5 * width), hidden_convs):
            layers += [nn.ConvTranspose2d(c_in, c_out, k, stride=s, padding=p, bias=False), nn.BatchNorm2d(c_out),
                       nn.LeakyReLU()]
            c_in = c_out
        layers.append(nn.ConvTranspose2d(c_in, channels, kernel, stride=stride, padding=padding, bias=False))
        # channels-last: oneDNN's transposed convolutions run 1.4–1.9× faster in this layout on a CPU
        self.deconv = nn.Sequential(*layers).to(memory_format=torch.channels_last)

    def forward(self, codes: torch.Tensor, task) -> torch.Tensor:
        if codes.ndim != 2 or codes.shape[1] != self.n_bits:
            raise InputError(f"BinaryDecoder expects codes N×{self.n_bits}, got {tuple(codes.shape)}")
        tasks = torch.as_tensor(task, device=codes.device).expand(len(codes))
        h = torch.cat([codes, task_code(tasks, self.task_bits).to(codes)], 1)
        grid = self.fc(h).view(-1, self.width, 8, 8).contiguous(memory_format=torch.channels_last)
        return self.deconv(grid).contiguous()


class BinaryAutoencoder(nn.Module):
    """Encoder + decoder. forward(x in [0, 1], task) → (z N×n_bits real, logits N×C×H×W)."""

    def __init__(self, encoder: BinaryEncoder, decoder: BinaryDecoder, *, straight_through: bool = True):
        super().__init__()
        self.encoder, self.decoder, self.straight_through = encoder, decoder, straight_through

    def forward(self, x: torch.Tensor, task) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        return z, self.decoder(binarize(z) if self.straight_through else z, task)

