"""CPU training keeps freed memory for the next step instead of faulting in fresh pages."""

import resource
import subprocess
import sys
import textwrap


def test_freed_activations_are_reused_without_page_faults():
    # A fresh process: the setting is process-wide and the test must see glibc's defaults first.
    script = textwrap.dedent(
        """
        import resource, torch
        from repr_asr.training.memory import keep_freed_memory

        def faults_of_one_step():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            activations = torch.empty(16 * 2**20)  # 64 MiB, over glibc's largest mmap threshold
            activations.fill_(1.0)
            del activations
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

        default = [faults_of_one_step() for _ in range(3)]
        applied = keep_freed_memory()
        kept = [faults_of_one_step() for _ in range(6)]
        print(applied, min(default), max(kept[-3:]))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    applied, default, kept = out[0] == "True", int(out[1]), int(out[2])
    pages = 64 * 2**20 // resource.getpagesize()
    assert default > pages // 2  # glibc's default: every step faults the block in again
    if applied:  # glibc: the second step on reuses the heap's pages
        assert kept < pages // 100
