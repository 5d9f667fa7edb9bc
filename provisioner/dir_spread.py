"""Ask ext2/3/4 to place a folder's sub-folders in block groups of their own (the `chattr +T` hint).

Why: ext4 without a journal (as on this project's VMs) will not reuse an inode
freed in the last 30 seconds; it skips such inodes one by one while looking for a
free one in a block group. Where thousands of files were just deleted (an old
workspace, another test run), each new file in that group then costs about a
millisecond of kernel time instead of tens of microseconds, and a provisioning
run creates some 14 files and folders per participant. A folder flagged as "top
of a directory hierarchy" (FS_TOPDIR_FL) makes the Orlov allocator put each of
its sub-folders in a block group with plenty of free inodes instead of next to
the parent, away from those recent deletions.

Only placement changes, never content. Best effort: on other file systems the
request is refused and ignored.
"""

from __future__ import annotations

import array
import fcntl
import os
from pathlib import Path

FS_IOC_GETFLAGS = 0x80086601  # _IOR('f', 1, long), as on x86-64 and arm64 Linux
FS_IOC_SETFLAGS = 0x40086602  # _IOW('f', 2, long)
FS_TOPDIR_FL = 0x00020000


def mark_top(folder: Path, on: bool = True) -> bool:
    """Set (or clear) the folder's top-of-hierarchy flag; False when the file system does not support it."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags, True)
        wanted = flags[0] | FS_TOPDIR_FL if on else flags[0] & ~FS_TOPDIR_FL
        if wanted != flags[0]:
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, array.array("i", [wanted]), True)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
