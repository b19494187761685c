"""The directory source: files in, store updated; broken files never replace good ones."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from malla.config.source import DirectorySource
from malla.config.store import ConfigStore

DR = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}}}
spec:
  host: {name}
  subsets:
  - name: v1
    labels: {{version: v1}}
"""


def make(tmp_path: Path):
    store = ConfigStore()
    reports: list[tuple[str, list]] = []
    src = DirectorySource(tmp_path, store, report=lambda p, d: reports.append((p, d)))
    return store, src, reports


def names(store: ConfigStore) -> list[str]:
    return [c.name for c in store.list()]


def test_sync_loads_nested_files_and_ignores_hidden_and_temporary_ones(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "reviews.yaml").write_text(DR.format(name="reviews"))
    (tmp_path / "ratings.yml").write_text(DR.format(name="ratings"))
    (tmp_path / ".hidden.yaml").write_text(DR.format(name="hidden"))
    (tmp_path / "notes.txt").write_text("not config")
    store, src, _ = make(tmp_path)
    src.sync()
    assert names(store) == ["ratings", "reviews"]


def test_a_broken_file_keeps_its_last_good_version_and_reports_the_error(tmp_path):
    f = tmp_path / "reviews.yaml"
    f.write_text(DR.format(name="reviews"))
    store, src, reports = make(tmp_path)
    src.sync()
    rev = store.revision
    f.write_text(DR.format(name="reviews")[:60])  # half-written
    src.load_file(f)
    assert names(store) == ["reviews"] and store.revision == rev
    path, problems = reports[-1]
    assert path == str(f) and any(d.level == "error" for d in problems)
    assert any("last good version" in d.message for d in problems)
    f.write_text(DR.format(name="reviews").replace("name: v1", "name: v2"))
    src.load_file(f)
    assert store.list()[0].spec.subsets[0].name == "v2"
    assert src.problems == {}


def test_removing_a_resource_from_a_file_or_the_file_deletes_it(tmp_path):
    f = tmp_path / "both.yaml"
    f.write_text(DR.format(name="reviews") + "---\n" + DR.format(name="ratings"))
    store, src, _ = make(tmp_path)
    src.sync()
    assert names(store) == ["ratings", "reviews"]
    f.write_text(DR.format(name="ratings"))
    src.load_file(f)
    assert names(store) == ["ratings"]
    f.unlink()
    src.sync()
    assert names(store) == []


def test_the_same_resource_in_two_files_is_refused_naming_both(tmp_path):
    (tmp_path / "a.yaml").write_text(DR.format(name="reviews"))
    (tmp_path / "b.yaml").write_text(DR.format(name="reviews").replace("name: v1", "name: v9"))
    store, src, _ = make(tmp_path)
    src.sync()
    assert store.list()[0].spec.subsets[0].name == "v1"
    (problem,) = [d for d in src.problems[str(tmp_path / "b.yaml")] if d.level == "error"]
    assert "a.yaml" in problem.message


def test_unchanged_content_causes_no_store_change(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text(DR.format(name="reviews"))
    store, src, _ = make(tmp_path)
    events = []
    store.subscribe(events.append)
    src.sync()
    f.write_text(DR.format(name="reviews") + "\n# a comment\n")
    src.load_file(f)
    assert len(events) == 1


def test_watch_follows_writes_and_deletes(tmp_path):
    store, src, _ = make(tmp_path)

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(src.watch(stop, debounce_ms=20))
        await asyncio.sleep(0.3)
        (tmp_path / "r.yaml").write_text(DR.format(name="reviews"))
        assert await until(lambda: names(store) == ["reviews"])
        (tmp_path / "r.yaml").unlink()
        assert await until(lambda: names(store) == [])
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())


async def until(cond, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.02)
    return cond()
