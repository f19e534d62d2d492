"""Fine-tune an HP-pruned float ViT with its pruned weights held at zero (masked training).

Builds the shipped ``data/digits_vit_hp50.npz``: the embedded ``tiny`` digits model
(:mod:`.train_digits`) HP-pruned by magnitude (:func:`~.hp_prune.prune_vit`), then
fine-tuned on the digits training split with the pruning masks re-applied after
every optimizer step, so the pruned weights stay exactly zero. Needs PyTorch
(``pip install -e '.[train]'``); nothing at run time does.

    python -m vitforge.sw.model.finetune_pruned [--sparsity 0.5] [--cols 16]
        [--block-rows 32] [--epochs 60] [--lr 1e-3] [--seed 0] [--out FILE]
"""

import argparse
import json
from pathlib import Path
import sys

import numpy as np

from vitforge.sw.gemm.sparse import DEFAULT_BLOCK_ROWS

from .digits import digits_split
from .hp_prune import prune_vit
from .vit import forward, patchify
from .weights import (DIGITS_CALIBRATION_IMAGES, EMBEDDED_HP50_WEIGHTS, EMBEDDED_WEIGHTS,
                      load_vit, save_vit)

__all__ = ["finetune_pruned", "digits_accuracies", "WEIGHT_DECAY", "LABEL_SMOOTHING",
           "main"]

WEIGHT_DECAY = 0.05
LABEL_SMOOTHING = 0.1


def _masks(model, vit):
    """``[(torch parameter, mask)]`` of the pruned layers (masks as torch's ``(out, in)``)."""
    import torch

    masks = []
    for name, pattern in vit.sparsity.items():
        _, index, layer = name.split(".")
        parameter = getattr(model.blocks[int(index)], layer).weight
        masks.append((parameter, torch.as_tensor(pattern.mask().T, dtype=parameter.dtype)))
    return masks


def finetune_pruned(vit, train_images, train_labels, *, epochs, lr, seed=0, batch=64,
                    log=print):
    """Fine-tune the pruned float ViT ``vit`` with its HP masks held.

    Parameters
    ----------
    vit : FloatVit
        A pruned model: ``vit.sparsity`` holds the patterns (masks) of its
        pruned layers, whose weights are zero outside them.
    train_images : ndarray ``(n, channels, size, size)``
    train_labels : ndarray, int ``(n,)``
    epochs : int
    lr : float
        Peak learning rate of AdamW (weight decay :data:`WEIGHT_DECAY`, cosine
        schedule to zero; cross-entropy with :data:`LABEL_SMOOTHING`).
    seed : int
        Seeds torch and the batch order.
    batch : int
        Images per optimizer step.
    log : callable
        Receives a progress line every 10 epochs.

    Returns
    -------
    FloatVit
        The fine-tuned model, with the same ``sparsity``; pruned weights are exactly zero.
    """
    import torch

    from .train_digits import _export
    from .train_selectors import torch_backbone

    torch.manual_seed(seed)
    model = torch_backbone(vit).float()
    masks = _masks(model, vit)
    images = torch.tensor(patchify(train_images, vit.shape), dtype=torch.float32)
    labels = torch.as_tensor(np.asarray(train_labels, np.int64))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(order), batch):
            chosen = order[start:start + batch]
            loss = torch.nn.functional.cross_entropy(model(images[chosen]), labels[chosen],
                                                     label_smoothing=LABEL_SMOOTHING)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for parameter, mask in masks:
                    parameter.mul_(mask)
        schedule.step()
        if (epoch + 1) % 10 == 0:
            log(f"epoch {epoch + 1}: loss {loss.item():.3f}")
    tuned = _export(model, vit.shape)
    tuned.sparsity = dict(vit.sparsity)
    return tuned


def digits_accuracies(vit):
    """``(float, int8)`` accuracy of a digits model on the held-out split.

    The int8 model is :func:`~.quantize.quantize_vit` calibrated on the first
    :data:`~.weights.DIGITS_CALIBRATION_IMAGES` training images, run by the golden model
    (:func:`vitforge.sw.golden.encoder.vit_logits`).
    """
    from vitforge.sw.golden.encoder import vit_logits

    from .quant_report import logit_comparison
    from .quantize import quantized_patches, quantize_vit

    (train_images, _), (test_images, test_labels) = digits_split()
    model = quantize_vit(vit, train_images[:DIGITS_CALIBRATION_IMAGES])
    integers = [vit_logits(model, patches) for patches in quantized_patches(model, test_images)]
    scores = logit_comparison(integers, model.logit_scale, forward(vit, test_images),
                              test_labels)
    return scores["float_accuracy"], scores["int8_accuracy"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--cols", type=int, default=16)
    parser.add_argument("--block-rows", type=int, default=DEFAULT_BLOCK_ROWS)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=EMBEDDED_HP50_WEIGHTS)
    args = parser.parse_args(argv)
    dense, _ = load_vit(EMBEDDED_WEIGHTS)
    pruned = prune_vit(dense, args.sparsity, cols=args.cols, block_rows=args.block_rows)
    (train_images, train_labels), _ = digits_split()
    tuned = finetune_pruned(pruned, train_images, train_labels, epochs=args.epochs,
                            lr=args.lr, seed=args.seed)
    accuracy = {label: dict(zip(("float", "int8"), digits_accuracies(model)))
                for label, model in (("dense", dense), ("pruned", pruned), ("tuned", tuned))}
    save_vit(args.out, tuned, {
        "data": "digits", "hp": {"sparsity": args.sparsity, "cols": args.cols,
                                 "block_rows": args.block_rows},
        "fine_tune": {"epochs": args.epochs, "lr": args.lr, "seed": args.seed,
                      "optimizer": "AdamW, cosine schedule", "weight_decay": WEIGHT_DECAY,
                      "label_smoothing": LABEL_SMOOTHING},
        "float_test_accuracy": accuracy["tuned"]["float"], "accuracy": accuracy})
    print(json.dumps(accuracy, indent=1))
    print(f"weights in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
