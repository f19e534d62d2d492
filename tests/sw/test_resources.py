import pytest

from vitforge.errors import ToolchainError
from vitforge.sw import resources

# The shape of a Yosys 0.23 `stat` report after synth_xilinx -family xcup.
STAT = """
=== gelu_unit ===

   Number of wires:                111
   Number of cells:                190
     BUFG                            1
     CARRY8                          2
     DSP48E2                         3
     FDRE                           33
     FDSE                            2
     IBUF                           53
     LUT2                            1
     LUT6                           32
     RAM64M8                        32
     RAMB18E2                        1
     RAMB36E2                        2
     SRLC32E                         5

End of script.
"""


def test_stat_report_is_counted_by_resource_kind():
    found = resources.parse_stat(STAT)
    assert found.as_dict() == {"lut": 33, "lutram": 32 * 8 + 5, "ff": 35, "dsp": 3,
                               "bram36": 2.5, "carry": 2}


def test_log_without_a_report_is_rejected():
    with pytest.raises(ToolchainError, match=r"^Yosys log has no 'stat' report"):
        resources.parse_stat("ERROR: something else")


def test_missing_yosys_says_how_to_install(monkeypatch):
    monkeypatch.setattr(resources.shutil, "which", lambda name: None)
    with pytest.raises(ToolchainError, match=r"^yosys not found; install it with: "
                                             r"apt-get install yosys"):
        resources.estimate("module top(); endmodule", "top")


def test_stat_reports_of_later_yosys_versions_put_the_count_first():
    report = "       7 cells\n       3   CARRY8\n        1   DSP48E2\n       3   FDRE\n"
    found = resources.parse_stat(report)
    assert (found.carry, found.dsp, found.ff) == (3, 1, 3)
