"""Train the bundled reference LMs (`mamba1-ref`, `mamba2-ref`) on the GPU machine.

No pretrained Mamba weights are reachable from our machines, so we train two small models on the
Debian-documentation corpus (benchmarks/corpus.py + benchmarks/train_tokenizer.py) with our own
reference implementation (quamba_edge.models: chunked parallel scan / chunked SSD, no time loop).

The run is time-budgeted: the learning-rate schedule (linear warm-up, cosine decay) is a function of the
elapsed fraction of ``--minutes``, so the same command fits the GPU lease whatever the throughput.
Writes, under --out: the HF-format checkpoint (fp16 safetensors + config.json) and
``train_log.json`` (loss curve, eval perplexity, tokens seen, the command, the device).

    python benchmarks/train_reference.py --model mamba2-ref --tokens benchmarks/data/tokens \
        --minutes 8 --out $OUT/mamba2-ref
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import git_info  # noqa: E402
from quamba_edge.models import MambaConfig, MambaLM, save_model  # noqa: E402

# The two reference architectures. Sizes are bounded by the repo's asset budget (all bundled model
# files ≤ 25 MB at fp16), which is why the layer counts are lower than the "~8".
#  - mamba1-ref: d_model 384 → d_inner 768 = 12·64 exercises the 12·2^k Hadamard path.
#  - mamba2-ref: headdim 32, d_state 64, ngroups 2 exercises per-state-group B/C quantization.
ARCHS: dict[str, dict] = {
    "mamba1-ref": dict(arch="mamba1", d_model=384, n_layer=4, d_state=16, d_conv=4, expand=2),
    "mamba2-ref": dict(arch="mamba2", d_model=256, n_layer=5, d_state=64, d_conv=4, expand=2,
                       headdim=32, ngroups=2, chunk_size=128),
}


def build_config(name: str, vocab_size: int) -> MambaConfig:
    return MambaConfig(vocab_size=vocab_size, tie_embeddings=True, **ARCHS[name])


def load_tokens(path: Path) -> np.ndarray:
    return np.fromfile(path, dtype=np.uint16)


def random_batch(data: np.ndarray, batch: int, seq_len: int, gen: np.random.Generator,
                 device: torch.device) -> torch.Tensor:
    starts = gen.integers(0, len(data) - seq_len - 1, size=batch)
    rows = np.stack([data[s:s + seq_len + 1] for s in starts]).astype(np.int64)
    return torch.from_numpy(rows).to(device, non_blocking=True)


@torch.no_grad()
def evaluate(model: MambaLM, data: np.ndarray, seq_len: int, device: torch.device,
             max_windows: int = 256, batch: int = 32) -> dict[str, float]:
    """Mean next-token loss over fixed, non-overlapping windows of the eval split."""
    model.eval()
    n_win = min(max_windows, (len(data) - 1) // seq_len)
    total_loss, total_correct, total_tok = 0.0, 0, 0
    for i in range(0, n_win, batch):
        idx = range(i, min(i + batch, n_win))
        rows = np.stack([data[j * seq_len: j * seq_len + seq_len + 1] for j in idx]).astype(np.int64)
        x = torch.from_numpy(rows).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x[:, :-1])
        logits = logits.float()
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum")
        total_loss += loss.item()
        total_correct += (logits.argmax(-1) == x[:, 1:]).sum().item()
        total_tok += x[:, 1:].numel()
    model.train()
    mean = total_loss / total_tok
    return {"loss": mean, "ppl": math.exp(mean), "top1": total_correct / total_tok, "tokens": total_tok}


def lr_at(frac: float, peak: float, warmup_frac: float, floor: float = 0.1) -> float:
    if frac < warmup_frac:
        return peak * frac / warmup_frac
    t = min(1.0, (frac - warmup_frac) / (1 - warmup_frac))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(ARCHS), required=True)
    ap.add_argument("--tokens", type=Path, required=True, help="folder with train.bin / eval.bin / meta.json")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=8.0, help="wall-clock training budget")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup-frac", type=float, default=0.03)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (falls back if it fails)")
    ap.add_argument("--log-every", type=int, default=25)
    args = ap.parse_args(argv)

    meta = json.loads((args.tokens / "meta.json").read_text())
    vocab = int(meta["vocab_size"])
    train = load_tokens(args.tokens / "train.bin")
    eval_data = load_tokens(args.tokens / "eval.bin")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed)
    gen = np.random.default_rng(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = True

    cfg = build_config(args.model, vocab)
    model = MambaLM(cfg).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[{args.model}] {n_params / 1e6:.2f} M parameters, {len(train) / 1e6:.1f} M train tokens, "
          f"device {device}", flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "conv1d" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "conv1d" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), fused=device.type == "cuda")
    step_fn = model
    if args.compile:
        try:
            step_fn = torch.compile(model)
        except Exception as exc:  # compile is an optimisation only
            print(f"torch.compile unavailable ({exc}); eager", flush=True)

    budget = args.minutes * 60
    log: list[dict] = []
    t0 = time.time()
    step, tokens_seen = 0, 0
    while True:
        elapsed = time.time() - t0
        frac = elapsed / budget
        if frac >= 1.0:
            break
        lr = lr_at(frac, args.lr, args.warmup_frac)
        for g in opt.param_groups:
            g["lr"] = lr
        x = random_batch(train, args.batch, args.seq_len, gen, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = step_fn(x[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, vocab), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens_seen += x[:, 1:].numel()
        if step % args.log_every == 0 or step == 1:
            rec = {"step": step, "tokens": tokens_seen, "elapsed_s": round(time.time() - t0, 2),
                   "loss": round(loss.item(), 4), "lr": lr}
            log.append(rec)
            print(json.dumps(rec), flush=True)
        if not math.isfinite(loss.item()):
            print("loss is not finite; stopping", flush=True)
            break

    train_s = time.time() - t0
    result = evaluate(model, eval_data, args.seq_len, device)
    print(f"[{args.model}] eval loss {result['loss']:.4f} ppl {result['ppl']:.2f} top1 {result['top1']:.4f}",
          flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    save_model(model.float().cpu(), args.out, format="hf", dtype=torch.float16)
    report = {
        "model": args.model,
        "config": cfg.to_hf_dict(),
        "parameters": n_params,
        "steps": step,
        "tokens_seen": tokens_seen,
        "train_seconds": round(train_s, 1),
        "tokens_per_second": round(tokens_seen / train_s, 1),
        "eval": result,
        "curve": log,
        "args": {k: str(v) for k, v in vars(args).items()},
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "commit": git_info()["commit"],
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "tokens_meta": meta,
    }
    (args.out / "train_log.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
