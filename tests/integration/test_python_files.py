"""env.add_python_file: modules a job imports reach TaskManagers that never had them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from client.local_cluster import LocalCluster
from weir.datastream import StreamExecutionEnvironment
from weir.datastream.execution import ExecutionContext, JobExecutionException, set_context

pytestmark = pytest.mark.integration


def use_shipped(x: int) -> Any:
    import shipped_mod  # only on sys.path where add_python_file put it
    from shipped_pkg.inner import label

    return label(shipped_mod.triple(x))


def test_python_files_and_packages_are_shipped(tmp_path: Path) -> None:
    deps = tmp_path / "deps"
    deps.mkdir()
    (deps / "shipped_mod.py").write_text("def triple(x):\n    return 3 * x\n")
    pkg = tmp_path / "src" / "shipped_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "inner.py").write_text("def label(v):\n    return f'v={v}'\n")

    with LocalCluster(taskmanagers=1, slots=2, log_dir=str(tmp_path / "logs")) as c:
        set_context(ExecutionContext(jobmanager_address=c.address))
        try:
            # without the files the job fails on the TaskManager, naming the missing module
            env = StreamExecutionEnvironment.get_execution_environment()
            env.from_collection([1, 2]).map(use_shipped).print()
            with pytest.raises(JobExecutionException, match="shipped_mod"):
                env.execute("without files")

            env = StreamExecutionEnvironment.get_execution_environment()
            env.set_parallelism(2)
            env.add_python_file(str(deps / "shipped_mod.py"))
            env.add_python_file(str(pkg))
            out = env.from_collection(list(range(10))).map(use_shipped).execute_and_collect()
            assert sorted(out) == sorted(f"v={3 * x}" for x in range(10))
        finally:
            set_context(None)


def test_a_missing_python_file_is_refused_at_once(tmp_path: Path) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    with pytest.raises(FileNotFoundError, match="add_python_file"):
        env.add_python_file(str(tmp_path / "nope.py"))
