"""Checkpoint loading/saving errors, config readers, bundled-name lookup and the tokenizer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import quamba_edge.tokenizer as tokmod
from quamba_edge.models import (
    CheckpointError,
    MambaConfig,
    MambaLM,
    ModelState,
    load_model,
    load_tokenizer,
    read_config,
    save_model,
)

REPO = Path(__file__).resolve().parents[1]


def _tiny(arch: str = "mamba1", tie: bool = True) -> MambaLM:
    torch.manual_seed(0)
    kw = {} if arch == "mamba1" else dict(headdim=8, ngroups=2, d_state=8, chunk_size=8)
    return MambaLM(MambaConfig(arch=arch, d_model=16, n_layer=2, vocab_size=40, tie_embeddings=tie, **kw)).eval()


@pytest.fixture
def tiny_hf_checkpoint(tmp_path):
    """A tiny untied Mamba1 model saved in HF format: (model, directory)."""
    model = _tiny(tie=False)
    return model, save_model(model, tmp_path / "ckpt", format="hf")


def _rewrite(path: Path, edit) -> None:
    sd = load_file(str(path / "model.safetensors"))
    edit(sd)
    save_file(sd, str(path / "model.safetensors"))


# ---- errors -------------------------------------------------------------------------------------


def test_missing_tensor(tiny_hf_checkpoint):
    _, d = tiny_hf_checkpoint
    _rewrite(d, lambda sd: sd.pop("backbone.layers.1.mixer.A_log"))
    with pytest.raises(CheckpointError, match=r"missing tensors: backbone\.layers\.1\.mixer\.A_log"):
        load_model(d)


def test_untied_head_is_required(tiny_hf_checkpoint):
    _, d = tiny_hf_checkpoint
    _rewrite(d, lambda sd: sd.pop("lm_head.weight"))
    with pytest.raises(CheckpointError, match=r"missing tensors: lm_head\.weight"):
        load_model(d)


def test_unexpected_tensor(tiny_hf_checkpoint):
    _, d = tiny_hf_checkpoint
    _rewrite(d, lambda sd: sd.__setitem__("backbone.layers.0.mixer.extra", torch.zeros(3)))
    with pytest.raises(CheckpointError, match=r"unexpected tensors: backbone\.layers\.0\.mixer\.extra"):
        load_model(d)


def test_misshaped_tensor(tiny_hf_checkpoint):
    _, d = tiny_hf_checkpoint
    _rewrite(d, lambda sd: sd.__setitem__("backbone.layers.0.mixer.D", torch.zeros(7)))
    msg = r"mis-shaped tensors: backbone\.layers\.0\.mixer\.D \(expected \[32\], got \[7\]\)"
    with pytest.raises(CheckpointError, match=msg):
        load_model(d)


def test_truncated_safetensors(tiny_hf_checkpoint):
    _, d = tiny_hf_checkpoint
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model(d)


_UNPICKLED = []


def _side_effect(x):  # would run if the loader used plain pickle
    _UNPICKLED.append(x)
    return x


class _Evil:
    def __reduce__(self):
        return (_side_effect, ("ran",))


def test_pickle_that_is_not_weights_only_is_refused(tmp_path):
    model = _tiny()
    d = save_model(model, tmp_path / "ssm", format="mamba_ssm")
    sd = torch.load(d / "pytorch_model.bin", weights_only=True)
    sd["backbone.norm_f.weight"] = _Evil()
    torch.save(sd, d / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="not a weights-only checkpoint"):
        load_model(d)
    assert _UNPICKLED == []


def test_truncated_bin(tmp_path):
    d = save_model(_tiny(), tmp_path / "ssm", format="mamba_ssm")
    f = d / "pytorch_model.bin"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model(d)


def test_no_weights_and_no_config(tmp_path):
    d = save_model(_tiny(), tmp_path / "x", format="hf")
    (d / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights"):
        load_model(d)
    (d / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(d)


def test_tied_head_mismatch_is_reported(tmp_path):
    d = save_model(_tiny(tie=True), tmp_path / "ssm", format="mamba_ssm")
    sd = torch.load(d / "pytorch_model.bin", weights_only=True)
    sd["lm_head.weight"] = sd["lm_head.weight"] + 1
    torch.save(sd, d / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="ties them"):
        load_model(d)


# ---- formats ------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["mamba1", "mamba2"])
@pytest.mark.parametrize("tie", [True, False])
def test_save_load_round_trip(tmp_path, arch, tie):
    model = _tiny(arch, tie)
    ids = torch.randint(0, 40, (2, 9))
    with torch.no_grad():
        ref = model(ids)
    hf = save_model(model, tmp_path / "hf", format="hf")
    assert ("lm_head.weight" in load_file(str(hf / "model.safetensors"))) == (not tie)
    assert "backbone.embeddings.weight" in load_file(str(hf / "model.safetensors"))
    ssm = save_model(model, tmp_path / "ssm", format="mamba_ssm")
    sd = torch.load(ssm / "pytorch_model.bin", weights_only=True)
    assert "backbone.embedding.weight" in sd and "lm_head.weight" in sd
    cfg = json.loads((ssm / "config.json").read_text())
    assert cfg["ssm_cfg"]["layer"] == ("Mamba1" if arch == "mamba1" else "Mamba2") and "d_model" in cfg
    for d in (hf, ssm):
        back = load_model(d)
        assert back.config == model.config
        assert (back.lm_head.weight is back.embedding.weight) == tie
        with torch.no_grad():
            assert torch.equal(back(ids), ref)


def test_sharded_safetensors_and_dtype(tmp_path):
    model = _tiny("mamba2", tie=False)
    d = save_model(model, tmp_path / "sh", format="hf")
    sd = load_file(str(d / "model.safetensors"))
    keys = sorted(sd)
    half = len(keys) // 2
    save_file({k: sd[k] for k in keys[:half]}, str(d / "model-00001-of-00002.safetensors"))
    save_file({k: sd[k] for k in keys[half:]}, str(d / "model-00002-of-00002.safetensors"))
    weight_map = {k: f"model-0000{1 + (i >= half)}-of-00002.safetensors" for i, k in enumerate(keys)}
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (d / "model.safetensors").unlink()
    back = load_model(d, dtype=torch.bfloat16)
    assert back.embedding.weight.dtype == torch.bfloat16
    assert back.layers[0].mixer.A_log.dtype == torch.float32  # SSM parameters stay fp32
    ids = torch.randint(0, 40, (1, 6))
    with torch.no_grad():
        ref, out = model(ids), back(ids).float()
    assert ((out - ref).abs().max() / ref.abs().max()) < 0.05


def test_hf_keys_in_pytorch_bin_and_unpadded_mamba_ssm_vocab(tmp_path):
    model = _tiny(tie=False)
    ids = torch.randint(0, 40, (1, 5))
    with torch.no_grad():
        ref = model(ids)
    d = save_model(model, tmp_path / "hfbin", format="hf")
    torch.save(load_file(str(d / "model.safetensors")), d / "pytorch_model.bin")
    (d / "model.safetensors").unlink()
    with torch.no_grad():
        assert torch.equal(load_model(d)(ids), ref)
    # mamba_ssm configs hold the tokenizer's vocab size; the model pads it (37 -> 40 with multiple 8)
    s = save_model(model, tmp_path / "ssm", format="mamba_ssm")
    cfg = json.loads((s / "config.json").read_text())
    cfg.update(vocab_size=37, pad_vocab_size_multiple=8)
    (s / "config.json").write_text(json.dumps(cfg))
    assert read_config(s).vocab_size == 40
    with torch.no_grad():
        assert torch.equal(load_model(s)(ids), ref)


def test_save_keeps_other_files_and_drops_stale_weights(tmp_path):
    model = _tiny()
    d = save_model(model, tmp_path / "m", format="hf")
    (d / "tokenizer.json").write_text("{}")
    save_model(model, d, format="mamba_ssm")
    names = sorted(p.name for p in d.iterdir())
    assert names == ["config.json", "pytorch_model.bin", "tokenizer.json"]
    assert not any(p.name.startswith(".m.tmp") for p in tmp_path.iterdir())


def test_bundled_name_lookup(tmp_path, monkeypatch):
    monkeypatch.setattr(tokmod, "bundled_assets_dir", lambda: tmp_path)
    save_model(_tiny(), tmp_path / "mamba1-ref", format="hf")
    assert load_model("mamba1-ref").config.arch == "mamba1"
    with pytest.raises(FileNotFoundError, match="bundled: mamba1-ref"):
        load_model("no-such-model")


# ---- config readers -----------------------------------------------------------------------------


def test_mamba_ssm_config_vocab_padding_and_defaults():
    m1 = MambaConfig.from_mamba_ssm_dict(dict(d_model=768, n_layer=24, vocab_size=50277, ssm_cfg={},
                                              pad_vocab_size_multiple=8))
    assert (m1.arch, m1.vocab_size, m1.d_state, m1.dt_rank, m1.tie_embeddings) == ("mamba1", 50280, 16, 48, True)
    m2 = MambaConfig.from_mamba_ssm_dict(dict(d_model=768, n_layer=24, vocab_size=50277, ssm_cfg={"layer": "Mamba2"},
                                              pad_vocab_size_multiple=16))
    assert (m2.vocab_size, m2.d_state, m2.headdim, m2.nheads, m2.ngroups, m2.chunk_size) == (50288, 128, 64, 24, 1, 256)
    assert m2.conv_dim == 1536 + 2 * 128 and m2.in_proj_dim == 2 * 1536 + 2 * 128 + 24
    # writing then reading keeps the padded size even when it is not a multiple
    odd = MambaConfig(arch="mamba1", d_model=16, n_layer=1, vocab_size=41)
    assert MambaConfig.from_dict(odd.to_mamba_ssm_dict()).vocab_size == 41
    assert MambaConfig.from_dict(odd.to_dict()) == odd
    assert MambaConfig.from_dict(odd.to_hf_dict()) == odd


@pytest.mark.parametrize("patch,field", [
    (dict(d_intermediate=4096), "d_intermediate"),
    (dict(rms_norm=False), "rms_norm"),
    (dict(attn_layer_idx=[3]), "attn_layer_idx"),
    (dict(ssm_cfg={"layer": "Mamba2", "D_has_hdim": True}), "D_has_hdim"),
    (dict(ssm_cfg={"layer": "Mamba2", "d_ssm": 512}), "d_ssm"),
    (dict(ssm_cfg={"layer": "Mamba3"}), "ssm_cfg.layer"),
])
def test_unsupported_mamba_ssm_settings(patch, field):
    d = dict(d_model=768, n_layer=2, vocab_size=100, ssm_cfg={}) | patch
    with pytest.raises(ValueError, match=field):
        MambaConfig.from_mamba_ssm_dict(d)


def test_unsupported_hf_settings():
    with pytest.raises(ValueError, match="hidden_act"):
        MambaConfig.from_hf_dict(dict(model_type="mamba", hidden_size=16, num_hidden_layers=1, vocab_size=8,
                                      hidden_act="gelu"))
    with pytest.raises(ValueError, match="model_type"):
        MambaConfig.from_hf_dict(dict(model_type="llama"))


def test_model_state_helpers():
    model = _tiny("mamba2")
    st = model.allocate_state(3)
    assert st.batch_size == 3 and st.num_layers == 2
    assert st.conv[0].shape == (3, 32 + 2 * 2 * 8, 3) and st.ssm[0].shape == (3, 4, 8, 8)
    assert st.ssm[0].dtype == torch.float32
    both = ModelState.concat([st.select([0]), st.select(slice(1, 3))])
    assert both.batch_size == 3
    assert st.repeat_interleave(2).batch_size == 6 and len(st.split()) == 3
    assert st.to(dtype=torch.float16).conv[0].dtype == torch.float16
    c = st.clone()
    c.conv[0].fill_(1)
    assert st.conv[0].abs().sum() == 0


# ---- tokenizer ----------------------------------------------------------------------------------


def _write_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3, "hello": 4, "world": 5, "!": 6}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(["<s>", "</s>", "<pad>"])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": {"content": "</s>"}, "pad_token": "<pad>"}))


def test_tokenizer_round_trip(tmp_path):
    _write_tokenizer(tmp_path / "tok")
    tok = load_tokenizer(tmp_path / "tok")
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 3)
    assert tok.vocab_size == 7
    ids = tok.encode("hello world !")
    assert ids == [4, 5, 6]
    assert tok.decode(ids + [2]) == "hello world ! </s>"
    assert tok.decode(ids + [2], skip_special_tokens=True) == "hello world !"
    assert load_tokenizer(tmp_path / "tok" / "tokenizer.json").eos_token_id == 2


def test_tokenizer_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        load_tokenizer(tmp_path)


def test_tokenizer_module_does_not_import_torch():
    code = ("import sys; import quamba_edge.tokenizer as t; "
            "assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    env_path = str(REPO)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr


def test_saved_checkpoint_follows_umask(tmp_path):
    """Atomic writes go through mkdtemp (0700) and safetensors (0600); the result must be readable
    like any file the user creates (e.g. by the account that runs the app on the device)."""
    import os
    import stat

    from quamba_edge.models import MambaConfig, MambaLM, save_model

    old = os.umask(0o022)
    try:
        out = save_model(MambaLM(MambaConfig(arch="mamba1", d_model=16, n_layer=1, vocab_size=32)),
                         tmp_path / "ckpt")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o755
    for f in out.iterdir():
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o644, f.name


def test_bundled_models_load_with_the_shared_tokenizer():
    """Bundled models keep no tokenizer copy; by name they get assets/tokenizer, offline."""
    from quamba_edge.models import load_tokenizer
    from quamba_edge.tokenizer import bundled_assets_dir, tokenizer_dir

    for name in ("mamba1-ref", "mamba2-ref"):
        assert tokenizer_dir(bundled_assets_dir() / name) == bundled_assets_dir() / "tokenizer"
        tok = load_tokenizer(name)
        assert tok.vocab_size == 8192 and tok.decode(tok.encode("state space")) == "state space"
