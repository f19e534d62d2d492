"""Golden execution of a sequence of placed GEMM jobs."""

from .engine import BufferImages, execute

__all__ = ["run_jobs"]


def run_jobs(config, jobs):
    """Load and execute ``jobs`` in order on one set of buffer images.

    Returns the C-buffer words of each job's result region, as the hardware
    leaves them when that job is done.
    """
    images = BufferImages(config)
    results = []
    for job in jobs:
        d = job.descriptor
        images.a[d.a_addr:d.a_addr + len(job.a_words)] = job.a_words
        images.b[d.b_addr:d.b_addr + len(job.b_words)] = job.b_words
        if job.i_words is not None:
            images.index[d.b_addr:d.b_addr + len(job.i_words)] = job.i_words
        channels = slice(d.p_addr, d.p_addr + d.n)
        images.bias[channels] = job.problem.bias
        images.multiplier[channels] = job.problem.multiplier
        images.shift[channels] = job.problem.shift
        execute(images, d)
        results.append(images.c[d.c_addr:d.c_addr + job.c_word_count].copy())
    return results
