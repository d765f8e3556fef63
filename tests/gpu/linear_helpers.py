"""Inputs and shapes shared by the GPU tests of the quantized linear kernels (w8a8 / w4a8 / w4a16_linear)."""

from __future__ import annotations

import torch

from quamba_edge.quant.packing import pack_int4, w4a8_two_level_scales

# (model, layer, N, K): every linear of the benchmark models, plus the 4096 x 14336 reference shape both ways
MODEL_SHAPES = [
    ("mamba-2.8b", "in_proj", 10240, 2560), ("mamba-2.8b", "x_proj", 192, 5120),
    ("mamba-2.8b", "dt_proj", 5120, 160), ("mamba-2.8b", "out_proj", 2560, 5120),
    ("mamba-2.8b", "lm_head", 50280, 2560),
    ("mamba2-2.7b", "in_proj", 10576, 2560), ("mamba2-2.7b", "out_proj", 2560, 5120),
    ("mamba2-8b", "in_proj", 18560, 4096), ("mamba2-8b", "out_proj", 4096, 8192),
    ("reference", "4096x14336", 4096, 14336), ("reference", "14336x4096", 14336, 4096),
]
DECODE_M = (1, 2, 5, 8, 9, 16)
# (M, N, K): token counts past the decode range, on shapes whose reference stays quick; odd N
WIDE_M = [(17, 1296, 256), (63, 56, 768), (512, 640, 2560), (1024, 1296, 256), (4096, 200, 512)]
# M > 16 runs the tiled GEMM (linear_gemm.cuh): around its 64 / 128-row tiles, and prefill sizes
GEMM_M = (17, 31, 63, 64, 65, 127, 512, 1024, 4096)
# (N, K) for GEMM_M: N past whole 64 / 128-column tiles, odd N (57, 1297: an odd y row stride, so the epilogue
# stores one element at a time) and even N (paired stores); K past whole k-tiles by 32 (every format takes it).
# With 132 SMs (H200) ceil(M/128) * ceil(N/128) >= 132 picks the 128 x 128 tiles: N = 1297 at M = 4096 and
# N = 2056 at M >= 1024; the rest runs the 64 x 64 tiles.
GEMM_NK = [(57, 800), (200, 544), (1297, 288), (2056, 1056)]
# the prefill M of the model shapes (every linear of the benchmark models at one prefill size)
PREFILL_M = 1024


def gen(*key) -> torch.Generator:
    return torch.Generator(device="cuda").manual_seed(hash(key) % 2**31)


def rand_x8(m: int, k: int, g: torch.Generator) -> torch.Tensor:
    return torch.randint(-128, 128, (m, k), dtype=torch.int8, device="cuda", generator=g)


def w4_codes(n: int, k: int, g: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 16, (n, k), dtype=torch.uint8, device="cuda", generator=g)


def group_count(k: int, group_size: int) -> int:
    gs = k if group_size <= 0 or group_size >= k else group_size
    return -(-k // gs)


def w4a8_weight(n: int, k: int, group_size: int, g: torch.Generator, *, wild: bool = False):
    """(codes, packed, s_group fp16, s_channel fp32) as the quantizer makes them (``wild``: group scales up to
    +-40 of either sign, so that the int4 -> int8 step saturates)."""
    codes = w4_codes(n, k, g)
    ng = group_count(k, group_size)
    gscale = 0.002 + 0.02 * torch.rand(n, ng, device="cuda", generator=g)
    s_channel, s_group = w4a8_two_level_scales(codes.cpu(), gscale.cpu(), k if group_size <= 0 else min(group_size, k))
    s_channel, s_group = s_channel.cuda(), s_group.cuda()
    if wild:
        sign = torch.where(torch.rand(n, ng, device="cuda", generator=g) < 0.5, -1.0, 1.0)
        s_group = (sign * 40 * torch.rand(n, ng, device="cuda", generator=g)).to(torch.float16)
    return codes, pack_int4(codes), s_group, s_channel


def out_scale_for(y_float: torch.Tensor) -> torch.Tensor:
    """Per-output-feature scales around std(y) / 60 (x0.5 ... x1.5): outputs use the int8 range and a few
    percent of them (past ~2 sigma) clamp."""
    g = torch.Generator(device=y_float.device).manual_seed(y_float.numel())
    spread = 0.5 + torch.rand(y_float.shape[-1], device=y_float.device, generator=g)
    return (y_float.float().std().clamp_min(1e-6) / 60 * spread).float()
