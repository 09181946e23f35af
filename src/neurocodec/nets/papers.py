"""The research papers' networks that neurocodec grew out of, rebuilt as the papers describe them.

These are small autoencoders for 28x28 digits and clothes, and DnCNN, a residual denoiser for
JPEG artifacts. The papers count code dimensions as "compression"; neurocodec quantizes the codes
and entropy-codes them into real ``.nac`` bytes (see ``neurocodec.papers``). Each class takes and
returns images as (B, C, H, W) tensors with pixels in [0, 1].

Every architecture is rebuilt from its paper's text, and ``ARCHITECTURES`` maps the name that a
model card records to the class.
"""

from __future__ import annotations

from torch import Tensor, nn


def he_init(net: nn.Module) -> None:
    """He (Kaiming) normal weights and zero biases for every convolution of ``net``."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _conv_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]


class CAE20(nn.Module):
    """The 20-layer convolutional autoencoder: 28x28x1 -> 7x7x1 code -> 28x28x1.

    Encoder: 2 convs, 2x2 max-pool, 3 convs, max-pool, 2 convs and a one-channel 3x3 code conv
    (10 layers); the decoder mirrors it with 2x2 nearest up-sampling and ends in tanh (10 layers).
    All convs are 3x3 with same padding and ReLU. The widths (16, 32 | 64, 64, 32 | 32, 32) give
    97,473 parameters each side; the paper reports about 98.6k and 99.7k without its widths.
    The code conv is linear: with a ReLU on a one-channel code, most of the 49 code values died
    (stuck at zero) within the first hundred steps, which a 49-value bottleneck cannot afford.
    Weights start from He initialisation, which a 20-layer plain ReLU stack needs to train at all.
    """

    WIDTHS = (16, 32, 64, 64, 32, 32, 32)
    CODE_SHAPE = (1, 7, 7)

    def __init__(self) -> None:
        super().__init__()
        c1, c2, c3, c4, c5, c6, c7 = self.WIDTHS
        self.encoder = nn.Sequential(
            *_conv_relu(1, c1), *_conv_relu(c1, c2), nn.MaxPool2d(2),
            *_conv_relu(c2, c3), *_conv_relu(c3, c4), *_conv_relu(c4, c5), nn.MaxPool2d(2),
            *_conv_relu(c5, c6), *_conv_relu(c6, c7), nn.Conv2d(c7, 1, 3, padding=1),
        )
        self.decoder = nn.Sequential(
            *_conv_relu(1, c7), *_conv_relu(c7, c6), nn.Upsample(scale_factor=2),
            *_conv_relu(c6, c5), *_conv_relu(c5, c4), *_conv_relu(c4, c3), nn.Upsample(scale_factor=2),
            *_conv_relu(c3, c2), *_conv_relu(c2, c1), nn.Conv2d(c1, 1, 3, padding=1), nn.Tanh(),
        )

        he_init(self)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def decode(self, code: Tensor) -> Tensor:
        return self.decoder(code)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))


class FC196(nn.Module):
    """The deep fully connected autoencoder 784-1000-500-196 (and back) with sigmoid units.

    The paper pre-trains it as a stack of RBMs; we train it end to end with Adam, which reaches
    the same kind of solution without the pre-training stage (the model card says so).
    """

    SIZES = (784, 1000, 500, 196)
    CODE_SHAPE = (196, 1, 1)

    def __init__(self) -> None:
        super().__init__()
        enc, dec = [], []
        for a, b in zip(self.SIZES, self.SIZES[1:]):
            enc += [nn.Linear(a, b), nn.Sigmoid()]
        rev = self.SIZES[::-1]
        for a, b in zip(rev, rev[1:]):
            dec += [nn.Linear(a, b), nn.Sigmoid()]
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x.flatten(1))[:, :, None, None]

    def decode(self, code: Tensor) -> Tensor:
        return self.decoder(code.flatten(1)).view(-1, 1, 28, 28)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))


class CAE28(nn.Module):
    """The small convolutional autoencoder with a 28-value code: 28x28 -> 1x28 -> 28x28.

    Two 3x3 conv + 2x2 max-pool stages (16 and 32 filters) reduce the digit to 32x7x7 features,
    and one linear layer maps them to the 28-value code; the decoder mirrors it with nearest
    up-sampling and ends in a sigmoid. A first version that collapsed each pixel column into one
    code value with a 28x1 convolution saw only a narrow strip per value and stalled at a
    validation MSE of 0.052 on MNIST, worse than 28-component PCA.
    """

    CODE_SHAPE = (1, 1, 28)

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            *_conv_relu(1, 16), nn.MaxPool2d(2), *_conv_relu(16, 32), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 28),
        )
        self.decoder = nn.Sequential(
            nn.Linear(28, 32 * 7 * 7), nn.ReLU(), nn.Unflatten(1, (32, 7, 7)),
            nn.Upsample(scale_factor=2), *_conv_relu(32, 16), nn.Upsample(scale_factor=2),
            nn.Conv2d(16, 1, 3, padding=1), nn.Sigmoid(),
        )
        he_init(self)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x).view(-1, *self.CODE_SHAPE)

    def decode(self, code: Tensor) -> Tensor:
        return self.decoder(code.flatten(1))

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))


class DnCNN(nn.Module):
    """DnCNN (Zhang et al. 2017): Conv+ReLU, (depth-2) x Conv+BN+ReLU, Conv; 3x3, 64 filters.

    Residual learning: the network predicts the artifact (input minus clean image) and the
    output is the input minus that prediction. ``depth`` is recorded in the model card. The last
    conv starts at zero, so training starts from the identity (a random first guess of the artifact
    was worse than the JPEG itself for the whole first 500 steps) and can only learn to improve it.
    """

    def __init__(self, depth: int = 17, channels: int = 3, filters: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, filters, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(filters, filters, 3, padding=1, bias=False), nn.BatchNorm2d(filters), nn.ReLU()]
        last = nn.Conv2d(filters, channels, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        layers.append(last)
        self.body = nn.Sequential(*layers)

    def artifact(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return x - self.body(x)


ARCHITECTURES: dict[str, type[nn.Module]] = {"cae20": CAE20, "fc196": FC196, "cae28": CAE28, "dncnn": DnCNN}
