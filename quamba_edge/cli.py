"""The `quamba-edge` command line.

Subcommands import their heavy dependencies (torch, onnx, tensorrt) lazily, so `quamba-edge --help`
works on a Jetson without torch. Each subcommand arrives with the issue that builds it; `--help` lists
only what exists.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
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


def _bundled_calib() -> Path:
    """The calibration slice shipped with the package (quamba_edge/assets/text/calib.txt, ~63k tokens)."""
    from quamba_edge.tokenizer import bundled_assets_dir

    return bundled_assets_dir() / "text" / "calib.txt"


def _short_text_notice(command: str) -> Callable[[str], None]:
    """``on_short`` for the calibration loaders: the CLI takes the samples the text holds (same length,
    fewer of them; see quamba_edge/quant/calibration.py) and says so in one line on stderr."""
    return lambda msg: print(f"quamba-edge {command}: {msg}", file=sys.stderr, flush=True)


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
    calib_src = args.calib or str(_bundled_calib())
    for flag, f in (("--calib", calib_src), ("--gptq-calib", args.gptq_calib)):
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
    notice = _short_text_notice("quantize")
    calib = load_samples(calib_src, tok, args.num_samples, args.seq_len, args.seed, on_short=notice)
    n_tok = sum(int(s.numel()) for s in calib)
    _say(f"  calibration: {len(calib)} samples, {n_tok:,} tokens from {calib_src} "
         f"(seq-len {args.seq_len}, seed {args.seed}) in {time.perf_counter() - t:.2f}s")
    gptq_calib = None
    if use_gptq:
        t = time.perf_counter()
        gptq_calib = load_gptq_samples(calib_src, tok, args.gptq_num_samples, args.gptq_seq_len, args.seed,
                                       gptq_source=args.gptq_calib, on_short=notice)
        _say(f"  GPTQ data: {len(gptq_calib)} windows of {args.gptq_seq_len} tokens from "
             f"{args.gptq_calib or calib_src} in {time.perf_counter() - t:.2f}s")

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
        # the sample counts actually used (fewer than asked when the text is short)
        "calib": str(calib_src), "num_samples": len(calib), "seq_len": args.seq_len,
        "seed": args.seed, "gptq": use_gptq,
        "gptq_calib": str(args.gptq_calib) if args.gptq_calib else None,
        "gptq_num_samples": len(gptq_calib) if gptq_calib is not None else None,
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
        samples = load_samples(src, tok, args.num_samples, args.seq_len, args.seed,
                               on_short=_short_text_notice("eval"))
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


# ------------------------------------------------------------------------------------------------
# export / generate / demo (the runtime; torch only where the model needs it)
# ------------------------------------------------------------------------------------------------


def _export_api():
    """(export_model, read_export_info) of quamba_edge.export, or a clear error when it is missing."""
    try:
        from quamba_edge.export import export_model, read_export_info  # type: ignore[attr-defined]
    except ImportError as e:
        raise ValueError(f"ONNX export is not available in this install ({e}); install the export extra: "
                         "pip install 'quamba-edge[export]'") from e
    return export_model, read_export_info


def _cmd_export(args: argparse.Namespace) -> int:
    import time

    export_model, read_export_info = _export_api()
    t = time.perf_counter()
    out = export_model(args.model, args.out, dtype=args.dtype, overwrite=args.overwrite)
    info = read_export_info(out)
    size = sum(f.stat().st_size for f in info.path.iterdir() if f.is_file() and f.suffix != ".json")
    _say(f"exported {args.model} ({info.arch}, {info.precision}"
         + (f", {info.recipe}" if info.recipe else "") + f", {info.act_dtype} activations) to {out}: "
         f"{info.onnx_path.name} + export.json + tokenizer ({_mib(size)}, {len(info.states)} state tensors) "
         f"in {time.perf_counter() - t:.2f}s")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from quamba_edge.runtime import EdgeModel

    prompts = args.prompt
    if args.stream and len(prompts) > 1:
        raise ValueError("--stream takes one --prompt")
    err = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    model = EdgeModel.load(args.model, backend=args.backend, device=args.device, threads=args.threads,
                           max_prompt_tokens=args.max_prompt_tokens, prefill_chunk=args.prefill_chunk)
    if not args.json:
        err(f"[{model.backend_name} {model.precision} on {model.device}: {model.backend_reason}]")
    kw = dict(max_new_tokens=args.max_new_tokens, do_sample=args.temperature > 0,
              temperature=args.temperature if args.temperature > 0 else None, top_k=args.top_k, top_p=args.top_p,
              repetition_penalty=args.repetition_penalty, stop=args.stop or None, seed=args.seed)
    if args.stream:
        s = model.generate(prompts[0], stream=True, **kw)
        for piece in s:
            if not args.json:
                sys.stdout.write(piece)
                sys.stdout.flush()
        out = s.output
        if not args.json:
            sys.stdout.write("\n")
    else:
        out = model.generate(prompts if len(prompts) > 1 else prompts[0], **kw)
    if args.json:
        res = {"model": model.info(), "prompt": prompts if len(prompts) > 1 else prompts[0], "text": out.text,
               "tokens": out.tokens, "finish_reason": out.finish_reason, "stats": out.stats.to_dict()}
        print(json.dumps(_json_safe(res), indent=2))
        return 0
    if not args.stream:
        texts = out.text if isinstance(out.text, list) else [out.text]
        for i, text in enumerate(texts):
            if len(texts) > 1:
                print(f"--- [{i}] {prompts[i]!r}")
            print(text)
    err(f"[{out.stats.summary()}]")
    return 0


_DEMO_PROMPT = "The interpreter reads"


def _dir_bytes(path) -> int:
    from quamba_edge.runtime.measure import model_file_bytes

    return model_file_bytes(path) or 0


def _demo_measure(path, args, ppl_file, log) -> dict:
    """Measure one model in a fresh process (its own peak memory)."""
    import subprocess

    cmd = [sys.executable, "-m", "quamba_edge.runtime.measure", str(path), "--backend", args.backend,
           "--prompt", args.prompt, "--max-new-tokens", str(args.max_new_tokens), "--ppl-ids", str(ppl_file),
           "--window", str(args.window), "--max-windows", str(args.ppl_windows)]
    import os

    env = dict(os.environ)
    if args.threads:
        cmd += ["--threads", str(args.threads)]
        env["OMP_NUM_THREADS"] = str(args.threads)  # torch inside the process (reference ops) too
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    rec = json.loads(lines[-1]) if lines else {"error": (r.stderr.strip().splitlines() or ["no output"])[-1]}
    if "error" in rec:
        raise ValueError(f"measuring {path} failed: {rec['error']}")
    return rec


def _fmt_demo_table(rows: list[dict]) -> str:
    head = ["precision", "backend", "ppl", "Δppl", "TTFT ms", "TPOT ms", "tok/s", "peak MB", "model MB"]
    base = next((r["perplexity"]["ppl"] for r in rows if r["precision"] == "fp16"), None)
    body = []
    for r in rows:
        ppl = r["perplexity"]["ppl"]
        d = "—" if base is None or r["precision"] == "fp16" else f"{100 * (ppl / base - 1):+.2f} %"
        st = r["stats"]
        mem = "n/a" if st["peak_memory_mb"] is None else f"{st['peak_memory_mb']:.0f}"
        body.append([r["precision"].upper() if r["precision"] != "fp16" else "fp16", r["backend"], f"{ppl:.3f}", d,
                     f"{st['ttft_ms']:.1f}", f"{st['tpot_ms']:.2f}", f"{st['tokens_per_s']:.1f}", mem,
                     f"{(r.get('model_bytes') or 0) / 2**20:.2f}"])
    w = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w[i]) if i < 2 else c.rjust(w[i]) for i, c in enumerate(cells))  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * x for x in w])] + [fmt(b) for b in body])


# Why the quantized rows are slower than fp16 on ONNX Runtime CPU: every custom `quamba` node runs as a
# Python PyOp (onnxruntime-extensions) and the quantized graphs have many more of them (fp16 has only its
# float scans). A user reading the table should not take that for the speed of the method.
ORT_CPU_NOTE = ("On CPU (ONNX Runtime) the quantized graphs run their custom ops as Python PyOps, so they are "
                "slower than fp16 here; speed-ups come from the CUDA kernels (torch-cuda, with a GPU) and "
                "TensorRT plugins (Jetson).")


def _demo_notes(rows: list[dict]) -> list[str]:
    """Notes printed under the demo table (and given as "notes" in --json): today only ORT_CPU_NOTE, when
    a quantized model ran on ONNX Runtime's CPU provider."""
    notes = []
    if any(r["precision"] != "fp16" and r["backend"] == "onnxruntime" and r.get("device") == "cpu" for r in rows):
        notes.append(ORT_CPU_NOTE)
    return notes


def _cmd_demo(args: argparse.Namespace) -> int:
    import shutil
    import tempfile
    import time
    from pathlib import Path

    from quamba_edge.runtime.backends.base import BACKEND_NAMES
    from quamba_edge.tokenizer import bundled_assets_dir, resolve_model_dir

    t_start = time.perf_counter()
    if args.backend not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {args.backend!r}; valid backends: {', '.join(BACKEND_NAMES)}")
    bits_list = [b.strip() for b in args.bits.split(",") if b.strip()]
    for b in bits_list:
        if b not in ("w8a8", "w4a8", "w4a16"):
            raise ValueError(f"--bits {b}: choose from w8a8, w4a8, w4a16")
    for flag, v in (("--max-new-tokens", args.max_new_tokens), ("--ppl-windows", args.ppl_windows),
                    ("--num-samples", args.num_samples), ("--gptq-num-samples", args.gptq_num_samples)):
        if v < 1:
            raise ValueError(f"{flag} must be >= 1, got {v}")
    model_dir = resolve_model_dir(args.model)
    texts = bundled_assets_dir() / "text"
    calib, eval_text = Path(args.calib or texts / "calib.txt"), Path(args.eval_text or texts / "eval.txt")
    for f in (calib, eval_text):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: no such file")
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else _say
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    work = Path(args.work).expanduser().absolute() if args.work else Path(tempfile.mkdtemp(prefix="quamba-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        export_api = None
        why_no_export = ""
        if args.backend in ("auto", "onnxruntime", "tensorrt"):
            try:
                export_api = _export_api()
            except ValueError as e:
                if args.backend != "auto":
                    raise
                why_no_export = str(e)
        log(f"quamba-edge demo: {args.model} ({model_dir}) -> quantize {', '.join(b.upper() for b in bits_list)} -> "
            + ("export (ONNX, fp32) -> " if export_api else "") + f"run; work dir {work}")
        if why_no_export:
            log(f"  no export here, the models run on the torch reference: {why_no_export}")

        import numpy as np

        from quamba_edge.quant.evaluate import text_token_ids

        tok_dir = _tokenizer_dir(model_dir, None)
        tok = _load_tokenizer(tok_dir, _fp_config(model_dir).vocab_size)
        ids = text_token_ids(eval_text, tok).numpy()
        ppl_file = work / "eval_ids.npy"
        np.save(ppl_file, ids.astype(np.int64))

        sources = [("fp16", args.model)]
        for bits in bits_list:
            out = work / f"{model_dir.name}-{bits}"
            t = time.perf_counter()
            qargs = ["quantize", str(model_dir), "--recipe", args.recipe, "--bits", bits, "--calib", str(calib),
                     "--num-samples", str(args.num_samples), "--seq-len", str(args.seq_len),
                     "--gptq-num-samples", str(args.gptq_num_samples), "--gptq-seq-len", str(args.gptq_seq_len),
                     "--out", str(out), "--device", "cpu"]
            import contextlib
            import io

            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                _cmd_quantize(build_parser().parse_args(qargs))
            log(f"  quantized {args.recipe} {bits.upper()} in {time.perf_counter() - t:.1f}s -> {out}")
            sources.append((bits, str(out)))

        runs = []
        for prec, src in sources:
            path = src
            if export_api is not None:
                export_model, _ = export_api
                t = time.perf_counter()
                path = str(export_model(src, work / f"{Path(src).name}-onnx", dtype="fp32", overwrite=True))
                log(f"  exported {prec} to {path} in {time.perf_counter() - t:.1f}s")
            runs.append((prec, path))

        rows = []
        for prec, path in runs:
            t = time.perf_counter()
            rec = _demo_measure(path, args, ppl_file, log)
            rec["precision"] = prec
            rows.append(rec)
            log(f"  ran {prec} on {rec['backend']} ({rec['device']}) in {time.perf_counter() - t:.1f}s: "
                f"{rec['prompt']!r} -> {rec['text']!r}")
        total = time.perf_counter() - t_start
        backends = sorted({r["backend"] for r in rows})
        reasons = sorted({r["backend_reason"] for r in rows})
        p0 = rows[0]["perplexity"]
        result = {
            "model": args.model, "work": str(work), "prompt": args.prompt, "max_new_tokens": args.max_new_tokens,
            "perplexity_protocol": {"file": str(eval_text), "windows": p0["windows"], "window": p0["window"]},
            "backends": backends, "backend_reasons": reasons, "rows": rows, "notes": _demo_notes(rows),
            "seconds": round(total, 1),
        }
        if args.json:
            print(json.dumps(_json_safe(result), indent=2))
        else:
            _say("")
            _say(f"backend: {', '.join(backends)} — " + "; ".join(reasons))
            _say(f"perplexity: {p0['windows']} windows × {p0['window']} tokens of {eval_text.name}; greedy generation "
                 f"of {args.max_new_tokens} tokens from {args.prompt!r} after a warm-up; peak MB = "
                 f"{rows[0]['stats']['memory_kind']} of the process running the model; model MB = weight/graph files")
            fp = rows[0]
            if fp["precision"] == "fp16" and fp.get("compute_dtype") == "float32":
                _say(f"fp16 = the unquantized model; {fp['backend']} on {fp['device']} runs it with fp32 weights and "
                     "activations (the fp32 export); the quantized rows keep their int8 / int4 weights")
            _say("")
            _say(_fmt_demo_table(rows))
            for note in result["notes"]:
                _say(note)
            _say("")
            _say(f"done in {total:.1f}s" + (f" (work dir {work} kept)" if args.work or args.keep else ""))
    finally:
        if not args.work and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from quamba_edge.runtime.engine_build import build_engine

    out = build_engine(args.export_dir, max_batch=args.max_batch, max_seq=args.max_seq, plugins=args.plugins,
                       workspace_mb=args.workspace, timing_cache=args.timing_cache, progress=sys.stderr.isatty())
    print(out)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from quamba_edge.bench.latency import BenchConfig, markdown, parse_ints, run_bench, split_names, write_outputs
    from quamba_edge.bench.roofline import MODEL_SHAPES

    models = list(MODEL_SHAPES) if args.models == "all" else split_names(args.models)
    cfg = BenchConfig(models=models, precisions=split_names(args.precisions),
                      prompt_lens=parse_ints(args.prompt_lens), batches=parse_ints(args.batches),
                      tokens=args.tokens, repeats=args.repeats, warmup=args.warmup, graphs=not args.no_graphs,
                      profile=not args.no_profile, recipe=args.recipe, device=args.device)
    for name, v in (("--tokens", cfg.tokens), ("--repeats", cfg.repeats)):
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    if cfg.warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {cfg.warmup}")
    doc = run_bench(cfg, progress=not args.json, on_row=lambda d: write_outputs(d, args.out))
    paths = write_outputs(doc, args.out)
    if args.json:
        print(json.dumps(doc, indent=1, default=str))
    else:
        print(markdown(doc))
        print("wrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
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
    p.add_argument("--calib", metavar="FILE",
                   help="calibration text: .txt (blank-line separated documents), .jsonl, or a cached HF dataset "
                        "(default: the bundled quamba_edge/assets/text/calib.txt, ~63k tokens). Text too short "
                        "for --num-samples / --gptq-num-samples gives fewer samples of the same length, with a "
                        "note on stderr")
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

    p = sub.add_parser(
        "export", help="export an artifact or FP model to ONNX (model.onnx + export.json + tokenizer)",
        description="Export a quantized artifact, an FP checkpoint or a bundled model to an ONNX directory "
                    "(one graph for prefill and decode, custom ops for the quantized computations) that "
                    "`quamba-edge generate` runs with ONNX Runtime (fp32) or, later, TensorRT (fp16).")
    p.add_argument("model", metavar="ARTIFACT",
                   help="artifact directory, FP checkpoint directory or bundled model name")
    p.add_argument("--out", required=True, metavar="DIR", help="export directory to write (atomically)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "fp16"),
                   help="activation dtype: fp32 for ONNX Runtime (default), fp16 for TensorRT")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export directory")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "build", help="build a TensorRT engine from an fp16 export, with our plugins (on the device)",
        description="Build EXPORT_DIR/model.engine (+ model.engine.json: what it was built from) from an export "
                    "made with --dtype fp16: strongly typed network, our plugin library loaded, prefill and "
                    "decode optimization profiles, optional timing cache. Needs TensorRT (JetPack on a Jetson).")
    p.add_argument("export_dir", metavar="EXPORT_DIR", help="directory written by `quamba-edge export --dtype fp16`")
    p.add_argument("--max-batch", type=int, default=1, help="largest batch the engine takes (default 1)")
    p.add_argument("--max-seq", type=int, default=2048, help="longest prefill chunk in tokens (default 2048)")
    p.add_argument("--plugins", metavar="LIB", help="libquamba_trt_plugins.so (default: $QUAMBA_TRT_PLUGINS, "
                                                    "else build/plugins/trt/ of this checkout)")
    p.add_argument("--workspace", type=int, metavar="MB", help="builder workspace limit in MB (default TensorRT's)")
    p.add_argument("--timing-cache", metavar="FILE", help="read and update this timing cache")
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser(
        "generate", help="generate text from a prompt (EdgeModel on the best available backend)",
        description="Load a model with EdgeModel (an export directory runs on ONNX Runtime / TensorRT, an "
                    "artifact or FP model on the torch reference) and print the generated text; the backend "
                    "chosen and the stats go to stderr.")
    p.add_argument("model", metavar="MODEL", help="export directory, artifact, FP checkpoint or bundled model name")
    p.add_argument("--prompt", required=True, action="append", metavar="TEXT",
                   help="prompt text (repeat for a batch)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="tokens to generate (default 64)")
    p.add_argument("--backend", default="auto", metavar="{auto,onnxruntime,tensorrt,torch-cuda,torch}",
                   help="runtime backend (default auto: the best available)")
    p.add_argument("--stream", action="store_true", help="print the text as it is generated")
    p.add_argument("--json", action="store_true", help="print text, tokens and stats as JSON")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0 = greedy)")
    p.add_argument("--top-k", type=int, help="sample from the k most likely tokens (default 50; 0 = off)")
    p.add_argument("--top-p", type=float, help="nucleus sampling threshold (default 1 = off)")
    p.add_argument("--repetition-penalty", type=float, help="transformers' repetition penalty (default 1 = off)")
    p.add_argument("--stop", action="append", metavar="TEXT", help="stop when the text contains TEXT (repeatable)")
    p.add_argument("--seed", type=int, help="sampling seed")
    p.add_argument("--max-prompt-tokens", type=int, metavar="N", help="reject prompts longer than N tokens")
    p.add_argument("--prefill-chunk", type=int, metavar="N", help="feed the prompt in chunks of N tokens")
    p.add_argument("--threads", type=int, metavar="N", help="intra-op threads")
    p.add_argument("--device", help="torch backends: cpu, cuda, cuda:N")
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser(
        "demo", help="bundled model -> quantize (W8A8, W4A16) -> export -> run; a table of ppl / TTFT / TPOT / memory",
        description="End to end on this machine: quantize the bundled reference model (small calibration), "
                    "export each model, run each on the best available backend, and print perplexity, "
                    "TTFT, TPOT and peak memory of fp16 and each precision, saying which backend ran and why.")
    p.add_argument("--model", default="mamba2-ref", help="bundled model name or FP checkpoint (default mamba2-ref)")
    p.add_argument("--bits", default="w8a8,w4a16", help="comma-separated precisions (default w8a8,w4a16)")
    p.add_argument("--recipe", default="quamba2", help="quantization recipe (default quamba2)")
    p.add_argument("--work", metavar="DIR", help="keep artifacts and exports in DIR (default: a temp dir, removed)")
    p.add_argument("--keep", action="store_true", help="keep the temporary work dir")
    p.add_argument("--backend", default="auto", help="runtime backend (default auto)")
    p.add_argument("--prompt", default=_DEMO_PROMPT, help=f"prompt (default {_DEMO_PROMPT!r})")
    p.add_argument("--max-new-tokens", type=int, default=32, help="tokens generated per model (default 32)")
    p.add_argument("--ppl-windows", type=int, default=4, help="eval windows scored per model (default 4)")
    p.add_argument("--window", type=int, default=512, help="tokens per eval window (default 512)")
    p.add_argument("--calib", metavar="FILE", help="calibration text (default: the bundled calib.txt)")
    p.add_argument("--eval-text", metavar="FILE", help="perplexity text (default: the bundled eval.txt)")
    p.add_argument("--num-samples", type=int, default=16, help="calibration samples (default 16)")
    p.add_argument("--seq-len", type=int, default=512, help="tokens per calibration sample (default 512)")
    p.add_argument("--gptq-num-samples", type=int, default=8, help="GPTQ windows (default 8)")
    p.add_argument("--gptq-seq-len", type=int, default=1024, help="tokens per GPTQ window (default 1024)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="intra-op threads for quantize and the runtime (default 1: the reference model's ops are "
                        "too small to gain from more, and on a busy machine extra threads cost a lot; 0 = library "
                        "default)")
    p.add_argument("--json", action="store_true", help="print the results as JSON (progress to stderr)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "bench", help="TTFT / TPOT / memory of models at real shapes on this GPU (torch-cuda, CUDA-graph decode)",
        description="Latency benchmark on the torch-cuda runtime: models at real shapes with random weights built "
                    "on the GPU in their final format (latency does not depend on the values), or a real "
                    "checkpoint / artifact path; TTFT per prompt length, TPOT per batch, peak memory, the per-op "
                    "roofline of the decode step; JSON, CSV, markdown and plots in --out.")
    p.add_argument("--models", default="mamba2-2.7b",
                   help="comma-separated shape names (mamba-130m ... mamba-2.8b, mamba2-130m ... mamba2-2.7b, "
                        "mamba2-8b), checkpoint / artifact paths, or 'all' (default mamba2-2.7b)")
    p.add_argument("--precisions", default="fp16,w8a8,w4a8,w4a16", help="comma-separated (default all four)")
    p.add_argument("--recipe", default="quamba2", help="quantized layout (default quamba2)")
    p.add_argument("--prompt-lens", default="128,512,1024,2048", help="TTFT prompt lengths (default 128,512,1024,2048)")
    p.add_argument("--batches", default="1,4,16,64", help="TPOT batch sizes (default 1,4,16,64)")
    p.add_argument("--tokens", type=int, default=128, help="decode steps per TPOT run (default 128)")
    p.add_argument("--repeats", type=int, default=3, help="measured runs per figure (default 3; median, min, max)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up runs per figure (default 1)")
    p.add_argument("--no-graphs", action="store_true", help="decode eagerly (no CUDA graphs)")
    p.add_argument("--no-profile", action="store_true", help="skip the profiled per-op decode step")
    p.add_argument("--device", default="cuda", help="CUDA device (default cuda)")
    p.add_argument("--out", default="bench-results", metavar="DIR", help="output directory (default bench-results)")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    p.set_defaults(func=_cmd_bench)
    return parser


def _out_path(args: argparse.Namespace):
    """The directory a subcommand writes (quantize / export --out), else None."""
    out = getattr(args, "out", None) if args.command in ("quantize", "export") else None
    return Path(out).expanduser().absolute() if out else None


def _dir_stamp(path) -> tuple[int, int] | None:
    """(inode, mtime) of ``path``, or None when it does not exist: the atomic writers rename a complete new
    directory into place, so an unchanged stamp means nothing was written there."""
    import os

    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _interrupted_message(args: argparse.Namespace, out, stamp_before) -> str:
    """The one line printed on Ctrl-C. Writers build their output in a temp dir beside the target and
    remove it on any exception (KeyboardInterrupt included), so an interrupted run leaves the target as it
    was; the stamp check keeps the line true when Ctrl-C lands after the final rename."""
    msg = f"quamba-edge {args.command}: interrupted"
    if out is not None:
        if _dir_stamp(out) == stamp_before:
            return msg + f"; nothing was written to {out}"
        return msg + f" after {out} was written"
    if args.command == "demo":
        if args.work:
            return msg + f"; {args.work} keeps the models that were finished"
        if not args.keep:
            return msg + "; the temporary work dir was removed"
    return msg


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    user_errors: tuple[type[BaseException], ...] = (FileNotFoundError, FileExistsError, NotADirectoryError,
                                                    ValueError)
    if args.command in ("export", "generate", "demo", "bench", "build"):
        from quamba_edge.runtime.backends.base import BackendUnavailableError

        user_errors += (BackendUnavailableError,)
    out = _out_path(args)
    stamp = _dir_stamp(out)
    try:
        return func(args)
    except user_errors as exc:
        # User errors (bad path, corrupt checkpoint, unsupported config): one clear line, no traceback.
        print(f"quamba-edge {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Ctrl-C: one line instead of a traceback, and the shell's code for SIGINT (128 + 2).
        sys.stdout.flush()
        lead = "\n" if sys.stderr.isatty() else ""  # off the terminal's "^C" (and a streamed line)
        print(lead + _interrupted_message(args, out, stamp), file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
