"""The container endpoints' pure parts: Docker's reference resolution and human durations,
the volume store's rules, and runc's exec command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.agent.volumes import VolumeStore
from shoal.errors import Ambiguous, Conflict, InvalidArgument, NotFound
from shoal.httpapi.containerjson import human_duration, status_text
from shoal.httpapi.taskcontainers import ContainerView, ExecOptions, resolve, runc_exec_argv


def view(cid: str, name: str, **kw: object) -> ContainerView:
    return ContainerView(id=cid, name=name, image="img", image_id="sha256:x",
                         created="2026-01-01T00:00:00Z", status="running", **kw)  # type: ignore[arg-type]


VIEWS = [view("abc123" + "0" * 58, "web.1.t1"), view("abd456" + "0" * 58, "web.2.t2"),
         view("fff", "abc")]


def test_resolve_follows_dockers_order() -> None:
    assert resolve(VIEWS, "fff").name == "abc"  # full id
    assert resolve(VIEWS, "abc").id == "fff"  # an exact name wins over an id prefix
    assert resolve(VIEWS, "/web.2.t2").id.startswith("abd")
    assert resolve(VIEWS, "abc1").name == "web.1.t1"
    with pytest.raises(Ambiguous, match="Multiple IDs found with provided prefix: ab"):
        resolve(VIEWS, "ab")
    with pytest.raises(NotFound, match="No such container: zzz"):
        resolve(VIEWS, "zzz")
    with pytest.raises(NotFound):
        resolve(VIEWS, "")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.5, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (60, "About a minute"),
     (125, "2 minutes"), (3600, "About an hour"), (7200, "2 hours"), (3 * 86400, "3 days"),
     (20 * 86400, "2 weeks"), (90 * 86400, "3 months"), (800 * 86400, "2 years")],
)
def test_human_duration_is_dockers(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_status_text() -> None:
    up = view("a", "a", started_at="2026-01-01T00:00:00Z", health="healthy")
    assert status_text(up, 1767225600 + 300) == "Up 5 minutes (healthy)"
    done = view("b", "b", finished_at="2026-01-01T00:00:00Z", exit_code=137)
    done = ContainerView(**{**done.__dict__, "status": "exited"})
    assert status_text(done, 1767225600 + 7200) == "Exited (137) 2 hours ago"


def test_runc_exec_argv() -> None:
    opts = ExecOptions(argv=("sh", "-c", "id"), tty=True, env=("A=1",), user="1000:1000",
                       working_dir="/tmp")
    assert runc_exec_argv(Path("/r"), "cid", opts) == [
        "runc", "--root", "/r", "exec", "--tty", "--env", "A=1", "--user", "1000:1000",
        "--cwd", "/tmp", "cid", "sh", "-c", "id",
    ]


def test_volume_store(tmp_path: Path) -> None:
    store = VolumeStore(tmp_path / "volumes")
    made = store.create("data", "2026-01-01T00:00:00Z", {"a": "b"})
    assert made.mountpoint == tmp_path / "volumes" / "data" / "_data" and made.mountpoint.is_dir()
    (made.mountpoint / "keep").write_text("x")
    again = VolumeStore(tmp_path / "volumes").create("data", "later", {"other": "1"})
    assert again.labels == {"a": "b"} and (again.mountpoint / "keep").exists()
    assert [v.name for v in store.list()] == ["data"]
    with pytest.raises(Conflict, match=r"remove data: volume is in use - \[c1, c2\]"):
        store.remove("data", ["c1", "c2"])
    assert made.mountpoint.is_dir()
    store.remove("data", [])
    assert not (tmp_path / "volumes" / "data").exists()
    with pytest.raises(NotFound, match="get data: no such volume"):
        store.get("data")
    with pytest.raises(InvalidArgument, match="invalid characters"):
        store.create("../x", "t")
    assert store.list() == []
