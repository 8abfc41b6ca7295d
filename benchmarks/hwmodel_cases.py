"""The case set on which the accelerator model is compared with SCALE-Sim (pure Python, no numpy).

Layers come from real networks (ResNet-18/50 and VGG-16 convolutions, MobileNet-V2 pointwise
convolutions, BERT-base and ViT-S GEMMs). Spatial sizes are those of a 32x32 input (ImageNet sizes / 7)
and GEMM token counts are cut to 16 so that SCALE-Sim, which is cycle-level, generates the
whole reference set in minutes; channel counts are the real ones. Inputs are given padded, with
``(H - FH)`` divisible by the stride, because SCALE-Sim has no padding and rounds its output size up.
Shared by the side-venv script that runs SCALE-Sim and by the comparison benchmark, which is why it
imports nothing from hwsearch.
"""

from __future__ import annotations

# (name, ifmap H, ifmap W, filter H, filter W, channels, num filters, stride), padded inputs.
CONV_LAYERS = [
    ("resnet18_conv1", 37, 37, 7, 7, 3, 64, 2),
    ("resnet18_l1_3x3", 10, 10, 3, 3, 64, 64, 1),
    ("resnet18_l2_3x3s2", 9, 9, 3, 3, 64, 128, 2),
    ("resnet18_l2_3x3", 6, 6, 3, 3, 128, 128, 1),
    ("resnet18_l3_3x3", 4, 4, 3, 3, 256, 256, 1),
    ("resnet18_l4_3x3", 3, 3, 3, 3, 512, 512, 1),
    ("resnet18_l2_down1x1", 7, 7, 1, 1, 64, 128, 2),
    ("resnet50_l1_1x1a", 8, 8, 1, 1, 64, 64, 1),
    ("resnet50_l1_1x1b", 8, 8, 1, 1, 64, 256, 1),
    ("resnet50_l2_1x1", 4, 4, 1, 1, 512, 128, 1),
    ("resnet50_l3_1x1", 2, 2, 1, 1, 1024, 256, 1),
    ("resnet50_l4_1x1", 1, 1, 1, 1, 512, 2048, 1),
    ("vgg16_conv1_2", 18, 18, 3, 3, 64, 64, 1),
    ("vgg16_conv2_1", 10, 10, 3, 3, 64, 128, 1),
    ("vgg16_conv3_2", 6, 6, 3, 3, 256, 256, 1),
    ("vgg16_conv4_2", 4, 4, 3, 3, 512, 512, 1),
    ("mbv2_pw_expand_24", 8, 8, 1, 1, 24, 144, 1),
    ("mbv2_pw_project_32", 4, 4, 1, 1, 192, 32, 1),
    ("mbv2_pw_expand_64", 2, 2, 1, 1, 64, 384, 1),
    ("mbv2_pw_project_96", 2, 2, 1, 1, 576, 96, 1),
    ("mbv2_pw_last", 1, 1, 1, 1, 320, 1280, 1),
]

# (name, M, N, K) in SCALE-Sim's GEMM convention: an M x K by K x N product.
GEMM_LAYERS = [
    ("bert_qkv", 16, 2304, 768),
    ("bert_attn_out", 16, 768, 768),
    ("bert_ffn1", 16, 3072, 768),
    ("bert_ffn2", 16, 768, 3072),
    ("bert_qk", 16, 16, 64),
    ("vit_s_qkv", 17, 1152, 384),
    ("vit_s_mlp1", 17, 1536, 384),
    ("vit_s_mlp2", 17, 384, 1536),
    ("vit_s_av", 17, 64, 17),
]

# (rows, cols): square and not, from 8x8 to 128x128.
ARRAYS = [(8, 8), (16, 16), (32, 32), (8, 32), (32, 8), (64, 64), (16, 64), (128, 128)]
DATAFLOWS = ("os", "ws", "is")

# SCALE-Sim's run time grows with the simulated cycles times the array's rows + columns; cases above
# this budget are left out, except that every layer keeps its MIN_PER_LAYER cheapest case(s), so the
# large BERT/ViT GEMMs and deep convolutions are still covered (on their best-suited arrays).
MAX_WORK = 5e5
MIN_PER_LAYER = 1


def _folds(sr: int, sc: int, rows: int, cols: int) -> int:
    return -(-sr // rows) * -(-sc // cols)


def _dims(kind: str, row: tuple, df: str) -> tuple[int, int, int]:
    """(spatial rows Sr, spatial cols Sc, temporal T) of SCALE-Sim's mapping of one layer."""
    if kind == "conv":
        _, h, w, fh, fw, c, k, s = row
        pixels = ((h - fh) // s + 1) * ((w - fw) // s + 1)
        window = fh * fw * c
    else:
        _, m, n, kk = row
        pixels, window, k = m, kk, n
    if df == "os":
        return pixels, k, window
    if df == "ws":
        return window, k, pixels
    return window, pixels, k


def estimated_cycles(kind: str, row: tuple, rows: int, cols: int, df: str) -> int:
    """Cycle estimate used only to keep the SCALE-Sim run bounded."""
    sr, sc, t = _dims(kind, row, df)
    return _folds(sr, sc, rows, cols) * (t + 2 * rows + cols)


def cases() -> list[dict]:
    """Every (layer, array, dataflow) case within the SCALE-Sim time budget, in a fixed order."""
    out = []
    for kind, layers in (("conv", CONV_LAYERS), ("gemm", GEMM_LAYERS)):
        for row in layers:
            mine = []
            for rows, cols in ARRAYS:
                for df in DATAFLOWS:
                    work = estimated_cycles(kind, row, rows, cols, df) * (rows + cols)
                    mine.append((work, {"id": f"{row[0]}@{rows}x{cols}/{df}", "kind": kind, "layer": list(row),
                                        "rows": rows, "cols": cols, "dataflow": df}))
            keep = [c for w, c in mine if w <= MAX_WORK]
            if len(keep) < MIN_PER_LAYER:
                keep = [c for _, c in sorted(mine, key=lambda x: x[0])[:MIN_PER_LAYER]]
            out.extend(keep)
    return out


if __name__ == "__main__":
    cs = cases()
    print(len(cs), "cases")
