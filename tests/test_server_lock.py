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
