"""The `quamba-edge` command line.

Subcommands import their heavy dependencies (torch, onnx, tensorrt) lazily, so `quamba-edge --help`
works on a Jetson without torch. Each subcommand arrives with the issue that builds it; `--help` lists
only what exists.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Sequence

from quamba_edge import __version__


def _cmd_info(args: argparse.Namespace) -> int:
    from quamba_edge.quant.artifact import describe_artifact, format_artifact_info, is_artifact
    from quamba_edge.tokenizer import resolve_model_dir

    if is_artifact(resolve_model_dir(args.model)):
        info = describe_artifact(args.model)
        print(json.dumps(info, indent=2) if args.json else format_artifact_info(info))
        return 0
    from quamba_edge.info import describe_model, format_info

    info = describe_model(args.model)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(format_info(info))
    return 0


# ------------------------------------------------------------------------------------------------
# shared helpers of quantize / eval (torch is imported inside the functions)
# ------------------------------------------------------------------------------------------------


def _say(msg: str) -> None:
    print(msg, flush=True)


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available here; use --device cpu")
    return dev


def _fp_config(model_dir):
    """MambaConfig of an FP checkpoint directory, read from config.json alone (no weights)."""
    from quamba_edge.models.config import MambaConfig

    f = model_dir / "config.json"
    if not f.is_file():
        raise FileNotFoundError(f"no config.json in {model_dir}")
    try:
        raw = json.loads(f.read_text())
    except ValueError as e:
        raise ValueError(f"cannot parse {f}: {e}") from e
    return MambaConfig.from_dict(raw)


def _tokenizer_dir(model_dir, explicit: str | None):
    """--tokenizer, else the model directory, else the bundled tokenizer (quamba_edge/assets/tokenizer)."""
    from pathlib import Path

    from quamba_edge.tokenizer import bundled_assets_dir, tokenizer_dir

    if explicit:
        p = Path(explicit).expanduser()
        if not (p.is_file() or (p / "tokenizer.json").is_file()):
            raise FileNotFoundError(f"--tokenizer {explicit}: no tokenizer.json there")
        return p
    for cand in (tokenizer_dir(Path(model_dir)), bundled_assets_dir() / "tokenizer"):
        if (cand / "tokenizer.json").is_file():
            return cand
    raise FileNotFoundError(f"no tokenizer.json in {model_dir} and no bundled tokenizer; pass --tokenizer DIR")


def _load_tokenizer(tok_dir, vocab_size: int):
    from quamba_edge.tokenizer import load_tokenizer

    tok = load_tokenizer(tok_dir)
    if tok.vocab_size > vocab_size:
        raise ValueError(f"the tokenizer in {tok_dir} has {tok.vocab_size} tokens but the model's "
                         f"embedding has {vocab_size} rows; pass the model's own tokenizer (--tokenizer)")
    return tok


def _mib(n: float) -> str:
    return f"{n / 2**20:,.2f} MiB"


def _combos():
    """Valid (recipe, bits, arch) triples: recipes.RECIPES when Q's recipes module exists, else qconfig's."""
    try:
        from quamba_edge.quant.recipes import RECIPES  # type: ignore[attr-defined]

        return [tuple(c) for c in RECIPES]
    except ImportError:
        from quamba_edge.quant.qconfig import VALID_COMBOS

        return [tuple(c) for c in VALID_COMBOS]


def _json_safe(obj):
    """Non-finite floats as strings ("inf"), so --json output is strict JSON."""
    import math

    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------------------------
# quantize
# ------------------------------------------------------------------------------------------------


def _cmd_quantize(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from quamba_edge.quant.artifact import check_output_dir, save_artifact
    from quamba_edge.tokenizer import resolve_model_dir

    t_start = time.perf_counter()
    # ---- every check that needs no weights, before anything is loaded or written ----
    model_dir = resolve_model_dir(args.model)
    cfg = _fp_config(model_dir)
    combos = _combos()
    if (args.recipe, args.bits, cfg.arch) not in combos:
        valid = ", ".join(f"{r} {b} ({a})" for r, b, a in combos)
        raise ValueError(f"--recipe {args.recipe} --bits {args.bits} is not available for {cfg.arch} "
                         f"model {model_dir}; valid recipe/bits (arch): {valid}")
    for flag, value in (("--num-samples", args.num_samples), ("--seq-len", args.seq_len),
                        ("--gptq-num-samples", args.gptq_num_samples), ("--gptq-seq-len", args.gptq_seq_len)):
        if value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    for flag, f in (("--calib", args.calib), ("--gptq-calib", args.gptq_calib)):
        if f is not None and not Path(f).exists() and Path(f).suffix in (".txt", ".jsonl", ".gz"):
            raise FileNotFoundError(f"{flag} {f}: no such file")
    out = Path(args.out).expanduser().absolute()
    if out.resolve() == model_dir.resolve():
        raise ValueError(f"--out {args.out} is the input model directory; choose another directory")
    check_output_dir(out)
    tok_dir = _tokenizer_dir(model_dir, args.tokenizer)
    device = _device(args.device)
    w4 = args.bits.startswith("w4")
    use_gptq = w4 and not args.rtn

    _say(f"quantize {model_dir} ({cfg.arch}, d_model {cfg.d_model}, {cfg.n_layer} layers, vocab "
         f"{cfg.vocab_size}) with {args.recipe} {args.bits}"
         + (f", {'GPTQ' if use_gptq else 'RTN'} weights" if w4 else "") + f" on {device}")

    # ---- load ----
    import torch

    from quamba_edge.models import load_model
    from quamba_edge.quant.calibration import load_gptq_samples, load_samples

    torch.manual_seed(args.seed)
    t = time.perf_counter()
    model = load_model(model_dir, dtype=args.dtype, device=device)
    tok = _load_tokenizer(tok_dir, cfg.vocab_size)
    _say(f"  loaded FP model ({args.dtype}) and tokenizer ({tok_dir}) in {time.perf_counter() - t:.2f}s")

    t = time.perf_counter()
    calib = load_samples(args.calib, tok, args.num_samples, args.seq_len, args.seed)
    n_tok = sum(int(s.numel()) for s in calib)
    _say(f"  calibration: {len(calib)} samples, {n_tok:,} tokens from {args.calib} "
         f"(seq-len {args.seq_len}, seed {args.seed}) in {time.perf_counter() - t:.2f}s")
    gptq_calib = None
    if use_gptq:
        t = time.perf_counter()
        gptq_calib = load_gptq_samples(args.calib, tok, args.gptq_num_samples, args.gptq_seq_len, args.seed,
                                       gptq_source=args.gptq_calib)
        _say(f"  GPTQ data: {len(gptq_calib)} windows of {args.gptq_seq_len} tokens from "
             f"{args.gptq_calib or args.calib} in {time.perf_counter() - t:.2f}s")

    # ---- quantize ----
    from quamba_edge.quant.recipes import quantize_model

    t = time.perf_counter()
    options = {} if not w4 else {"gptq": use_gptq}
    qmodel = quantize_model(model, args.recipe, args.bits, calib, gptq_calib=gptq_calib,
                            progress=sys.stderr.isatty(), **options)
    t_quant = time.perf_counter() - t
    _say(f"  quantized in {t_quant:.2f}s")

    # ---- save ----
    t = time.perf_counter()
    meta = {
        "model": str(model_dir.resolve()),
        "calib": str(args.calib), "num_samples": args.num_samples, "seq_len": args.seq_len,
        "seed": args.seed, "gptq": use_gptq,
        "gptq_calib": str(args.gptq_calib) if args.gptq_calib else None,
        "gptq_num_samples": args.gptq_num_samples if use_gptq else None,
        "gptq_seq_len": args.gptq_seq_len if use_gptq else None,
        "fp_dtype": args.dtype, "device": str(device), "quantize_seconds": round(t_quant, 3),
    }
    path = save_artifact(qmodel, out, tokenizer_dir=tok_dir, metadata=meta)
    wbytes = (path / "model.safetensors").stat().st_size
    n_tensors = len(qmodel.state_dict())
    _say(f"  wrote {path} (model.safetensors {_mib(wbytes)}, {n_tensors} tensors, config.json, tokenizer) "
         f"in {time.perf_counter() - t:.2f}s")
    _say(f"done in {time.perf_counter() - t_start:.2f}s: {path}")
    return 0


# ------------------------------------------------------------------------------------------------
# eval
# ------------------------------------------------------------------------------------------------


def _load_any(path: str, device, dtype: str):
    """(model, description dict, model_dir, MambaConfig) for an artifact dir or an FP checkpoint/name."""
    from quamba_edge.quant.artifact import is_artifact, load_artifact, read_artifact_config
    from quamba_edge.tokenizer import resolve_model_dir

    model_dir = resolve_model_dir(path)
    if is_artifact(model_dir):
        acfg = read_artifact_config(model_dir)
        model = load_artifact(model_dir, device=device)
        desc = {"kind": "artifact", "path": str(model_dir), "recipe": acfg.get("recipe"),
                "bits": acfg.get("bits"), "arch": acfg["model_config"].get("arch"), "source": acfg.get("source", {})}
        return model, desc, model_dir, model.config
    from quamba_edge.models import load_model

    model = load_model(model_dir, dtype=dtype, device=device)
    desc = {"kind": "fp", "path": str(model_dir), "arch": model.config.arch, "dtype": dtype}
    return model, desc, model_dir, model.config


def _cmd_eval(args: argparse.Namespace) -> int:
    import time

    if not args.ppl and not args.sqnr:
        raise ValueError("nothing to evaluate: pass --ppl FILE and/or --sqnr")
    if args.window < 2:
        raise ValueError(f"--window must be >= 2, got {args.window}")
    if args.max_windows is not None and args.max_windows < 1:
        raise ValueError(f"--max-windows must be >= 1, got {args.max_windows}")
    from quamba_edge.quant.artifact import is_artifact
    from quamba_edge.tokenizer import resolve_model_dir

    if args.sqnr and not is_artifact(resolve_model_dir(args.model)):
        raise ValueError(f"--sqnr compares a quantized artifact with its FP model; {args.model} is not an "
                         "artifact (make one with `quamba-edge quantize`)")
    device = _device(args.device)
    t = time.perf_counter()
    model, desc, model_dir, cfg = _load_any(args.model, device, args.dtype)
    tok = _load_tokenizer(_tokenizer_dir(model_dir, args.tokenizer), cfg.vocab_size)
    what = (f"{desc['recipe']} {desc['bits']} artifact" if desc["kind"] == "artifact"
            else f"FP model ({args.dtype})")
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else _say
    log(f"eval {model_dir}: {cfg.arch} {what}, loaded in {time.perf_counter() - t:.2f}s on {device}")
    result: dict = {"model": desc}

    if args.ppl:
        from quamba_edge.quant.evaluate import format_perplexity, perplexity, text_token_ids

        t = time.perf_counter()
        ids = text_token_ids(args.ppl, tok)
        r = perplexity(model, ids, window=args.window, max_windows=args.max_windows,
                       batch_size=args.batch_size)
        r["seconds"] = round(time.perf_counter() - t, 3)
        r["file"] = str(args.ppl)
        result["perplexity"] = r
        log(f"  {args.ppl}: {ids.numel():,} tokens")
        if not args.json:
            _say(f"  {format_perplexity(r)} ({r['seconds']:.2f}s)")

    if args.sqnr:
        from pathlib import Path

        from quamba_edge.models import load_model
        from quamba_edge.quant.calibration import load_samples
        from quamba_edge.quant.evaluate import format_sqnr_table, sqnr_report

        fp_path = args.fp or desc["source"].get("model")
        if not fp_path:
            raise ValueError("--sqnr needs the FP model: pass --fp MODEL")
        if not args.fp and not Path(fp_path).exists():
            raise FileNotFoundError(f"the artifact's FP model {fp_path} is gone; pass --fp MODEL")
        src = args.calib or args.ppl
        if not src:
            raise ValueError("--sqnr needs input text: pass --calib FILE (or --ppl FILE)")
        t = time.perf_counter()
        fp_model = load_model(fp_path, dtype=args.dtype, device=device)
        shape_fields = ("arch", "d_model", "n_layer", "vocab_size", "d_state", "d_conv", "expand", "dt_rank",
                        "headdim", "ngroups")  # tie_embeddings differs after quamba2 unties the head
        if any(getattr(fp_model.config, k) != getattr(cfg, k) for k in shape_fields):
            raise ValueError(f"--fp {fp_path} is not the model the artifact was made from "
                             f"(its config differs: {fp_model.config.arch}, d_model {fp_model.config.d_model}, "
                             f"{fp_model.config.n_layer} layers)")
        samples = load_samples(src, tok, args.num_samples, args.seq_len, args.seed)
        rows = sqnr_report(fp_model, model, samples, threshold_db=args.threshold)
        result["sqnr"] = {"fp_model": str(fp_path), "source": str(src), "samples": len(samples),
                          "seq_len": args.seq_len, "threshold_db": args.threshold, "rows": rows,
                          "seconds": round(time.perf_counter() - t, 3)}
        if not args.json:
            _say(f"  SQNR of each quantized activation vs FP {fp_path} on {len(samples)} samples of "
                 f"<= {args.seq_len} tokens from {src} (mixer-internal taps: invariant to the residual "
                 f"rotation; Mamba2 reorder undone where the model records it):")
            _say(format_sqnr_table(rows, threshold_db=args.threshold))

    if args.json:
        print(json.dumps(_json_safe(result), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quamba-edge",
        description="Quantize Mamba/Mamba2 LMs (Quamba, Quamba2), export to ONNX, run on Jetson.",
    )
    parser.add_argument("--version", action="version", version=f"quamba-edge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("info", help="architecture, sizes, parameter count and weight bytes of a model")
    p.add_argument("model", help="checkpoint directory (HF or mamba_ssm format), a bundled model name, or a "
                                 "quantized artifact directory")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "quantize", help="quantize an FP model (Quamba / Quamba2 recipe) into an artifact directory",
        description="Quantize an FP Mamba/Mamba2 checkpoint and write a quantized artifact (config.json, "
                    "model.safetensors, tokenizer files). Nothing is written when a check fails.")
    p.add_argument("model", metavar="MODEL", help="FP checkpoint directory or bundled model name")
    p.add_argument("--recipe", required=True, metavar="{quamba,quamba2}", help="quantization recipe")
    p.add_argument("--bits", required=True, metavar="{w8a8,w4a8,w4a16}", help="weight/activation bits")
    p.add_argument("--calib", required=True, metavar="FILE",
                   help="calibration text: .txt (blank-line separated documents), .jsonl, or a cached HF dataset")
    p.add_argument("--gptq-calib", metavar="FILE", help="separate text for GPTQ (W4; default: --calib)")
    p.add_argument("--num-samples", type=int, default=512, help="calibration samples (default 512)")
    p.add_argument("--seq-len", type=int, default=512, help="tokens per calibration sample (default 512)")
    p.add_argument("--gptq-num-samples", type=int, default=128, help="GPTQ windows (default 128)")
    p.add_argument("--gptq-seq-len", type=int, default=1024, help="tokens per GPTQ window (default 1024)")
    p.add_argument("--seed", type=int, default=0, help="sample selection seed (default 0)")
    p.add_argument("--rtn", action="store_true", help="round-to-nearest W4 weights instead of GPTQ")
    p.add_argument("--out", required=True, metavar="DIR", help="artifact directory to write (replaced atomically)")
    p.add_argument("--tokenizer", metavar="DIR", help="tokenizer dir (default: the model's, else the bundled one)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--dtype", default="float32", help="dtype the FP model is loaded in (default float32)")
    p.set_defaults(func=_cmd_quantize)

    p = sub.add_parser(
        "eval", help="perplexity / top-1 of a model or artifact, and a per-layer SQNR report",
        description="Evaluate an FP checkpoint or a quantized artifact: perplexity and next-token top-1 "
                    "over fixed non-overlapping windows (--ppl), and for an artifact the SQNR of every "
                    "quantized activation against the FP model (--sqnr).")
    p.add_argument("model", metavar="MODEL_OR_ARTIFACT",
                   help="artifact directory, FP checkpoint directory or bundled model name")
    p.add_argument("--ppl", metavar="FILE", help="text to score (.txt, .jsonl or a cached HF dataset)")
    p.add_argument("--window", type=int, default=512, help="tokens per window (default 512)")
    p.add_argument("--max-windows", type=int, metavar="N", help="score only the first N windows")
    p.add_argument("--batch-size", type=int, default=1, help="windows per forward pass (default 1)")
    p.add_argument("--sqnr", action="store_true", help="per-layer SQNR of an artifact against its FP model")
    p.add_argument("--fp", metavar="MODEL", help="FP model for --sqnr (default: the one recorded in the artifact)")
    p.add_argument("--calib", metavar="FILE", help="input text for --sqnr (default: --ppl FILE)")
    p.add_argument("--num-samples", type=int, default=8, help="--sqnr samples (default 8)")
    p.add_argument("--seq-len", type=int, default=512, help="tokens per --sqnr sample (default 512)")
    p.add_argument("--seed", type=int, default=0, help="--sqnr sample seed (default 0)")
    p.add_argument("--threshold", type=float, default=20.0, help="flag taps below this SQNR in dB (default 20)")
    p.add_argument("--tokenizer", metavar="DIR", help="tokenizer dir (default: the model's, else the bundled one)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--dtype", default="float32", help="dtype of an FP model (default float32)")
    p.add_argument("--json", action="store_true", help="print JSON (progress goes to stderr)")
    p.set_defaults(func=_cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except (FileNotFoundError, FileExistsError, NotADirectoryError, ValueError) as exc:
        # User errors (bad path, corrupt checkpoint, unsupported config): one clear line, no traceback.
        print(f"quamba-edge {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
