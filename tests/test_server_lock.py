"""The writer lock of a Chroma server store: a leased record in a real server (`chroma run`), taken by a
create the server makes atomic; refused, waited for, broken when abandoned, and noticed when lost."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag_prompts.errors import StoreBusyError
from rag_prompts.locking import writer_lock
from rag_prompts.server_lock import lock_name
from rag_prompts.store import compact_collection, server_lock

from .conftest import ROOT, assert_same_records, write

pytestmark = pytest.mark.server

MESSAGE = "another ingest is running (pid {pid}) on the store at {url}; wait for it to finish, or pass --wait"


def chroma(url: str):  # type: ignore[no-untyped-def]
    import chromadb

    host, port = url.removeprefix("http://").split(":")
    return chromadb.HttpClient(host=host, port=int(port))


def test_a_second_ingest_of_a_server_store_is_refused_naming_the_first_or_waits(
    chroma_url: str, tmp_path: Path
) -> None:
    """The same line and exit code as the embedded store's lock; --wait waits and then ingests."""
    config = write(tmp_path / "rag_prompts.toml", f'store = "{chroma_url}"\ncollection = "locked"\ncorpus = ["docs"]\n')
    write(tmp_path / "docs" / "a.md", "# A\n\nOne rule.\n")
    environ = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "rag_prompts.cli", "ingest", "--config", str(config)]
    with writer_lock(chroma_url, collection="locked"):
        refused = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=300)
        assert refused.returncode == 2
        assert refused.stderr.strip().splitlines() == [
            "rag-prompts: error: " + MESSAGE.format(pid=os.getpid(), url=chroma_url)
        ]
        with pytest.raises(StoreBusyError, match=f"pid {os.getpid()}\\)"), writer_lock(chroma_url, collection="locked"):
            pass  # a second writer in the same process is refused too
        with writer_lock(chroma_url, collection="another-collection"):
            pass  # the lock is per collection
        waiting = subprocess.Popen([*command, "--wait", "--json"], env=environ, stdout=subprocess.PIPE, text=True)
        time.sleep(3)
        assert waiting.poll() is None  # still waiting for the lock
    out, _ = waiting.communicate(timeout=300)
    assert waiting.returncode == 0 and json.loads(out)["added"] == 1
    assert lock_name("locked") not in [collection.name for collection in chroma(chroma_url).list_collections()]


def test_of_writers_racing_for_the_lock_exactly_one_wins(chroma_url: str) -> None:
    locks = [server_lock(chroma_url, "raced", 30.0) for _ in range(8)]
    start, outcomes = threading.Barrier(len(locks)), []

    def take(lock):  # type: ignore[no-untyped-def]
        start.wait()
        try:
            lock.acquire()
            outcomes.append("won")
        except StoreBusyError as error:
            outcomes.append(str(error))

    threads = [threading.Thread(target=take, args=(lock,)) for lock in locks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("won") == 1
    assert set(outcomes) - {"won"} == {MESSAGE.format(pid=os.getpid(), url=chroma_url)}
    for lock in locks:
        lock.release()
    with writer_lock(chroma_url, collection="raced"):  # released: free again
        pass


def test_a_lock_whose_holder_was_killed_on_this_host_is_taken_at_once(chroma_url: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom rag_prompts.locking import writer_lock\n"
         f"with writer_lock({chroma_url!r}, collection='killed'):\n    print('held', flush=True)\n    time.sleep(600)"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(StoreBusyError, match=f"pid {holder.pid}\\)"), writer_lock(chroma_url, collection="killed"):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    began = time.monotonic()
    with writer_lock(chroma_url, collection="killed"):  # its pid is gone: no need to wait for the lease
        assert time.monotonic() - began < 5


def test_another_hosts_lock_holds_until_its_lease_runs_out(chroma_url: str) -> None:
    client = chroma(chroma_url)
    client.create_collection(
        lock_name("leased"),
        metadata={"pid": 4242, "host": "elsewhere", "token": "t", "expires": time.time() + 3.0},
        embedding_function=None,
    )
    with (
        pytest.raises(StoreBusyError, match=r"\(pid 4242 on elsewhere\)"),
        writer_lock(chroma_url, collection="leased"),
    ):
        pass
    began = time.monotonic()
    with writer_lock(chroma_url, collection="leased", wait=True):
        waited = time.monotonic() - began
    assert 1.0 < waited < 10.0
    assert socket.gethostname() != "elsewhere"


def test_a_holder_renews_its_lease_and_notices_when_it_is_taken_over(chroma_url: str) -> None:
    with writer_lock(chroma_url, collection="renewed", lease=1.5) as lease:
        time.sleep(4.0)  # more than twice the lease: renewed meanwhile, so still held
        with pytest.raises(StoreBusyError, match="another ingest is running"):
            server_lock(chroma_url, "renewed", 1.5).acquire()
        lease.check()
        client = chroma(chroma_url)  # another writer breaks it (as if the lease had run out) and takes it
        client.get_collection(lock_name("renewed")).modify(name="renewed.writer-gone")
        client.create_collection(
            lock_name("renewed"), metadata={"pid": 777, "host": "elsewhere", "expires": time.time() + 60}
        )
        with pytest.raises(StoreBusyError, match=r"taken over \(pid 777\).*a rerun finishes it"):
            lease.check()
    assert client.get_collection(lock_name("renewed")).metadata["pid"] == 777  # a lost lock is not released


def test_two_ingests_of_one_server_store_at_once_serialize(chroma_url: str, tmp_path: Path) -> None:
    """Started together with --wait: one ingests every document, the other waits and finds them unchanged."""
    for n in range(4):
        write(tmp_path / "docs" / f"p{n}.md", f"# Policy {n}\n\n" + "\n\n".join(f"Rule {n}.{r}." for r in range(30)))
    config = write(tmp_path / "rag_prompts.toml", f'store = "{chroma_url}"\ncollection = "twice"\n')
    environ = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "rag_prompts.cli", "ingest", str(tmp_path / "docs"), "--config", str(config)]
    runs = [
        subprocess.Popen(
            [*command, "--wait", "--json"], env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in results]
    summaries = sorted((json.loads(out) for out, _ in results), key=lambda summary: summary["added"])
    assert [(summary["added"], summary["unchanged"]) for summary in summaries] == [(0, 4), (4, 0)]
    assert chroma(chroma_url).get_collection("twice.manifest").count() == 4 + 1


STALLED = """
import sys
from rag_prompts import load_settings, SentenceTransformerEmbedder, token_counter
from rag_prompts.ingest import ingest
from rag_prompts.store import open_store
settings = load_settings(None, environ={}, store=sys.argv[1], collection=sys.argv[3])
store = open_store(sys.argv[1], sys.argv[3], settings.embedding_model, None)
ingest([sys.argv[2]], store=store, embedder=lambda: SentenceTransformerEmbedder(), counter=token_counter("gpt-4"),
       chunk_tokens=settings.chunk_tokens, lease=1.5)
"""


def stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def test_a_writer_that_stalls_past_its_lease_cannot_commit_over_its_successor(chroma_url: str, tmp_path: Path) -> None:
    """Chroma has no conditional write, so a writer that passed its lock check and then stalled (SIGSTOP) past
    its lease still makes its one manifest write after a successor broke its lock and committed a newer version
    (deleting the stalled writer's chunks). That write carries the broken lock's token, which the successor
    revoked, so it is refused when read: the document never shows as the version whose chunks are gone; the
    stalled writer's next step stops it, and a plain rerun leaves the store as a clean ingest of the files."""
    from rag_prompts import Pipeline, SentenceTransformerEmbedder, load_settings

    docs = tmp_path / "docs"
    write(docs / "b.md", "# Beta\n\nBadges are returned on the last day.\n")
    write(docs / "a.md", "# Alpha\n\nAlpha rule one: forms are filed within 3 days.\n")
    pipeline = Pipeline(load_settings(None, environ={}, store=chroma_url, collection="stalled"),
                        embedder=SentenceTransformerEmbedder())  # fmt: skip
    assert pipeline.ingest([docs]).ok
    write(docs / "a.md", "# Alpha\n\nAlpha rule two: forms are filed within 5 days.\n")  # what the writer commits
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_PROMPTS_CRASH_AFTER": "fenced:2:stop"}
    stalled = subprocess.Popen([sys.executable, "-c", STALLED, chroma_url, str(docs), "stalled"], env=environ,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not stopped(stalled.pid):  # stopped after its lock check, just before its commit write
            assert stalled.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        write(docs / "a.md", "# Alpha\n\nAlpha rule three: forms are filed within 9 days.\n")
        time.sleep(2.0)  # its lease runs out
        successor = pipeline.ingest([docs])  # breaks the abandoned lock, commits version three, deletes two
        assert successor.updated == ["a.md"] and successor.chunks_deleted >= 2
    finally:
        stalled.send_signal(signal.SIGCONT)
    _, err = stalled.communicate(timeout=120)
    assert stalled.returncode != 0 and "taken over" in err  # its commit write went out; its next step stopped it
    reader = Pipeline(load_settings(None, environ={}, store=chroma_url, collection="stalled"),
                      embedder=pipeline.embedder)  # fmt: skip
    record = reader.store.records()["a.md"]
    assert record.writer and not record.committed  # the stale commit is refused, not taken as version two
    assert all(hit.chunk.source != "a.md" or "two" not in hit.chunk.text for hit in reader.search("Alpha rule", k=5))
    rerun = reader.ingest([docs])
    assert rerun.ok and rerun.added + rerun.updated == ["a.md"]
    assert rerun.chunks_embedded == 0  # the vectors of version three are reused
    assert reader.store.records()["a.md"].committed
    assert "three" in reader.search("Alpha rule", k=1, sources=["a.md"])[0].chunk.text


def test_a_holder_whose_renewals_stop_refuses_to_write_once_its_lease_runs_out(chroma_url: str) -> None:
    """Renewals that fail (the server unreachable for them, or the renewing thread starved) leave the lock to be
    broken when the lease runs out: from then on the holder's own check stops it, before anyone takes over."""
    with writer_lock(chroma_url, collection="unrenewed", lease=1.0) as lease:
        lease.check()
        lease._stop.set()  # type: ignore[attr-defined]  # the renewals stop
        time.sleep(1.5)
        with pytest.raises(StoreBusyError, match="ran out of lease"):
            lease.check()


STALLED_COMPACT = """
import sys
from rag_prompts.locking import writer_lock
from rag_prompts.store import compact_collection
with writer_lock(sys.argv[1], collection=sys.argv[2], lease=1.5) as lease:
    compact_collection(sys.argv[1], sys.argv[2], fence=lease.check)
"""


def stall(script: str, stop: str, *args: str) -> subprocess.Popen[str]:
    """A writer subprocess stopped (SIGSTOP) just after its `stop`th lock check ("fenced:N")."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_PROMPTS_CRASH_AFTER": f"{stop}:stop"}
    process = subprocess.Popen([sys.executable, "-c", script, *args], env=environ, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not stopped(process.pid):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr and process.stderr.read()
        time.sleep(0.2)
    return process


def contents(url: str, collection: str) -> dict[str, Any]:
    """The active collection's chunks (text, fields, vector) by id, and the records less their writer stamps."""
    from rag_prompts import load_settings
    from rag_prompts.store import open_store

    store = open_store(url, collection, load_settings(None, environ={}).embedding_model, None)
    page = store._collection.get(include=["documents", "metadatas", "embeddings"])
    return {
        "chunks": {chunk_id: (text, metadata, np.asarray(vector)) for chunk_id, text, metadata, vector in
                   zip(page["ids"], page["documents"], page["metadatas"], page["embeddings"], strict=True)},
        "records": {source: replace(record, writer="", seq=0) for source, record in store.records().items()},
    }  # fmt: skip


def assert_like_a_clean_ingest(url: str, collection: str, docs: Path, embedder: Any) -> None:
    from rag_prompts import Pipeline, load_settings

    clean = Pipeline(load_settings(None, environ={}, store=url, collection=f"{collection}-clean"), embedder=embedder)
    assert clean.ingest([docs]).ok
    got, want = contents(url, collection), contents(url, f"{collection}-clean")
    assert sorted(got["chunks"]) == sorted(want["chunks"])
    for chunk_id, (text, metadata, vector) in want["chunks"].items():
        assert got["chunks"][chunk_id][:2] == (text, metadata)
        assert np.allclose(got["chunks"][chunk_id][2], vector, atol=1e-6, rtol=0)
    assert_same_records(got["records"], want["records"])


ALPHA = "# Alpha\n\nAlpha rule {}: forms are filed within {} days.\n"


def alpha_and_beta(url: str, tmp_path: Path, collection: str) -> tuple[Path, Any]:
    """a.md (version one) and b.md ingested into `collection` of the server at `url`: the folder and the pipeline."""
    from rag_prompts import Pipeline, SentenceTransformerEmbedder, load_settings

    docs = tmp_path / "docs"
    write(docs / "b.md", "# Beta\n\nBadges are returned on the last day.\n")
    write(docs / "a.md", ALPHA.format("one", 3))
    pipeline = Pipeline(load_settings(None, environ={}, store=url, collection=collection),
                        embedder=SentenceTransformerEmbedder())  # fmt: skip
    assert pipeline.ingest([docs]).ok
    return docs, pipeline


def test_a_stalled_writers_late_deletion_batch_is_repaired_by_the_next_ingest(chroma_url: str, tmp_path: Path) -> None:
    """A writer stalls (SIGSTOP) just after its lock check and before deleting the old version of a.md. Meanwhile
    a.md is edited back, and a successor breaks the lock and commits that old version again, reusing its chunks.
    The stalled writer's one late deletion batch then removes chunks of the committed version (Chroma cannot
    refuse it). The next ingest finds a.md missing chunks, rewrites them and says so, and the store ends as a clean
    ingest of the files."""
    docs, pipeline = alpha_and_beta(chroma_url, tmp_path, "late-delete")
    write(docs / "a.md", ALPHA.format("two", 5))
    # fenced 1: a.md pending, 2: a.md committed at version two, 3: about to delete version one's chunks
    stalled = stall(STALLED, "fenced:3", chroma_url, str(docs), "late-delete")
    try:
        write(docs / "a.md", ALPHA.format("one", 3))  # edited back
        time.sleep(2.0)  # the stalled writer's lease runs out
        successor = pipeline.ingest([docs])  # breaks the lock; commits version one again, its chunks reused
        assert successor.updated == ["a.md"] and successor.chunks_embedded == 0
    finally:
        stalled.send_signal(signal.SIGCONT)
    _, err = stalled.communicate(timeout=120)
    assert stalled.returncode != 0 and "taken over" in err  # its deletion went out; its next check stopped it
    committed = pipeline.store.records()["a.md"]
    assert committed.committed and pipeline.store.versions("a.md") == []  # the late batch deleted version one

    rerun = pipeline.ingest([docs])
    assert rerun.ok and rerun.repaired == ["a.md"] and rerun.unchanged == ["b.md"]
    assert (rerun.added, rerun.updated, rerun.removed) == ([], [], [])
    assert "one" in pipeline.search("Alpha rule", k=1, sources=["a.md"])[0].chunk.text
    assert_like_a_clean_ingest(chroma_url, "late-delete", docs, pipeline.embedder)
    again = pipeline.ingest([docs])
    assert again.repaired == [] and again.chunks_written == again.chunks_deleted == 0


def test_a_stalled_compacts_late_switch_is_repaired_by_the_next_ingest(chroma_url: str, tmp_path: Path) -> None:
    """A compact stalls (SIGSTOP) just after its last check before its switch. A successor breaks its lock and
    commits a new version of a.md into the collection in use. The compact's late switch then points readers at
    its copy, made before that commit: a.md's record names a version the copy lacks. The next ingest rewrites a.md
    into the copy and deletes the copy's stale chunks, and the next compact drops the collection left behind."""
    from rag_prompts import Pipeline, load_settings

    docs, pipeline = alpha_and_beta(chroma_url, tmp_path, "late-switch")
    # fenced 1: before clearing old copies, 2: the one page, 3: the empty page that ends the copy, 4: the switch
    stalled = stall(STALLED_COMPACT, "fenced:4", chroma_url, "late-switch")
    try:
        write(docs / "a.md", ALPHA.format("two", 5))
        time.sleep(2.0)
        successor = pipeline.ingest([docs])
        assert successor.updated == ["a.md"]
    finally:
        stalled.send_signal(signal.SIGCONT)
    _, err = stalled.communicate(timeout=120)
    assert stalled.returncode != 0 and "taken over" in err  # it switched, then its check before the drop stopped it
    reader = Pipeline(load_settings(None, environ={}, store=chroma_url, collection="late-switch"),
                      embedder=pipeline.embedder)  # fmt: skip
    record = reader.store.records()["a.md"]
    assert reader.store._collection.name == "late-switch.v1"  # the late switch went out
    assert record.committed and record.doc_hash not in {doc_hash for _, doc_hash in reader.store.versions("a.md")}

    rerun = reader.ingest([docs])
    assert rerun.ok and rerun.repaired == ["a.md"] and rerun.unchanged == ["b.md"]
    assert "two" in reader.search("Alpha rule", k=1, sources=["a.md"])[0].chunk.text
    assert_like_a_clean_ingest(chroma_url, "late-switch", docs, reader.embedder)
    compact_collection(chroma_url, "late-switch")
    names = {collection.name for collection in chroma(chroma_url).list_collections()}
    assert {"late-switch", "late-switch.v1"}.isdisjoint(names) and "late-switch.v2" in names


def test_first_opens_of_a_new_server_collection_at_once_all_succeed(chroma_url: str) -> None:
    """Two first ingests started together both create the collection; the server lets one create succeed, and the
    other process then opens the collection it made (they serialize on the writer lock after that)."""
    from rag_prompts.store import open_store

    def open_it(name: str, start: threading.Barrier, outcomes: list[str]) -> None:
        start.wait()
        try:
            outcomes.append(open_store(chroma_url, name, "all-MiniLM-L6-v2", 384).name)
        except Exception as error:  # noqa: BLE001 - the outcome is what is checked
            outcomes.append(f"{type(error).__name__}: {error}")

    for round_ in range(4):
        name, start, outcomes = f"opened-at-once-{round_}", threading.Barrier(8), []
        threads = [threading.Thread(target=open_it, args=(name, start, outcomes)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert outcomes == [name] * 8


def test_a_stalled_compacts_late_switch_to_a_copy_since_dropped_leaves_readers_the_collection_in_use(
    chroma_url: str, tmp_path: Path
) -> None:
    """While a compact is stalled (SIGSTOP) before its switch, two more compactions run: the first drops the
    stalled one's copy and makes its own of the same name, the second copies that again and drops it. The stalled
    compact's late switch then names a collection that no longer exists; readers, the next ingest and the next
    compact keep to the one it replaced (the generation keeps it), and every document is found whole."""
    from rag_prompts import Pipeline, SentenceTransformerEmbedder, load_settings

    docs = tmp_path / "docs"
    write(docs / "b.md", "# Beta\\n\\nBadges are returned on the last day.\\n")
    write(docs / "a.md", ALPHA.format("one", 3))
    settings = load_settings(None, environ={}, store=chroma_url, collection="switch-gone")
    pipeline = Pipeline(settings, embedder=SentenceTransformerEmbedder())
    assert pipeline.ingest([docs]).ok
    stalled = stall(STALLED_COMPACT, "fenced:4", chroma_url, "switch-gone")  # before its switch to switch-gone.v1
    try:
        time.sleep(2.0)
        with writer_lock(chroma_url, collection="switch-gone") as lease:  # breaks the stalled compact's lock
            compact_collection(chroma_url, "switch-gone", fence=lease.check)  # its own .v1
            compact_collection(chroma_url, "switch-gone", fence=lease.check, force=True)  # .v2; .v1 dropped
    finally:
        stalled.send_signal(signal.SIGCONT)
    _, err = stalled.communicate(timeout=120)
    assert stalled.returncode != 0 and "taken over" in err
    names = {collection.name for collection in chroma(chroma_url).list_collections()}
    assert "switch-gone.v1" not in names and "switch-gone.v2" in names
    reader = Pipeline(settings, embedder=pipeline.embedder)
    assert reader.store._manifest is not None and reader.store._manifest.generation().collection == "switch-gone.v1"
    assert reader.store._collection.name == "switch-gone.v2"
    assert "one" in reader.search("Alpha rule", k=1, sources=["a.md"])[0].chunk.text
    rerun = reader.ingest([docs])
    assert rerun.ok and rerun.unchanged == ["a.md", "b.md"] and rerun.repaired == []
    assert compact_collection(chroma_url, "switch-gone", force=True).chunks == reader.stats().chunks
    assert Pipeline(settings, embedder=pipeline.embedder).store._collection.name == "switch-gone.v3"
