"""The Dask dashboard link: printed when the scheduler can draw it, and only then.

bokeh is in the ``dashboard`` extra and in ``dev`` (through ``all``), so CI runs the case with
it for real; the case without it hides bokeh from a child process's scheduler.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import urllib.request

import pytest

from deploy_modes.batch.dask_engine import dask_client

pytestmark = pytest.mark.integration


def test_the_link_of_a_remote_scheduler_with_bokeh_is_printed_and_answers(
    dask_scheduler: str,
) -> None:
    said: list[str] = []
    with dask_client(None, dask_scheduler, said.append):
        pass
    links = [m.removeprefix("Dask dashboard: ") for m in said if m.startswith("Dask dashboard: ")]
    assert len(links) == 1, said
    assert links[0].startswith("http://127.0.0.1:")
    with urllib.request.urlopen(links[0], timeout=30) as page:  # the link is true
        assert page.status == 200
        assert b"Dask" in page.read()


def test_without_bokeh_a_local_cluster_prints_no_dashboard_link() -> None:
    # The scheduler of a local cluster runs in the client's process: hide bokeh there.
    script = textwrap.dedent(
        """
        import sys
        sys.modules["bokeh"] = None  # importing bokeh now fails, as when it is not installed
        from deploy_modes.batch.dask_engine import dask_client

        said = []
        with dask_client(1, None, said.append) as client:
            services = client.scheduler_info()["services"]
        print("services:", sorted(services))
        print("said:", said)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    # The scheduler still registers its HTTP service: only the bokeh check keeps us quiet.
    assert "services: ['dashboard']" in result.stdout, result.stdout
    assert "said: []" in result.stdout, result.stdout
