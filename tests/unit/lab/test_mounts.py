from pathlib import Path

from shoal.lab.mounts import mounts_below

INFO = """\
22 1 0:21 / / rw - ext4 /dev/vda rw
90 22 0:50 / /var/lib/shoal-x-lab/h1/oci/bundles/t1/rootfs rw - overlay overlay rw
91 90 0:51 / /var/lib/shoal-x-lab/h1/oci/bundles/t1/rootfs/run/secrets rw - tmpfs tmpfs rw
92 22 0:52 / /var/lib/shoal-x-lab2/h1/rootfs rw - overlay overlay rw
93 22 0:53 / /var/lib/shoal-x-lab/h1/with\\040space rw - tmpfs tmpfs rw
"""


def test_only_mounts_below_the_dir_deepest_first() -> None:
    found = mounts_below(Path("/var/lib/shoal-x-lab"), INFO)
    assert found == [
        "/var/lib/shoal-x-lab/h1/oci/bundles/t1/rootfs/run/secrets",
        "/var/lib/shoal-x-lab/h1/oci/bundles/t1/rootfs",
        "/var/lib/shoal-x-lab/h1/with space",
    ]


def test_the_dir_itself_and_siblings_are_never_listed() -> None:
    info = "1 0 0:1 / /var/lib/shoal-x-lab rw - tmpfs tmpfs rw\n"
    assert mounts_below(Path("/var/lib/shoal-x-lab"), info) == []
    assert mounts_below(Path("/var/lib/shoal-x"), INFO) == []
