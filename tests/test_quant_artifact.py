"""quamba_edge.quant.artifact: exact round trip, version / truncation / corruption / mismatch errors,
atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import quamba_edge.quant.artifact as art
from quamba_edge.models import MambaConfig, MambaLM
from quamba_edge.quant.artifact import (
    FORMAT_KEY,
    FORMAT_VERSION,
    ArtifactError,
    is_artifact,
    load_artifact,
    read_artifact_config,
    save_artifact,
)
from quamba_edge.quant.qconfig import QuantConfig

# ---- fixtures -----------------------------------------------------------------------------------


def _have_recipes() -> bool:
    try:
        from quamba_edge.quant import qlm, recipes  # noqa: F401
    except ImportError:
        return False
    return hasattr(recipes, "quantize_model")


def _tiny_fp(arch: str) -> MambaLM:
    torch.manual_seed(0)
    kw = {} if arch == "mamba1" else dict(headdim=8, ngroups=1, d_state=8, chunk_size=8)
    return MambaLM(MambaConfig(arch=arch, d_model=16, n_layer=2, vocab_size=48, **kw)).eval()


class StubQuantLM(nn.Module):
    """Stand-in with QuantMambaLM's artifact-facing API (config, quant_config, state_dict of mixed
    dtypes, buffers whose shapes follow the configs) for the save/load mechanics."""

    def __init__(self, model_config: MambaConfig, quant_config: QuantConfig) -> None:
        super().__init__()
        self.config, self.quant_config = model_config, quant_config
        v, d = model_config.vocab_size, model_config.d_model
        self.embedding = nn.Embedding(v, d).to(torch.float16)
        self.register_buffer("head_q", torch.zeros(v, d, dtype=torch.int8))
        self.register_buffer("head_scale", torch.ones((), dtype=torch.float32))
        self.register_buffer("packed", torch.zeros(v, (d + 1) // 2, dtype=torch.uint8))

    @classmethod
    def random(cls, arch: str = "mamba1") -> "StubQuantLM":
        torch.manual_seed(0)
        m = cls(_tiny_fp(arch).config, QuantConfig("quamba2", "w8a8", arch))
        with torch.no_grad():
            m.embedding.weight.normal_()
            m.head_q.copy_(torch.randint(-128, 128, m.head_q.shape, dtype=torch.int8))
            m.head_scale.fill_(0.0123)
            m.packed.copy_(torch.randint(0, 256, m.packed.shape, dtype=torch.uint8))
        return m

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embedding(ids).float()
        return h @ (self.head_q.float() * self.head_scale).t()


@pytest.fixture
def stub(monkeypatch):
    monkeypatch.setattr(art, "_model_classes", lambda: (StubQuantLM, QuantConfig))
    return StubQuantLM.random()


def _assert_same_model(a: nn.Module, b: nn.Module, arch: str) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k
    ids = torch.randint(0, a.config.vocab_size, (2, 11), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(a(ids), b(ids))


# ---- round trip ---------------------------------------------------------------------------------


def test_round_trip_stub(stub, tmp_path):
    out = save_artifact(stub, tmp_path / "art", metadata={"model": "tiny"})
    m2 = StubQuantLM.random("mamba2")  # Mamba2 config: dt_limit (0, inf) goes through strict JSON
    back2 = load_artifact(save_artifact(m2, tmp_path / "art2"))
    assert back2.config == m2.config and back2.quant_config == m2.quant_config
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg[FORMAT_KEY] == FORMAT_VERSION and cfg["recipe"] == "quamba2" and cfg["bits"] == "w8a8"
    assert cfg["tensors"]["head_q"] == {"dtype": "int8", "shape": [48, 16]}
    assert cfg["tensors"]["head_scale"] == {"dtype": "float32", "shape": []}
    assert cfg["weights"]["sha256"] == art.file_sha256(out / "model.safetensors")
    assert cfg["source"] == {"model": "tiny"}
    assert is_artifact(out) and not is_artifact(tmp_path)
    _assert_same_model(stub, load_artifact(out), "mamba1")


@pytest.mark.skipif(not _have_recipes(), reason="Q's qlm / recipes not available yet")
@pytest.mark.parametrize("arch,recipe,bits", [("mamba1", "quamba", "w8a8"), ("mamba1", "quamba2", "w4a8"),
                                              ("mamba2", "quamba2", "w8a8"), ("mamba2", "quamba2", "w4a16")])
def test_round_trip_quantized(tmp_path, arch, recipe, bits):
    from quamba_edge.quant.recipes import quantize_model

    fp = _tiny_fp(arch)
    g = torch.Generator().manual_seed(0)
    calib = [torch.randint(0, 48, (1, 16), generator=g) for _ in range(4)]
    q = quantize_model(fp, recipe, bits, calib, gptq_calib=calib)
    out = save_artifact(q, tmp_path / "art")
    back = load_artifact(out)
    assert type(back) is type(q)
    _assert_same_model(q, back, arch)
    cfg = read_artifact_config(out)
    assert set(cfg["tensors"]) == set(q.state_dict())


# ---- errors -------------------------------------------------------------------------------------


def test_truncated_weights(stub, tmp_path):
    out = save_artifact(stub, tmp_path / "art")
    f = out / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(ArtifactError, match=r"model\.safetensors is [\d,]+ bytes but config\.json records "
                                            r"[\d,]+: the file is truncated"):
        load_artifact(out)


def test_corrupt_weights(stub, tmp_path):
    out = save_artifact(stub, tmp_path / "art")
    f = out / "model.safetensors"
    b = bytearray(f.read_bytes())
    b[-3] ^= 0xFF
    f.write_bytes(bytes(b))
    with pytest.raises(ArtifactError, match="is corrupt: sha256"):
        load_artifact(out)


def test_other_format_version(stub, tmp_path):
    out = save_artifact(stub, tmp_path / "art")
    cfg = json.loads((out / "config.json").read_text())
    cfg[FORMAT_KEY] = FORMAT_VERSION + 1
    cfg["quamba_edge_version"] = "9.9.9"
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ArtifactError, match=rf"format version {FORMAT_VERSION + 1} \(written by quamba-edge "
                                            rf"9\.9\.9\).*reads format version {FORMAT_VERSION} only"):
        load_artifact(out)


def test_not_an_artifact(tmp_path):
    from quamba_edge.models import save_model

    d = save_model(_tiny_fp("mamba1"), tmp_path / "fp")
    assert not is_artifact(d)
    with pytest.raises(ArtifactError, match="not a quamba-edge artifact"):
        load_artifact(d)
    with pytest.raises(FileNotFoundError):
        load_artifact(tmp_path / "nowhere")


def _edit_tables(out: Path, edit) -> None:
    cfg = json.loads((out / "config.json").read_text())
    edit(cfg["tensors"])
    (out / "config.json").write_text(json.dumps(cfg))


def test_tensor_table_mismatch_names_the_tensor(stub, tmp_path):
    out = save_artifact(stub, tmp_path / "art")
    _edit_tables(out, lambda t: t["head_q"].update(dtype="int16"))
    with pytest.raises(ArtifactError, match=r"wrong dtype/shape: head_q \(config\.json: int16\[48, 16\], "
                                            r"model\.safetensors: int8\[48, 16\]\)"):
        load_artifact(out)
    out = save_artifact(stub, tmp_path / "art2")
    _edit_tables(out, lambda t: t.pop("head_scale"))
    with pytest.raises(ArtifactError, match="unexpected tensors: head_scale"):
        load_artifact(out)


def test_model_config_mismatch_names_the_tensor(stub, tmp_path, monkeypatch):
    out = save_artifact(stub, tmp_path / "art")

    class Wider(StubQuantLM):
        def __init__(self, mc, qc):
            super().__init__(mc, qc)
            self.register_buffer("head_scale", torch.ones(3))
            self.register_buffer("extra", torch.ones(2))

    monkeypatch.setattr(art, "_model_classes", lambda: (Wider, QuantConfig))
    with pytest.raises(ArtifactError) as ei:
        load_artifact(out)
    msg = str(ei.value)
    assert "missing tensors: extra" in msg
    assert "head_scale (the model built from its configs" in msg and "float32[3]" in msg and "float32[]" in msg


# ---- atomic writing -----------------------------------------------------------------------------


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_interrupted_save_leaves_nothing(stub, tmp_path, monkeypatch):
    import safetensors.torch as st

    real = st.save_file

    def boom(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)  # a file is half-way there...
        raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(st, "save_file", boom)
    with pytest.raises(KeyboardInterrupt):
        save_artifact(stub, tmp_path / "art")
    assert not (tmp_path / "art").exists()
    assert _leftovers(tmp_path) == []


def test_interrupted_replace_keeps_old_artifact(stub, tmp_path, monkeypatch):
    out = save_artifact(stub, tmp_path / "art")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(tmp: Path) -> None:
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        art.write_dir_atomically(out, boom)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _leftovers(tmp_path) == []


def test_replace_existing_artifact(stub, tmp_path):
    out = save_artifact(stub, tmp_path / "art", metadata={"n": 1})
    with torch.no_grad():
        stub.head_scale.fill_(0.5)
    save_artifact(stub, out, metadata={"n": 2})
    assert read_artifact_config(out)["source"] == {"n": 2}
    assert float(load_artifact(out).head_scale) == 0.5
    assert _leftovers(tmp_path) == []


def test_refuses_to_replace_other_directories(stub, tmp_path):
    d = tmp_path / "precious"
    d.mkdir()
    (d / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a quamba-edge artifact; refusing to replace it"):
        save_artifact(stub, d)
    assert (d / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a directory"):
        save_artifact(stub, tmp_path / "file")
    empty = tmp_path / "empty"
    empty.mkdir()
    save_artifact(stub, empty)
    assert is_artifact(empty)


def test_tokenizer_files_copied(stub, tmp_path):
    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    (tok_dir / "tokenizer.json").write_text('{"fake": true}')
    (tok_dir / "special_tokens_map.json").write_text("{}")
    out = save_artifact(stub, tmp_path / "art", tokenizer_dir=tok_dir)
    assert (out / "tokenizer.json").read_text() == '{"fake": true}'
    assert read_artifact_config(out)["tokenizer_files"] == ["tokenizer.json", "special_tokens_map.json"]
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        save_artifact(stub, tmp_path / "art2", tokenizer_dir=tmp_path)
    assert not (tmp_path / "art2").exists()
