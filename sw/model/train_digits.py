"""Train the embedded default model: the ``tiny`` ViT on scikit-learn's digits.

Real data with no download: 1,797 8x8 grey images of handwritten digits, bundled
with scikit-learn. The split is fixed (seeded), so the held-out images the demo
verifies on are always the same. Needs PyTorch (``pip install -e '.[train]'``);
the trained float weights are shipped in ``data/digits_vit.npz``, so nothing at
run time needs it.

    python -m vitforge.sw.model.train_digits [--epochs 120] [--out FILE]
"""

import argparse
import math
from pathlib import Path
import sys

from .digits import digits_split
from .vit import PRESETS, FloatBlock, FloatVit, forward, patchify
from .weights import EMBEDDED_WEIGHTS, save_vit


def _torch_model(shape):
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(shape.dim, eps=1e-6)
            self.qkv = nn.Linear(shape.dim, 3 * shape.dim)
            self.proj = nn.Linear(shape.dim, shape.dim)
            self.ln2 = nn.LayerNorm(shape.dim, eps=1e-6)
            self.fc1 = nn.Linear(shape.dim, shape.mlp)
            self.fc2 = nn.Linear(shape.mlp, shape.dim)

        def forward(self, x):
            batch, tokens, dim = x.shape
            head_dim = dim // shape.heads
            q, k, v = self.qkv(self.ln1(x)).split(dim, dim=-1)
            def heads(t):
                return t.reshape(batch, tokens, shape.heads, head_dim).transpose(1, 2)
            scores = heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(head_dim)
            context = (scores.softmax(-1) @ heads(v)).transpose(1, 2).reshape(batch, tokens, dim)
            x = x + self.proj(context)
            return x + self.fc2(nn.functional.gelu(self.fc1(self.ln2(x))))

    class Vit(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = nn.Linear(shape.patch_features, shape.dim)
            self.cls = nn.Parameter(torch.randn(shape.dim) * 0.02)
            self.position = nn.Parameter(torch.randn(shape.tokens, shape.dim) * 0.02)
            self.blocks = nn.ModuleList(Block() for _ in range(shape.depth))
            self.norm = nn.LayerNorm(shape.dim, eps=1e-6)
            self.head = nn.Linear(shape.dim, shape.classes)

        def forward(self, patches):
            x = self.patch(patches)
            cls = self.cls.expand(x.shape[0], 1, -1)
            x = torch.cat([cls, x], dim=1) + self.position
            for block in self.blocks:
                x = block(x)
            return self.head(self.norm(x[:, 0]))

    return Vit()


def _export(model, shape):
    def array(tensor):
        return tensor.detach().double().numpy().copy()

    def linear(layer):
        return array(layer.weight).T.copy(), array(layer.bias)

    blocks = []
    for block in model.blocks:
        qkv_w, qkv_b = linear(block.qkv)
        proj_w, proj_b = linear(block.proj)
        fc1_w, fc1_b = linear(block.fc1)
        fc2_w, fc2_b = linear(block.fc2)
        blocks.append(FloatBlock(
            ln1_gamma=array(block.ln1.weight), ln1_beta=array(block.ln1.bias),
            qkv_weight=qkv_w, qkv_bias=qkv_b, proj_weight=proj_w, proj_bias=proj_b,
            ln2_gamma=array(block.ln2.weight), ln2_beta=array(block.ln2.bias),
            fc1_weight=fc1_w, fc1_bias=fc1_b, fc2_weight=fc2_w, fc2_bias=fc2_b))
    patch_w, patch_b = linear(model.patch)
    head_w, head_b = linear(model.head)
    return FloatVit(shape=shape, patch_weight=patch_w, patch_bias=patch_b,
                    cls_token=array(model.cls), position=array(model.position), blocks=blocks,
                    norm_gamma=array(model.norm.weight), norm_beta=array(model.norm.bias),
                    head_weight=head_w, head_bias=head_b)


def train(epochs=120, seed=0, log=print):
    """Train with AdamW and a cosine schedule; return the float ViT and its test accuracy."""
    import torch

    torch.manual_seed(seed)
    shape = PRESETS["tiny"]
    (train_images, train_labels), (test_images, test_labels) = digits_split()
    train_x = torch.tensor(patchify(train_images, shape), dtype=torch.float32)
    train_y = torch.tensor(train_labels)
    model = _torch_model(shape)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=generator)
        for start in range(0, len(order), 64):
            batch = order[start:start + 64]
            loss = torch.nn.functional.cross_entropy(model(train_x[batch]), train_y[batch],
                                                     label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
        if (epoch + 1) % 20 == 0:
            log(f"epoch {epoch + 1}: loss {loss.item():.3f}")
    vit = _export(model, shape)
    accuracy = float((forward(vit, test_images).argmax(axis=1) == test_labels).mean())
    return vit, accuracy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=EMBEDDED_WEIGHTS)
    args = parser.parse_args(argv)
    vit, accuracy = train(args.epochs, args.seed)
    save_vit(args.out, vit, {"float_test_accuracy": accuracy, "epochs": args.epochs,
                             "seed": args.seed})
    print(f"float test accuracy {accuracy:.4f}; weights in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
