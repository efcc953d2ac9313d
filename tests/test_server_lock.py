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
from pathlib import Path

import pytest

from rag_prompts.errors import StoreBusyError
from rag_prompts.locking import writer_lock
from rag_prompts.server_lock import lock_name
from rag_prompts.store import server_lock

from .conftest import ROOT, write

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
settings = load_settings(None, environ={}, store=sys.argv[1], collection="stalled")
store = open_store(sys.argv[1], "stalled", settings.embedding_model, None)
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
    stalled = subprocess.Popen([sys.executable, "-c", STALLED, chroma_url, str(docs)], env=environ,
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
