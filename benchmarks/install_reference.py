"""Install reference models trained by benchmarks/train_reference.py as bundled assets.

Copies ``config.json`` + ``model.safetensors`` of each trained model into ``quamba_edge/assets/<name>/``
after checking that the model was trained on tokens made by the bundled tokenizer
(``quamba_edge/assets/tokenizer``, shared by all bundled models) (sha256 recorded by train_tokenizer.py in the token meta and by the training log). The
training log goes to ``benchmarks/results/training_<name>.json`` and its loss curve to a PNG beside it.

    python benchmarks/install_reference.py /path/to/run_output   # holds mamba1-ref/ and mamba2-ref/
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import git_info  # noqa: E402

ASSETS = ROOT / "quamba_edge" / "assets"
RESULTS = ROOT / "benchmarks" / "results"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def plot_curve(log: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = log["curve"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["tokens"] / 1e6 for r in curve], [r["loss"] for r in curve], lw=1.2)
    ax.set_xlabel("training tokens (M)")
    ax.set_ylabel("train loss (nats/token)")
    ev = log["eval"]
    ax.set_title(f"{log['model']}: {log['parameters'] / 1e6:.2f} M params, eval ppl {ev['ppl']:.1f}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def install(run_dir: Path, name: str) -> None:
    src = run_dir / name
    log = json.loads((src / "train_log.json").read_text())
    tok_sha = sha256(ASSETS / "tokenizer" / "tokenizer.json")
    trained_sha = log["tokens_meta"]["tokenizer_sha256"]
    if trained_sha != tok_sha:
        raise SystemExit(f"{name} was trained on tokens of tokenizer {trained_sha[:12]}…, but the bundled "
                         f"tokenizer is {tok_sha[:12]}…: retrain, or restore the matching tokenizer")
    dst = ASSETS / name
    dst.mkdir(parents=True, exist_ok=True)
    for f in ("config.json", "model.safetensors"):
        shutil.copyfile(src / f, dst / f)
        (dst / f).chmod(0o644)
    if log.get("commit", "unknown") == "unknown":  # the GPU machine gets a working tree without .git
        log["commit"] = f"working tree on top of {git_info()['commit']} (recorded at install)"
    log["installed_weights_sha256"] = sha256(dst / "model.safetensors")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"training_{name}.json").write_text(json.dumps(log, indent=2) + "\n")
    plot_curve(log, RESULTS / f"training_{name}.png")
    print(f"installed {name}: {log['parameters'] / 1e6:.2f} M params, eval ppl {log['eval']['ppl']:.2f} "
          f"-> {dst.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path, help="folder holding <name>/{config.json,model.safetensors,train_log.json}")
    ap.add_argument("--models", nargs="+", default=["mamba1-ref", "mamba2-ref"])
    args = ap.parse_args(argv)
    for name in args.models:
        install(args.run_dir, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
