"""Checkpoints: HF round trip (same logits), clear errors for broken directories, atomic replacement."""

from __future__ import annotations

import json

import pytest
import torch

from qstar.model import checkpoint as ck
from qstar.model.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint, save_checkpoint
from qstar.model.model import ModelConfig, Transformer
from qstar.model.tokenizer import CharTokenizer

TOK = CharTokenizer()
TEXT = "What is 12 * 34?\n12*4=48\n12*30=360\nAnswer: 408"


def _model(**overrides) -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig.preset("tiny", **overrides)).eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("ck") / "model"
    model = _model()
    save_checkpoint(d, model, TOK, meta={"stage": "sft", "metrics": {"loss": 1.5}})
    return d, model


@pytest.mark.parametrize("overrides", [{}, {"n_kv_heads": 2, "tie_embeddings": False, "rope_theta": 500.0}])
def test_hf_round_trip_same_logits(tmp_path, overrides):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = _model(**overrides)
    save_checkpoint(tmp_path / "ck", model, TOK, meta={"stage": "test"})
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "ck").eval()
    hf_tok = AutoTokenizer.from_pretrained(tmp_path / "ck")
    ids = torch.tensor([hf_tok(TEXT)["input_ids"]])
    assert ids[0].tolist() == TOK.encode(TEXT)
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids), atol=1e-4, rtol=1e-4)
    assert hf.config.tie_word_embeddings == model.cfg.tie_embeddings
    assert hf.config.num_key_value_heads == model.cfg.n_kv_heads


def test_load_round_trip_and_files(saved):
    d, model = saved
    loaded, tok, meta = load_checkpoint(d)
    assert meta == {"stage": "sft", "metrics": {"loss": 1.5}}
    assert loaded.cfg == model.cfg and not loaded.training and isinstance(tok, CharTokenizer)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    files = {p.name for p in d.iterdir()}
    assert files >= {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
                     "tokenizer_config.json", "special_tokens_map.json", "qstar.json"}
    config = json.loads((d / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["torch_dtype"] == "float32"


def test_resolve_checkpoint_run_dir(saved, tmp_path):
    d, _ = saved
    assert resolve_checkpoint(d) == d
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoint", _model(), TOK, meta={})
    assert resolve_checkpoint(run) == run / "checkpoint"
    with pytest.raises(CheckpointError, match="no checkpoint here"):
        resolve_checkpoint(tmp_path / "nowhere")


def test_run_dirs_resolve_and_record_their_task(saved, tmp_path, capsys):
    d, model = saved
    run = tmp_path / "ei"  # a run dir without checkpoint/: its summary names the last round's checkpoint
    save_checkpoint(run / "ei-round-2" / "checkpoint", model, TOK, meta={"stage": "ei", "config": {"task": "letters"}})
    (run / "summary.json").write_text(json.dumps({"checkpoint": str(run / "ei-round-2" / "checkpoint")}))
    assert resolve_checkpoint(run) == run / "ei-round-2" / "checkpoint"
    assert ck.checkpoint_task(run) == "letters" and ck.checkpoint_task(d) is None
    assert ck.checkpoint_task(tmp_path / "nowhere") is None
    assert ck.task_for("", [run], default="mult") == "letters" and ck.task_for("", [d], default="mult") == "mult"
    assert capsys.readouterr().err == ""
    assert ck.task_for("decimals", [run], default="mult") == "decimals"
    assert "trained on task 'letters'; evaluating it on task 'decimals'" in capsys.readouterr().err
    model2, _, meta = ck.load_model(run)
    assert meta["config"]["task"] == "letters"
    with pytest.raises(ValueError, match="--init: no checkpoint at .*nowhere.*no checkpoint here"):
        ck.load_model(tmp_path / "nowhere", flag="--init")
    with pytest.raises(ValueError, match="--teacher: no checkpoint at"):
        ck.find_checkpoint(tmp_path / "nowhere", flag="--teacher")


def _copy(saved, tmp_path):
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(saved[0], d)
    return d


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))


def _bad_config(path, **fields):
    c = json.loads(path.read_text())
    c.update(fields)
    path.write_text(json.dumps(c))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "model.safetensors").unlink(), "missing model.safetensors"),
        (lambda d: (d / "tokenizer.json").unlink(), "missing tokenizer.json"),
        (lambda d: _truncate(d / "model.safetensors"), "checksum mismatch"),
        (lambda d: _flip_byte(d / "model.safetensors"), "checksum mismatch"),
        (lambda d: ((d / "qstar.json").unlink(), _truncate(d / "model.safetensors")), "unreadable safetensors"),
        (lambda d: _truncate(d / "config.json"), "config.json: unreadable JSON"),
        (lambda d: _truncate(d / "qstar.json"), "qstar.json: unreadable JSON"),
        (lambda d: _bad_config(d / "config.json", model_type="gpt2", architectures=["GPT2LMHeadModel"]),
         "architecture 'gpt2'.*not supported"),
        (lambda d: _bad_config(d / "config.json", hidden_size=96), "config.json"),
        (lambda d: _bad_config(d / "config.json", num_hidden_layers=3), "tensors do not match config.json"),
        (lambda d: _bad_config(d / "config.json", intermediate_size=None), "invalid Llama config"),
    ],
)
def test_broken_checkpoints_raise_checkpoint_error(saved, tmp_path, damage, message):
    d = _copy(saved, tmp_path)
    damage(d)
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(d)
    assert str(d) in str(err.value)


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "absent")


def test_interrupted_save_keeps_old_checkpoint(saved, tmp_path, monkeypatch):
    d = _copy(saved, tmp_path)
    before = {p.name: p.read_bytes() for p in d.iterdir()}

    def boom(self, directory):
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(CharTokenizer, "save", boom)  # fails after the weights were written
    with pytest.raises(RuntimeError, match="simulated"):
        save_checkpoint(d, _model(n_layers=2), TOK, meta={"stage": "new"})
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]  # no temp directory left behind
    assert load_checkpoint(d)[2]["stage"] == "sft"


def test_replace_existing_checkpoint_without_exchange(saved, tmp_path, monkeypatch):
    d = _copy(saved, tmp_path)
    for exchange in (True, False):
        if not exchange:
            monkeypatch.setattr(ck, "_exchange", lambda a, b: False)  # the two-rename fallback
        save_checkpoint(d, _model(n_layers=2), TOK, meta={"stage": f"new-{exchange}"})
        model, _, meta = load_checkpoint(d)
        assert meta == {"stage": f"new-{exchange}"} and model.cfg.n_layers == 2
        assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]


def test_unserialisable_meta_fails_before_writing(tmp_path):
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "ck", _model(), TOK, meta={"bad": object()})
    assert not (tmp_path / "ck").exists() and list(tmp_path.iterdir()) == []
