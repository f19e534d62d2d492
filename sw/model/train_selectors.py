"""Train the token selectors of the embedded ``tiny`` digits ViT (HeatViT/SPViT style).

The dense model (``data/digits_vit.npz``) is loaded and frozen; only the
selector before block 1 is trained, on the same fixed digits split, with the
differentiable scheme of DynamicViT/SPViT/HeatViT:

- the keep decision is a straight-through hard mask (Gumbel-sampled or the
  0.5 threshold itself, ``--mask``), dropped tokens are masked out of every
  attention as keys, and the dropped tokens fold into the package token
  ``sum p_i x_i / sum p_i`` (``p`` the keep probability) appended at the end,
  exactly as at inference;
- loss = cross-entropy + 0.5 * KL(dense logits || pruned logits)
  + 2.0 * (mean kept fraction of the patches - target ratio)**2.

The selector computed here mirrors the NumPy float reference in
:mod:`vitforge.sw.model.selector` term for term (per-head LayerNorm, Linear,
GELU, local/global split, 3-layer MLP to drop/keep scores, head weights from a
squeeze-and-excitation MLP over the per-head token means); the trained weights
are written with its :func:`~vitforge.sw.model.selector.save_selectors`
(``vitforge-float-selectors-1``; threshold mode, the 0.7 target as the
ratio, so top-k mode keeps ``ceil(0.7 * 16) = 12`` patches). The
dense model is never changed: ``--backbone-lr`` fine-tunes the backbone too
but then writes it to ``--backbone-out``, a separate file. Needs PyTorch
(``pip install -e '.[train]'``); the trained selectors are shipped in
``data/digits_selectors.npz``, so nothing at run time needs it.

    python -m vitforge.sw.model.train_selectors [--epochs 60] [--seed 0] [--mask threshold]
        [--device cuda] [--out FILE] [--json FILE]

The shipped file is what the defaults write (seconds on one GPU; the same
bytes on a rerun there; a CPU run may differ in the last float32 bits).

``--model CHECKPOINT`` trains selectors for another dense model instead: a timm
DeiT ``state_dict`` (``.safetensors``, read with ``safetensors.numpy``, or a
``torch.save``'d ``.pth``; see :mod:`.timm_import`) or a vitforge ``.npz``, fed
the same digits split upsampled to its input size (each pixel repeated, nearest
neighbour), at :func:`~vitforge.sw.model.selector.default_stages` of its depth
(DeiT: before blocks 3, 6, 9, ratios 0.7, 0.49, 0.343). It needs ``--out``.
``sw/model/data/deit_tiny_digits224_selectors.npz`` was written by

    python -m vitforge.sw.model.train_selectors --model deit_tiny_digits224_seed1.safetensors \\
        --epochs 60 --lr 1e-3 --device cuda --out sw/model/data/deit_tiny_digits224_selectors.npz

(the timm digits model of ``shared/models``; about a minute on one H200, float64 evaluation
on the GPU; ``docs/token-selection.md`` has its accuracy).
"""

import argparse
import json
import math
from pathlib import Path
import sys

import numpy as np

from .digits import digits_split
from .selector import FloatSelector, SelectorConfig, default_stages, keep_count, save_selectors
from .timm_import import load_float_model
from .vit import patchify
from .weights import DEIT_DIGITS_SELECTORS, EMBEDDED_SELECTORS, EMBEDDED_WEIGHTS, load_vit, \
    save_vit

__all__ = ["EMBEDDED_SELECTORS", "DEIT_DIGITS_SELECTORS", "digits_inputs",
           "torch_selector", "torch_backbone", "pruned_logits", "export_selector",
           "import_selector", "evaluate", "train", "main"]

#: The tiny model's stages: one selector before block 1, keeping about 70% of the patches.
TINY_BLOCKS = (1,)
TINY_RATIOS = (0.7,)
RATIO_WEIGHT = 2.0
DISTILL_WEIGHT = 0.5


def digits_inputs(images, shape):
    """The 8x8 digits ``images`` upsampled (nearest, each pixel repeated) to ``shape``'s size."""
    factor, rest = divmod(shape.image_size, images.shape[-1])
    if rest or shape.in_channels != images.shape[1]:
        raise ValueError(f"the digits cannot feed a {shape.image_size}x{shape.image_size} "
                         f"{shape.in_channels}-channel model")
    return images.repeat(factor, axis=2).repeat(factor, axis=3) if factor > 1 else images


def torch_selector(dim, heads):
    """A ``torch.nn.Module`` scoring tokens as the float reference's ``FloatSelector``.

    ``module(x, scored)`` takes tokens ``x`` (batch, tokens, dim) and the weight
    of each token in the scoring (batch, tokens): 1 for an alive patch token,
    0 for the class token, package tokens and dropped patches. It returns the
    keep probability of every token (batch, tokens); only scored tokens'
    values mean anything.
    """
    import torch
    from torch import nn
    from torch.nn.functional import gelu

    head_dim = dim // heads
    squeeze = max(heads // 2, 1)

    class Selector(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln = nn.LayerNorm(head_dim, eps=1e-6)
            self.inp = nn.Linear(head_dim, head_dim)
            self.fc1 = nn.Linear(head_dim, head_dim // 2)
            self.fc2 = nn.Linear(head_dim // 2, head_dim // 4)
            self.out = nn.Linear(head_dim // 4, 2)
            self.head_fc1 = nn.Linear(heads, squeeze)
            self.head_fc2 = nn.Linear(squeeze, heads)

        def forward(self, x, scored):
            batch, tokens, _ = x.shape
            per_head = x.reshape(batch, tokens, heads, head_dim)
            weight = scored[:, :, None, None]                      # (b, n, 1, 1)
            count = weight.sum(1, keepdim=True).clamp_min(1e-12)
            z = gelu(self.inp(self.ln(per_head)))                  # (b, n, h, d)
            local, glob = z[..., :head_dim // 2], z[..., head_dim // 2:]
            glob = ((glob * weight).sum(1, keepdim=True) / count).expand_as(glob)
            scores = self.out(gelu(self.fc2(gelu(self.fc1(torch.cat([local, glob], -1))))))
            keep_h = scores.softmax(-1)[..., 1]                    # (b, n, h)
            means = (per_head * weight).sum((1, 3)) / (count[:, 0, 0] * head_dim)  # (b, h)
            head_w = torch.sigmoid(self.head_fc2(gelu(self.head_fc1(means))))      # (b, h)
            return (keep_h * head_w[:, None, :]).sum(-1) / head_w.sum(-1, keepdim=True)

    return Selector()


def _selector_layers(selector):
    return {"in": selector.inp, "fc1": selector.fc1, "fc2": selector.fc2, "out": selector.out,
            "head_fc1": selector.head_fc1, "head_fc2": selector.head_fc2}


def export_selector(selector):
    """The stage as a :class:`~vitforge.sw.model.selector.FloatSelector` (float64, (in, out))."""
    def array(tensor):
        return tensor.detach().cpu().double().numpy().copy()

    arrays = {"ln_gamma": array(selector.ln.weight), "ln_beta": array(selector.ln.bias)}
    for name, layer in _selector_layers(selector).items():
        arrays[f"{name}_weight"] = array(layer.weight).T.copy()
        arrays[f"{name}_bias"] = array(layer.bias)
    return FloatSelector(**arrays)


def import_selector(selector, arrays):
    """Load a :class:`~vitforge.sw.model.selector.FloatSelector` (or ``{field: array}``)."""
    import torch

    def get(name):
        value = arrays[name] if isinstance(arrays, dict) else getattr(arrays, name)
        return torch.as_tensor(np.asarray(value, np.float64))

    with torch.no_grad():
        selector.ln.weight.copy_(get("ln_gamma"))
        selector.ln.bias.copy_(get("ln_beta"))
        for name, layer in _selector_layers(selector).items():
            layer.weight.copy_(get(f"{name}_weight").T)
            layer.bias.copy_(get(f"{name}_bias"))
    return selector


def torch_backbone(vit):
    """The torch model of :mod:`.train_digits` holding the float ViT ``vit``'s weights.

    Its ``heads`` attribute is the head count :func:`pruned_logits` uses.
    """
    import torch

    from .train_digits import _torch_model

    model = _torch_model(vit.shape).double()     # float64, as ``vit``; ``.float()`` to train
    model.heads = vit.shape.heads

    def put(param, value, transpose=False):
        value = torch.as_tensor(np.asarray(value, np.float64))
        param.copy_(value.T if transpose else value)

    with torch.no_grad():
        put(model.patch.weight, vit.patch_weight, True)
        put(model.patch.bias, vit.patch_bias)
        put(model.cls, vit.cls_token)
        put(model.position, vit.position)
        for layer, block in zip(model.blocks, vit.blocks):
            put(layer.ln1.weight, block.ln1_gamma)
            put(layer.ln1.bias, block.ln1_beta)
            put(layer.ln2.weight, block.ln2_gamma)
            put(layer.ln2.bias, block.ln2_beta)
            for name in ("qkv", "proj", "fc1", "fc2"):
                put(getattr(layer, name).weight, getattr(block, f"{name}_weight"), True)
                put(getattr(layer, name).bias, getattr(block, f"{name}_bias"))
        put(model.norm.weight, vit.norm_gamma)
        put(model.norm.bias, vit.norm_beta)
        put(model.head.weight, vit.head_weight, True)
        put(model.head.bias, vit.head_bias)
    return model


def _block(layer, x, policy, heads):
    """One encoder block; keys with ``policy`` 0 are masked out of every attention.

    As DynamicViT's ``softmax_with_policy``: a masked token still attends to
    itself (its own row stays finite), and with a 0/1 policy every alive
    token's result is exactly that of the block run on the alive tokens alone.
    """
    import torch
    from torch.nn.functional import gelu

    batch, tokens, dim = x.shape
    head_dim = dim // heads
    q, k, v = layer.qkv(layer.ln1(x)).split(dim, dim=-1)

    def split(t):
        return t.reshape(batch, tokens, heads, head_dim).transpose(1, 2)

    scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(head_dim)
    eye = torch.eye(tokens, dtype=x.dtype, device=x.device)
    allowed = policy[:, None, None, :] + (1 - policy[:, None, None, :]) * eye
    scores = scores - scores.max(-1, keepdim=True).values.detach()
    weights = scores.exp() * allowed
    attention = weights / weights.sum(-1, keepdim=True)
    context = (attention @ split(v)).transpose(1, 2).reshape(batch, tokens, dim)
    x = x + layer.proj(context)
    return x + layer.fc2(gelu(layer.fc1(layer.ln2(x))))


def _topk_mask(keep, scored, count):
    """0/1 mask of the ``count`` scored tokens of largest keep probability per image.

    Ties go to the lower token index (a stable sort of ``-keep``).
    """
    import torch

    key = torch.where(scored > 0, keep, torch.full_like(keep, -1.0))
    order = torch.sort(-key, dim=-1, stable=True).indices[:, :count]
    return torch.zeros_like(keep).scatter(1, order, 1.0) * scored


def pruned_logits(model, selectors, images_or_patches, *, blocks, ratios, mode,
                  train_mask=None, tau=1.0):
    """Logits of the ViT ``model`` with ``selectors`` before ``blocks``.

    ``mode`` is ``"threshold"`` (keep ``p >= 0.5``), ``"topk"`` (keep
    ``ceil(ratio * patches)`` per stage), ``"dense"`` (no pruning) or
    ``"train"``: a straight-through hard mask, ``train_mask`` ``"gumbel"``
    (sampled, DynamicViT) or ``"threshold"`` (the inference decision).
    Returns ``(logits, kept)``: ``kept`` is a list, per stage, of the kept
    patch count per image (tensors, differentiable in ``"train"`` mode).
    """
    import torch
    from torch.nn.functional import gumbel_softmax

    patches = images_or_patches
    x = model.patch(patches)
    batch, n_patches, _ = x.shape
    x = torch.cat([model.cls.expand(batch, 1, -1), x], dim=1) + model.position
    policy = torch.ones(batch, n_patches + 1, dtype=x.dtype, device=x.device)
    is_patch = torch.ones_like(policy)
    is_patch[:, 0] = 0
    kept = []
    stages = dict(zip(blocks, zip(selectors, ratios))) if mode != "dense" else {}
    for index, layer in enumerate(model.blocks):
        if index in stages:
            selector, ratio = stages[index]
            scored = policy * is_patch
            keep = selector(x, scored)
            if mode == "threshold":
                mask = (keep >= 0.5).to(x.dtype)
            elif mode == "topk":
                mask = _topk_mask(keep, scored, keep_count(ratio, n_patches))
            elif mode == "train" and train_mask == "gumbel":
                logits = torch.stack([torch.log1p(-keep.clamp(max=1 - 1e-6)),
                                      torch.log(keep.clamp_min(1e-6))], -1)
                mask = gumbel_softmax(logits, tau=tau, hard=True)[..., 1]
            elif mode == "train" and train_mask == "threshold":
                mask = (keep >= 0.5).to(x.dtype) + keep - keep.detach()
            else:
                raise ValueError(f"unknown mode {mode!r} / train_mask {train_mask!r}")
            mask = mask * scored
            dropped = scored - mask
            # sum p_i x_i / sum p_i over the dropped tokens; their plain mean if every p_i is 0
            fold = dropped * keep
            total = fold.sum(1)[:, None, None]
            weighted = (fold[..., None] * x).sum(1, keepdim=True) \
                / torch.where(total > 0, total, torch.ones_like(total))
            plain = (dropped[..., None] * x).sum(1, keepdim=True) \
                / dropped.sum(1)[:, None, None].clamp_min(1)
            package = torch.where(total > 0, weighted, plain)
            has_package = (dropped.detach().sum(1, keepdim=True) > 0.5).to(x.dtype)
            policy = torch.cat([policy * (1 - is_patch) + mask * is_patch, has_package], 1)
            is_patch = torch.cat([is_patch, torch.zeros_like(has_package)], 1)
            x = torch.cat([x, package * has_package[..., None]], 1)
            kept.append(mask.sum(1))
        x = _block(layer, x, policy, model.heads)
    return model.head(model.norm(x[:, 0])), kept


def _accuracy(logits, labels):
    return float((logits.argmax(1) == labels).double().mean())


def evaluate(model, selectors, patches, labels, *, blocks, ratios, logits_out=None,
             device="cpu"):
    """Dense, threshold and top-k accuracy with the mean kept patch fraction, in float64.

    ``logits_out``, a dict, receives each mode's logits and kept counts (NumPy).
    """
    import copy

    import torch

    model = copy.deepcopy(model).double().to(device).eval()
    selectors = [copy.deepcopy(s).double().to(device).eval() for s in selectors]
    patches = patches.double().to(device)
    labels = labels.to(device)
    result = {}
    with torch.no_grad():
        for mode in ("dense", "threshold", "topk"):
            logits, kept = pruned_logits(model, selectors, patches, blocks=blocks,
                                         ratios=ratios, mode=mode)
            result[mode] = {"accuracy": _accuracy(logits, labels)}
            if logits_out is not None:
                logits_out[f"{mode}_logits"] = logits.cpu().numpy()
                for i, k in enumerate(kept):
                    logits_out[f"{mode}_kept_{i}"] = k.cpu().numpy()
            if kept:
                n_patches = patches.shape[1]
                result[mode]["kept_ratio"] = [float(k.mean()) / n_patches for k in kept]
                result[mode]["kept_min_max"] = [[int(k.min()), int(k.max())] for k in kept]
    return result


def train(*, epochs=60, seed=0, lr=3e-3, batch=64, train_mask="threshold", warmup=0,
          blocks=TINY_BLOCKS, ratios=TINY_RATIOS, backbone_lr=0.0, device=None, log=print,
          logits_out=None, vit=None):
    """Train selectors for the embedded model; return ``(selectors, backbone, metrics)``.

    ``vit``, a float ViT (:func:`~.timm_import.load_float_model`), replaces the embedded model: it
    sees the digits upsampled to its input size and is evaluated in float64 on
    ``device`` (the embedded model on the CPU).

    ``selectors`` are :class:`~vitforge.sw.model.selector.FloatSelector`;
    ``metrics`` the test-split accuracies of :func:`evaluate`.

    ``warmup`` epochs use the Gumbel mask before ``train_mask``; the backbone is
    frozen unless ``backbone_lr`` > 0 (then it is fine-tuned too and returned
    as a float ViT, else ``None``).
    """
    import torch
    from torch.nn.functional import cross_entropy, kl_div, log_softmax

    from .train_digits import _export

    torch.manual_seed(seed)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    eval_device = "cpu" if vit is None else device
    if vit is None:
        vit, _ = load_vit(EMBEDDED_WEIGHTS)
    shape = vit.shape
    model = torch_backbone(vit).float().to(device)
    (train_images, train_labels), (test_images, test_labels) = digits_split()
    train_images, test_images = digits_inputs(train_images, shape), digits_inputs(test_images,
                                                                                  shape)
    train_x = torch.tensor(patchify(train_images, shape), dtype=torch.float32, device=device)
    train_y = torch.tensor(train_labels, device=device)
    test_x = torch.tensor(patchify(test_images, shape), dtype=torch.float64)
    test_y = torch.tensor(test_labels)
    with torch.no_grad():
        teacher = model(train_x)
    selectors = torch.nn.ModuleList(torch_selector(shape.dim, shape.heads)
                                    for _ in blocks).to(device)
    groups = [{"params": selectors.parameters(), "lr": lr}]
    for param in model.parameters():
        param.requires_grad_(backbone_lr > 0)
    if backbone_lr > 0:
        groups.append({"params": model.parameters(), "lr": backbone_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    generator = torch.Generator().manual_seed(seed)
    n_patches = shape.patches
    for epoch in range(epochs):
        model.train(backbone_lr > 0)
        selectors.train()
        mask = "gumbel" if epoch < warmup else train_mask
        totals = np.zeros(4)
        order = torch.randperm(len(train_x), generator=generator).to(device)
        for start in range(0, len(order), batch):
            index = order[start:start + batch]
            logits, kept = pruned_logits(model, selectors, train_x[index], blocks=blocks,
                                         ratios=ratios, mode="train", train_mask=mask)
            ce = cross_entropy(logits, train_y[index])
            distill = kl_div(log_softmax(logits, -1), log_softmax(teacher[index], -1),
                             reduction="batchmean", log_target=True)
            ratio = sum(((k / n_patches - r) ** 2).mean() for k, r in zip(kept, ratios)) \
                / len(ratios)
            loss = ce + DISTILL_WEIGHT * distill + RATIO_WEIGHT * ratio
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            totals += [loss.item(), ce.item(), distill.item(),
                       float(kept[-1].detach().mean()) / n_patches]
        schedule.step()
        if (epoch + 1) % 10 == 0 or epoch == 0:
            steps = math.ceil(len(order) / batch)
            loss, ce, distill, keep = totals / steps
            log(f"epoch {epoch + 1} ({mask}): loss {loss:.3f} ce {ce:.3f} kl {distill:.3f} "
                f"kept {keep:.3f}")
    metrics = evaluate(model, list(selectors), test_x, test_y, blocks=blocks, ratios=ratios,
                       logits_out=logits_out, device=eval_device)
    exported = [export_selector(s) for s in selectors]
    backbone = None
    if backbone_lr > 0:
        backbone = _export(model.cpu(), shape)
    return exported, backbone, metrics


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--mask", choices=("threshold", "gumbel"), default="threshold",
                        help="training mask: the straight-through 0.5 threshold (matches the "
                             "threshold inference mode) or a hard Gumbel sample (DynamicViT)")
    parser.add_argument("--warmup", type=int, default=0,
                        help="first epochs trained with the Gumbel mask")
    parser.add_argument("--backbone-lr", type=float, default=0.0,
                        help="fine-tune the backbone too (0: frozen, the default)")
    parser.add_argument("--backbone-out", type=Path,
                        help="where the fine-tuned backbone goes (never the embedded model)")
    parser.add_argument("--device", help="torch device (default: cuda when available)")
    parser.add_argument("--model", type=Path,
                        help="train for this dense model instead of the embedded one: a timm "
                             "DeiT .safetensors/.pth or a vitforge .npz (default stages of "
                             "its depth; needs --out)")
    parser.add_argument("--out", type=Path,
                        help=f"the selector file (default {EMBEDDED_SELECTORS.name} without "
                             f"--model)")
    parser.add_argument("--json", type=Path, help="write the measured accuracies here")
    parser.add_argument("--logits", type=Path,
                        help="write the torch float64 test-split logits and kept counts (.npz)")
    args = parser.parse_args(argv)
    if args.backbone_lr > 0 and args.backbone_out is None:
        parser.error("--backbone-lr needs --backbone-out (the embedded model is not changed)")
    if args.backbone_out is not None and args.backbone_out.resolve() in \
            (EMBEDDED_WEIGHTS.resolve(), (args.model or EMBEDDED_WEIGHTS).resolve()):
        parser.error("--backbone-out must not be the dense model")
    if args.model is not None and args.out is None:
        parser.error("--model needs --out (the shipped selectors are the embedded model's)")
    vit, blocks, ratios = None, TINY_BLOCKS, TINY_RATIOS
    if args.model is not None:
        vit = load_float_model(args.model)
        stages_config = default_stages(vit.shape.depth)
        blocks, ratios = stages_config.blocks, stages_config.ratios
    args.out = args.out or EMBEDDED_SELECTORS
    logits = {}
    stages, backbone, metrics = train(epochs=args.epochs, seed=args.seed, lr=args.lr,
                                      train_mask=args.mask, warmup=args.warmup,
                                      blocks=blocks, ratios=ratios,
                                      backbone_lr=args.backbone_lr, device=args.device,
                                      logits_out=logits, vit=vit)
    shape = (vit or load_vit(EMBEDDED_WEIGHTS)[0]).shape
    training = {"epochs": args.epochs, "seed": args.seed, "lr": args.lr, "mask": args.mask,
                "warmup": args.warmup, "backbone_lr": args.backbone_lr,
                "test_accuracy": metrics}
    if args.model is not None:
        training = {"model": args.model.name, **training}
    save_selectors(args.out, stages, SelectorConfig(blocks=blocks, ratios=ratios,
                                                    mode="threshold"), shape)
    if backbone is not None:
        save_vit(args.backbone_out, backbone, {"selectors": str(args.out), **training})
    if args.json:
        args.json.write_text(json.dumps(training, indent=2) + "\n")
    if args.logits:
        np.savez_compressed(args.logits, **logits)
    print(json.dumps(metrics))
    print(f"selectors in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
