"""Secrets at rest on the deploying machine: the git-clone build directory is private (0700) and ours.

(The SFTP side, files created on the servers with their mode, is in test_e2e_secrets_at_rest.py.)
"""

from __future__ import annotations

import os
import stat

import pytest

from kamalpy.builtin_plugins.build_commands import BuildError, private_directory


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_new_clone_directory_is_created_0700_whatever_the_umask(tmp_path):
    previous = os.umask(0)
    try:
        private_directory(str(tmp_path / "kamal-clones"))
    finally:
        os.umask(previous)
    assert mode(tmp_path / "kamal-clones") == 0o700


def test_an_existing_open_clone_directory_is_closed(tmp_path):
    path = tmp_path / "kamal-clones"
    path.mkdir(mode=0o755)
    path.chmod(0o777)
    private_directory(str(path))
    assert mode(path) == 0o700


def test_a_symlink_or_a_file_in_its_place_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    target.chmod(0o755)
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(BuildError, match="not a directory of this user"):
        private_directory(str(tmp_path / "link"))
    (tmp_path / "file").write_text("")
    with pytest.raises(BuildError, match="not a directory of this user"):
        private_directory(str(tmp_path / "file"))
    assert mode(target) == 0o755  # untouched: no chmod through the link
    assert os.path.islink(tmp_path / "link")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the directory to another user")
def test_a_directory_of_another_user_is_refused(tmp_path):
    path = tmp_path / "kamal-clones"
    path.mkdir()
    path.chmod(0o777)
    os.chown(path, 12345, 12345)
    with pytest.raises(BuildError, match=f"Can't use the clone directory {path}"):
        private_directory(str(path))
    assert mode(path) == 0o777  # left as it was
