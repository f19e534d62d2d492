"""Running a cocotb testbench on a job file and collecting its result file."""

from pathlib import Path
import shutil
import tempfile
import time

from . import runner

__all__ = ["run_job"]


def run_job(built, test_module, write_job, read_results, *, waves_to=None):
    """Run cocotb ``test_module`` on ``built`` with a job written by ``write_job(path)``.

    The testbench finds the job at ``$VITFORGE_JOB`` and writes its results to
    ``$VITFORGE_RESULTS``. The scratch folder is removed on every way out; a
    failed run's simulation log is kept in the cache (the error names it).

    With ``waves_to`` (a path; ``built`` must be a waves build) the run's
    VCD trace is moved there.

    Returns
    -------
    results
        What ``read_results(path)`` returns.
    seconds : float
        Wall time of the simulation.
    """
    scratch = Path(tempfile.mkdtemp(prefix="vitforge-job-"))
    try:
        job_path = scratch / "job.npz"
        results_path = scratch / "results.npz"
        write_job(job_path)
        started = time.monotonic()
        runner.run_test(built, test_module,
                        env={"VITFORGE_JOB": str(job_path),
                             "VITFORGE_RESULTS": str(results_path)},
                        keep_dir=scratch / "run", waves=waves_to is not None)
        seconds = time.monotonic() - started
        results = read_results(results_path)
        if waves_to is not None:
            shutil.move(scratch / "run" / "dump.vcd", waves_to)
        return results, seconds
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
