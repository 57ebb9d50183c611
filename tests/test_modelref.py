"""Model references resolve without the network: local paths, cached hub files, and a clear error
when a hub model is needed offline."""

from __future__ import annotations

from pathlib import Path

from kohya_wrap.sdscripts.modelref import resolve_ref


def seed_hub_cache(hf_home: Path, repo: str, filename: str) -> Path:
    """Lay out a file the way huggingface_hub's cache stores it."""
    folder = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    path = folder / "snapshots" / commit / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")
    return path


def test_local_paths(tmp_path):
    (tmp_path / "m.safetensors").write_bytes(b"x")
    assert resolve_ref("base", "m.safetensors", tmp_path).value == str(tmp_path / "m.safetensors")
    missing = resolve_ref("vae", "nope.safetensors", tmp_path)
    assert missing.value is None and missing.problem.where == "model.vae"
    (tmp_path / "not-diffusers").mkdir()
    assert "not a diffusers model" in resolve_ref("base", "not-diffusers", tmp_path).problem.what


def test_hub_file_must_be_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    ref = resolve_ref("base", "hf://owner/repo/model.safetensors", tmp_path)
    assert ref.value is None and "hf download owner/repo model.safetensors" in ref.problem.fix
    cached = seed_hub_cache(tmp_path / "hf", "owner/repo", "model.safetensors")
    assert resolve_ref("base", "hf://owner/repo/model.safetensors", tmp_path).value == str(cached)


def test_hub_repo_offline_without_cache_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ref = resolve_ref("base", "hf://owner/repo", tmp_path)
    assert ref.value is None and "HF_HUB_OFFLINE" in ref.problem.what
    monkeypatch.delenv("HF_HUB_OFFLINE")
    online = resolve_ref("base", "hf://owner/repo", tmp_path)
    assert online.value == "owner/repo" and "downloads it on the first run" in online.note
    seed_hub_cache(tmp_path / "hf", "owner/repo", "model_index.json")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_ref("base", "hf://owner/repo", tmp_path).value == "owner/repo"
